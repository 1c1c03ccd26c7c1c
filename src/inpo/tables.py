"""Tidy scores -> win-rates, medians, means, GPU-hours (pure pandas).

Every function here takes the tidy scores frame of ``docs/CONVENTIONS.md``
(``model, prompt_set, index, prompt, evaluator, evaluator_version, score``) and returns a
``DataFrame`` or a number. The only I/O are the explicit read helpers (:func:`read_scores`,
:func:`read_benchmark`, :func:`read_training_logs`, :func:`load_paper`) and writers
(:func:`write_csv`, :func:`to_latex`).

Conventions of the tables:

- Win-rate of A over B for one evaluator and prompt set: prompts are paired by ``index``; the fraction
  of prompts where ``score_A > score_B``, a tie counting half; the tie count is reported. The 95 %
  interval is the **Wilson score interval** on that fraction with ``n`` = number of prompts
  (``ci="wilson"``, the default, deterministic). With ties counted as half a win the per-prompt outcome
  has a smaller variance than a Bernoulli one, so the Wilson interval is then slightly conservative.
  ``ci="bootstrap"`` gives the paired percentile bootstrap over prompts instead (seeded).
- The evaluator version is part of every evaluator's column label: ``"hps (hpsv2.1)"``. Mixing two
  versions of one evaluator within a table is an error.
- The paper's figures sit beside ours: wide tables have two column levels ``(label, source)`` with
  ``source`` in ``("ours", "paper")``; our model / prompt-set / evaluator names are mapped to the
  paper's by dictionaries the config gives (defaults below are for the SD1.5 runs).
- GPU-hours of a run = ``s / 3600 * n_gpus`` from Snakemake ``benchmark:`` files: the **mean** of
  ``s`` over the rows of one file (rows are ``repeat()`` re-executions of the same job) and the
  **sum** over files when a run lists several (a training split into several jobs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

SCORE_COLUMNS = ["model", "prompt_set", "index", "prompt", "evaluator", "evaluator_version", "score"]
EVALUATOR_ORDER = ["aesthetic", "pickscore", "hps", "clip"]
SOURCES = ("ours", "paper")

#: our model names (``base`` and the run names of ``config["runs"]``, not method names) -> the paper's
#: (SD1.5 runs); configs pass their own ``report.name_map``. A new method needs no entry here: only a
#: run with a published figure to stand beside does.
DEFAULT_MODEL_NAMES = {
    "base": "Base-SD1.5",
    "sft": "SFT-SD1.5",
    "dpo": "DPO-SD1.5",
    "kto": "KTO-SD1.5",
    "inpo": "InPO-SD1.5",
}
#: our prompt-set names -> Table 1's ``prompt_set`` values.
DEFAULT_TABLE1_PROMPT_SETS = {"hpdv2": "HPDv2", "parti": "Parti"}
#: our prompt-set names -> the supplementary table's sets (only A = HPDv2 is identified by the text).
DEFAULT_SUPP_PROMPT_SETS = {"hpdv2": "A"}
#: our evaluator names -> the paper's column names (toy evaluators have no paper counterpart).
DEFAULT_EVALUATOR_NAMES = {e: e for e in EVALUATOR_ORDER}

PAPER_FILES = {
    "table1_winrates": "table1_winrates.csv",
    "table1": "table1_winrates.csv",
    "table2_ablations_sd15_hpdv2_median": "table2_ablations_sd15_hpdv2_median.csv",
    "table2_ablations": "table2_ablations_sd15_hpdv2_median.csv",
    "table2": "table2_ablations_sd15_hpdv2_median.csv",
    "supp_median_mean": "supp_median_mean.csv",
    "supp": "supp_median_mean.csv",
}


# --------------------------------------------------------------------------------------------- reading
def read_scores(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Read and concatenate tidy score files (``.parquet`` or ``.csv``) and check their columns."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for p in paths:
        p = Path(p)
        frames.append(pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p))
    if not frames:
        raise ValueError("read_scores: no score files given")
    return check_scores(pd.concat(frames, ignore_index=True))


def check_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Validate the tidy-scores schema; returns a copy with ``index`` int64 and ``score`` float64."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack columns {missing}; expected {SCORE_COLUMNS}")
    out = scores.copy()
    out["index"] = out["index"].astype("int64")
    out["score"] = out["score"].astype("float64")
    for c in ("model", "prompt_set", "evaluator", "evaluator_version"):
        out[c] = out[c].astype(str)
    dup = out.duplicated(["model", "prompt_set", "evaluator", "index"])
    if dup.any():
        first = out.loc[dup, ["model", "prompt_set", "evaluator", "index"]].iloc[0].to_dict()
        raise ValueError(f"scores have {int(dup.sum())} duplicated (model, prompt_set, evaluator, index) rows, e.g. {first}")
    return out


def load_paper(name: str) -> pd.DataFrame:
    """One of the paper's tables carried as package data (``inpo/data/paper/*.csv``).

    ``name``: ``table1_winrates`` (alias ``table1``), ``table2_ablations_sd15_hpdv2_median``
    (aliases ``table2_ablations``, ``table2``), ``supp_median_mean`` (alias ``supp``); a trailing
    ``.csv`` is accepted.
    """
    key = name[:-4] if name.endswith(".csv") else name
    if key not in PAPER_FILES:
        raise KeyError(f"unknown paper table {name!r}; known: {sorted(set(PAPER_FILES))}")
    ref = resources.files("inpo").joinpath("data", "paper", PAPER_FILES[key])
    with ref.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def read_benchmark(path_or_df: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A Snakemake benchmark TSV (columns ``s, h:m:s, max_rss, ...``; one row per repeat)."""
    if isinstance(path_or_df, pd.DataFrame):
        df = path_or_df
    else:
        df = pd.read_csv(path_or_df, sep="\t", na_values=["-", "NA"])
    if "s" not in df.columns:
        raise ValueError(f"benchmark {path_or_df if not isinstance(path_or_df, pd.DataFrame) else '<frame>'} has no 's' column")
    if len(df) == 0:
        raise ValueError("benchmark file has no rows")
    return df


