"""Pick-a-Pic v2: schema check, streaming pair filter, and the preference-pair torch Dataset.

The real train split is 959,040 rows in ~645 parquet shards (~335 GB, image bytes inline), so
everything here streams: :func:`filter_pairs` reads only the label / caption columns row group by
row group (plus the image columns of the current row group when ``check_images``), and
:class:`PreferencePairs` reads image bytes lazily, one cached row group at a time.

Filtered-pairs index (see docs/CONVENTIONS.md): parquet with one row per kept pair,
``shard`` (path), ``row`` (row index within the shard), ``caption``, ``winner`` (0 or 1: which of
``jpg_0`` / ``jpg_1`` is preferred) and ``ranking_id`` when the source has it; plus a JSON manifest
with the counts per drop reason.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

PICKAPIC_HUB_ID = "yuvalkirstain/pickapic_v2"

#: Columns the filter and the datasets need, with the arrow type family each must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")
#: Columns used when present (``has_label`` false -> dropped as ``no_label``; ``ranking_id`` copied).
OPTIONAL_COLUMNS: tuple[str, ...] = ("has_label", "ranking_id")

DROP_REASONS: tuple[str, ...] = ("no_label", "tie", "invalid_label", "undecodable_image")

#: Arrow schema of the public ``yuvalkirstain/pickapic_v2`` parquet shards (for synthetic / toy shards).
PICKAPIC_V2_SCHEMA = pa.schema(
    [
        ("are_different", pa.bool_()),
        ("best_image_uid", pa.string()),
        ("caption", pa.string()),
        ("created_at", pa.timestamp("ns")),
        ("has_label", pa.bool_()),
        ("image_0_uid", pa.string()),
        ("image_0_url", pa.string()),
        ("image_1_uid", pa.string()),
        ("image_1_url", pa.string()),
        ("jpg_0", pa.binary()),
        ("jpg_1", pa.binary()),
        ("label_0", pa.float64()),
        ("label_1", pa.float64()),
        ("model_0", pa.string()),
        ("model_1", pa.string()),
        ("ranking_id", pa.int64()),
        ("user_id", pa.int64()),
        ("num_example_per_prompt", pa.int64()),
        ("__index_level_0__", pa.int64()),
    ]
)

_KNOWN_SPLITS = ("train", "validation", "test", "validation_unique", "test_unique")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class SchemaError(ValueError):
    """A shard lacks a required column or has one of the wrong type."""


class HubUnavailableError(RuntimeError):
    """A hub dataset id was given but its files are not available (offline and not cached)."""


class ImageDecodeError(RuntimeError):
    """An image of a pair cannot be decoded; names the shard and row."""


# --------------------------------------------------------------------------------------------
# Resolving a source to a list of shard files
# --------------------------------------------------------------------------------------------


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def _select_split(files: list[Path], split: str | None, where: str) -> list[Path]:
    if split is None:
        return files

    def split_of(p: Path) -> str | None:
        for part in reversed(p.parts[:-1]):
            if part in _KNOWN_SPLITS:
                return part
        m = re.match(r"^(train|validation_unique|test_unique|validation|test)[-_.]", p.name)
        return m.group(1) if m else None

    tagged = [(p, split_of(p)) for p in files]
    if not any(s is not None for _, s in tagged):
        return files  # a folder of shards of one split, named freely
    chosen = [p for p, s in tagged if s == split]
    if not chosen:
        found = sorted({s for _, s in tagged if s})
        raise FileNotFoundError(f"no parquet shards of split {split!r} in {where} (splits found: {found})")
    return chosen


def _hub_shards(repo_id: str, split: str | None) -> list[Path]:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - dependency of diffusers/transformers
        raise HubUnavailableError(f"huggingface_hub is needed to resolve hub id {repo_id!r}") from e
    pats = (
        ["*.parquet"]
        if split is None
        else [
            f"data/{split}-*.parquet",
            f"{split}-*.parquet",
            f"{split}/*.parquet",
            f"data/{split}/*.parquet",
            f"*/{split}/*.parquet",
        ]
    )
    local = None
    try:  # offline first: the hub cache
        local = snapshot_download(repo_id, repo_type="dataset", allow_patterns=pats, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any cache miss
        if _is_offline():
            raise HubUnavailableError(
                f"Pick-a-Pic source {repo_id!r} is a hub dataset id but HF_HUB_OFFLINE is set and it is not in "
                f"the local hub cache ({type(e).__name__}). Pass a local folder of parquet shards instead, or "
                f"download it first (huggingface-cli download {repo_id} --repo-type dataset)."
            ) from e
    files = sorted(Path(local).rglob("*.parquet")) if local else []
    if not files:
        if _is_offline():
            raise HubUnavailableError(
                f"no cached parquet shards of split {split!r} for hub dataset {repo_id!r} and HF_HUB_OFFLINE is set; "
                "pass a local folder of parquet shards"
            )
        try:
            local = snapshot_download(repo_id, repo_type="dataset", allow_patterns=pats)
        except Exception as e:  # noqa: BLE001
            raise HubUnavailableError(f"cannot download hub dataset {repo_id!r}: {e}") from e
        files = sorted(Path(local).rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"hub dataset {repo_id!r} has no parquet shards matching {pats}")
    return _select_split(files, split, repo_id)


def resolve_shards(
    source: str | os.PathLike | Sequence[str | os.PathLike], split: str | None = "train"
) -> list[Path]:
    """Shard files of ``source``: a parquet file, a folder (searched recursively for ``*.parquet``;
    files named ``{split}-*.parquet`` or under a ``{split}/`` folder are selected when splits are
    tagged), a list of files, or a hub dataset id (cache first; fails fast when offline)."""
    if isinstance(source, (list, tuple)):
        files = [Path(s) for s in source]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"shard files not found: {missing}")
        if not files:
            raise FileNotFoundError("empty list of shard files")
        return files
    p = Path(source)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(p.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no *.parquet files under {p}")
        return _select_split(files, split, str(p))
    s = str(source)
    if _HUB_ID_RE.match(s) and not s.startswith((".", "/")):
        return _hub_shards(s, split)
    raise FileNotFoundError(
        f"Pick-a-Pic source {s!r} is neither an existing file/folder nor a hub dataset id"
    )


# --------------------------------------------------------------------------------------------
# Schema check
# --------------------------------------------------------------------------------------------


def _type_ok(name: str, t: pa.DataType) -> bool:
    if name in ("jpg_0", "jpg_1"):
        return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)
    if name == "caption":
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if name in ("label_0", "label_1"):
        return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)
    if name == "has_label":
        return pa.types.is_boolean(t) or pa.types.is_integer(t)
    return True


def check_schema(source, *, split: str | None = "train", columns: Iterable[str] = REQUIRED_COLUMNS) -> None:
    """Raise :class:`SchemaError` naming every missing / mistyped column and its shard file.

    Reads only parquet footers, so it is cheap enough to run before any GPU job starts.
    """
    files = resolve_shards(source, split)
    columns = tuple(columns)
    problems: list[str] = []
    for f in files:
        try:
            schema = pq.read_schema(f)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{f}: unreadable parquet footer ({type(e).__name__}: {e})")
            continue
        names = set(schema.names)
        missing = [c for c in columns if c not in names]
        if missing:
            problems.append(f"{f}: missing column(s) {', '.join(missing)}")
        bad = [
            f"{c} ({schema.field(c).type})"
            for c in (*columns, *OPTIONAL_COLUMNS)
            if c in names and not _type_ok(c, schema.field(c).type)
        ]
        if bad:
            problems.append(f"{f}: column(s) of unexpected type: {', '.join(bad)}")
    if problems:
        head = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more shard(s)" if len(problems) > 50 else ""
        raise SchemaError(
            f"Pick-a-Pic schema check failed for {len(problems)} of {len(files)} shard(s) "
            f"(required columns: {', '.join(columns)}):\n  {head}{more}"
        )


# --------------------------------------------------------------------------------------------
# Streaming filter
# --------------------------------------------------------------------------------------------


def _decodable(b: bytes | None) -> bool:
    if not b:
        return False
    try:
        with Image.open(io.BytesIO(b)) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder failure means "undecodable"
        return False


def _check_images(path, rg: int, rows: np.ndarray, batch_rows: int = 32) -> np.ndarray:
    """Decodability of both images of ``rows`` (indices within row group ``rg``), streamed in small
    batches with a buffered reader so that a large row group of image bytes is never held whole."""
    ok = np.zeros(rows.size, dtype=bool)
    want = np.zeros(int(rows.max()) + 1, dtype=bool)
    want[rows] = True
    pos = {int(r): i for i, r in enumerate(rows)}
    pf = pq.ParquetFile(path, buffer_size=1 << 22, pre_buffer=False)
    start = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[rg], columns=["jpg_0", "jpg_1"]):
            n = batch.num_rows
            sel = np.flatnonzero(want[start : start + n])
            if sel.size:
                c0, c1 = batch.column(0), batch.column(1)
                for j in sel:
                    ok[pos[start + int(j)]] = _decodable(c0[int(j)].as_py()) and _decodable(
                        c1[int(j)].as_py()
                    )
            start += n
            if start >= want.size:
                break
    finally:
        if hasattr(pf, "close"):
            pf.close()
    return ok


def _as_float(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    col = pc.cast(col, pa.float64())
    return np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def filter_pairs(
    source,
    out_index: str | os.PathLike,
    out_manifest: str | os.PathLike,
    *,
    split: str | None = "train",
    check_images: bool = False,
    max_rows: int | None = None,
) -> dict:
    """Stream over the shards of ``source`` and write the filtered-pairs index and manifest.

    Keeps rows with ``label_0`` in {0, 1} (and ``label_1 == 1 - label_0``, ``has_label`` not false);
    ``winner = 0 if label_0 == 1 else 1``. Each dropped row is counted under one reason:
    ``no_label`` (has_label false or label_0 null), ``tie`` (label_0 == 0.5), ``invalid_label``
    (anything else) and, with ``check_images``, ``undecodable_image`` (either image fails to
    decode: the whole pair is dropped). ``max_rows`` stops after that many input rows.
    Returns the manifest dict (also written to ``out_manifest``).
    """
    files = resolve_shards(source, split)
    check_schema(files, split=split)
    schemas = [pq.read_schema(f) for f in files]
    has_ranking = all("ranking_id" in s.names for s in schemas)

    out_index, out_manifest = Path(out_index), Path(out_manifest)
    out_index.parent.mkdir(parents=True, exist_ok=True)
    tmp_index = out_index.with_name(out_index.name + ".tmp")
    fields = [
        pa.field("shard", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("caption", pa.string()),
        pa.field("winner", pa.int8()),
    ]
    if has_ranking:
        fields.append(pa.field("ranking_id", pa.int64()))
    out_schema = pa.schema(fields)

    counts = dict.fromkeys(DROP_REASONS, 0)
    rows_in = kept = 0
    winners = [0, 0]
    prompts: set[str] = set()
    shard_stats: list[dict] = []
    done = False
    with pq.ParquetWriter(tmp_index, out_schema, compression="zstd") as writer:
        for f, schema in zip(files, schemas):
            if done:
                break
            shard_name = os.path.abspath(f)
            cols = ["caption", "label_0", "label_1"] + [c for c in OPTIONAL_COLUMNS if c in schema.names]
            if not has_ranking and "ranking_id" in cols:
                cols.remove("ranking_id")
            pf = pq.ParquetFile(f)
            s_in = s_kept = 0
            offset = 0
            for rg in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(rg).num_rows
                if max_rows is not None and rows_in + n > max_rows:
                    n = max_rows - rows_in
                    done = True
                if n <= 0:
                    break
                t = pf.read_row_group(rg, columns=cols)
                if t.num_rows != n:
                    t = t.slice(0, n)
                l0 = _as_float(t["label_0"])
                l1 = _as_float(t["label_1"])
                no_label = np.isnan(l0)
                if "has_label" in t.column_names:
                    hl = t["has_label"]
                    hl = pc.fill_null(pc.cast(hl, pa.bool_()), True).to_numpy(zero_copy_only=False)
                    no_label |= ~np.asarray(hl, dtype=bool)
                tie = ~no_label & (l0 == 0.5)
                valid = ~no_label & ~tie & ((l0 == 0.0) | (l0 == 1.0)) & (np.isnan(l1) | (l1 == 1.0 - l0))
                counts["no_label"] += int(no_label.sum())
                counts["tie"] += int(tie.sum())
                counts["invalid_label"] += int((~no_label & ~tie & ~valid).sum())
                keep = np.flatnonzero(valid)
                if check_images and keep.size:
                    ok = _check_images(f, rg, keep)
                    counts["undecodable_image"] += int((~ok).sum())
                    keep = keep[ok]
                if keep.size:
                    idx = pa.array(keep)
                    cap = pc.cast(t["caption"].take(idx), pa.string())
                    win = np.where(l0[keep] == 1.0, 0, 1).astype(np.int8)
                    arrays = [
                        pa.array(np.full(keep.size, shard_name, dtype=object), pa.string()),
                        pa.array(keep.astype(np.int64) + offset),
                        cap,
                        pa.array(win),
                    ]
                    if has_ranking:
                        arrays.append(pc.cast(t["ranking_id"].take(idx), pa.int64()))
                    writer.write_table(pa.Table.from_arrays(arrays, schema=out_schema))
                    prompts.update(pc.unique(cap).to_pylist())
                    n1 = int(win.sum())
                    winners[1] += n1
                    winners[0] += keep.size - n1
                s_in += n
                s_kept += int(keep.size)
                offset += pf.metadata.row_group(rg).num_rows
                rows_in += n
                kept += int(keep.size)
                if done:
                    break
            shard_stats.append({"path": shard_name, "rows_in": s_in, "pairs_kept": s_kept})
            if hasattr(pf, "close"):
                pf.close()
    os.replace(tmp_index, out_index)
    assert rows_in == kept + sum(counts.values()), "every input row is kept or counted under one reason"
    manifest = {
        "source": str(source) if not isinstance(source, (list, tuple)) else [str(s) for s in source],
        "split": split,
        "check_images": bool(check_images),
        "max_rows": max_rows,
        "rows_in": rows_in,
        "pairs_kept": kept,
        "dropped": counts,
        "dropped_total": int(sum(counts.values())),
        "winner_counts": {"0": winners[0], "1": winners[1]},
        "unique_prompts": len(prompts),
        "n_shards": len(shard_stats),
        "shards": shard_stats,
        "index": str(out_index),
    }
    _write_json_atomic(out_manifest, manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# Lazy image access and the torch Dataset
# --------------------------------------------------------------------------------------------


class _ShardReader:
    """Reads image bytes of (shard, row) lazily with small LRU caches of open files and row groups.

    Picklable (caches are dropped), so each DataLoader worker opens its own file handles.
    """

    def __init__(self, shards: Sequence[str], *, max_open_files: int = 8, cache_row_groups: int = 2):
        self.shards = list(shards)
        self.max_open_files = max_open_files
        self.cache_row_groups = cache_row_groups
        self._offsets: dict[int, np.ndarray] = {}
        self._files: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._groups: OrderedDict[tuple[int, int], pa.Table] = OrderedDict()

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_files"], d["_groups"] = OrderedDict(), OrderedDict()
        return d

    def _file(self, sid: int) -> pq.ParquetFile:
        pf = self._files.get(sid)
        if pf is None:
            pf = pq.ParquetFile(self.shards[sid])
            self._files[sid] = pf
            while len(self._files) > self.max_open_files:
                _, old = self._files.popitem(last=False)
                if hasattr(old, "close"):
                    old.close()
        else:
            self._files.move_to_end(sid)
        return pf

    def offsets(self, sid: int) -> np.ndarray:
        off = self._offsets.get(sid)
        if off is None:
            md = pq.read_metadata(self.shards[sid])
            off = np.cumsum(
                [0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)], dtype=np.int64
            )
            self._offsets[sid] = off
        return off

    def locate(self, sid: int, row: int) -> tuple[int, int]:
        off = self.offsets(sid)
        if not 0 <= row < off[-1]:
            raise IndexError(f"row {row} out of range for shard {self.shards[sid]} ({off[-1]} rows)")
        rg = int(np.searchsorted(off, row, side="right") - 1)
        return rg, int(row - off[rg])

    def get(self, sid: int, row: int, column: str) -> bytes | None:
        rg, local = self.locate(sid, row)
        key = (sid, rg)
        t = self._groups.get(key)
        if t is None:
            t = self._file(sid).read_row_group(rg, columns=["jpg_0", "jpg_1"])
            self._groups[key] = t
            while len(self._groups) > max(1, self.cache_row_groups):
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        return t[column][local].as_py()


def _decode(b: bytes | None, shard: str, row: int, column: str) -> Image.Image:
    if not b:
        raise ImageDecodeError(f"empty image bytes in {column} of shard {shard} row {row}")
    try:
        with Image.open(io.BytesIO(b)) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001
        raise ImageDecodeError(
            f"cannot decode {column} of shard {shard} row {row} ({type(e).__name__}: {e}); "
            "run filter_pairs(..., check_images=True) to drop such pairs beforehand"
        ) from e


def preprocess(img: Image.Image, resolution: int, *, flip: bool, center_crop: bool = True):
    """Resize shorter side to ``resolution`` (bilinear, antialiased) -> center (or top-left) crop ->
    optional horizontal flip -> FloatTensor[3, R, R] in [-1, 1]."""
    import torch
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    img = TF.resize(img, resolution, interpolation=InterpolationMode.BILINEAR, antialias=True)
    if center_crop:
        img = TF.center_crop(img, [resolution, resolution])
    else:
        img = TF.crop(img, 0, 0, resolution, resolution)
    if flip:
        img = TF.hflip(img)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return x / 127.5 - 1.0


def _flip_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(index)])


try:  # torch is a hard dependency of the package, but keep the filter importable without it
    from torch.utils.data import Dataset as _TorchDataset
    from torch.utils.data import Sampler as _TorchSampler
except ImportError:  # pragma: no cover
    _TorchDataset = object  # type: ignore[misc,assignment]
    _TorchSampler = object  # type: ignore[misc,assignment]


class PreferencePairs(_TorchDataset):
    """Map-style dataset over a filtered-pairs index.

    ``ds[i] -> {"pixel_w": FloatTensor[3,R,R] in [-1,1], "pixel_l": ..., "caption": str, "index": i}``
    (``winners_only=True``: no ``pixel_l``, for SFT). Horizontal flips of winner and loser are drawn
    independently from an RNG seeded by ``(seed, epoch, index)``: reproducible and resumable; call
    :meth:`set_epoch` every epoch. Image bytes are read lazily from the shards; shard paths in the
    index that are relative are resolved against the index's folder.
    """

    def __init__(
        self,
        index_path: str | os.PathLike,
        resolution: int,
        *,
        random_flip: bool = True,
        seed: int = 0,
        center_crop: bool = True,
        winners_only: bool = False,
        cache_row_groups: int = 2,
        max_open_files: int = 8,
    ):
        self.index_path = Path(index_path)
        self.resolution = int(resolution)
        self.random_flip = bool(random_flip)
        self.seed = int(seed)
        self.center_crop = bool(center_crop)
        self.winners_only = bool(winners_only)
        self.epoch = 0
        t = pq.read_table(self.index_path, columns=["shard", "row", "caption", "winner"])
        shard = pc.dictionary_encode(t["shard"]).combine_chunks()
        base = self.index_path.parent
        self.shards = [p if os.path.isabs(p) else str(base / p) for p in shard.dictionary.to_pylist()]
        self._shard_id = shard.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        self._row = t["row"].to_numpy().astype(np.int64)
        self._winner = t["winner"].to_numpy().astype(np.int8)
        self._caption = t["caption"].combine_chunks()
        bad = ~np.isin(self._winner, (0, 1))
        if bad.any():
            raise ValueError(f"{self.index_path}: winner must be 0 or 1 ({int(bad.sum())} rows are not)")
        self._reader = _ShardReader(
            self.shards, max_open_files=max_open_files, cache_row_groups=cache_row_groups
        )

    def __len__(self) -> int:
        return len(self._row)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def flips(self, index: int, epoch: int | None = None) -> tuple[bool, bool]:
        """(flip_w, flip_l) drawn for ``index`` at ``epoch`` (default: the current epoch)."""
        if not self.random_flip:
            return False, False
        r = _flip_rng(self.seed, self.epoch if epoch is None else epoch, index).random(2)
        return bool(r[0] < 0.5), bool(r[1] < 0.5)

    def pair_location(self, index: int) -> tuple[str, int, int]:
        """(shard path, row, winner) of pair ``index``."""
        return self.shards[self._shard_id[index]], int(self._row[index]), int(self._winner[index])

    def row_groups(self) -> np.ndarray:
        """Integer id of the (shard, row group) holding each pair, for I/O-friendly samplers."""
        gid = np.empty(len(self), dtype=np.int64)
        base = 0
        for sid in range(len(self.shards)):
            m = self._shard_id == sid
            off = self._reader.offsets(sid)
            gid[m] = base + np.searchsorted(off, self._row[m], side="right") - 1
            base += len(off) - 1
        return gid

    def load_images(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        """Decoded (winner, loser) PIL images of pair ``index`` (loser None when winners_only)."""
        sid, row, w = int(self._shard_id[index]), int(self._row[index]), int(self._winner[index])
        shard = self.shards[sid]
        cw = f"jpg_{w}"
        img_w = _decode(self._reader.get(sid, row, cw), shard, row, cw)
        if self.winners_only:
            return img_w, None
        cl = f"jpg_{1 - w}"
        return img_w, _decode(self._reader.get(sid, row, cl), shard, row, cl)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        img_w, img_l = self.load_images(index)
        fw, fl = self.flips(index)
        out = {
            "pixel_w": preprocess(img_w, self.resolution, flip=fw, center_crop=self.center_crop),
            "caption": self._caption[index].as_py(),
            "index": index,
        }
        if not self.winners_only:
            out["pixel_l"] = preprocess(img_l, self.resolution, flip=fl, center_crop=self.center_crop)
        return out


def preferred_images(index_path, resolution: int, **kwargs) -> PreferencePairs:
    """Winner images only (``pixel_w``, ``caption``, ``index``): the SFT dataset."""
    return PreferencePairs(index_path, resolution, winners_only=True, **kwargs)


class RowGroupShuffleSampler(_TorchSampler):
    """Shuffles pairs so that each (shard, row group) is read once per epoch.

    Row groups are visited in a random order and pairs within a row group are shuffled; the order
    depends on (seed, epoch) only. ``num_replicas`` / ``rank`` split the stream round-robin between
    processes (each gets ``len // num_replicas`` indices; the remainder is dropped).
    """

    def __init__(self, dataset: PreferencePairs, *, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        self.groups = dataset.row_groups()
        self.seed, self.num_replicas, self.rank = int(seed), int(num_replicas), int(rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.groups))
        ug = np.unique(self.groups)
        rank_of_group = np.empty(ug.max() + 1 if ug.size else 0, dtype=np.int64)
        rank_of_group[ug] = rng.permutation(ug.size)
        key = rank_of_group[self.groups[perm]]
        return perm[np.argsort(key, kind="stable")]

    def __iter__(self) -> Iterator[int]:
        o = self.order()
        n = len(o) // self.num_replicas
        return iter(o[self.rank : n * self.num_replicas : self.num_replicas].tolist())

    def __len__(self) -> int:
        return len(self.groups) // self.num_replicas


def pickapic_test_prompts(source=None):
    """The 500 captions of the v2 ``test_unique`` split as a DataFrame ``index, prompt``
    (same as ``inpo.data.prompts.load_prompt_set("pickapic_test", source)``)."""
    from inpo.data.prompts import load_prompt_set

    return load_prompt_set("pickapic_test", source)
