"""The spread of a result over whole runs of the experiment with different seeds.

One run's 95 % interval is over prompts; it says nothing about how much a result moves when the
whole experiment (toy: the base's pretraining, the pairs, every training run, the noise) is run
again with another ``seed``. :func:`seed_spread` puts the written tables of several runs
(``results/``, ``results/seed1``, ...) side by side: for each comparison of Table 1 the win-rate's
range over seeds and how many seeds' intervals lie above / below 50 %, with the range of the mean
gain in baseline sd from ``toy_effect``; :func:`base_quality_spread` does the same for the toy
base's quality ratio. A claim holds over seeds when every seed shows it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .io import read_table

KEYS = ["model", "baseline", "prompt_set", "evaluator"]


def _read(root: Path, name: str, required: bool = True) -> pd.DataFrame | None:
    path = root / "tables" / f"{name}.csv"
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path}: no such table (run the workflow's `all` or `tables` into {root} first)")
        return None
    return read_table(path)  # as write_csv wrote it (an empty table: an empty frame)


def seed_spread(roots: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per Table 1 comparison present in every root: ``n_seeds``, ``win_rate_min/mean/max``
    (%), ``seeds_above_50`` / ``seeds_below_50`` (seeds whose 95 % interval lies above / below 50 %),
    ``effect_sd_min/mean/max`` (mean paired gain in baseline sd; NaN without ``toy_effect``), and
    ``per_seed`` ("root: win-rate [low, high], +gain sd; ..."). A comparison missing from a root is an
    error naming the root."""
    roots = [Path(r) for r in roots]
    if not roots:
        raise ValueError("seed_spread: no result folders given")
    frames = []
    for r in roots:
        w = _read(r, "table1_winrates")[KEYS + ["win_rate_pct", "ci_low_pct", "ci_high_pct", "n"]]
        e = _read(r, "toy_effect", required=False)
        if e is not None and len(e):
            w = w.merge(e[KEYS + ["effect_sd"]], on=KEYS, how="left")
        else:
            w = w.assign(effect_sd=float("nan"))
        frames.append(w.assign(root=str(r)))
    keys0 = set(map(tuple, frames[0][KEYS].itertuples(index=False)))
    for f in frames[1:]:
        missing = keys0 - set(map(tuple, f[KEYS].itertuples(index=False)))
        if missing:
            raise ValueError(f"{f['root'].iloc[0]}/tables/table1_winrates.csv lacks {sorted(missing)[:3]} "
                             f"(present in {roots[0]}): the runs were made with different configs")
    long = pd.concat(frames, ignore_index=True)
    long = long[[tuple(k) in keys0 for k in long[KEYS].itertuples(index=False)]]
    rows = []
    for key, g in long.groupby(KEYS, sort=False):
        per = "; ".join(
            f"{x.root}: {x.win_rate_pct:.1f} [{x.ci_low_pct:.1f}, {x.ci_high_pct:.1f}]"
            + ("" if pd.isna(x.effect_sd) else f", {x.effect_sd:+.2f} sd") for x in g.itertuples())
        rows.append({**dict(zip(KEYS, key)), "n_seeds": len(g),
                     "win_rate_min": g["win_rate_pct"].min(), "win_rate_mean": g["win_rate_pct"].mean(),
                     "win_rate_max": g["win_rate_pct"].max(),
                     "seeds_above_50": int((g["ci_low_pct"] > 50).sum()),
                     "seeds_below_50": int((g["ci_high_pct"] < 50).sum()),
                     "effect_sd_min": g["effect_sd"].min(), "effect_sd_mean": g["effect_sd"].mean(),
                     "effect_sd_max": g["effect_sd"].max(), "per_seed": per})
    return pd.DataFrame(rows)


def base_quality_spread(roots: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The toy base's quality ratio (``toy_base_quality``: its samples' mean hidden reward over its
    training images') of each root, one row per root; empty when no root has the table (real runs)."""
    rows = []
    for r in map(Path, roots):
        q = _read(r, "toy_base_quality", required=False)
        if q is not None:
            rows += [{"root": str(r), **row} for row in q.to_dict("records")]
    return pd.DataFrame(rows)
