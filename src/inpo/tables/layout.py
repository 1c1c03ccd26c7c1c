"""Long -> wide: rows of a long table become columns per evaluator label (and per source)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd


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


