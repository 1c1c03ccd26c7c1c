"""Precomputed VAE latents (inpo.data.latents, ``data.precompute_latents``): disk, loader speed, bytes
read, encode cost and exactness, beside the pre-resized image pack.

1. ``disk``: bytes per pair of a store (winner and loser, both flips, mean + log-variance: ``2C = 8``
   channels) for SD1.5 at 512 px (8 x 64 x 64) and SDXL at 1024 px (8 x 128 x 128), float16 and
   float32, and for the full set (851,293 pairs), beside the source JPEGs (~345 KB per row) and the
   pre-resized pack (PPM, ``3 R^2`` bytes per image);
2. ``load``: one worker (torch threads 1) loading pairs in the training order from a page-cached store
   (:class:`inpo.data.latents.LatentPairs`) and from the page-cached pre-resized pack
   (:class:`inpo.data.pickapic.PreferencePairs`), pairs per CPU second; the store holds random
   values (what is read does not depend on them) beside benchmarks/data_throughput.py's fitted pack,
   whose index it is aligned to (run data_throughput.py ``--parts fit`` first);
3. ``read``: bytes read from storage per pair over ``--pairs`` pairs in the training order, page
   cache dropped first (root only), counted as data_throughput.py counts them (``/proc/self/io``;
   one pair read first and left out: the libraries' code pages, the index);
4. ``encode``: CPU seconds per 512 px image of the real SD1.5 VAE architecture (``AutoencoderKL``
   with SD1.5's config, randomly initialised: the same FLOPs as the real weights), float32, batch 4,
   on this machine's CPU (a GPU is ~100x faster); and the exactness of a float16 store: the largest
   difference of the training latent (``(mean + std * noise) * 0.18215``, same noise) between the
   float16-stored and the on-the-fly posterior, absolute and relative to the latents' std.

    nice -n 5 python benchmarks/latents.py [--root /tmp/inpo_bench_throughput] [--pairs 150]
        [--encode-images 4] [--parts disk,load,read,encode]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_throughput import (  # noqa: E402
    FULL_SET_PAIRS,
    REAL_BYTES_PER_ROW,
    _drop_caches,
    _image,
    _page_cache,
    _read_bytes,
    _run_child,
    _time_pairs,
)

PARTS = ("disk", "load", "read", "encode")
#: (name, resolution, latent side): SD1.5's VAE and SDXL's downsample by 8, 4 latent channels
MODELS = (("SD1.5", 512, 64), ("SDXL", 1024, 128))
CHANNELS = 8  # mean + log-variance of 4 latent channels


def store_bytes_per_pair(side: int, itemsize: int) -> int:
    return 2 * 2 * CHANNELS * side * side * itemsize  # 2 images x 2 flips


def synthetic_store(index: Path, out: Path, res: int, dtype: str) -> Path:
    """A store of random moments aligned with ``index`` (the manifest a real one has, VAE hash fake)."""
    from inpo.data.latents import FORMAT, MANIFEST_FILE, MOMENTS_FILE, _write_json_atomic, index_fingerprint

    layout, rows, fp = index_fingerprint(index)
    side = res // 8
    if (out / MANIFEST_FILE).exists() and json.loads((out / MANIFEST_FILE).read_text())["index_sha256"] == fp:
        return out
    out.mkdir(parents=True, exist_ok=True)
    arr = np.lib.format.open_memmap(out / MOMENTS_FILE, mode="w+", dtype=dtype, shape=(rows, 2, 2, CHANNELS, side, side))
    rng = np.random.default_rng(0)
    for i in range(rows):
        arr[i] = rng.standard_normal(arr.shape[1:], dtype=np.float32).astype(dtype)
    arr.flush()
    del arr
    _write_json_atomic(out / MANIFEST_FILE, {
        "format": FORMAT, "layout": layout, "index": str(index), "index_rows": rows, "index_sha256": fp,
        "vae": "random (benchmark)", "vae_sha256": "0" * 64, "resolution": res, "center_crop": True,
        "dtype": dtype, "shape": [rows, 2, 2, CHANNELS, side, side]})
    return out


def _child(kind: str, index: str, store: str, res: str, n: str) -> None:
    import torch

    from inpo.data.latents import LatentPairs
    from inpo.data.pickapic import PreferencePairs
    from inpo.trainer import PairStream

    torch.set_num_threads(1)
    res = int(res)
    if kind.startswith("latents"):
        ds = LatentPairs(index, store, res, seed=0)
    else:
        ds = PreferencePairs(index, res, seed=0)
    order = PairStream(len(ds), 0).permutation(0).tolist()
    if kind.endswith("read"):  # one epoch from storage, the first pair (code pages, index) left out
        ds[order.pop()]
        order = order[: int(n)] if n != "all" else order
        r0, t = _read_bytes(), time.perf_counter()
        for i in order:
            ds[i]
        out = {"pairs": len(order), "read": _read_bytes() - r0, "s": time.perf_counter() - t}
    else:
        out = _time_pairs(ds, order[: int(n)])
    print(json.dumps(out), flush=True)
    os._exit(0)


def sd15_vae():
    """``AutoencoderKL`` with stable-diffusion-v1-5's ``vae/config.json`` (random weights)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        norm_num_groups=32, sample_size=512, scaling_factor=0.18215, act_fn="silu",
    ).eval()


