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
# # Figure 4: training efficiency
#
# Mean evaluator score on a fixed subset of prompts (the same per-prompt seeds for every model) against
# training updates and against training hours (GPU-hours; CPU-hours where the runs train without GPUs),
# for each run's snapshots, the model it starts from (update 0) and the trained model. The level is the
# base model's mean + X; a run reaches it at the first crossing of its curve (linear interpolation), and
# the speed-up of the aligned model over a run is the ratio of their hours to the level. The paper states
# its figures as the ratio of the full runs' GPU-hours (InPO 3.6x faster than Diffusion-DPO, 18.4x than
# Diffusion-KTO): `full_run_ratio` and `paper_speedup` below. Everything is read from the tables rule
# `efficiency_tables` wrote (`inpo.efficiency`); nothing is recomputed.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from inpo import efficiency as E

pd.set_option("display.precision", 4)
pd.set_option("display.max_columns", 60)

# %% tags=["parameters"]
tables_dir = "../results/tables"  # the folder with fig4_curves.csv and fig4_efficiency.csv
model = "inpo"  # the aligned model whose speed-up is stated
name_map = {"inpo": "InPO-SD1.5", "dpo": "DPO-SD1.5", "kto": "KTO-SD1.5"}  # ours -> the paper's names

# %%
tables = Path(tables_dir)
curves = pd.read_csv(tables / "fig4_curves.csv")
speed = pd.read_csv(tables / "fig4_efficiency.csv")
level_ev, level, unit = speed["evaluator"].iloc[0], float(speed["level"].iloc[0]), speed["hours_unit"].iloc[0]
display(Markdown(
    "## Headline\n\n" + E.describe(speed, model)
    + f"\n\nLevel: base mean {speed['base_mean'].iloc[0]:.4g} + {speed['offset'].iloc[0]} = **{level:.4g}** "
    f"({level_ev}, mean over {int(curves['n'].iloc[0])} prompts)."))

# %% [markdown]
# ## Score against training updates and training hours

# %%
runs = [r for r in dict.fromkeys(curves["run"]) if r != "base"]
colours = {r: f"C{i}" for i, r in enumerate(runs)}
evaluators = list(dict.fromkeys(curves["evaluator"]))
fig, axes = plt.subplots(len(evaluators), 2, figsize=(11, 3.6 * len(evaluators)), squeeze=False,
                         constrained_layout=True)
for row, ev in zip(axes, evaluators):
    c = curves[curves["evaluator"] == ev]
    base = c[c["run"] == "base"]["mean"]
    for ax, x, hit_col, xlabel in [(row[0], "update", "updates_to_level", "training updates"),
                                   (row[1], "hours", "hours_to_level", f"training {unit}")]:
        for r in runs:
            g = c[c["run"] == r].sort_values("update")
            ax.plot(g[x], g["mean"], "o-", color=colours[r], label=name_map.get(r, r))
            if ev == level_ev:
                hit = speed.set_index("run")[hit_col].get(r)
                if pd.notna(hit):
                    ax.axvline(hit, color=colours[r], linestyle=":", linewidth=1)
        if len(base):
            ax.axhline(float(base.iloc[0]), color="grey", linewidth=1, label="base")
        if ev == level_ev:
            ax.axhline(level, color="black", linestyle="--", linewidth=1, label="level (base + X)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"mean {ev}")
        ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Speed-ups to the level (ours, and the paper's stated figures)

# %%
shown = ["run", "reached", "updates_to_level", "hours_to_level", "total_updates", "total_hours", "speedup",
         "speedup_is_lower_bound", "full_run_ratio", "paper_speedup"]
display(speed[shown].assign(run=speed["run"].map(lambda r: name_map.get(r, r))).style.hide(axis="index"))

# %% [markdown]
# ## Every curve point

# %%
display(curves.style.hide(axis="index"))
