"""VAE latents precomputed once: the posterior of every training image, both flips, memory-mapped.

Training encodes every image with the frozen VAE at every step (as the reference implementations
do). :func:`encode_latents` instead encodes a filtered-pairs index (:mod:`inpo.data.pickapic`) or a
per-image index (:mod:`inpo.data.per_image`) once and stores, for every row, every image (pairs:
winner then loser; per-image: the image) and BOTH horizontal flips (no flip, flip), the VAE's
posterior parameters: diffusers' ``DiagonalGaussianDistribution.parameters``, the mean and the
log-variance concatenated on the channel axis (``2 * C`` channels). The flip training draws from
``(seed, epoch, index)`` stays a choice at training time, and so does the posterior sample:
:func:`inpo.trainer.sample_latents` draws ``mean + std * noise`` with the same per-image generators
whether the parameters come from the VAE (on the fly) or from the store, so a run with the store
equals a run without it up to the VAE's float noise (and the store's dtype; tests/test_latents.py).

Store: a folder with ``moments.npy`` (``[rows, images, 2 flips, 2C, h, w]``, float16 or float32, a
plain ``.npy`` read through a memory map with ``MADV_RANDOM``: a pair reads its two selected
``2C x h x w`` blocks and little more) and ``manifest.json`` (what it was encoded from: the index and
its rows, the VAE and the SHA-256 of its weights, resolution, centre crop, dtype), written under a
temporary name and renamed, so there is never a partial store. :class:`LatentPairs` /
:class:`LatentImages` check the manifest against the run at load (a mismatch names the file and the key).

Disk (2C = 8, float16): SD1.5 at 512 px 8 x 64 x 64 x 2 B = 64 KiB per image and flip, 256 KiB per
pair (winner, loser, two flips); SDXL at 1024 px 1 MiB per pair; float32 twice that
(benchmarks/latents.py, figures in benchmarks/README.md).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .pickapic import _decode, _flip_rng, _write_json_atomic, preprocess

MOMENTS_FILE = "moments.npy"
MANIFEST_FILE = "manifest.json"
FORMAT = 1
DTYPES = ("float16", "float32")
#: Layouts of a store: the index it was encoded from, and the images per row.
LAYOUTS = {"pairs": 2, "images": 1}


class LatentsMismatchError(ValueError):
    """A latents store does not match the run that reads it; names the manifest file and the key."""


# --------------------------------------------------------------------------- fingerprints


def index_layout(index_path: str | os.PathLike) -> str:
    """``images`` for a per-image index (it has a ``column`` column), else ``pairs``."""
    return "images" if "column" in pq.read_schema(index_path).names else "pairs"


def index_fingerprint(index_path: str | os.PathLike) -> tuple[str, int, str]:
    """``(layout, rows, sha256)`` of an index: which images its rows are, in which order (pairs:
    ``shard, row, winner``; per-image: ``shard, row, column``), independent of where it lies."""
    index_path = Path(index_path)
    layout = index_layout(index_path)
    cols = ["shard", "row", "column" if layout == "images" else "winner"]
    t = pq.read_table(index_path, columns=cols)
    h = hashlib.sha256(layout.encode())
    for c in cols:
        arr = t[c].combine_chunks()
        h.update(c.encode())
        h.update(json.dumps(arr.to_pylist()).encode() if c in ("shard", "column") else
                 np.ascontiguousarray(arr.to_numpy().astype(np.int64)).tobytes())
    return layout, t.num_rows, h.hexdigest()


def weights_sha256(module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes, bytes): the same weights loaded from
    any copy of them (the base's ``vae`` folder, a trained run's copy of it) give the same hash."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_vae(pretrained: str, vae: str | None = None):
    """The run's VAE as :func:`inpo.models.load_components` loads it (float32): ``vae`` (a folder,
    or a folder with a ``vae`` subfolder, or a hub id) when given, else ``pretrained``'s ``vae``."""
    import torch
    from diffusers import AutoencoderKL

    from ..models import _from_pretrained

    if vae is not None:
        sub = {"subfolder": "vae"} if (Path(str(vae)) / "vae").is_dir() else {}
        return _from_pretrained(AutoencoderKL, str(vae), "VAE", torch_dtype=torch.float32, **sub)
    return _from_pretrained(AutoencoderKL, str(pretrained), "model", subfolder="vae", torch_dtype=torch.float32)


# --------------------------------------------------------------------------- encoding


def _row_images(ds, layout: str, i: int) -> list:
    """Decoded images of row ``i``: (winner, loser) of a pair, or the one image of a per-image row."""
    if layout == "pairs":
        return list(ds.load_images(i))
    sid, row = int(ds._shard_id[i]), int(ds._row[i])
    return [_decode(ds.image_bytes(i), ds.shards[sid], row, str(ds._column[i]))]