def encode_part(n_images: int, threads: int) -> None:
    import torch
    from PIL import Image

    from inpo.data.pickapic import preprocess
    from inpo.trainer import sample_latents

    torch.set_num_threads(threads)
    vae = sd15_vae()
    rng = np.random.default_rng(0)
    import io

    imgs = [Image.open(io.BytesIO(_image(rng, 512))).convert("RGB") for _ in range(n_images)]
    x = torch.stack([preprocess(im, 512, flip=False) for im in imgs])
    with torch.no_grad():
        vae.encode(x[:1])  # warm-up
        c, t = time.process_time(), time.perf_counter()
        moments = vae.encode(x).latent_dist.parameters
        cpu, wall = time.process_time() - c, time.perf_counter() - t
    print(f"  encode, SD1.5 VAE architecture (random weights), float32, CPU, {threads} threads, batch {n_images} "
          f"at 512 px: {wall / n_images:.2f} s wall per image ({cpu / n_images:.2f} CPU s); a pair with both "
          f"flips is 4 images: {4 * wall / n_images:.1f} s wall once, vs 2 images per step on the fly")
    gens = [torch.Generator().manual_seed(i) for i in range(n_images)]
    ref = sample_latents(moments, gens, 0.18215)
    gens = [torch.Generator().manual_seed(i) for i in range(n_images)]
    got = sample_latents(moments.half().float(), gens, 0.18215)
    d = (got - ref).abs().max().item()
    mean, logvar = moments.chunk(2, dim=1)
    print(f"  float16 store vs on the fly (same noise), this VAE: max |latent difference| {d:.2e} "
          f"(latents' std {ref.std().item():.3f}: {d / ref.std().item():.1e} of it; |mean| up to "
          f"{mean.abs().max().item():.2f}, log-variance in [{logvar.min().item():.1f}, {logvar.max().item():.1f}])")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/tmp/inpo_bench_throughput"))
    ap.add_argument("--pairs", type=int, default=150, help="pairs per loader measurement")
    ap.add_argument("--encode-images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the encode measurement")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(*a.child)
        return 0
    parts = set(a.parts.split(","))
    if "disk" in parts:
        print(f"== disk per pair (winner + loser, both flips, mean + log-variance), full set {FULL_SET_PAIRS:,} pairs")
        print(f"  source JPEGs: {REAL_BYTES_PER_ROW / 1e3:.0f} KB per row, {REAL_BYTES_PER_ROW * FULL_SET_PAIRS / 1e12:.2f} TB")
        for name, res, side in MODELS:
            ppm = 2 * (3 * res * res + len(f"P6\n{res} {res}\n255\n"))
            print(f"  {name} {res} px: pre-resized pack (PPM) {ppm / 1e3:.0f} KB per pair, "
                  f"{ppm * FULL_SET_PAIRS / 1e12:.2f} TB")
            for dtype, size in (("float16", 2), ("float32", 4)):
                b = store_bytes_per_pair(side, size)
                print(f"  {name} {res} px: latents {CHANNELS}x{side}x{side} {dtype}: {b / 1e3:.0f} KB per pair "
                      f"({b // 4 / 1e3:.0f} KB read per image), {b * FULL_SET_PAIRS / 1e12:.2f} TB")
    for name, res, side in MODELS:
        fit = a.root / f"fitted_{res}"
        if not parts & {"load", "read"}:
            break
        if not (fit / "pairs.parquet").is_file():
            print(f"  {fit}: no pre-resized pack; run benchmarks/data_throughput.py --parts fit first")
            continue
        store = synthetic_store(fit / "pairs.parquet", a.root / f"latents_{res}_float16", res, "float16")
        n = min(a.pairs, json.loads((store / "manifest.json").read_text())["index_rows"])
        print(f"\n== {name} {res} px ({n} pairs, training order)")
        if "load" in parts:
            _page_cache([store / "moments.npy", fit / "pairs.parquet", *sorted((fit / "pairs_images").glob("*.parquet"))])
            for kind, what in (("latents", "latents store (float16)"), ("pack", "pre-resized pack")):
                r = _run_child(kind, fit / "pairs.parquet", store, res, n, script=__file__)
                print(f"  one worker, page-cached {what}: {r['pairs_cpu_s']:.0f} pairs per CPU second, "
                      f"{r['pairs_s']:.0f} pairs/s wall (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), "
                      f"peak RSS {r['peak_rss_mb']:.0f} MiB")
        if "read" in parts:
            if not _drop_caches():
                print("  cannot drop the page cache (not root): bytes read not measured")
                continue
            used = store_bytes_per_pair(side, 2) // 2  # the two selected blocks
            for kind, what in (("latents-read", "latents store (float16)"), ("pack-read", "pre-resized pack")):
                _drop_caches()
                r = _run_child(kind, fit / "pairs.parquet", store, res, n, script=__file__)
                extra = f", {r['read'] / r['pairs'] / used:.2f}x the {used / 1e3:.0f} KB used" if kind.startswith("lat") else ""
                print(f"  {what}: {r['pairs']} pairs from storage: {r['read'] / r['pairs'] / 1e3:.0f} KB read per "
                      f"pair{extra} ({r['pairs'] / r['s']:.0f} pairs/s)")
    if "encode" in parts:
        print("\n== encode cost and exactness")
        encode_part(a.encode_images, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
