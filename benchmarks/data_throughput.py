"""Training-data throughput on a realistic synthetic Pick-a-Pic mirror.

Builds (once, cached under ``--root``) a mirror in the exact v2 schema with unique JPEGs (quality
90; ~100-250 KB each) at 512 and 1024 px, each written in two row-group layouts (100 and 1,000
rows per group), then for every (resolution, layout):

1. filters it with ``check_images`` into an image pack (:func:`inpo.data.pickapic.filter_pairs`,
   one process): CPU seconds (and wall seconds) per 1,000 rows;
2. reads one epoch of image bytes in the training's global order (:class:`inpo.trainer.PairStream`)
   from storage, page cache dropped first (needs root: ``echo 3 > /proc/sys/vm/drop_caches``), in a
   fresh process: bytes read from storage (``/proc/self/io`` ``read_bytes``) per pair and over the bytes used (read amplification; median of ``--repeats``); the
   source shards read the old way (``--baseline-pairs`` pairs, index pointing at the shards; this
   count includes ~12-15 MB of library code pages) for comparison;
3. loads pairs (read + decode + resize/crop/flip to a tensor at the image's resolution) in the
   training order in one worker process (torch threads 1, as in a DataLoader worker) from the page
   cache: pairs per CPU second of the worker (what one core delivers; the wall-clock rate, also
   printed, depends on the machine's other load) and the worker's peak RSS;
4. the image check alone (``check``): CPU ms per image of the filter's check (JPEG structure + a
   libjpeg decode of the headers) beside a 1/8-scale decode of the whole file (the previous check)
   and the training's full decode;
5. the pre-resized pack (``fit``, ``filter_pairs(pack_resolution=res)``): filter CPU s per 1,000
   rows, disk per pair and for the full set (851,293 pairs), and one worker's pairs per CPU second
   loading from it.

Filter times per 1,000 rows are also scaled to the real set's ~345 KB of image bytes per row
(335 GB / 959,040 rows; an estimate: the check's cost grows with the bytes).

    python benchmarks/data_throughput.py [--root /tmp/inpo_bench_throughput] [--rows-512 1000]
        [--rows-1024 500] [--throughput-pairs 150] [--parts filter,read,load,check,fit]

The filter's main-process peak RSS at full size (959,040 rows) is benchmarks/filter_pickapic.py's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

LAYOUTS = (100, 1000)
TARGET_AMPLIFICATION = 1.2
TARGET_PAIRS_S = {512: 25.0, 1024: 10.0}
TARGET_FILTER_S_PER_10K = 30.0
REAL_BYTES_PER_ROW = 335e9 / 959_040  # Pick-a-Pic v2 train: ~335 GB of parquet over 959,040 rows
FULL_SET_PAIRS = 851_293
PARTS = ("filter", "read", "load", "check", "fit")


_GRAIN: dict[int, np.ndarray] = {}
#: grain amplitude per image size, tuned so that the JPEGs weigh ~100-250 KB at quality 90
_GRAIN_SD = {512: 16.0, 1024: 6.0}


def _image(rng: np.random.Generator, size: int) -> bytes:
    """A unique photo-like JPEG: a smooth random colour field, random shapes and fine grain (cut at a
    random offset from one noise tile)."""
    from PIL import Image, ImageDraw

    if size not in _GRAIN:
        g = np.random.default_rng(size).normal(0.0, _GRAIN_SD.get(size, 8.0), size=(2 * size, 2 * size, 3))
        _GRAIN[size] = np.round(g).astype(np.int16)
    low = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    im = Image.fromarray(low).resize((size, size), Image.BICUBIC)
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 16, size // 3, 2)
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x0 + w, y0 + h], fill=fill)
    oy, ox = rng.integers(0, size, 2)
    arr = np.asarray(im, dtype=np.int16) + _GRAIN[size][oy : oy + size, ox : ox + size]
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build_mirror(root: Path, res: int, rows: int, seed: int) -> dict[int, Path]:
    """``rows`` pairs at ``res`` px in each layout: ``root/mirror_{res}_rg{L}/train-00000-of-00001.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from inpo.data.pickapic import PICKAPIC_V2_SCHEMA

    out = {L: root / f"mirror_{res}_rg{L}" for L in LAYOUTS}
    if all((d / "_COMPLETE").exists() for d in out.values()):
        return out
    rng = np.random.default_rng(seed)
    jpg0 = [_image(rng, res) for _ in range(rows)]
    jpg1 = [_image(rng, res) for _ in range(rows)]
    label_0 = rng.integers(0, 2, rows).astype(np.float64)
    label_0[rng.random(rows) < 0.1] = 0.5  # ~10% ties, as in Pick-a-Pic v2
    cols = {
        "are_different": [True] * rows,
        "best_image_uid": [f"u{i}" for i in range(rows)],
        "caption": [f"prompt {i}: a photo of something at {res} px" for i in range(rows)],
        "created_at": pa.array(np.datetime64("2023-05-01T00:00:00", "ns") + np.arange(rows).astype("timedelta64[s]")),
        "has_label": [True] * rows,
        "image_0_uid": [f"a{i}" for i in range(rows)],
        "image_0_url": [f"https://example.invalid/a{i}.jpg" for i in range(rows)],
        "image_1_uid": [f"b{i}" for i in range(rows)],
        "image_1_url": [f"https://example.invalid/b{i}.jpg" for i in range(rows)],
        "jpg_0": jpg0,
        "jpg_1": jpg1,
        "label_0": label_0,
        "label_1": np.where(label_0 == 0.5, 0.5, 1.0 - label_0),
        "model_0": ["sdxl"] * rows,
        "model_1": ["sd-2.1"] * rows,
        "ranking_id": np.arange(rows),
        "user_id": np.zeros(rows, dtype=np.int64),
        "num_example_per_prompt": np.ones(rows, dtype=np.int64),
        "__index_level_0__": np.arange(rows),
    }
    table = pa.Table.from_pydict(cols, schema=PICKAPIC_V2_SCHEMA)
    for L, d in out.items():
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, d / "train-00000-of-00001.parquet", row_group_size=L)
        (d / "_COMPLETE").write_text("ok\n")
    return out


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no read_bytes in /proc/self/io")


