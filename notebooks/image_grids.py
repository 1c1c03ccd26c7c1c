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
fig, axes = plt.subplots(len(indices), len(models), figsize=(3 * len(models), 3.6 * len(indices)), squeeze=False)
for r, idx in enumerate(grid.index):
    for c, m in enumerate(models):
        ax = axes[r][c]
        ax.set_xticks([])
        ax.set_yticks([])
        path = grid.loc[idx, m]
        if isinstance(path, str):
            ax.imshow(Image.open(path).convert("RGB"))
        if (m, idx) in score_of:
            ax.set_xlabel(f"{evaluator} {score_of[(m, idx)]:.3f}", fontsize=9)
        ax.set_title(m, fontsize=11, fontweight="bold")
    text = "\n".join(textwrap.wrap(f"#{idx}: {prompts.get(idx, '')}", 22 * len(models))[:3])
    axes[r][0].annotate(text, xy=(0, 1.18), xycoords="axes fraction", ha="left", va="bottom", fontsize=11)
plt.tight_layout(h_pad=3.0)
plt.show()
