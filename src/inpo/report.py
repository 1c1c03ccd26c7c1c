"""Report stage: tidy scores + benchmarks -> ``results/tables/*.csv|tex``; papermill notebooks -> ipynb + HTML.

Two entry points, each callable from a Snakemake ``script:`` (see :func:`snakemake_tables`,
:func:`snakemake_notebook`) or from the command line (``python -m inpo.report tables|notebook ...``):

- :func:`write_tables` writes ``table1_winrates``, ``table2_ablations``, ``supp_median_mean`` and
  ``toy_effect``, each as ``.csv`` (the complete long form of :mod:`inpo.tables`: one row per
  model/pair x prompt set x evaluator, evaluator version, n, ties, intervals, the paper's figure) and
  ``.tex`` (the paper's wide layout, ours beside the paper's).
- :func:`render_notebook` runs a papermill template with parameters, then converts the executed notebook
  to HTML with nbconvert. Nothing is fetched from the network. The kernel (default ``python3``) must
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
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from inpo import tables as T

TABLE_NAMES = ("table1_winrates", "table2_ablations", "supp_median_mean", "toy_effect")
DEFAULT_BASELINES = ("base", "sft", "dpo", "kto")


def _scores(scores) -> pd.DataFrame:
    if isinstance(scores, pd.DataFrame):
        return T.check_scores(scores)
    return T.read_scores(scores)


def _write_pair(long: pd.DataFrame, wide_fn, out_dir: Path, name: str, caption: str, float_format: str) -> dict:
    csv = T.write_csv(long, out_dir / f"{name}.csv")
    tex_path = out_dir / f"{name}.tex"
    if long.empty:
        tex_path.write_text(f"% {name}: no rows (nothing to compare in this configuration)\n", encoding="utf-8")
    else:
        T.to_latex(wide_fn(), tex_path, caption=caption, label=f"tab:{name}", float_format=float_format)
    return {f"{name}.csv": csv, f"{name}.tex": tex_path}


def write_tables(
    scores: str | os.PathLike | Sequence[str | os.PathLike] | pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    runs: str | os.PathLike | pd.DataFrame | None = None,
    benchmark_root: str | os.PathLike | None = None,
    model: str | Sequence[str] = "inpo",
    baselines: Sequence[str] | Mapping[str, Sequence[str]] = DEFAULT_BASELINES,
    evaluators: Sequence[str] | None = None,
    prompt_sets: Sequence[str] | None = None,
    name_map: Mapping[str, str] | None = None,
    table1_prompt_sets: Mapping[str, str] | None = None,
    supp_prompt_sets: Mapping[str, str] | None = None,
    evaluator_map: Mapping[str, str] | None = None,
    paper_rows: Mapping[str, int | str] | None = None,
    effect_evaluators: Sequence[str] | None = None,
    ci: str = "wilson",
) -> dict[str, Path]:
    """Write the four report tables (``.csv`` + ``.tex``) into ``out_dir``; returns ``{file name: path}``.

    - ``scores``: tidy score file(s) (parquet/CSV) or a frame.
    - ``runs``: the ablation run sheet (CSV or frame; columns ``run, sweep, setting, value, benchmark,
      n_gpus, prompt_set``), ``benchmark`` paths relative to ``benchmark_root``. ``None``: an empty
      Table 2 is written (declared outputs always exist).
    - ``model``/``baselines``: win-rates and toy effect of ``model`` over each baseline (baselines
      without scores are skipped); ``baselines`` may be ``{model: [baselines]}``.
    - ``name_map`` (ours -> paper model names), ``table1_prompt_sets`` (ours -> ``HPDv2``/``Parti``),
      ``supp_prompt_sets`` (ours -> ``A``/``B``/``C``), ``evaluator_map`` (ours -> paper evaluator
      column), ``paper_rows`` (run -> Table 2 row or setting): where the paper's figures sit beside ours;
      defaults as in :mod:`inpo.tables`.
    - ``effect_evaluators``: evaluators of the toy effect table (default: the ``toy_*`` evaluators
      present, else all).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = _scores(scores)
    name_map = T.DEFAULT_MODEL_NAMES if name_map is None else dict(name_map)
    t1_sets = T.DEFAULT_TABLE1_PROMPT_SETS if table1_prompt_sets is None else dict(table1_prompt_sets)
    supp_sets = T.DEFAULT_SUPP_PROMPT_SETS if supp_prompt_sets is None else dict(supp_prompt_sets)
    pair_kw = dict(evaluators=evaluators, prompt_sets=prompt_sets)
    written: dict[str, Path] = {}

    t1_long = T.win_rate_long(s, model, baselines, name_map=name_map, prompt_set_map=t1_sets,
                              evaluator_map=evaluator_map, ci=ci, **pair_kw)
    written |= _write_pair(
        t1_long,
        lambda: T.win_rate_vs_paper(s, model, baselines, name_map=name_map, prompt_set_map=t1_sets,
                                    evaluator_map=evaluator_map, ci=ci, **pair_kw),
        out, "table1_winrates", "Win-rates (\\%) of the aligned model over each baseline: ours and the paper's.",
        "%.1f",
    )

    if runs is None:
        runs_df = pd.DataFrame(columns=T.RUN_COLUMNS)
    else:
        runs_df = runs if isinstance(runs, pd.DataFrame) else pd.read_csv(runs, keep_default_na=False, na_values=[""])
    abl_kw = dict(evaluators=evaluators, paper_rows=paper_rows, benchmark_root=benchmark_root, evaluator_map=evaluator_map)
    t2_long = T.ablation_long(s, runs_df, **abl_kw)
    written |= _write_pair(
        t2_long, lambda: T.ablation_table(s, runs_df, **abl_kw), out, "table2_ablations",
        "Ablations: median scores and training GPU-hours, ours and the paper's.", "%.3f",
    )

    supp_kw = dict(evaluators=evaluators, prompt_sets=prompt_sets, name_map=name_map, prompt_set_map=supp_sets,
                   evaluator_map=evaluator_map)
    supp_long = T.summary_long(s, **supp_kw)
    written |= _write_pair(
        supp_long, lambda: T.summary_table(s, **supp_kw), out, "supp_median_mean",
        "Median and mean score per model and prompt set, ours and the paper's.", "%.3f",
    )

    if effect_evaluators is None:
        present = list(dict.fromkeys(s["evaluator"]))
        effect_evaluators = [e for e in present if e.startswith("toy_")] or present
    eff = T.reward_effect_table(s, model, baselines, effect_evaluators, prompt_sets)

    def eff_wide():
        w = T._unstack(eff, ["model", "baseline", "prompt_set"], "effect_sd", list(dict.fromkeys(eff["label"])))
        w.columns.name = "evaluator"
        return w

    written |= _write_pair(eff, eff_wide, out, "toy_effect",
                           "Mean paired gain over the baseline in baseline-sd units.", "%.3f")
    return written


# ---------------------------------------------------------------------------------------- notebooks
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
    exclude_input: bool = False,
) -> dict[str, Path]:
    """Execute the papermill ``template`` with ``parameters`` into ``out_ipynb``; convert to ``out_html``.

    The kernel runs in ``cwd`` (default: the template's folder, so that the templates' default
    parameters, which point at ``tests/fixtures`` relative to ``notebooks/``, work). String parameters
    (also inside lists and dicts) that name an existing file or folder relative to the *caller's*
    working directory are made absolute first, so Snakemake can pass its usual relative paths.
    Figures are embedded in the HTML (base64); no network access is needed. Returns the written paths.
    """
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    ensure_kernel(kernel_name)
    template, out_ipynb = Path(template), Path(out_ipynb)
    params = _absolutize(dict(parameters or {}), Path.cwd())
    out_ipynb.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(template),
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
