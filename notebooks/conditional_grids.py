"""Generate the papermill template ``conditional_grids.ipynb`` (paper 5.5), with ``_build.nb``.

    python notebooks/conditional_grids.py      # rewrites notebooks/conditional_grids.ipynb

Kept beside ``_build.py`` (not in its NOTEBOOKS) so that adding it is one new file; its default
parameters point at ``tests/fixtures/conditional`` (tiny random SDXL images written by
``tests/test_conditional.py::write_notebook_fixture``). The notebook only displays: the grid layout
comes from :func:`inpo.conditional.grid_paths`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _build import FIX, nb  # noqa: E402

FIXC = f"{FIX}/conditional"

NOTEBOOK = nb(
    "Conditional generation: each UNet inside ControlNet and inpainting (paper 5.5)",
    "Every model's UNet, unchanged, in the same diffusers ControlNet (depth, canny) or inpainting "
    "pipeline with the base model's other components; source `index` draws its noise from seed "
    "`seed_base + index` for every model, so the rows of a column differ only by the UNet. "
    "Rows: the source, its condition (edges, depth map, or the mask: white is repainted), then each model.",
    f"""\
sources_dir = "{FIXC}/sources"  # folder with sources.csv (image, prompt[, mask])
conditions_dir = "{FIXC}/conditions"  # {{task}}/{{index:05d}}.png
images_dir = "{FIXC}/images"  # {{model}}/{{task}}/{{index:05d}}.png
tasks = ["depth", "canny", "inpaint"]
models = ["base", "dpo", "inpo"]
name_map = {{"base": "Base-SDXL", "dpo": "DPO-SDXL", "inpo": "InPO-SDXL"}}
settings = {{}}  # the conditional config the images were made with (shown as is)""",
    [
        """\
import textwrap

import matplotlib.pyplot as plt
from PIL import Image

from inpo import conditional as C

sources = C.read_sources(sources_dir)
if settings:
    display(pd.Series({k: str(v) for k, v in settings.items()}, name="value").to_frame())
display(sources[["index", "prompt"]].style.hide(axis="index"))""",
        """\
for task in tasks:
    grid = C.grid_paths(conditions_dir, images_dir, sources_dir, task, models)
    missing = int(grid.isna().sum().sum())
    display(Markdown(f"## {task}" + (f"  \\n**{missing} image(s) missing** (blank cells)." if missing else "")))
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
                ax.set_title("\\n".join(textwrap.wrap(f"{idx}: {sources.loc[idx, 'prompt']}", 28)[:3]), fontsize=8)
        axes[r][0].set_ylabel(name_map.get(row, row), fontsize=9)
    plt.tight_layout()
    plt.show()""",
    ],
)


def main() -> None:
    nbformat.validate(NOTEBOOK)
    nbformat.write(NOTEBOOK, HERE / "conditional_grids.ipynb")


if __name__ == "__main__":
    main()
