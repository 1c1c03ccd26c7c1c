"""inpo.report: the report tables on the fixtures, and every notebook template executed + rendered to HTML."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from inpo import report

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
NB = ROOT / "notebooks"
NOTEBOOKS = ["table1_winrates", "table2_ablations", "supp_median_mean", "training_curves", "image_grids"]


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


def test_write_tables_without_runs_writes_empty_table2(tmp_path):
    report.write_tables(FIX / "scores.csv", tmp_path, baselines=["base"])
    assert pd.read_csv(tmp_path / "table2_ablations.csv").empty
    assert (tmp_path / "table2_ablations.tex").read_text().startswith("%")


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


def test_templates_are_generated_and_outputs_free():
    spec = importlib.util.spec_from_file_location("nb_build", NB / "_build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert set(mod.NOTEBOOKS) == set(NOTEBOOKS)
    for name, built in mod.NOTEBOOKS.items():
        nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
        assert [c.source for c in nb.cells] == [c.source for c in built.cells], f"{name}: rerun notebooks/_build.py"
        assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_fixtures_and_renders_html(name, tmp_path):
    out = report.render_notebook(NB / f"{name}.ipynb", tmp_path / f"{name}.ipynb", tmp_path / f"{name}.html", {})
    html = out["html"].read_text()
    nb = nbformat.read(out["ipynb"], as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    if name in ("table1_winrates", "table2_ablations", "supp_median_mean"):
        assert "hps (hpsv2.1)" in html  # evaluator version in the table header
    if name == "table1_winrates":
        assert "90.2" in html  # the paper's figure beside ours
    if name in ("training_curves", "image_grids"):
        assert "data:image/png;base64" in html


@pytest.mark.slow
def test_notebook_parameters_relative_to_caller(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = report.render_notebook(
        NB / "table1_winrates.ipynb", tmp_path / "t1.ipynb", tmp_path / "t1.html",
        {"scores_paths": ["tests/fixtures/scores.csv"], "baselines": ["dpo"]},
    )
    html = out["html"].read_text()
    assert "74.9" in html and "85.8" not in html  # only InPO over DPO (paper 74.94), not over base (85.84)
