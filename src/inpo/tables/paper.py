"""The paper's published figures (package data ``inpo/data/paper/*.csv``) and the name maps that put
ours beside them."""

from __future__ import annotations

from importlib import resources

import pandas as pd

from inpo.tables.scores import EVALUATOR_ORDER

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

