"""Generate the papermill notebook templates of this folder (outputs-free, reviewable here).

    python notebooks/_build.py          # rewrites notebooks/*.ipynb

Each template has one cell tagged ``parameters`` whose defaults point at ``tests/fixtures`` (relative to
this folder, where ``inpo.report.render_notebook`` runs the kernel), so every notebook runs standalone.
The notebooks compute nothing themselves: they call :mod:`inpo.tables` and display what it returns.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
FIX = "../tests/fixtures"

SETUP = """\
import pandas as pd
from IPython.display import Markdown, display

from inpo import tables as T

pd.set_option("display.precision", 3)
pd.set_option("display.max_columns", 60)
pd.set_option("display.width", 200)"""

SCORES = """\
scores = T.read_scores(scores_paths)
versions = T.evaluator_versions(scores)
display(Markdown("Evaluator versions: " + ", ".join(f"**{e}**: `{v}`" for e, v in versions.items())))"""


def nb(title: str, intro: str, params: str, cells: list[str]) -> nbformat.NotebookNode:
    p = new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    book = new_notebook(
        cells=[new_markdown_cell(f"# {title}\n\n{intro}"), p, new_code_cell(SETUP)]
        + [new_markdown_cell(c[3:]) if c.startswith("## ") else new_code_cell(c) for c in cells],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    return book


NOTEBOOKS = {
    "table1_winrates": nb(
        "Table 1: win-rates of InPO over each baseline",
        "Fraction of prompts (paired by index, same seed) where the aligned model's score beats the "
        "baseline's; ties count half. Percent; 95 % Wilson interval; the paper's Table 1 figure beside ours.",
        f"""\