def read_training_logs(paths: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Training log CSVs (``results/logs/train/{run}.csv``) concatenated with a ``run`` column.

    ``paths``: ``{run: path}`` or a list of paths (run = file stem).
    """
    items = paths.items() if isinstance(paths, Mapping) else [(Path(p).stem, p) for p in paths]
    frames = [pd.read_csv(p).assign(run=str(run)) for run, p in items]
    if not frames:
        raise ValueError("read_training_logs: no logs given")
    df = pd.concat(frames, ignore_index=True)
    return df[["run"] + [c for c in df.columns if c != "run"]]


def smooth_logs(logs: pd.DataFrame, columns: Sequence[str], window: int = 1) -> pd.DataFrame:
    """Per-run trailing rolling mean of ``columns`` (window 1 = unchanged), for plotting."""
    out = logs.sort_values(["run", "update"]).copy()
    if window > 1:
        for c in columns:
            out[c] = out.groupby("run", sort=False)[c].transform(lambda s: s.rolling(window, min_periods=1).mean())
    return out


# ---------------------------------------------------------------------------------------- evaluators
def _order_evaluators(evals) -> list[str]:
    evals = list(dict.fromkeys(evals))
    rank = {e: i for i, e in enumerate(EVALUATOR_ORDER)}

    def key(e):
        base = e[4:] if e.startswith("toy_") else e
        return (e.startswith("toy_"), rank.get(base, len(rank)), e)

    return sorted(evals, key=key)


def evaluator_versions(scores: pd.DataFrame, evaluators: Sequence[str] | None = None) -> dict[str, str]:
    """``{evaluator: version}``; raises if one evaluator appears with two versions."""
    sub = scores if evaluators is None else scores[scores["evaluator"].isin(evaluators)]
    out = {}
    for ev, g in sub.groupby("evaluator", sort=False):
        vs = sorted(g["evaluator_version"].astype(str).unique())
        if len(vs) != 1:
            raise ValueError(f"evaluator {ev!r} appears with several versions {vs}: score all models with one version")
        out[ev] = vs[0]
    return out


def evaluator_label(evaluator: str, version: str) -> str:
    """Column header naming the evaluator version: ``"hps (hpsv2.1)"``."""
    return f"{evaluator} ({version})"


def _labels(scores, evaluators) -> dict[str, str]:
    vers = evaluator_versions(scores, evaluators)
    return {e: evaluator_label(e, vers[e]) for e in evaluators if e in vers}


# ----------------------------------------------------------------------------------------- win-rates
def _paired(scores, model_a, model_b, evaluator, prompt_set) -> tuple[pd.DataFrame, str]:
    def pick(m):
        sel = scores[
            (scores["model"] == m) & (scores["evaluator"] == evaluator) & (scores["prompt_set"] == prompt_set)
        ]
        if sel.empty:
            raise KeyError(f"no scores for model={m!r}, evaluator={evaluator!r}, prompt_set={prompt_set!r}")
        if sel["index"].duplicated().any():
            raise ValueError(f"duplicated prompt indices for model={m!r}, evaluator={evaluator!r}, prompt_set={prompt_set!r}")
        if sel["score"].isna().any():
            raise ValueError(f"NaN scores for model={m!r}, evaluator={evaluator!r}, prompt_set={prompt_set!r}")
        return sel.set_index("index")

    a, b = pick(model_a), pick(model_b)
    ia, ib = set(a.index), set(b.index)
    if ia != ib:
        only_a, only_b = sorted(ia - ib), sorted(ib - ia)
        raise ValueError(
            f"prompt indices differ between {model_a!r} and {model_b!r} ({evaluator}, {prompt_set}): "
            f"{len(only_a)} only in {model_a!r} (e.g. {only_a[:5]}), {len(only_b)} only in {model_b!r} (e.g. {only_b[:5]})"
        )
    va, vb = set(a["evaluator_version"].astype(str)), set(b["evaluator_version"].astype(str))
    if len(va | vb) != 1:
        raise ValueError(f"{evaluator!r} versions differ between {model_a!r} {sorted(va)} and {model_b!r} {sorted(vb)}")
    idx = sorted(ia)
    paired = pd.DataFrame({"a": a.loc[idx, "score"].to_numpy(), "b": b.loc[idx, "score"].to_numpy()}, index=idx)
    return paired, va.pop()


def wilson_interval(p: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed on ``n`` trials."""
    if n <= 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def win_rate(
    scores: pd.DataFrame,
    model_a: str,
    model_b: str,
    evaluator: str,
    prompt_set: str,
    *,
    ci: str = "wilson",
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict:
    """Win-rate of ``model_a`` over ``model_b`` (fractions in [0, 1]).

    Returns ``dict(win_rate, wins, ties, losses, n, ci_low, ci_high, evaluator_version)``.
    Prompts are paired by ``index``; ties (exactly equal scores) count half. Raises ``ValueError``
    when the two models' prompt indices differ and ``KeyError`` when either has no scores.
    ``ci``: ``"wilson"`` (default) or ``"bootstrap"`` (paired percentile bootstrap over prompts).
    """
    paired, version = _paired(scores, model_a, model_b, evaluator, prompt_set)
    a, b = paired["a"].to_numpy(), paired["b"].to_numpy()
    outcome = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
    n = len(outcome)
    wins, ties = int((a > b).sum()), int((a == b).sum())
    p = float(outcome.mean())
    if ci == "wilson":
        lo, hi = wilson_interval(p, n, level)
    elif ci == "bootstrap":
        rng = np.random.default_rng(seed)
        means = outcome[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        lo, hi = (float(x) for x in np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2]))
    else:
        raise ValueError(f"ci must be 'wilson' or 'bootstrap', not {ci!r}")
    return {
        "win_rate": p,
        "wins": wins,
        "ties": ties,
        "losses": n - wins - ties,
        "n": n,
        "ci_low": lo,
        "ci_high": hi,
        "evaluator_version": version,
    }


def _pairs(model, baselines) -> list[tuple[str, str]]:
    if isinstance(baselines, Mapping):
        return [(m, b) for m, bs in baselines.items() for b in ([bs] if isinstance(bs, str) else bs)]
    models = [model] if isinstance(model, str) else list(model)
    bs = [baselines] if isinstance(baselines, str) else list(baselines)
    return [(m, b) for m in models for b in bs if b != m]


def _default(values, present):
    return list(values) if values is not None else list(dict.fromkeys(present))


def win_rate_long(
    scores: pd.DataFrame,
    model: str | Sequence[str] | None,
    baselines: Sequence[str] | Mapping[str, Sequence[str]],
    evaluators: Sequence[str] | None = None,
    prompt_sets: Sequence[str] | None = None,
    *,
    name_map: Mapping[str, str] | None = None,
    prompt_set_map: Mapping[str, str] | None = None,
    evaluator_map: Mapping[str, str] | None = None,
    missing: str = "skip",
    **win_rate_kwargs,
) -> pd.DataFrame:
    """All win-rates of ``model`` over each baseline, one row per (model, baseline, prompt_set, evaluator).

    Columns: ``model, baseline, prompt_set, evaluator, evaluator_version, label, win_rate_pct,
    ci_low_pct, ci_high_pct, wins, ties, losses, n, paper_pct`` (``paper_pct``: the paper's Table 1
    figure for the mapped names, NaN where there is none). ``baselines`` may be a mapping
    ``{model: [baselines]}`` (then ``model`` is ignored). ``missing="skip"`` leaves out combinations
    where a model has no scores at all; ``"raise"`` raises. Mismatched prompt indices always raise.
    """
    scores = check_scores(scores)
    evaluators = _order_evaluators(_default(evaluators, scores["evaluator"]))
    prompt_sets = _default(prompt_sets, scores["prompt_set"])
    labels = _labels(scores, evaluators)
    name_map = dict(name_map or {})
    prompt_set_map = dict(prompt_set_map or {})
    evaluator_map = DEFAULT_EVALUATOR_NAMES if evaluator_map is None else dict(evaluator_map)
    paper = load_paper("table1_winrates").set_index(["model", "baseline", "prompt_set"])
    rows = []
    for m, b in _pairs(model, baselines):
        for ps in prompt_sets:
            for ev in evaluators:
                try:
                    r = win_rate(scores, m, b, ev, ps, **win_rate_kwargs)
                except KeyError:
                    if missing == "skip":
                        continue
                    raise
                key = (name_map.get(m), name_map.get(b), prompt_set_map.get(ps))
                pcol = evaluator_map.get(ev)
                ppct = (
                    float(paper.loc[key, pcol])
                    if None not in key and pcol in paper.columns and key in paper.index
                    else math.nan
                )
                rows.append(
                    {
                        "model": m,
                        "baseline": b,
                        "prompt_set": ps,
                        "evaluator": ev,
                        "evaluator_version": r["evaluator_version"],
                        "label": labels[ev],
                        "win_rate_pct": 100 * r["win_rate"],
                        "ci_low_pct": 100 * r["ci_low"],
                        "ci_high_pct": 100 * r["ci_high"],
                        "wins": r["wins"],
                        "ties": r["ties"],
                        "losses": r["losses"],
                        "n": r["n"],
                        "paper_pct": ppct,
                    }
                )
    cols = ["model", "baseline", "prompt_set", "evaluator", "evaluator_version", "label", "win_rate_pct",
            "ci_low_pct", "ci_high_pct", "wins", "ties", "losses", "n", "paper_pct"]
    return pd.DataFrame(rows, columns=cols)


def _unstack(long: pd.DataFrame, index: list[str], col: str, label_order: list[str]) -> pd.DataFrame:
    """Rows ``index`` (in order of appearance) x columns ``label`` (in ``label_order``) of ``col``."""
    rows = list(dict.fromkeys(map(tuple, long[index].itertuples(index=False))))
    wide = long.set_index(index + ["label"])[col].unstack("label")
    wide = wide.reindex(index=pd.MultiIndex.from_tuples(rows, names=index), columns=label_order)
    return wide


def _wide(long: pd.DataFrame, index: list[str], values: Mapping[str, str], label_order: list[str]) -> pd.DataFrame:
    """Rows ``index`` x columns ``(label, source)`` with ``values = {source: column of long}``."""
    parts = {source: _unstack(long, index, col, label_order) for source, col in values.items()}
    cols = pd.MultiIndex.from_tuples([(lab, s) for lab in label_order for s in values], names=["evaluator", "source"])
    wide = pd.DataFrame({(lab, s): parts[s][lab] for lab, s in cols}, index=parts[next(iter(values))].index)
    wide.columns = cols
    return wide


def win_rate_table(
    scores: pd.DataFrame,
    model: str | Sequence[str] | None,
    baselines: Sequence[str] | Mapping[str, Sequence[str]],
    evaluators: Sequence[str] | None = None,
    prompt_sets: Sequence[str] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Table 1 layout, ours only: rows ``(model, baseline, prompt_set)``, one column per evaluator
    (labelled with its version), win-rates in percent. Keyword arguments go to :func:`win_rate_long`."""
    long = win_rate_long(scores, model, baselines, evaluators, prompt_sets, **kwargs)
    wide = _unstack(long, ["model", "baseline", "prompt_set"], "win_rate_pct", list(dict.fromkeys(long["label"])))
    wide.columns.name = "evaluator"
    return wide


def win_rate_vs_paper(
    scores: pd.DataFrame,
    model: str | Sequence[str] | None,
    baselines: Sequence[str] | Mapping[str, Sequence[str]],
    evaluators: Sequence[str] | None = None,
    prompt_sets: Sequence[str] | None = None,
    *,
    name_map: Mapping[str, str] | None = None,
    prompt_set_map: Mapping[str, str] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Table 1 with the paper's figure beside ours: columns ``(evaluator label, "ours"|"paper")``, percent.

    ``name_map``: our model names -> the paper's (e.g. ``{"inpo": "InPO-SD1.5", "dpo": "DPO-SD1.5"}``);
    ``prompt_set_map``: our prompt sets -> ``"HPDv2"`` / ``"Parti"``. Defaults: :data:`DEFAULT_MODEL_NAMES`,
    :data:`DEFAULT_TABLE1_PROMPT_SETS`.
    """
    long = win_rate_long(
        scores, model, baselines, evaluators, prompt_sets,
        name_map=DEFAULT_MODEL_NAMES if name_map is None else name_map,
        prompt_set_map=DEFAULT_TABLE1_PROMPT_SETS if prompt_set_map is None else prompt_set_map,
        **kwargs,
    )
    return _wide(long, ["model", "baseline", "prompt_set"], {"ours": "win_rate_pct", "paper": "paper_pct"},
                 list(dict.fromkeys(long["label"])))


# ------------------------------------------------------------------------------------ median / mean
def summary_long(
    scores: pd.DataFrame,
    *,
    models: Sequence[str] | None = None,
    evaluators: Sequence[str] | None = None,
    prompt_sets: Sequence[str] | None = None,
    name_map: Mapping[str, str] | None = None,
    prompt_set_map: Mapping[str, str] | None = None,
    evaluator_map: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Median and mean per (prompt_set, model, evaluator), with the supplementary table's values beside.

    Columns: ``prompt_set, model, evaluator, evaluator_version, label, n, median, mean, paper_median,
    paper_mean``. Defaults for the maps: :data:`DEFAULT_MODEL_NAMES`, :data:`DEFAULT_SUPP_PROMPT_SETS`
    (our ``hpdv2`` = the paper's set A), :data:`DEFAULT_EVALUATOR_NAMES`.
    """
    scores = check_scores(scores)
    models = _default(models, scores["model"])
    evaluators = _order_evaluators(_default(evaluators, scores["evaluator"]))
    prompt_sets = _default(prompt_sets, scores["prompt_set"])
    sub = scores[scores["model"].isin(models) & scores["evaluator"].isin(evaluators) & scores["prompt_set"].isin(prompt_sets)]
    vers = evaluator_versions(sub, evaluators)
    labels = {e: evaluator_label(e, v) for e, v in vers.items()}
    name_map = DEFAULT_MODEL_NAMES if name_map is None else dict(name_map)
    prompt_set_map = DEFAULT_SUPP_PROMPT_SETS if prompt_set_map is None else dict(prompt_set_map)
    evaluator_map = DEFAULT_EVALUATOR_NAMES if evaluator_map is None else dict(evaluator_map)
    paper = load_paper("supp_median_mean").set_index(["prompt_set", "model"])
    g = sub.groupby(["prompt_set", "model", "evaluator"], sort=False)["score"].agg(["count", "median", "mean"])
    rows = []
    for ps in prompt_sets:
        for m in models:
            for ev in evaluators:
                if (ps, m, ev) not in g.index:
                    continue
                st = g.loc[(ps, m, ev)]
                key = (prompt_set_map.get(ps), name_map.get(m))
                pev = evaluator_map.get(ev)
                have = None not in key and pev is not None and key in paper.index
                rows.append(
                    {
                        "prompt_set": ps,
                        "model": m,
                        "evaluator": ev,
                        "evaluator_version": vers[ev],
                        "label": labels[ev],
                        "n": int(st["count"]),
                        "median": float(st["median"]),
                        "mean": float(st["mean"]),
                        "paper_median": float(paper.loc[key, f"{pev}_median"]) if have else math.nan,
                        "paper_mean": float(paper.loc[key, f"{pev}_mean"]) if have else math.nan,
                    }
                )
    return pd.DataFrame(rows, columns=["prompt_set", "model", "evaluator", "evaluator_version", "label", "n",
                                       "median", "mean", "paper_median", "paper_mean"])


def summary_table(scores: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """Supplementary S7 layout: rows ``(prompt_set, model)``, columns ``(evaluator label, statistic)`` with
    statistic in ``median, paper_median, mean, paper_mean``. Keyword arguments: :func:`summary_long`."""
    long = summary_long(scores, **kwargs)
    labels = list(dict.fromkeys(long["label"]))
    stats = ["median", "paper_median", "mean", "paper_mean"]
    parts = {st: _unstack(long, ["prompt_set", "model"], st, labels) for st in stats}
    cols = pd.MultiIndex.from_tuples([(lab, st) for lab in labels for st in stats], names=["evaluator", "statistic"])
    wide = pd.DataFrame({c: parts[c[1]][c[0]] for c in cols}, index=parts["median"].index)
    wide.columns = cols
    return wide


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
    long = ablation_long(scores, runs, **kwargs)
    index = ["run", "sweep", "setting", "value", "prompt_set"]
    long = long.assign(**{c: long[c].fillna("").astype(str) for c in index})
    wide = _wide(long, index, {"ours": "ours", "paper": "paper"}, list(dict.fromkeys(long["label"])))
    hours = long.groupby(index, sort=False)[["gpu_hours", "paper_gpu_hours"]].first()
    wide[("gpu_hours", "ours")] = hours["gpu_hours"]
    wide[("gpu_hours", "paper")] = hours["paper_gpu_hours"]
    order = [str(r) for r in runs["run"]]
    return wide.reindex(sorted(wide.index, key=lambda k: order.index(k[0])))


# -------------------------------------------------------------------------------------- toy effect
def reward_effect(
    scores: pd.DataFrame, model: str, baseline: str, evaluator: str, prompt_set: str | None = None
) -> float:
    """Mean paired gain of ``model`` over ``baseline`` in units of the baseline's score sd (ddof=1).

    Paired by ``(prompt_set, index)``; ``prompt_set=None`` pools every prompt set both models have.
    """
    return reward_effect_stats(scores, model, baseline, evaluator, prompt_set)["effect_sd"]


def reward_effect_stats(
    scores: pd.DataFrame, model: str, baseline: str, evaluator: str, prompt_set: str | None = None
) -> dict:
    """:func:`reward_effect` with its parts: ``dict(effect_sd, mean_gain, baseline_sd, n, evaluator_version)``."""
    sets = [prompt_set] if prompt_set is not None else list(dict.fromkeys(scores["prompt_set"]))
    parts, versions = [], set()
    for ps in sets:
        try:
            p, v = _paired(scores, model, baseline, evaluator, ps)
        except KeyError:
            if prompt_set is not None:
                raise
            continue
        parts.append(p)
        versions.add(v)
    if not parts:
        raise KeyError(f"no paired scores for {model!r} vs {baseline!r} on {evaluator!r}")
    if len(versions) != 1:
        raise ValueError(f"{evaluator!r} has several versions {sorted(versions)}")
    p = pd.concat(parts)
    gain = float((p["a"] - p["b"]).mean())
    sd = float(p["b"].std(ddof=1))
    return {
        "effect_sd": gain / sd if sd > 0 else math.nan,
        "mean_gain": gain,
        "baseline_sd": sd,
        "n": len(p),
        "evaluator_version": versions.pop(),
    }


def reward_effect_table(
    scores: pd.DataFrame,
    model: str | Sequence[str] | None,
    baselines: Sequence[str] | Mapping[str, Sequence[str]],
    evaluators: Sequence[str] | None = None,
    prompt_sets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`reward_effect_stats` for every (model, baseline, prompt_set, evaluator) that has scores.

    Columns: ``model, baseline, prompt_set, evaluator, evaluator_version, label, n, mean_gain,
    baseline_sd, effect_sd``.
    """
    scores = check_scores(scores)
    evaluators = _order_evaluators(_default(evaluators, scores["evaluator"]))
    prompt_sets = _default(prompt_sets, scores["prompt_set"])
    labels = _labels(scores, evaluators)
    rows = []
    for m, b in _pairs(model, baselines):
        for ps in prompt_sets:
            for ev in evaluators:
                try:
                    st = reward_effect_stats(scores, m, b, ev, ps)
                except KeyError:
                    continue
                rows.append({"model": m, "baseline": b, "prompt_set": ps, "evaluator": ev, "label": labels[ev], **st})
    cols = ["model", "baseline", "prompt_set", "evaluator", "evaluator_version", "label", "n", "mean_gain",
            "baseline_sd", "effect_sd"]
    return pd.DataFrame(rows, columns=cols)


# -------------------------------------------------------------------------------------------- images
def image_path(images_dir: str | os.PathLike, model: str, prompt_set: str, index: int) -> Path:
    """``{images_dir}/{model}/{prompt_set}/{index:05d}.png`` (docs/CONVENTIONS.md)."""
    return Path(images_dir) / str(model) / str(prompt_set) / f"{int(index):05d}.png"


def image_grid_paths(
    images_dir: str | os.PathLike, models: Sequence[str], prompt_set: str, indices: Sequence[int]
) -> pd.DataFrame:
    """Rows ``index`` x columns ``model`` of image paths (``None`` where the file does not exist)."""
    data = {
        m: [str(p) if (p := image_path(images_dir, m, prompt_set, i)).exists() else None for i in indices]
        for m in models
    }
    return pd.DataFrame(data, index=pd.Index([int(i) for i in indices], name="index"))


# ------------------------------------------------------------------------------------------- writers
def flatten_columns(df: pd.DataFrame, sep: str = " | ") -> pd.DataFrame:
    """Copy with MultiIndex columns joined by ``sep`` (``"hps (hpsv2.1) | ours"``) and the index reset."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [sep.join(str(x) for x in c if str(x) != "") for c in out.columns]
    if not isinstance(out.index, pd.RangeIndex) or out.index.name is not None:
        out = out.reset_index()
    return out


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV (MultiIndex columns flattened, index as columns); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flatten_columns(df).to_csv(path, index=False, float_format="%.10g")
    return path


def to_latex(
    df: pd.DataFrame,
    path: str | os.PathLike | None = None,
    *,
    float_format: str = "%.2f",
    caption: str | None = None,
    label: str | None = None,
) -> str:
    """LaTeX ``tabular`` of ``df`` (booktabs rules, NaN as ``--``, special characters escaped); written
    to ``path`` when given. Returns the LaTeX string."""
    tex = df.to_latex(
        float_format=lambda x: float_format % x,
        na_rep="--",
        escape=True,
        multicolumn=True,
        multicolumn_format="c",
        caption=caption,
        label=label,
    )
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tex, encoding="utf-8")
    return tex
