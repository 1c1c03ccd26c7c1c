"""inpo.report: the report tables on the fixtures, and every notebook of the one list executed + rendered to HTML."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from test_efficiency import write_fixture_tables

from inpo import report
from inpo import tables as T

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
NB = ROOT / "notebooks"



def fixture_tables(out_dir) -> Path:
    """The report tables of the fixture scores (the tables a notebook reads)."""
    report.write_tables(FIX / "scores.csv", out_dir, runs=FIX / "runs.csv", benchmark_root=FIX,
                        baselines=["base", "sft", "dpo"], paper_rows={"base": 1, "dpo": 2, "inpo": 13})
    return Path(out_dir)


#: each need's parameters on the fixtures (None: the notebook's own defaults, which point at tests/fixtures)
FIXTURE_NEEDS = {"tables": lambda tmp: {"tables_dir": str(fixture_tables(tmp / "tables"))}, "ablations": None,
                 "train_logs": None, "images": None, "conditional": None,
                 "efficiency": lambda tmp: {"tables_dir": str(write_fixture_tables(tmp / "efficiency"))}}


def test_write_tables_on_fixtures(tmp_path):
    written = report.write_tables(
        FIX / "scores.csv", tmp_path, runs=FIX / "runs.csv", benchmark_root=FIX,
        baselines=["base", "sft", "dpo"], paper_rows={"base": 1, "dpo": 2, "inpo": 13},
    )
    assert sorted(written) == sorted(f"{n}.{e}" for n in report.TABLE_NAMES for e in ("csv", "tex"))
    t1 = pd.read_csv(tmp_path / "table1_winrates.csv")
    assert set(t1["baseline"]) == {"base", "dpo"}  # sft has no scores: skipped
    assert set(t1["label"]) == {"pickscore (pickscore_v1)", "hps (hpsv2.1)"}
    row = t1.set_index(["baseline", "prompt_set", "evaluator"]).loc[("base", "hpdv2", "hps")]
    assert row["paper_pct"] == pytest.approx(90.22) and row["n"] == 20
    assert row["wins"] + row["ties"] + row["losses"] == 20
    t2 = pd.read_csv(tmp_path / "table2_ablations.csv")
    assert t2.set_index("run").loc["inpo", "gpu_hours"].tolist() == pytest.approx([8.4, 8.4])
    assert "hps (hpsv2.1)" in (tmp_path / "table2_ablations.tex").read_text()
    supp = pd.read_csv(tmp_path / "supp_median_mean.csv")
    assert len(supp) == 3 * 2 * 2
    eff = pd.read_csv(tmp_path / "toy_effect.csv")
    assert len(eff) == 2 * 2 * 2 and {"effect_sd", "evaluator_version"} <= set(eff.columns)
    # the vs-paper layouts: the long tables' own figures, ours beside the paper's
    vs = T.read_table(tmp_path / "table1_winrates_vs_paper.csv")
    assert vs.loc[("inpo", "base", "hpdv2"), ("hps (hpsv2.1)", "ours")] == pytest.approx(row["win_rate_pct"])
    assert vs.loc[("inpo", "base", "hpdv2"), ("hps (hpsv2.1)", "paper")] == pytest.approx(90.22)
    t2w = T.read_table(tmp_path / "table2_ablations_vs_paper.csv").xs("inpo", level="run")
    assert t2w[("gpu_hours", "ours")].tolist() == pytest.approx([8.4]) and t2w[("gpu_hours", "paper")].iloc[0] == 57.6
    tex = (tmp_path / "table1_winrates_vs_paper.tex").read_text()
    assert "\\toprule" in tex and "90.22" not in tex and "90.2" in tex  # booktabs, one decimal


def test_write_tables_without_runs_writes_empty_table2(tmp_path):
    report.write_tables(FIX / "scores.csv", tmp_path, baselines=["base"])
    assert pd.read_csv(tmp_path / "table2_ablations.csv").empty
    for name in ("table2_ablations", "table2_ablations_vs_paper"):
        assert T.read_table(tmp_path / f"{name}.csv").empty
        assert (tmp_path / f"{name}.tex").read_text().startswith("%")


def test_cli_tables(tmp_path):
    rc = report.main(["tables", "--scores", str(FIX / "scores.csv"), "--out-dir", str(tmp_path), "--runs",
                      str(FIX / "runs.csv"), "--benchmark-root", str(FIX), "--options", json.dumps({"baselines": ["dpo"]})])
    assert rc == 0 and set(pd.read_csv(tmp_path / "table1_winrates.csv")["baseline"]) == {"dpo"}


class _Named(list):
    """Stand-in for snakemake's Namedlist: a list whose named entries are attributes."""

    def __init__(self, items=(), **named):
        super().__init__([*items, *named.values()])
        self._named = named
        for k, v in named.items():
            setattr(self, k, v)

    def items(self):
        return self._named.items()


