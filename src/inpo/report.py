"""Report stage: tidy scores + benchmarks -> ``results/tables/*.csv|tex``; papermill notebooks -> ipynb + HTML.

Two entry points, each callable from a Snakemake ``script:`` (see :func:`snakemake_tables`,
:func:`snakemake_notebook`) or from the command line (``python -m inpo.report tables|notebook ...``):

- :func:`write_tables` writes every table of :data:`TABLES` (the one list of tables) as ``.csv`` and
  ``.tex`` (booktabs): the long forms of :mod:`inpo.tables` (one row per model/pair x prompt set x
  evaluator, evaluator version, n, ties, intervals, the paper's figure) and their ``*_vs_paper`` wide
  layouts, ours beside the paper's.
- :func:`render_notebook` converts a notebook of :data:`NOTEBOOKS` (the one list of notebooks; jupytext
  percent-format sources ``notebooks/<name>.py``) to ``.ipynb``, runs it with papermill and its
  parameters, then converts the executed notebook to HTML with nbconvert, code hidden. The notebooks
  read the written tables and display them; they compute no table. Nothing is fetched from the network. The kernel (default ``python3``) must
  exist for the current interpreter: ``ipykernel`` installed in the venv is enough (jupyter_client then
  provides the native ``python3`` kernel, and a ``python``-named kernel command is run with this
  interpreter); to register it explicitly in a fresh venv: ``python -m ipykernel install --sys-prefix``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from inpo import tables as T

DEFAULT_BASELINES = ("base", "sft", "dpo", "kto")


def _scores(scores) -> pd.DataFrame:
    if isinstance(scores, pd.DataFrame):
        return T.check_scores(scores)
    return T.read_scores(scores)


@dataclass(frozen=True)
class ReportOptions:
    """What the tables compare and which of the paper's names stand beside ours (config ``report``,
    assembled once in ``workflow/rules/common.smk``; defaults: the paper's SD1.5 runs, :mod:`inpo.tables`).

    - ``model``/``baselines``: win-rates and effect of ``model`` over each baseline (baselines without
      scores are skipped); ``baselines`` may be ``{model: [baselines]}``.
    - ``evaluators``/``prompt_sets``: ``None`` = every one in the scores.
    - ``name_map`` (ours -> paper model names), ``table1_prompt_sets`` (ours -> ``HPDv2``/``Parti``),
      ``supp_prompt_sets`` (ours -> ``A``/``B``/``C``), ``evaluator_map`` (ours -> paper evaluator
      column; ``None`` = the paper's names), ``paper_rows`` (run -> Table 2 row or setting).
    - ``effect_evaluators``: evaluators of ``toy_effect`` (default: the ``toy_*`` evaluators present, else all).
    - ``benchmark_root``: folder the ablation sheet's benchmark paths are relative to.
    - ``ci``: ``"wilson"`` or ``"bootstrap"`` (:func:`inpo.tables.win_rate`).
    """

    model: str | Sequence[str] = "inpo"
    baselines: Sequence[str] | Mapping[str, Sequence[str]] = DEFAULT_BASELINES
    evaluators: Sequence[str] | None = None
    prompt_sets: Sequence[str] | None = None
    name_map: Mapping[str, str] = field(default_factory=lambda: dict(T.DEFAULT_MODEL_NAMES))
    table1_prompt_sets: Mapping[str, str] = field(default_factory=lambda: dict(T.DEFAULT_TABLE1_PROMPT_SETS))
    supp_prompt_sets: Mapping[str, str] = field(default_factory=lambda: dict(T.DEFAULT_SUPP_PROMPT_SETS))
    evaluator_map: Mapping[str, str] | None = None
    paper_rows: Mapping[str, int | str] | None = None
    effect_evaluators: Sequence[str] | None = None
    benchmark_root: str | os.PathLike | None = None
    ci: str = "wilson"

    def __post_init__(self):
        if self.ci not in ("wilson", "bootstrap"):
            raise ValueError(f"report options: ci must be 'wilson' or 'bootstrap', not {self.ci!r}")


@dataclass(frozen=True)
class Table:
    """One report table: ``build(scores, runs, options)`` gives a long table; ``wide_of`` (optional) the
    name of the long table it lays out side by side with the paper (``build`` then receives that
    long table in place of the scores)."""

    name: str
    caption: str
    float_format: str
    build: Callable[..., pd.DataFrame]
    wide_of: str | None = None


def _table1(s, runs, o: ReportOptions):
    return T.win_rate_long(s, o.model, o.baselines, o.evaluators, o.prompt_sets, name_map=o.name_map,
                           prompt_set_map=o.table1_prompt_sets, evaluator_map=o.evaluator_map, ci=o.ci)


def _table2(s, runs, o: ReportOptions):
    return T.ablation_long(s, runs, evaluators=o.evaluators, paper_rows=o.paper_rows,
                           benchmark_root=o.benchmark_root, evaluator_map=o.evaluator_map)


def _supp(s, runs, o: ReportOptions):
    return T.summary_long(s, evaluators=o.evaluators, prompt_sets=o.prompt_sets, name_map=o.name_map,
                          prompt_set_map=o.supp_prompt_sets, evaluator_map=o.evaluator_map)


def _effect(s, runs, o: ReportOptions):
    evs = o.effect_evaluators
    if evs is None:
        present = list(dict.fromkeys(s["evaluator"]))
        evs = [e for e in present if e.startswith("toy_")] or present
    return T.reward_effect_table(s, o.model, o.baselines, evs, o.prompt_sets)


def _wide(fn):
    return lambda long, runs, o: fn(long) if len(long) else pd.DataFrame()


#: THE list of report tables, in writing order: rule ``tables`` writes ``{name}.csv`` and ``{name}.tex``
#: of each into ``results/tables/``; the Snakefile targets, the notebooks and the tests take the names
#: from here. A long table has one row per comparison (model/pair x prompt set x evaluator, evaluator
#: version, n, ties, intervals, the paper's figure); a ``*_vs_paper`` table is its wide layout, ours
#: beside the paper's. Adding a table = one entry here (and, to show it, a cell in a notebook).
TABLES: dict[str, Table] = {t.name: t for t in (
    Table("table1_winrates", "Win-rates (\\%) of the aligned model over each baseline, 95\\% intervals.", "%.1f",
          _table1),
    Table("table1_winrates_vs_paper", "Win-rates (\\%) of the aligned model over each baseline: ours and the "
          "paper's.", "%.1f", _wide(T.win_rate_wide), wide_of="table1_winrates"),
    Table("table2_ablations", "Ablations: median scores and training GPU-hours.", "%.3f", _table2),
    Table("table2_ablations_vs_paper", "Ablations: median scores and training GPU-hours, ours and the paper's.",
          "%.3f", _wide(T.ablation_wide), wide_of="table2_ablations"),
    Table("supp_median_mean", "Median and mean score per model and prompt set.", "%.3f", _supp),
    Table("supp_median_mean_vs_paper", "Median and mean score per model and prompt set, ours and the paper's.",
          "%.3f", _wide(T.summary_wide), wide_of="supp_median_mean"),
    Table("toy_effect", "Mean paired gain over the baseline in baseline-sd units.", "%.3f", _effect),
)}
TABLE_NAMES = tuple(TABLES)


def _write(df: pd.DataFrame, table: Table, out_dir: Path) -> dict[str, Path]:
    csv = T.write_csv(df, out_dir / f"{table.name}.csv")
    tex = out_dir / f"{table.name}.tex"
    if df.empty:
        tex.write_text(f"% {table.name}: no rows (nothing to compare in this configuration)\n", encoding="utf-8")
    else:
        T.to_latex(df, tex, caption=table.caption, label=f"tab:{table.name}", float_format=table.float_format)
    return {csv.name: csv, tex.name: tex}


def build_tables(
    scores: str | os.PathLike | Sequence[str | os.PathLike] | pd.DataFrame,
    runs: str | os.PathLike | pd.DataFrame | None = None,
    options: ReportOptions | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of :data:`TABLES` as a frame, ``{name: frame}`` (an empty frame where nothing compares).

    ``scores``: tidy score file(s) (parquet/CSV) or a frame. ``runs``: the ablation run sheet (CSV or
    frame; columns :data:`inpo.tables.RUN_COLUMNS`), ``None``: Table 2 is empty."""
    o = options or ReportOptions()
    s = _scores(scores)
    if runs is None:
        runs_df = pd.DataFrame(columns=T.RUN_COLUMNS)
    else:
        runs_df = runs if isinstance(runs, pd.DataFrame) else pd.read_csv(runs, keep_default_na=False, na_values=[""])
    out: dict[str, pd.DataFrame] = {}
    for t in TABLES.values():
        out[t.name] = t.build(out[t.wide_of] if t.wide_of else s, runs_df, o)
    return out


def write_tables(
    scores: str | os.PathLike | Sequence[str | os.PathLike] | pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    runs: str | os.PathLike | pd.DataFrame | None = None,
    **options,
) -> dict[str, Path]:
    """Write every table of :data:`TABLES` (``.csv`` + ``.tex``) into ``out_dir``; returns ``{file name: path}``.
    ``options``: the fields of :class:`ReportOptions` (``None`` values take its defaults)."""
    o = ReportOptions(**{k: v for k, v in options.items() if v is not None})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, df in build_tables(scores, runs, o).items():
        written |= _write(df, TABLES[name], out)
    return written


# ---------------------------------------------------------------------------------------- notebooks
#: the folder of the notebook sources (jupytext percent format), beside the workflow
NOTEBOOK_DIR = Path("notebooks")
#: what a notebook can need; workflow/rules/common.smk (NOTEBOOK_NEEDS) gives, per config, each one's
#: input files and papermill parameters, or None where the config has none (then the notebook is not made):
#: - ``tables``: ``tables_dir``, the folder of :data:`TABLES`' files (rule ``tables``);
#: - ``ablations``: nothing more, but only where the config has an ablation sheet;
#: - ``train_logs``: ``log_paths``, ``{run: results/logs/train/<run>.csv}``;
#: - ``images``: ``images_dir``, ``models``, ``prompt_set``, ``indices``, ``scores_paths`` (prompt texts);
#: - ``conditional``: paper 5.5's sources, conditions and images (its rule is in conditional.smk);
#: - ``efficiency``: ``tables_dir`` (Figure 4's tables, rule ``efficiency_tables``), ``model``, ``name_map``.
NEEDS = ("tables", "ablations", "train_logs", "images", "conditional", "efficiency")


@dataclass(frozen=True)
class Notebook:
    """A report notebook: source ``notebooks/{name}.py`` (jupytext percent format: ``# %%`` cells, one
    cell tagged ``parameters``), rendered to ``results/notebooks/{name}.ipynb|html`` by
    :func:`render_notebook`. It only reads and displays what its ``needs`` (:data:`NEEDS`) give."""

    name: str
    needs: tuple[str, ...]

    def __post_init__(self):
        unknown = sorted(set(self.needs) - set(NEEDS))
        if unknown:
            raise ValueError(f"notebook {self.name!r}: unknown needs {unknown}; known: {list(NEEDS)}")

    @property
    def source(self) -> Path:
        return NOTEBOOK_DIR / f"{self.name}.py"


#: THE list of report notebooks, in reading order; the Snakefile targets, the rules and the tests take
#: it from here. Adding a notebook = its source ``notebooks/<name>.py`` plus one entry here.
NOTEBOOKS: dict[str, Notebook] = {n.name: n for n in (
    Notebook("table1_winrates", ("tables",)),
    Notebook("table2_ablations", ("tables", "ablations")),
    Notebook("supp_median_mean", ("tables",)),
    Notebook("training_curves", ("train_logs",)),
    Notebook("image_grids", ("images",)),
    Notebook("conditional_grids", ("conditional",)),
    Notebook("fig4_efficiency", ("efficiency",)),
)}


def notebooks_for(available: Mapping[str, object]) -> list[str]:
    """The notebooks a config makes: those whose every need is given (not ``None``) in ``available``."""
    return [n.name for n in NOTEBOOKS.values() if all(available.get(k) is not None for k in n.needs)]


def to_ipynb(source: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """The jupytext percent-format ``source`` as an outputs-free ``.ipynb`` at ``dest`` (for papermill);
    an ``.ipynb`` source is copied as is. Raises if the source has not exactly one ``parameters`` cell."""
    import jupytext
    import nbformat

    source, dest = Path(source), Path(dest)
    nb = jupytext.read(source) if source.suffix == ".py" else nbformat.read(source, as_version=4)
    tagged = sum("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    if tagged != 1:
        raise ValueError(f"{source}: {tagged} cells tagged 'parameters'; a notebook source needs exactly one")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


def _absolutize(value, base: Path):
    """Strings naming an existing path relative to ``base`` become absolute (recursively in lists/dicts)."""
    if isinstance(value, str):
        if value and not os.path.isabs(value) and (base / value).exists():
            return str((base / value).resolve())
        return value
    if isinstance(value, Mapping):
        return {k: _absolutize(v, base) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_absolutize(v, base) for v in value]
    if isinstance(value, os.PathLike):
        return str(Path(value).resolve())
    return value


def ensure_kernel(kernel_name: str = "python3") -> str:
    """Raise a clear error when the Jupyter kernel ``kernel_name`` is not available; returns its argv[0]."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as e:
        raise RuntimeError(
            f"Jupyter kernel {kernel_name!r} not found. Install ipykernel into this interpreter "
            f"({sys.executable}) and register it: `{sys.executable} -m ipykernel install --sys-prefix`"
        ) from e
    exe = spec.argv[0]
    if os.path.isabs(exe) and os.path.realpath(exe) != os.path.realpath(sys.executable):
        warnings.warn(
            f"Jupyter kernel {kernel_name!r} runs {exe}, not this interpreter ({sys.executable}); it may lack "
            f"`inpo`. Register this one: `{sys.executable} -m ipykernel install --sys-prefix`",
            stacklevel=2,
        )
    return exe


def render_notebook(
    template: str | os.PathLike,
    out_ipynb: str | os.PathLike,
    out_html: str | os.PathLike | None = None,
    parameters: Mapping | None = None,
    *,
    kernel_name: str = "python3",
    cwd: str | os.PathLike | None = None,
    timeout: int = 600,
    exclude_input: bool = True,
) -> dict[str, Path]:
    """Execute the notebook source ``template`` (jupytext ``.py``, converted by :func:`to_ipynb`, or an
    ``.ipynb``) with ``parameters`` into ``out_ipynb`` (code kept); convert to ``out_html`` (code cells'
    input hidden unless ``exclude_input=False``: the HTML reads as a report).

    The kernel runs in ``cwd`` (default: the template's folder, so that default parameters relative to
    ``notebooks/`` work). String parameters (also inside lists and dicts) that name an existing file or
    folder relative to the *caller's* working directory are made absolute first, so Snakemake can pass
    its usual relative paths. Figures are embedded in the HTML (base64); no network access is needed.
    Returns the written paths.
    """
    import tempfile

    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    ensure_kernel(kernel_name)
    template, out_ipynb = Path(template), Path(out_ipynb)
    params = _absolutize(dict(parameters or {}), Path.cwd())
    out_ipynb.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = to_ipynb(template, Path(tmp) / f"{template.stem}.ipynb")
        pm.execute_notebook(
            str(source),
            str(out_ipynb),
            parameters=params,
            kernel_name=kernel_name,
            cwd=str(cwd if cwd is not None else template.resolve().parent),
            execution_timeout=timeout,
            progress_bar=False,
            log_output=False,
            report_mode=False,
        )
    written = {"ipynb": out_ipynb}
    if out_html is not None:
        out_html = Path(out_html)
        out_html.parent.mkdir(parents=True, exist_ok=True)
        nb = nbformat.read(out_ipynb, as_version=4)
        exporter = HTMLExporter()
        exporter.exclude_input = exclude_input
        exporter.exclude_input_prompt = exclude_input
        exporter.exclude_output_prompt = exclude_input
        body, _ = exporter.from_notebook_node(nb)
        out_html.write_text(body, encoding="utf-8")
        written["html"] = out_html
    return written


# ------------------------------------------------------------------------------------ Snakemake glue
def snakemake_tables(smk) -> dict[str, Path]:
    """For a rule ``script:``: ``input.scores`` (one or more), optional ``input.runs``;
    ``params``: any keyword of :func:`write_tables` (``benchmark_root``, ``model``, ``baselines``,
    ``name_map``, ...); ``output``: any of ``{name}_csv``/``{name}_tex`` (or plain files) inside one
    folder, which becomes ``out_dir``."""
    kw = dict(smk.params.items()) if hasattr(smk.params, "items") else {}
    runs = getattr(smk.input, "runs", None) or None
    outs = [Path(p) for p in smk.output]
    out_dir = kw.pop("out_dir", None) or (outs[0].parent if outs else "results/tables")
    written = write_tables(list(smk.input.scores) if not isinstance(smk.input.scores, str) else smk.input.scores,
                           out_dir, runs=runs, **kw)
    missing = [str(p) for p in outs if not p.exists()]
    if missing:
        raise FileNotFoundError(f"report did not write declared outputs {missing}; it wrote {sorted(written)}")
    return written


def snakemake_notebook(smk) -> dict[str, Path]:
    """For a rule ``script:``: ``input.template`` (or ``params.template``), ``output.ipynb``,
    ``output.html``; ``params.parameters``: the papermill parameters (dict); optional
    ``params.kernel_name``."""
    template = getattr(smk.input, "template", None) or smk.params.template
    params = dict(getattr(smk.params, "parameters", {}) or {})
    kernel = getattr(smk.params, "kernel_name", None) or "python3"
    return render_notebook(template, smk.output.ipynb, smk.output.html, params, kernel_name=kernel)


# ------------------------------------------------------------------------------------------------ CLI
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inpo.report", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tables", help="write results/tables/*.csv|tex")
    t.add_argument("--scores", nargs="+", required=True)
    t.add_argument("--out-dir", required=True)
    t.add_argument("--runs")
    t.add_argument("--benchmark-root")
    t.add_argument("--options", help="JSON object of further write_tables keywords", default="{}")
    n = sub.add_parser("notebook", help="papermill + nbconvert")
    n.add_argument("template")
    n.add_argument("out_ipynb")
    n.add_argument("out_html")
    n.add_argument("--parameters", default="{}", help="JSON object, or @file.json")
    n.add_argument("--kernel-name", default="python3")
    a = ap.parse_args(argv)
    if a.cmd == "tables":
        write_tables(a.scores, a.out_dir, runs=a.runs, benchmark_root=a.benchmark_root, **json.loads(a.options))
    else:
        p = a.parameters
        params = json.loads(Path(p[1:]).read_text() if p.startswith("@") else p)
        render_notebook(a.template, a.out_ipynb, a.out_html, params, kernel_name=a.kernel_name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
