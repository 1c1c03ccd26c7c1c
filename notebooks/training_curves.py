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
# # Training curves
#
# Loss, implicit accuracy and the model / reference denoising errors on winner and loser, per optimizer
# update, from the training log CSVs (`results/logs/train/<run>.csv`).

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from inpo import tables as T

# %% tags=["parameters"]
log_paths = {"inpo": "../tests/fixtures/logs/inpo.csv", "dpo": "../tests/fixtures/logs/dpo.csv"}  # run -> log CSV
smooth_window = 1  # trailing rolling mean over updates, for display only

# %%
panels = {"loss": ["loss"], "implicit accuracy": ["implicit_acc"],
          "winner error": ["model_err_w", "ref_err_w"], "loser error": ["model_err_l", "ref_err_l"]}
logs = T.read_training_logs(log_paths)
last = logs.sort_values("update").groupby("run", sort=False).tail(1).set_index("run")
shown = [c for c in ("loss", "implicit_acc") if c in last]
display(Markdown("## Headline\n\n" + "\n".join(
    f"- **{run}**: {int(r['update'])} updates" + "".join(f", last {c} {r[c]:.3g}" for c in shown)
    for run, r in last.iterrows())))

# %% [markdown]
# ## Curves (dashed: the reference model's error)

# %%
cols = [c for cs in panels.values() for c in cs if c in logs.columns]
logs = T.smooth_logs(logs, cols, smooth_window)
fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), constrained_layout=True)
colours = {run: f"C{i}" for i, run in enumerate(dict.fromkeys(logs["run"]))}
for ax, (title, cs) in zip(axes, panels.items()):
    for run, g in logs.groupby("run", sort=False):
        for c in cs:
            if c in g and g[c].notna().any():
                ax.plot(g["update"], g[c], color=colours[run], label=f"{run} {c}" if len(cs) > 1 else run,
                        linestyle="--" if c.startswith("ref_") else "-")
    ax.set_title(title)
    ax.set_xlabel("update")
    ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## Per run

# %%
display(logs.groupby("run").agg(updates=("update", "max"), pairs_seen=("pairs_seen", "max"), wall_s=("wall_s", "max")))