def encode_latents(
    index: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    pretrained: str,
    vae: str | None = None,
    resolution: int,
    dtype: str = "float16",
    batch_size: int = 8,
    device: str = "cpu",
    center_crop: bool = True,
) -> dict:
    """Encode every image of ``index`` (both flips) with the VAE of ``pretrained`` (or ``vae``) and
    write the store ``out_dir`` (``moments.npy`` + ``manifest.json``; see the module docstring).

    ``batch_size`` rows per VAE call (pairs: 4 images per row); the VAE runs in float32 on
    ``device`` and the parameters are stored as ``dtype``. Returns the manifest."""
    import torch

    from .per_image import LabelledImages
    from .pickapic import PreferencePairs

    if dtype not in DTYPES:
        raise ValueError(f"latents dtype {dtype!r}: not one of {list(DTYPES)}")
    t0 = time.perf_counter()
    index, out_dir = Path(index), Path(out_dir)
    layout, rows, fingerprint = index_fingerprint(index)
    if layout == "pairs":
        ds = PreferencePairs(index, resolution, random_flip=False, center_crop=center_crop)
    else:
        ds = LabelledImages(index, resolution, random_flip=False, center_crop=center_crop)
    model = load_vae(pretrained, vae)
    vae_hash = weights_sha256(model)
    model = model.requires_grad_(False).eval().to(device, torch.float32)
    c = model.config
    factor = 2 ** (len(c.block_out_channels) - 1)
    if resolution % factor:
        raise ValueError(f"resolution {resolution} is not a multiple of the VAE's downsampling factor {factor}")
    k = LAYOUTS[layout]
    shape = (rows, k, 2, 2 * c.latent_channels, resolution // factor, resolution // factor)

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        arr = np.lib.format.open_memmap(tmp / MOMENTS_FILE, mode="w+", dtype=np.dtype(dtype), shape=shape)
        for start in range(0, rows, batch_size):
            stop = min(rows, start + batch_size)
            pixels = [preprocess(img, resolution, flip=f, center_crop=center_crop)
                      for i in range(start, stop) for img in _row_images(ds, layout, i) for f in (False, True)]
            with torch.no_grad():
                moments = model.encode(torch.stack(pixels).to(device, torch.float32)).latent_dist.parameters
            arr[start:stop] = moments.float().cpu().numpy().reshape(stop - start, *shape[1:]).astype(dtype)
        arr.flush()
        del arr
        manifest = {
            "format": FORMAT,
            "layout": layout,
            "index": str(index),
            "index_rows": rows,
            "index_sha256": fingerprint,
            "vae": str(vae if vae is not None else Path(str(pretrained)) / "vae"),
            "vae_sha256": vae_hash,
            "resolution": int(resolution),
            "center_crop": bool(center_crop),
            "dtype": dtype,
            "shape": list(shape),
            "flips": ["none", "horizontal"],
            "encode_dtype": "float32",
            "bytes": (tmp / MOMENTS_FILE).stat().st_size,
            "encode_seconds": round(time.perf_counter() - t0, 3),
            "device": str(device),
        }
        _write_json_atomic(tmp / MANIFEST_FILE, manifest)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# --------------------------------------------------------------------------- reading


def check_manifest(store: str | os.PathLike, expected: dict[str, Any]) -> dict:
    """The store's manifest, checked key by key against ``expected`` (a mismatch: an error naming the
    manifest file, the key, both values)."""
    path = Path(store) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no latents manifest (data.latents must name a store written by "
                                "inpo.data.latents.encode_latents)")
    m = json.loads(path.read_text())
    if m.get("format") != FORMAT:
        raise LatentsMismatchError(f"{path}: key 'format' is {m.get('format')!r}, this reader reads {FORMAT}")
    for key, want in expected.items():
        if m.get(key) != want:
            raise LatentsMismatchError(
                f"{path}: key {key!r} is {m.get(key)!r}, the run needs {want!r}: encode the latents again "
                "for this run's index, VAE and data settings (rule latents)")
    return m


class _Moments:
    """Read-only memory map of ``moments.npy`` with ``MADV_RANDOM`` (no read-around: a read faults in
    only the pages it touches). Opened lazily, so it pickles into DataLoader workers unopened."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            self.offset = fh.tell()
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered array; expected the C order encode_latents writes")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._array = None

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            with open(self.path, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            if hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
                mm.madvise(mmap.MADV_RANDOM)
            self._array = np.ndarray(self.shape, self.dtype, buffer=mm, offset=self.offset)
        return self._array


class _LatentStore:
    """Shared part of :class:`LatentPairs` and :class:`LatentImages`: the checked manifest, the
    memory-mapped moments and the index's captions."""

    layout = ""

    def __init__(self, index_path, store, resolution: int, *, random_flip: bool = True, seed: int = 0,
                 center_crop: bool = True, vae_sha256: str | None = None):
        self.index_path, self.store = Path(index_path), Path(store)
        self.resolution, self.random_flip, self.seed = int(resolution), bool(random_flip), int(seed)
        self.center_crop = bool(center_crop)
        self.epoch = 0
        layout, rows, fingerprint = index_fingerprint(self.index_path)
        expected = {"layout": self.layout, "index_rows": rows, "index_sha256": fingerprint,
                    "resolution": self.resolution, "center_crop": self.center_crop}
        if layout != self.layout:
            raise LatentsMismatchError(f"{self.index_path}: a {layout} index; {type(self).__name__} reads {self.layout}")
        if vae_sha256 is not None:
            expected["vae_sha256"] = vae_sha256
        self.manifest = check_manifest(self.store, expected)
        self.moments = _Moments(self.store / MOMENTS_FILE)
        if self.moments.shape[:3] != (rows, LAYOUTS[self.layout], 2):
            raise LatentsMismatchError(f"{self.moments.path}: shape {self.moments.shape}, expected "
                                       f"({rows}, {LAYOUTS[self.layout]}, 2, ...)")
        self._caption = pq.read_table(self.index_path, columns=["caption"])["caption"].combine_chunks()
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _draws(self, index: int, n: int, epoch: int | None = None) -> list[bool]:
        """``n`` flips of row ``index`` at ``epoch`` (default: the current one), drawn from
        ``(seed, epoch, index)`` as the pixel datasets draw them."""
        if not self.random_flip:
            return [False] * n
        rng = _flip_rng(self.seed, self.epoch if epoch is None else epoch, index)
        return [bool(x < 0.5) for x in rng.random(n)]

    def _block(self, index: int, image: int, flip: bool):
        import torch

        return torch.from_numpy(np.array(self.moments.array[index, image, int(flip)]))

    def _check(self, index) -> int:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return index


class LatentPairs(_LatentStore):
    """:class:`inpo.data.pickapic.PreferencePairs` from a latents store: ``ds[i] -> {"moments_w":
    Tensor[2C, h, w], "moments_l": ..., "caption": str, "index": i}`` (``winners_only``: no
    ``moments_l``, and the loser's bytes are not read), the flips drawn exactly as
    ``PreferencePairs.flips`` draws them. ``vae_sha256`` (the run's VAE): checked against the store's."""

    layout = "pairs"

    def __init__(self, index_path, store, resolution: int, *, winners_only: bool = False, **kw):
        super().__init__(index_path, store, resolution, **kw)
        self.winners_only = bool(winners_only)

    def flips(self, index: int, epoch: int | None = None) -> tuple[bool, bool]:
        """(flip_w, flip_l) of ``index`` at ``epoch``: ``PreferencePairs.flips``."""
        fw, fl = self._draws(index, 2, epoch)
        return fw, fl

    def __getitem__(self, index: int) -> dict:
        index = self._check(index)
        fw, fl = self.flips(index)
        out = {"moments_w": self._block(index, 0, fw), "caption": self._caption[index].as_py(), "index": index}
        if not self.winners_only:
            out["moments_l"] = self._block(index, 1, fl)
        return out


class LatentImages(_LatentStore):
    """:class:`inpo.data.per_image.LabelledImages` from a latents store: ``ds[i] -> {"moments_w":
    Tensor[2C, h, w], "caption", "index", "desirable"}``, the flip drawn as ``LabelledImages.flip``."""

    layout = "images"

    def __init__(self, index_path, store, resolution: int, **kw):
        super().__init__(index_path, store, resolution, **kw)
        self.desirable = pq.read_table(self.index_path, columns=["desirable"])["desirable"].to_numpy(
            zero_copy_only=False).astype(bool)

    def __getitem__(self, index: int) -> dict:
        index = self._check(index)
        (flip,) = self._draws(index, 1)
        return {"moments_w": self._block(index, 0, flip), "caption": self._caption[index].as_py(), "index": index,
                "desirable": bool(self.desirable[index])}


def open_latents(index_path, store, resolution: int, *, winners_only: bool = False, **kw) -> _LatentStore:
    """:class:`LatentPairs` or :class:`LatentImages`, as the index is a pair or a per-image index."""
    if index_layout(index_path) == "images":
        return LatentImages(index_path, store, resolution, **kw)
    return LatentPairs(index_path, store, resolution, winners_only=winners_only, **kw)