def test_snakemake_tables_glue(tmp_path):
    outs = [str(tmp_path / f"{n}.{e}") for n in report.TABLE_NAMES for e in ("csv", "tex")]
    smk = type("Smk", (), {})()
    smk.input = _Named(scores=[str(FIX / "scores.csv")], runs=str(FIX / "runs.csv"))
    smk.params = _Named(benchmark_root=str(FIX), baselines=["base", "dpo"], paper_rows={"inpo": 13})
    smk.output = _Named(outs)
    report.snakemake_tables(smk)
    t2 = pd.read_csv(tmp_path / "table2_ablations.csv").set_index("run")
    assert t2.loc["inpo", "paper_gpu_hours"].tolist() == [57.6, 57.6]


def test_missing_kernel_is_a_clear_error():
    with pytest.raises(RuntimeError, match="ipykernel install --sys-prefix"):
        report.ensure_kernel("no-such-kernel-xyz")


def test_absolutize_only_existing_relative_paths(monkeypatch):
    monkeypatch.chdir(ROOT)
    out = report._absolutize({"a": "tests/fixtures/scores.csv", "b": ["tests/fixtures", "hpdv2"], "c": 3}, Path.cwd())
    assert out["a"] == str(FIX / "scores.csv") and out["b"] == [str(FIX), "hpdv2"] and out["c"] == 3


def test_one_list_of_notebooks_is_the_notebooks_folder():
    assert sorted(p.stem for p in NB.glob("*.py")) == sorted(report.NOTEBOOKS)
    assert not list(NB.glob("*.ipynb"))  # converted at render time, never committed
    assert set(FIXTURE_NEEDS) == set(report.NEEDS)


@pytest.mark.parametrize("name", list(report.NOTEBOOKS))
def test_source_converts_with_one_parameters_cell(name, tmp_path):
    nb = nbformat.read(report.to_ipynb(NB / f"{name}.py", tmp_path / "n.ipynb"), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")  # a title first
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    nbformat.validate(nb)


def test_source_without_parameters_cell_is_refused(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("# %% [markdown]\n# # x\n\n# %%\na = 1\n")
    with pytest.raises(ValueError, match="x.py: 0 cells tagged 'parameters'"):
        report.to_ipynb(src, tmp_path / "x.ipynb")


def test_notebooks_for_needs():
    assert report.notebooks_for({"tables": {}, "train_logs": {}, "images": {}, "ablations": None}) == [
        "table1_winrates", "supp_median_mean", "training_curves", "image_grids"]
    with pytest.raises(ValueError, match="unknown needs"):
        report.Notebook("x", ("tables", "gpus"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(report.NOTEBOOKS))
def test_notebook_runs_on_fixtures_and_renders_html(name, tmp_path):
    params = {}
    for need in report.NOTEBOOKS[name].needs:
        params |= FIXTURE_NEEDS[need](tmp_path) if FIXTURE_NEEDS[need] else {}
    out = report.render_notebook(NB / f"{name}.py", tmp_path / f"{name}.ipynb", tmp_path / f"{name}.html", params)
    html = out["html"].read_text()
    nb = nbformat.read(out["ipynb"], as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    code = [c.source for c in nb.cells if c.cell_type == "code" and "import" in c.source][0]
    assert code.splitlines()[0] in "".join(c.source for c in nb.cells)  # the .ipynb keeps the code ...
    assert "import pandas as pd" not in html and "tags=" not in html  # ... the HTML hides it
    if "tables" in report.NOTEBOOKS[name].needs:
        assert "hps (hpsv2.1)" in html  # evaluator version in the table header
        assert "Headline" in html and html.index("Headline") < html.index("<table")  # the headline first
    if name == "table1_winrates":
        assert "90.2" in html  # the paper's figure beside ours
        assert "<strong>inpo</strong> is ahead of <strong>base</strong>" in html  # 2 of 4 intervals above 50 %
        assert "No <code>toy_base_quality</code> table in this run" in html  # toy configs only (rule toy_base_quality)
    if name in ("table1_winrates", "table2_ablations", "supp_median_mean", "training_curves", "image_grids"):
        assert "data:image/png;base64" in html


@pytest.mark.slow
def test_notebook_parameters_relative_to_caller(tmp_path, monkeypatch):
    report.write_tables(FIX / "scores.csv", tmp_path / "tables", baselines=["dpo"])
    monkeypatch.chdir(tmp_path)
    out = report.render_notebook(NB / "table1_winrates.py", tmp_path / "t1.ipynb", tmp_path / "t1.html",
                                 {"tables_dir": "tables"})
    html = out["html"].read_text()
    assert "74.9" in html and "85.8" not in html  # only InPO over DPO (paper 74.94), not over base (85.84)


def test_report_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="ci must be 'wilson' or 'bootstrap', not 'wald'"):
        report.write_tables(FIX / "scores.csv", tmp_path / "out", ci="wald")
    assert not (tmp_path / "out").exists()  # checked before anything is written
    with pytest.raises(TypeError, match="name_mapp"):
        report.ReportOptions(name_mapp={})
