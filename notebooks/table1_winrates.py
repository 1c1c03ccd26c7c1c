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
# # Table 1: win-rates of the aligned model over each baseline
#
# Fraction of prompts (paired by index, same initial noise) where the aligned model's score beats the
# baseline's; ties count half. Percent, 95 % Wilson interval, the paper's Table 1 figure beside ours.
# Everything below is read from the tables rule `tables` wrote (`results/tables/`); nothing is recomputed.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from inpo import tables as T

# %% tags=["parameters"]
tables_dir = "../results/tables"  # the folder rule `tables` writes (inpo.report.TABLES)

# %%
tables = Path(tables_dir)
winrates = T.read_table(tables / "table1_winrates.csv")
effect = T.read_table(tables / "toy_effect.csv")
lines = T.win_rate_headline(winrates, effect)
display(Markdown("## Headline\n\n" + ("\n".join(f"- {line}" for line in lines) or "No comparison in this run.")))
versions = winrates.drop_duplicates("evaluator").set_index("evaluator")["evaluator_version"]
display(Markdown("Evaluator versions: " + ", ".join(f"**{e}**: `{v}`" for e, v in versions.items())))

# %% [markdown]
# ## Win-rates with their 95 % intervals
#
# One panel per baseline; a bar per (prompt set, evaluator) with its 95 % interval: green when the
# interval lies above 50 % (a win), red below (a loss), grey otherwise. The dashed line is a tie, a
# diamond the paper's figure where it has one.

# %%
if len(winrates):
    pairs = list(dict.fromkeys(zip(winrates["model"], winrates["baseline"])))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 0.45 * winrates.groupby(["model", "baseline"]).size().max() + 1.6),
                             squeeze=False, sharex=True)
    for ax, (m, b) in zip(axes[0], pairs):
        g = winrates[(winrates["model"] == m) & (winrates["baseline"] == b)].reset_index(drop=True)
        y = range(len(g))
        err = [g["win_rate_pct"] - g["ci_low_pct"], g["ci_high_pct"] - g["win_rate_pct"]]
        colours = ["C2" if lo > 50 else "C3" if hi < 50 else "C7" for lo, hi in zip(g["ci_low_pct"], g["ci_high_pct"])]
        ax.barh(y, g["win_rate_pct"], xerr=err, color=colours, capsize=3)
        ax.scatter(g["paper_pct"], y, marker="D", color="k", zorder=3, label="paper")
        ax.axvline(50, color="k", linestyle="--", linewidth=1)
        ax.set_yticks(list(y), [f"{ps} / {ev}" for ps, ev in zip(g["prompt_set"], g["evaluator"])], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("win-rate (%)")
        ax.set_title(f"{m} vs {b}")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Ours beside the paper (percent)

# %%
display(T.read_table(tables / "table1_winrates_vs_paper.csv").style.format("{:.1f}", na_rep="--"))

# %% [markdown]
# ## Every comparison: wins, ties, losses, interval

# %%
display(winrates.drop(columns=["label"]).style.format(precision=1, na_rep="--").hide(axis="index"))

# %% [markdown]
# ## Mean paired gain in baseline sd

# %%
if len(effect):
    display(effect.drop(columns=["label"]).style.format(precision=3).hide(axis="index"))
else:
    display(Markdown("No effect table in this run."))

# %% [markdown]
# ## Does the base model draw its world well? (toy)
#
# The effect of InPO depends on how well the base models its training data: the ratio of the mean
# hidden reward of the base's samples to that of its training images (toy only).

# %%
TOY_BASE_QUALITY = "toy_base_quality"  # the toy world's base quality (rule toy_base_quality; toy configs only)
ratio = tables / f"{TOY_BASE_QUALITY}.csv"
if ratio.exists():
    display(T.read_table(ratio).style.format(precision=3).hide(axis="index"))
else:
    display(Markdown(f"No `{TOY_BASE_QUALITY}` table in this run (it is written for the toy world only)."))
