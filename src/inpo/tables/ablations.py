"""Ablations (Table 2): each run's median score beside its training GPU-hours."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from inpo.tables.io import read_benchmark
from inpo.tables.layout import _wide
from inpo.tables.paper import DEFAULT_EVALUATOR_NAMES, load_paper
from inpo.tables.scores import _default, _order_evaluators, check_scores, evaluator_label, evaluator_versions


# ----------------------------------------------------------------------------------------- GPU hours
def gpu_hours(
    benchmark: str | os.PathLike | pd.DataFrame | Sequence[str | os.PathLike | pd.DataFrame],
    n_gpus: float,
) -> float:
    """GPU-hours from Snakemake benchmark file(s): ``mean(s over rows) / 3600 * n_gpus`` per file (rows
    are ``repeat()`` re-executions of one job), **summed** over files when several are given."""
    items = [benchmark] if isinstance(benchmark, (str, os.PathLike, pd.DataFrame)) else list(benchmark)
    if not items:
        raise ValueError("gpu_hours: no benchmark given")
    seconds = sum(float(read_benchmark(b)["s"].astype(float).mean()) for b in items)
    return seconds / 3600.0 * float(n_gpus)


def _benchmark_paths(value, root) -> list[Path]:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return []
    parts = [p.strip() for p in str(value).split(";") if p.strip()]
    return [Path(root) / p if root is not None and not Path(p).is_absolute() else Path(p) for p in parts]


# ------------------------------------------------------------------------------------------ ablations
RUN_COLUMNS = ["run", "sweep", "setting", "value", "benchmark", "n_gpus", "prompt_set"]


def ablation_long(
    scores: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    evaluators: Sequence[str] | None = None,
    paper_rows: Mapping[str, int | str] | None = None,
    benchmark_root: str | os.PathLike | None = None,
    evaluator_map: Mapping[str, str] | None = None,
    stat: str = "median",
) -> pd.DataFrame:
    """Per run: the ``stat`` (median) of every evaluator on the run's prompt set and its GPU-hours.

    ``runs``: columns ``run, sweep, setting, value, benchmark, n_gpus, prompt_set``; ``run`` is the model
    name in ``scores``; ``benchmark`` a TSV path (relative to ``benchmark_root``; several joined by ``;``;
    empty for a run without training, e.g. the base model -> GPU-hours NaN).
    ``paper_rows``: ``{run: Table 2 row number or setting}`` for the paper's values beside; a
    non-empty ``paper_row`` column of ``runs`` wins for its row (one run can stand beside different
    paper rows in different sweeps, e.g. the toy's base-initialised InPO).
    Columns: ``run, sweep, setting, value, prompt_set, evaluator, evaluator_version, label, ours, paper``
    plus ``gpu_hours`` / ``paper_gpu_hours`` / ``paper_setting`` (repeated on each evaluator row).
    """
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}; expected {RUN_COLUMNS}")
    scores = check_scores(scores)
    evaluators = _order_evaluators(_default(evaluators, scores["evaluator"]))
    vers = evaluator_versions(scores[scores["model"].isin(runs["run"].astype(str))], evaluators)
    labels = {e: evaluator_label(e, v) for e, v in vers.items()}
    evaluator_map = DEFAULT_EVALUATOR_NAMES if evaluator_map is None else dict(evaluator_map)
    paper = load_paper("table2_ablations")
    paper_rows = dict(paper_rows or {})
    rows = []
    for r in runs.itertuples(index=False):
        run = str(r.run)
        bench = _benchmark_paths(r.benchmark, benchmark_root)
        hours = gpu_hours(bench, r.n_gpus) if bench else math.nan
        prow = None
        ref = getattr(r, "paper_row", None)
        if ref is None or (isinstance(ref, float) and math.isnan(ref)) or str(ref).strip() == "":
            ref = paper_rows.get(run)
        elif isinstance(ref, str) and ref.strip().isdigit():
            ref = int(ref)
        elif isinstance(ref, float) and ref.is_integer():
            ref = int(ref)
        if ref is not None:
            hit = paper[paper["row"] == ref] if isinstance(ref, (int, np.integer)) else paper[paper["setting"] == ref]
            if hit.empty:
                raise KeyError(f"paper Table 2 has no row {ref!r} (for run {run!r})")
            prow = hit.iloc[0]
        sel = scores[(scores["model"] == run) & (scores["prompt_set"] == str(r.prompt_set))]
        for ev in evaluators:
            s = sel.loc[sel["evaluator"] == ev, "score"]
            if s.empty or ev not in labels:
                continue
            pev = evaluator_map.get(ev)
            rows.append(
                {
                    "run": run,
                    "sweep": r.sweep,
                    "setting": r.setting,
                    "value": r.value,
                    "prompt_set": r.prompt_set,
                    "evaluator": ev,
                    "evaluator_version": vers[ev],
                    "label": labels[ev],
                    "n": int(s.size),
                    "ours": float(s.agg(stat)),
                    "paper": float(prow[pev]) if prow is not None and pev in paper.columns else math.nan,
                    "gpu_hours": hours,
                    "paper_gpu_hours": float(prow["gpu_hours"]) if prow is not None else math.nan,
                    "paper_setting": str(prow["setting"]) if prow is not None else None,
                }
            )
    return pd.DataFrame(rows, columns=["run", "sweep", "setting", "value", "prompt_set", "evaluator",
                                       "evaluator_version", "label", "n", "ours", "paper", "gpu_hours",
                                       "paper_gpu_hours", "paper_setting"])


def ablation_table(scores: pd.DataFrame, runs: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """Table 2 layout: rows ``(run, sweep, setting, value, prompt_set)``, columns ``(evaluator label,
    "ours"|"paper")`` of medians plus ``("gpu_hours", "ours"|"paper")``. Keyword arguments:
    :func:`ablation_long`. Runs keep the order of ``runs``."""
    return ablation_wide(ablation_long(scores, runs, **kwargs))


def ablation_wide(long: pd.DataFrame) -> pd.DataFrame:
    """:func:`ablation_long`'s rows in Table 2's layout (see :func:`ablation_table`), runs in their order
    of appearance."""
    index = ["run", "sweep", "setting", "value", "prompt_set"]
    long = long.assign(**{c: long[c].fillna("").astype(str) for c in index})
    wide = _wide(long, index, {"ours": "ours", "paper": "paper"}, list(dict.fromkeys(long["label"])))
    hours = long.groupby(index, sort=False)[["gpu_hours", "paper_gpu_hours"]].first()
    wide[("gpu_hours", "ours")] = hours["gpu_hours"]
    wide[("gpu_hours", "paper")] = hours["paper_gpu_hours"]
    return wide