def _child_read(index: str, n: int | None, warm: bool) -> dict:
    """One epoch (or its first ``n`` pairs) of image bytes in the training order, from storage.

    One pair (the epoch's last, left out of the count) is read first: it faults in the code pages of
    the libraries (evicted with the page cache; ~12-15 MB per process) and reads the index and the
    footers once, so that the count is the pairs' reads alone. Not with ``warm`` false (the source
    shards: that pair's row group would hold others of the count)."""
    from inpo.data.pickapic import PreferencePairs
    from inpo.trainer import PairStream

    ds = PreferencePairs(index, 512)
    order = PairStream(len(ds), 0).permutation(0).tolist()
    if warm:
        ds.image_bytes(order.pop())
    order = order[:n]
    r0 = _read_bytes()
    used = 0
    t = time.perf_counter()
    for i in order:
        used += sum(len(b) for b in ds.image_bytes(i))
    return {"pairs": len(order), "read": _read_bytes() - r0, "used": used, "s": time.perf_counter() - t}


def _child_load(index: str, res: int, n: int) -> dict:
    """Pairs/s of one worker (read + decode + preprocess at ``res``) and its peak RSS."""
    import torch

    from inpo.data.pickapic import PreferencePairs
    from inpo.trainer import PairStream

    torch.set_num_threads(1)
    ds = PreferencePairs(index, res, seed=0)
    return _time_pairs(ds, PairStream(len(ds), 0).permutation(0).tolist()[:n])


