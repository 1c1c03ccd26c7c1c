"""Paired comparisons of two models: win-rates with their 95 % interval, and the mean gain in sd."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from inpo.tables.layout import _unstack, _wide
from inpo.tables.paper import (
    DEFAULT_EVALUATOR_NAMES,
    DEFAULT_MODEL_NAMES,
    DEFAULT_TABLE1_PROMPT_SETS,
    load_paper,
)
from inpo.tables.scores import _default, _labels, _order_evaluators, _pairs, check_scores


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
    return win_rate_wide(long)


def win_rate_wide(long: pd.DataFrame) -> pd.DataFrame:
    """:func:`win_rate_long`'s rows in Table 1's layout: rows ``(model, baseline, prompt_set)``, columns
    ``(evaluator label, "ours"|"paper")``, percent."""
    return _wide(long, ["model", "baseline", "prompt_set"], {"ours": "win_rate_pct", "paper": "paper_pct"},
                 list(dict.fromkeys(long["label"])))


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


