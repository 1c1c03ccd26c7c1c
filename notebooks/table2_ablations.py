# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table 2: ablations
#
# Median score per evaluator on each run's prompt set and the run's training GPU-hours (Snakemake
# benchmark seconds / 3600 x GPUs), the paper's Table 2 row beside where the ablation sheet maps one.
# Read from the tables rule `tables` wrote; nothing is recomputed.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from inpo import tables as T

# %% tags=["parameters"]
tables_dir = "../results/tables"  # the folder rule `tables` writes (inpo.report.TABLES)

# %%
tables = Path(tables_dir)
ablations = T.read_table(tables / "table2_ablations.csv")
lines = T.ablation_headline(ablations)
display(Markdown("## Headline\n\n" + ("\n".join(f"- {line}" for line in lines) or "No ablation in this run.")))

# %% [markdown]
# ## Median score and GPU-hours per setting
#
# One row of panels per sweep: the median of each evaluator per setting, then the run's training
# GPU-hours; bars are ours, diamonds the paper's.

# %%
labels = list(dict.fromkeys(ablations["label"]))
sweeps = list(dict.fromkeys(ablations["sweep"]))


def ticks(rows):
    """A setting's value, or its name where the sheet gives no value."""
    return [str(s) if pd.isna(v) or str(v) == "" else str(v) for s, v in zip(rows["setting"], rows["value"])]


def zoom(ax, values):
    """Zoom the y axis onto the bars when they differ (medians sit far from 0)."""
    lo, hi = min(values), max(values)
    if hi > lo:
        ax.set_ylim(lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo))


if sweeps:
    fig, axes = plt.subplots(len(sweeps), len(labels) + 1, figsize=(3.4 * (len(labels) + 1), 2.8 * len(sweeps)),
                             squeeze=False)
    for r, sweep in enumerate(sweeps):
        g = ablations[ablations["sweep"] == sweep]
        for c, label in enumerate(labels):
            s = g[g["label"] == label]
            ax = axes[r][c]
            ax.bar(range(len(s)), s["ours"], color="C0")
            ax.scatter(range(len(s)), s["paper"], marker="D", color="k", zorder=3)
            ax.set_xticks(range(len(s)), ticks(s), rotation=45, fontsize=8)
            zoom(ax, list(s["ours"]) + list(s["paper"].dropna()))
            ax.set_title(f"{sweep}: {label}", fontsize=9)
        h = g.drop_duplicates("run")
        ax = axes[r][-1]
        ax.bar(range(len(h)), h["gpu_hours"], color="C1")
        ax.scatter(range(len(h)), h["paper_gpu_hours"], marker="D", color="k", zorder=3)
        ax.set_xticks(range(len(h)), ticks(h), rotation=45, fontsize=8)
        ax.set_title(f"{sweep}: GPU-hours", fontsize=9)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Medians and GPU-hours, ours beside the paper

# %%
display(T.read_table(tables / "table2_ablations_vs_paper.csv").style.format("{:.3f}", na_rep="--"))

# %% [markdown]
# ## Every run and evaluator

# %%
display(ablations.drop(columns=["label"]).style.format(precision=3, na_rep="--").hide(axis="index"))

# %% [markdown]
# ## The paper's Table 2 (as printed)

# %%
display(T.load_paper("table2").style.format(precision=3, na_rep="").hide(axis="index"))
