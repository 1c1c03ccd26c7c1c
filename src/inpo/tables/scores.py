"""Tidy scores and the labels of every table: reading and checking scores, evaluator order and versions."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

SCORE_COLUMNS = ["model", "prompt_set", "index", "prompt", "evaluator", "evaluator_version", "score"]
EVALUATOR_ORDER = ["aesthetic", "pickscore", "hps", "clip"]


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


def _pairs(model, baselines) -> list[tuple[str, str]]:
    if isinstance(baselines, Mapping):
        return [(m, b) for m, bs in baselines.items() for b in ([bs] if isinstance(bs, str) else bs)]
    models = [model] if isinstance(model, str) else list(model)
    bs = [baselines] if isinstance(baselines, str) else list(baselines)
    return [(m, b) for m in models for b in bs if b != m]


def _default(values, present):
    return list(values) if values is not None else list(dict.fromkeys(present))


