"""Median and mean per model, prompt set and evaluator (the supplementary table S7)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from inpo.tables.layout import _unstack
from inpo.tables.paper import (
    DEFAULT_EVALUATOR_NAMES,
    DEFAULT_MODEL_NAMES,
    DEFAULT_SUPP_PROMPT_SETS,
    load_paper,
)
from inpo.tables.scores import _default, _order_evaluators, check_scores, evaluator_label, evaluator_versions


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
    return summary_wide(summary_long(scores, **kwargs))


def summary_wide(long: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary_long`'s rows in the S7 layout (see :func:`summary_table`)."""
    labels = list(dict.fromkeys(long["label"]))
    stats = ["median", "paper_median", "mean", "paper_mean"]
    parts = {st: _unstack(long, ["prompt_set", "model"], st, labels) for st in stats}
    cols = pd.MultiIndex.from_tuples([(lab, st) for lab in labels for st in stats], names=["evaluator", "statistic"])
    wide = pd.DataFrame({c: parts[c[1]][c[0]] for c in cols}, index=parts["median"].index)
    wide.columns = cols
    return wide


