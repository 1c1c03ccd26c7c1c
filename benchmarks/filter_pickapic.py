"""Benchmark of :func:`inpo.data.pickapic.filter_pairs` at the full Pick-a-Pic v2 train size.

Synthesizes metadata shards in the exact v2 schema (959,040 rows, image columns as empty bytes since
``check_images`` is off; 107,747 ties so that 851,293 pairs over 58,960 prompts are kept, as in the
paper), then runs the filter in a separate process and reports wall time and that process's peak
RSS. Targets: <= 30 s wall, <= 1 GB peak RSS.

    python benchmarks/filter_pickapic.py [--data DIR] [--shards 16] [--row-group-size 1000] [--num-proc 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS = 959_040
KEPT = 851_293
PROMPTS = 58_960
TARGET_S = 30.0
TARGET_RSS_MB = 1024.0

_WORDS = (
    "a photo of cat dog astronaut riding horse castle on hill at sunset oil painting portrait woman "
    "with red hair cyberpunk city neon lights watercolor forest fox in snow highly detailed 4k "
    "trending artstation octane render studio ghibli style landscape mountains lake dramatic"
).split()


def synthesize(root: Path, n_shards: int, row_group_size: int, seed: int = 0) -> list[Path]:
    from inpo.data.pickapic import PICKAPIC_V2_SCHEMA

    root.mkdir(parents=True, exist_ok=True)
    done = root / "_COMPLETE"
    files = [root / "data" / f"train-{k:05d}-of-{n_shards:05d}.parquet" for k in range(n_shards)]
    if done.exists() and all(f.exists() for f in files):
        return files
    rng = np.random.default_rng(seed)
    # captions: PROMPTS distinct strings of realistic length (~60-200 chars)
    lens = rng.integers(8, 30, size=PROMPTS)
    words = np.array(_WORDS)
    captions = [f"{i} " + " ".join(words[rng.integers(0, len(words), size=n)]) for i, n in enumerate(lens)]
    cap_pool = pa.array(captions, pa.string())
    # every prompt appears at least once among the first PROMPTS rows (never ties) -> 58,960 kept prompts
    cap_id = np.concatenate([rng.permutation(PROMPTS), rng.integers(0, PROMPTS, size=ROWS - PROMPTS)])
    label_0 = rng.integers(0, 2, size=ROWS).astype(np.float64)
    ties = PROMPTS + rng.choice(ROWS - PROMPTS, size=ROWS - KEPT, replace=False)
    label_0[ties] = 0.5
    perm = rng.permutation(ROWS)  # shuffle rows over shards, keeping the label/caption assignment
    cap_id, label_0 = cap_id[perm], label_0[perm]
    bounds = np.linspace(0, ROWS, n_shards + 1).astype(int)
    t0 = np.datetime64("2023-04-01T00:00:00", "ns")
    models = pa.array(["sdxl", "sd-2.1", "dreamlike", "sd-1.5"])
    (root / "data").mkdir(exist_ok=True)
    for k, f in enumerate(files):
        lo, hi = bounds[k], bounds[k + 1]
        n = hi - lo
        gi = np.arange(lo, hi)
        uid0 = pa.array([f"{i:08d}-0000-4000-8000-{i * 2:012d}" for i in gi])
        uid1 = pa.array([f"{i:08d}-0000-4000-8000-{i * 2 + 1:012d}" for i in gi])
        l0 = label_0[lo:hi]
        cols = {
            "are_different": pa.array(np.ones(n, dtype=bool)),
            "best_image_uid": pa.array(np.where(l0 == 1.0, uid0.to_numpy(False), uid1.to_numpy(False))),
            "caption": cap_pool.take(pa.array(cap_id[lo:hi])),
            "created_at": pa.array(t0 + gi.astype("timedelta64[s]")),
            "has_label": pa.array(np.ones(n, dtype=bool)),
            "image_0_uid": uid0,
            "image_0_url": pa.array([f"https://images.example.invalid/{u}.png" for u in uid0.to_pylist()]),
            "image_1_uid": uid1,
            "image_1_url": pa.array([f"https://images.example.invalid/{u}.png" for u in uid1.to_pylist()]),
            "jpg_0": pa.array([b""] * n, pa.binary()),
            "jpg_1": pa.array([b""] * n, pa.binary()),
            "label_0": pa.array(l0),
            "label_1": pa.array(1.0 - l0),
            "model_0": models.take(pa.array(rng.integers(0, 4, size=n))),
            "model_1": models.take(pa.array(rng.integers(0, 4, size=n))),
            "ranking_id": pa.array(gi.astype(np.int64)),
            "user_id": pa.array(rng.integers(0, 10_000, size=n)),
            "num_example_per_prompt": pa.array(np.ones(n, dtype=np.int64)),
            "__index_level_0__": pa.array(gi.astype(np.int64)),
        }
        table = pa.Table.from_pydict(cols, schema=PICKAPIC_V2_SCHEMA)
        pq.write_table(table, f, row_group_size=row_group_size)
    done.write_text("ok\n")
    return files


def _child(data: str, out: str, num_proc: str) -> None:
    from inpo.data.pickapic import filter_pairs

    t = time.perf_counter()
    m = filter_pairs(data, Path(out) / "pairs.parquet", Path(out) / "pairs.json", num_proc=int(num_proc))
    wall = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "wall_s": wall,
                "peak_rss_mb": rss_mb,
                "manifest": {
                    k: m[k] for k in ("rows_in", "pairs_kept", "dropped", "unique_prompts", "n_shards")
                },
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "inpo_bench_pickapic")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--row-group-size", type=int, default=1000)
    ap.add_argument("--num-proc", type=int, default=1, help="shards filtered at once (processes)")
    ap.add_argument("--child", nargs=3, metavar=("DATA", "OUT", "NUM_PROC"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(*a.child)
        return 0
    t = time.perf_counter()
    files = synthesize(a.data, a.shards, a.row_group_size)
    size = sum(f.stat().st_size for f in files)
    print(
        f"synthetic shards: {len(files)} files, {size / 2**20:.1f} MiB, ready in {time.perf_counter() - t:.1f} s"
    )
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        t = time.perf_counter()
        p = subprocess.run(
            [sys.executable, __file__, "--child", str(a.data), out, str(a.num_proc)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        proc_wall = time.perf_counter() - t
    r = json.loads(p.stdout.strip().splitlines()[-1])
    m = r["manifest"]
    print(f"filter_pairs wall time: {r['wall_s']:.2f} s (process incl. imports: {proc_wall:.2f} s)")
    print(f"peak RSS of the filter's main process ({a.num_proc} process(es)): {r['peak_rss_mb']:.0f} MiB")
    print(
        f"rows_in {m['rows_in']:,}  pairs_kept {m['pairs_kept']:,}  unique_prompts {m['unique_prompts']:,}  "
        f"shards {m['n_shards']}  dropped {m['dropped']}"
    )
    ok = r["wall_s"] <= TARGET_S and r["peak_rss_mb"] <= TARGET_RSS_MB
    print(f"targets (<= {TARGET_S:.0f} s, <= {TARGET_RSS_MB:.0f} MiB): {'MET' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
