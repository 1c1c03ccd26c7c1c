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
# # Supplementary S7: median and mean per model
#
# Median and mean of every evaluator per model and prompt set, the paper's supplementary values beside
# (only set A = HPDv2 is identified; sets B/C are Parti and Pick-a-Pic test in an unstated order).
# Read from the tables rule `tables` wrote; nothing is recomputed.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from inpo import tables as T

# %% tags=["parameters"]
tables_dir = "../results/tables"  # the folder rule `tables` writes (inpo.report.TABLES)

# %%
tables = Path(tables_dir)
summary = T.read_table(tables / "supp_median_mean.csv")
lines = T.summary_headline(summary)
display(Markdown("## Headline\n\n" + ("\n".join(f"- {line}" for line in lines) or "No scores in this run.")))

# %% [markdown]
# ## Median per model (bars) and the paper's (diamonds)

# %%
panels = list(dict.fromkeys(zip(summary["prompt_set"], summary["label"])))
if panels:
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), squeeze=False)
    for ax, (ps, label) in zip(axes[0], panels):
        g = summary[(summary["prompt_set"] == ps) & (summary["label"] == label)]
        ax.bar(range(len(g)), g["median"], color=[f"C{i}" for i in range(len(g))])
        ax.scatter(range(len(g)), g["paper_median"], marker="D", color="k", zorder=3)
        ax.set_xticks(range(len(g)), g["model"], rotation=45, fontsize=8)
        lo, hi = g["median"].min(), g["median"].max()
        if hi > lo:  # zoom onto the bars (medians sit far from 0)
            ax.set_ylim(lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo))
        ax.set_title(f"{ps}: {label}", fontsize=9)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Ours beside the paper

# %%
display(T.read_table(tables / "supp_median_mean_vs_paper.csv").style.format("{:.3f}", na_rep="--"))

# %% [markdown]
# ## Every model, prompt set and evaluator

# %%
display(summary.drop(columns=["label"]).style.format(precision=3, na_rep="--").hide(axis="index"))