def _time_pairs(ds, order: list[int]) -> dict:
    """Pairs/s (wall and per CPU second) of turning the pairs ``order`` of ``ds`` into training items,
    after a 5-pair warm-up (imports, first files), and the process's peak RSS."""
    for i in order[:5]:
        ds[i]
    t, c = time.perf_counter(), time.process_time()
    for i in order:
        ds[i]
    s, cpu = time.perf_counter() - t, time.process_time() - c
    return {"pairs_s": len(order) / s, "pairs_cpu_s": len(order) / cpu,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(kind: str, *args: str) -> None:
    if kind == "read":
        r = _child_read(args[0], int(args[1]) if args[1] != "all" else None, args[2] == "warm")
    else:
        r = _child_load(args[0], int(args[1]), int(args[2]))
    print(json.dumps(r), flush=True)
    os._exit(0)  # skip interpreter teardown (pyarrow and torch thread pools)


def _run_child(*args, script: str = __file__) -> dict:
    """``script --child args`` in a fresh process (one thread): the JSON line it prints last."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, script, "--child", *map(str, args)], env=env, capture_output=True,
                       text=True)
    if p.returncode:
        raise RuntimeError(f"child {args} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _check_ms(src: Path, n: int) -> dict[str, float]:
    """CPU ms per image: the filter's check, a 1/8-scale decode of the whole file, the full decode."""
    import pyarrow.parquet as pq

    from inpo.data.pickapic import _decodable, _decodes

    t = pq.ParquetFile(src / "train-00000-of-00001.parquet").read_row_group(0, columns=["jpg_0", "jpg_1"])
    images = (t.column(0).to_pylist() + t.column(1).to_pylist())[:n]

    def full(b: bytes) -> None:
        from PIL import Image

        with Image.open(io.BytesIO(b)) as im:
            im.load()

    out = {}
    for name, fn in (("check", _decodable), ("decode 1/8", _decodes), ("full decode", full)):
        c = time.process_time()
        for b in images:
            fn(b)
        out[name] = (time.process_time() - c) / len(images) * 1e3
    return out


def _page_cache(paths) -> None:
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/tmp/inpo_bench_throughput"))
    ap.add_argument("--rows-512", type=int, default=1000)
    ap.add_argument("--rows-1024", type=int, default=500)
    ap.add_argument("--throughput-pairs", type=int, default=150)
    ap.add_argument("--baseline-pairs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3, help="epochs read from storage per pack (median printed)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(*a.child)
        return 0
    from inpo.data.pickapic import filter_pairs

    parts = set(a.parts.split(","))
    if parts - set(PARTS):
        ap.error(f"--parts: unknown {sorted(parts - set(PARTS))}; choose from {PARTS}")
    ok = True
    can_drop = "read" in parts and _drop_caches()
    if "read" in parts and not can_drop:
        print("cannot drop the page cache (not root): read amplification is not measured")
    for res, rows in ((512, a.rows_512), (1024, a.rows_1024)):
        t = time.perf_counter()
        mirrors = build_mirror(a.root, res, rows, seed=res)
        shard_mb = (mirrors[100] / "train-00000-of-00001.parquet").stat().st_size / 2**20
        row_kb = shard_mb * 2**20 / rows / 1e3
        print(f"\n== {res} px: {rows} rows, {shard_mb:.0f} MiB per layout ({row_kb:.0f} KB per row), mirror "
              f"ready in {time.perf_counter() - t:.0f} s")
        if "check" in parts:
            ms = _check_ms(mirrors[100], 400)
            print(f"  image check, CPU ms per image: {ms['check']:.2f} (structure + headers); a 1/8-scale decode "
                  f"{ms['decode 1/8']:.2f}, the full decode {ms['full decode']:.2f}")
        for L, src in mirrors.items():
            if not parts & {"filter", "read", "load"}:
                break
            out = a.root / f"filtered_{res}_rg{L}"
            t, c = time.perf_counter(), time.process_time()
            m = filter_pairs(src, out / "pairs.parquet", out / "pairs.json", check_images=True,
                             images_dir=out / "pairs_images", num_proc=1)
            fs, fc = time.perf_counter() - t, time.process_time() - c
            per_k = fc / m["rows_in"] * 1000
            real_k = per_k * REAL_BYTES_PER_ROW / (row_kb * 1e3)
            ok &= real_k * 10 <= TARGET_FILTER_S_PER_10K
            filter_pairs(src, out / "src.parquet", out / "src.json")  # index on the source shards
            print(f"  [{L}-row groups] filter (check_images, 1 process): {per_k:.2f} CPU s per 1,000 rows "
                  f"({fs / m['rows_in'] * 1000:.2f} s wall; {real_k:.2f} CPU s per 1,000 real-sized rows of "
                  f"{REAL_BYTES_PER_ROW / 1e3:.0f} KB, target <= {TARGET_FILTER_S_PER_10K / 10:.1f}) "
                  f"({m['pairs_kept']} pairs kept, pack {m['images_bytes'] / 2**20:.0f} MiB)")
            if "read" in parts and can_drop:
                for name, n, reps in (("pack", "all", a.repeats), ("source shards (old way)", a.baseline_pairs, 1)):
                    runs = []
                    for _ in range(reps):
                        _drop_caches()
                        idx = out / ("pairs.parquet" if name == "pack" else "src.parquet")
                        runs.append(_run_child("read", idx, n, "warm" if name == "pack" else "cold"))
                    r = sorted(runs, key=lambda x: x["read"])[len(runs) // 2]  # the median run
                    amp = r["read"] / r["used"]
                    if name == "pack":
                        ok &= amp <= TARGET_AMPLIFICATION
                    print(f"  [{L}-row groups] {name}: {r['pairs']} pairs in the training order from storage: "
                          f"{r['read'] / r['pairs'] / 1e6:.3f} MB read per pair, {r['used'] / r['pairs'] / 1e6:.3f} MB "
                          f"used per pair, amplification {amp:.2f}x ({r['pairs'] / r['s']:.0f} pairs/s)")
        out = a.root / f"filtered_{res}_rg{LAYOUTS[0]}"
        if "load" in parts:
            ok &= _load(out, res, min(a.throughput_pairs, rows), "pack")
        if "fit" in parts:
            fit = a.root / f"fitted_{res}"
            t, c = time.perf_counter(), time.process_time()
            m = filter_pairs(mirrors[100], fit / "pairs.parquet", fit / "pairs.json", images_dir=fit / "pairs_images",
                             pack_resolution=res)
            fs, fc = time.perf_counter() - t, time.process_time() - c
            per_pair = m["images_bytes"] / m["pairs_kept"]
            print(f"  pre-resized pack (pack_resolution={res}, PPM): filter {fc / m['rows_in'] * 1000:.1f} CPU s per "
                  f"1,000 rows ({fs / m['rows_in'] * 1000:.1f} s wall); {per_pair / 1e6:.3f} MB per pair, "
                  f"{per_pair * FULL_SET_PAIRS / 1e12:.2f} TB for the full set of {FULL_SET_PAIRS:,} pairs")
            _load(fit, res, min(a.throughput_pairs, rows), "pre-resized pack")
    print(f"\ntargets: {'MET' if ok else 'MISSED'}")
    return 0 if ok else 1


def _load(out: Path, res: int, n: int, what: str) -> bool:
    """One worker loading ``n`` pairs from the page-cached pack at ``out``; prints and returns target met."""
    _page_cache([out / "pairs.parquet", *sorted((out / "pairs_images").glob("*.parquet"))])
    r = _run_child("load", out / "pairs.parquet", res, n)
    print(f"  one worker, page-cached {what}, {res} px: {r['pairs_cpu_s']:.1f} pairs per CPU second "
          f"(target >= {TARGET_PAIRS_S[res]:.0f}/s), {r['pairs_s']:.1f} pairs/s wall on this shared machine "
          f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), peak RSS {r['peak_rss_mb']:.0f} MiB")
    return r["pairs_s"] >= TARGET_PAIRS_S[res]


if __name__ == "__main__":
    sys.exit(main())