scores_paths = ["{FIX}/scores.csv"]  # tidy score file(s), parquet or CSV
model = "inpo"
baselines = ["base", "sft", "dpo", "kto"]  # baselines without scores are skipped
evaluators = None  # None: every evaluator in the scores
prompt_sets = None
name_map = {{"base": "Base-SD1.5", "sft": "SFT-SD1.5", "dpo": "DPO-SD1.5", "kto": "KTO-SD1.5", "inpo": "InPO-SD1.5"}}
prompt_set_map = {{"hpdv2": "HPDv2", "parti": "Parti"}}
evaluator_map = None  # None: aesthetic/pickscore/hps/clip map to the paper's columns of the same name
ci = "wilson\"""",
        [
            SCORES,
            "## Ours beside the paper (percent)",
            """\
kw = dict(name_map=name_map, prompt_set_map=prompt_set_map, evaluator_map=evaluator_map, ci=ci)
wide = T.win_rate_vs_paper(scores, model, baselines, evaluators, prompt_sets, **kw)
display(wide.style.format("{:.1f}", na_rep="--"))""",
            "## Every comparison: wins, ties, losses, interval",
            """\
long = T.win_rate_long(scores, model, baselines, evaluators, prompt_sets, **kw)
display(long.drop(columns=["label"]).style.format(precision=1, na_rep="--").hide(axis="index"))""",
        ],
    ),
    "table2_ablations": nb(
        "Table 2: ablations",
        "Median score per evaluator on each run's prompt set and the run's training GPU-hours "
        "(Snakemake benchmark seconds / 3600 x GPUs), the paper's Table 2 row beside where one is mapped.",
        f"""\
scores_paths = ["{FIX}/scores.csv"]
runs_csv = "{FIX}/runs.csv"  # columns run, sweep, setting, value, benchmark, n_gpus, prompt_set
benchmark_root = "{FIX}"  # the runs' benchmark paths are relative to this folder
paper_rows = {{"base": 1, "dpo": 2, "inpo": 13}}  # run -> paper Table 2 row (or its setting text)
evaluators = None
evaluator_map = None""",
        [
            SCORES,
            """\
runs = pd.read_csv(runs_csv, keep_default_na=False, na_values=[""])
display(runs.style.hide(axis="index"))""",
            "## Medians and GPU-hours, ours beside the paper",
            """\
table = T.ablation_table(scores, runs, evaluators=evaluators, paper_rows=paper_rows,
                         benchmark_root=benchmark_root, evaluator_map=evaluator_map)
display(table.style.format("{:.3f}", na_rep="--"))""",
            "## The paper's Table 2 (as printed)",
            """display(T.load_paper("table2").style.format(precision=3, na_rep="").hide(axis="index"))""",
        ],
    ),
    "supp_median_mean": nb(
        "Supplementary S7: median and mean per model",
        "Median and mean of every evaluator per model and prompt set, the paper's supplementary values "
        "beside (only set A = HPDv2 is identified; sets B/C are Parti and Pick-a-Pic test in an unstated order).",
        f"""\
scores_paths = ["{FIX}/scores.csv"]
models = None  # None: every model in the scores
evaluators = None
prompt_sets = None
name_map = {{"base": "Base-SD1.5", "sft": "SFT-SD1.5", "dpo": "DPO-SD1.5", "kto": "KTO-SD1.5", "inpo": "InPO-SD1.5"}}
prompt_set_map = {{"hpdv2": "A"}}
evaluator_map = None""",
        [
            SCORES,
            """\
table = T.summary_table(scores, models=models, evaluators=evaluators, prompt_sets=prompt_sets,
                        name_map=name_map, prompt_set_map=prompt_set_map, evaluator_map=evaluator_map)
display(table.style.format("{:.3f}", na_rep="--"))""",
        ],
    ),
    "training_curves": nb(
        "Training curves",
        "Loss, implicit accuracy and the model / reference denoising errors on winner and loser, per "
        "optimizer update, from the training log CSVs.",
        f"""\
log_paths = {{"inpo": "{FIX}/logs/inpo.csv", "dpo": "{FIX}/logs/dpo.csv"}}  # run -> results/logs/train/<run>.csv
smooth_window = 1  # trailing rolling mean over updates, for display only""",
        [
            """\
import matplotlib.pyplot as plt

panels = {"loss": ["loss"], "implicit accuracy": ["implicit_acc"],
          "winner error": ["model_err_w", "ref_err_w"], "loser error": ["model_err_l", "ref_err_l"]}
logs = T.read_training_logs(log_paths)
cols = [c for cs in panels.values() for c in cs if c in logs.columns]
logs = T.smooth_logs(logs, cols, smooth_window)
display(logs.groupby("run").agg(updates=("update", "max"), pairs_seen=("pairs_seen", "max"), wall_s=("wall_s", "max")))""",
            """\
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
plt.show()""",
        ],
    ),
    "image_grids": nb(
        "Image grids: same prompt, same seed, every model",
        "Images from `results/images/{model}/{prompt_set}/{index:05d}.png`; every model draws the initial "
        "noise of prompt `index` from the same seed, so the columns of a row differ only by the model.",
        f"""\
images_dir = "{FIX}/images"
models = ["base", "dpo", "inpo"]
prompt_set = "hpdv2"
indices = [0, 1]
scores_paths = ["{FIX}/scores.csv"]  # for the prompt text; [] to leave it out""",
        [
            """\
import matplotlib.pyplot as plt
from PIL import Image

grid = T.image_grid_paths(images_dir, models, prompt_set, indices)
prompts = {}
if scores_paths:
    s = T.read_scores(scores_paths)
    prompts = s[s["prompt_set"] == prompt_set].drop_duplicates("index").set_index("index")["prompt"].to_dict()
missing = int(grid.isna().sum().sum())
if missing:
    display(Markdown(f"**{missing} image(s) missing** (blank cells)."))""",
            """\
import textwrap

fig, axes = plt.subplots(len(indices), len(models), figsize=(3 * len(models), 3.2 * len(indices)), squeeze=False)
for r, idx in enumerate(grid.index):
    for c, m in enumerate(models):
        ax = axes[r][c]
        ax.set_xticks([])
        ax.set_yticks([])
        path = grid.loc[idx, m]
        if isinstance(path, str):
            ax.imshow(Image.open(path).convert("RGB"))
        if r == 0:
            ax.set_title(m)
    axes[r][0].set_ylabel("\\n".join(textwrap.wrap(f"{idx}: {prompts.get(idx, '')}", 30)[:4]), fontsize=8)
plt.tight_layout()
plt.show()""",
        ],
    ),
}


def main() -> None:
    for name, book in NOTEBOOKS.items():
        nbformat.validate(book)
        nbformat.write(book, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
