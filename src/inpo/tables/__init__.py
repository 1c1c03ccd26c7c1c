"""Tidy scores -> win-rates, medians, means, GPU-hours (pure pandas), one module per concept.

Every function takes the tidy scores frame of ``docs/CONVENTIONS.md``
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

Modules: :mod:`~inpo.tables.scores` (tidy scores, evaluator order, versions and labels),
:mod:`~inpo.tables.winrates` (paired win-rates, Wilson / bootstrap intervals, mean gain in sd),
:mod:`~inpo.tables.summaries` (median / mean), :mod:`~inpo.tables.ablations` (Table 2, GPU-hours),
:mod:`~inpo.tables.paper` (the paper's figures, name maps), :mod:`~inpo.tables.io` (files in and out),
:mod:`~inpo.tables.layout` (long -> wide), :mod:`~inpo.tables.headlines` (one-line summaries of a
written table). Every public name is re-exported here: ``from inpo.tables import win_rate``.
Which tables the report writes, and which notebooks show them, is :mod:`inpo.report`'s one list each.
"""

from inpo.tables.ablations import RUN_COLUMNS, ablation_long, ablation_table, ablation_wide, gpu_hours
from inpo.tables.headlines import ablation_headline, summary_headline, win_rate_headline
from inpo.tables.io import (
    flatten_columns,
    image_grid_paths,
    image_path,
    read_benchmark,
    read_table,
    read_training_logs,
    smooth_logs,
    to_latex,
    write_csv,
)
from inpo.tables.paper import (
    DEFAULT_EVALUATOR_NAMES,
    DEFAULT_MODEL_NAMES,
    DEFAULT_SUPP_PROMPT_SETS,
    DEFAULT_TABLE1_PROMPT_SETS,
    PAPER_FILES,
    SOURCES,
    load_paper,
)
from inpo.tables.scores import (
    EVALUATOR_ORDER,
    SCORE_COLUMNS,
    check_scores,
    evaluator_label,
    evaluator_versions,
    read_scores,
)
from inpo.tables.summaries import summary_long, summary_table, summary_wide
from inpo.tables.winrates import (
    reward_effect,
    reward_effect_stats,
    reward_effect_table,
    wilson_interval,
    win_rate,
    win_rate_long,
    win_rate_table,
    win_rate_vs_paper,
    win_rate_wide,
)

__all__ = [
    "DEFAULT_EVALUATOR_NAMES", "DEFAULT_MODEL_NAMES", "DEFAULT_SUPP_PROMPT_SETS", "DEFAULT_TABLE1_PROMPT_SETS",
    "EVALUATOR_ORDER", "PAPER_FILES", "RUN_COLUMNS", "SCORE_COLUMNS", "SOURCES",
    "ablation_headline", "ablation_long", "ablation_table", "ablation_wide", "check_scores", "evaluator_label",
    "evaluator_versions", "flatten_columns", "gpu_hours", "image_grid_paths", "image_path", "load_paper",
    "read_benchmark", "read_scores", "read_table", "read_training_logs", "reward_effect", "reward_effect_stats",
    "reward_effect_table", "smooth_logs", "summary_headline", "summary_long", "summary_table", "summary_wide", "to_latex",
    "wilson_interval", "win_rate", "win_rate_headline", "win_rate_long", "win_rate_table", "win_rate_vs_paper", "win_rate_wide",
    "write_csv",
]
