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
# # Conditional generation: each UNet inside ControlNet and inpainting (paper 5.5)
#
# Every model's UNet, unchanged, in the same diffusers ControlNet (depth, canny) or inpainting pipeline
# with the base model's other components; source `index` draws its noise from seed `seed_base + index`
# for every model, so the rows of a column differ only by the UNet. Rows: the source, its condition
# (edges, depth map, or the mask: white is repainted), then each model. The grid layout comes from
# `inpo.conditional.grid_paths`.

# %%
import textwrap

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from PIL import Image

from inpo import conditional as C

# %% tags=["parameters"]
sources_dir = "../tests/fixtures/conditional/sources"  # folder with sources.csv (image, prompt[, mask])
conditions_dir = "../tests/fixtures/conditional/conditions"  # {task}/{index:05d}.png
images_dir = "../tests/fixtures/conditional/images"  # {model}/{task}/{index:05d}.png
tasks = ["depth", "canny", "inpaint"]
models = ["base", "dpo", "inpo"]
name_map = {"base": "Base-SDXL", "dpo": "DPO-SDXL", "inpo": "InPO-SDXL"}
settings = {}  # the conditional config the images were made with (shown as is)

# %%
sources = C.read_sources(sources_dir)
display(Markdown(f"{len(sources)} sources x {len(tasks)} tasks ({', '.join(tasks)}) x {len(models)} models; "
                 "rows, top to bottom: the source, its condition, then " + ", ".join(name_map.get(m, m) for m in models) + "."))
if settings:
    display(pd.Series({k: str(v) for k, v in settings.items()}, name="value").to_frame())
display(sources[["index", "prompt"]].style.hide(axis="index"))

# %%
for task in tasks:
    grid = C.grid_paths(conditions_dir, images_dir, sources_dir, task, models)
    missing = int(grid.isna().sum().sum())
    display(Markdown(f"## {task}" + (f"  \n**{missing} image(s) missing** (blank cells)." if missing else "")))
    n_rows, n_cols = grid.shape
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.4 * n_rows), squeeze=False)
    for r, row in enumerate(grid.index):
        for c, idx in enumerate(grid.columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            path = grid.loc[row, idx]
            if isinstance(path, str):
                ax.imshow(Image.open(path).convert("RGB"))
            if r == 0:
                ax.set_title("\n".join(textwrap.wrap(f"{idx}: {sources.loc[idx, 'prompt']}", 28)[:3]), fontsize=8)
        axes[r][0].set_ylabel(name_map.get(row, row), fontsize=9)
    plt.tight_layout()
    plt.show()
