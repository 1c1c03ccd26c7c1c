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
# # Image grids: same prompt, same seed, every model
#
# Images from `results/images/{model}/{prompt_set}/{index:05d}.png`; every model draws the initial
# noise of prompt `index` from the same seed, so the images of a row differ only by the model. Under
# each image: its score by the first evaluator.

# %%
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from PIL import Image

from inpo import tables as T

# %% tags=["parameters"]
images_dir = "../tests/fixtures/images"
models = ["base", "dpo", "inpo"]
prompt_set = "hpdv2"
indices = [0, 1]
scores_paths = ["../tests/fixtures/scores.csv"]  # for the prompt texts and scores; [] to leave them out

# %%
grid = T.image_grid_paths(images_dir, models, prompt_set, indices)
prompts, score_of, evaluator = {}, {}, None
if scores_paths:
    s = T.read_scores(scores_paths)
    s = s[s["prompt_set"] == prompt_set]
    prompts = s.drop_duplicates("index").set_index("index")["prompt"].to_dict()
    evaluator = next(iter(dict.fromkeys(s["evaluator"])), None)
    e = s[s["evaluator"] == evaluator]
    score_of = dict(zip(zip(e["model"], e["index"]), e["score"]))
missing = int(grid.isna().sum().sum())
display(Markdown(f"{len(indices)} prompts of **{prompt_set}** x {len(models)} models"
                 + (f"; **{missing} image(s) missing** (blank cells)." if missing else ".")))

# %%
fig = plt.figure(figsize=(3 * len(models), 3.9 * len(indices)), layout="constrained")
rows = np.atleast_1d(fig.subfigures(len(indices), 1))
for row, idx in zip(rows, grid.index):
    row.suptitle("\n".join(textwrap.wrap(f"#{idx}: {prompts.get(idx, '')}", 16 * len(models))[:3]),
                 x=0.01, ha="left", fontsize=12)
    for ax, m in zip(np.atleast_1d(row.subplots(1, len(models))), models):
        ax.set_xticks([])
        ax.set_yticks([])
        path = grid.loc[idx, m]
        if isinstance(path, str):
            ax.imshow(Image.open(path).convert("RGB"))
        if (m, idx) in score_of:
            ax.set_xlabel(f"{evaluator} {score_of[(m, idx)]:.3f}", fontsize=10)
        ax.set_title(m, fontsize=11, fontweight="bold")
plt.show()
