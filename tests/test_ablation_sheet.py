"""config/ablations_paper.tsv: every row of the paper's Table 2 has its own run beside it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from inpo import experiment as P
from inpo import tables as T

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    cfg = yaml.safe_load((ROOT / "config" / "paper_sd15.yaml").read_text())
    sheet = P.read_ablations(ROOT / "config" / "ablations_paper.tsv", cfg["runs"])
    return cfg, sheet, P.all_runs(cfg, sheet)


def test_every_table2_row_has_a_run(paper):
    cfg, sheet, runs = paper
    rows = sheet[sheet["paper_row"] != ""]
    assert sorted(set(rows["paper_row"].astype(int))) == list(range(1, 14))
    # one run per paper row, except the main InPO run (row 13) that stands in every sweep
    per_row = rows.groupby("paper_row")["run"].agg(set)
    assert all(len(v) == 1 for v in per_row)
    assert per_row["10"] == {"inv-cfg-1"} and "inv-cfg-1" in runs  # CFG = 1 trains on its own
    assert P.run_train_config(cfg, "inv-cfg-1", runs)["method"] == P.run_train_config(cfg, "inpo", runs)["method"]
    assert per_row["1"] == {"base"} and "base" not in runs  # the base model is shown, not trained
    assert per_row["2"] == {"dpo"} and runs["dpo"] == P.all_runs(cfg, None)["dpo"]  # the main DPO run, as is


def test_timestep_sweep_reads_last_n_as_t_min(paper):
    cfg, sheet, runs = paper
    sweep = sheet[sheet["sweep"] == "timestep_range"]
    assert sweep["value"].astype(int).tolist() == [1000, 900, 800, 700, 600, 500]
    for run, n in zip(sweep["run"], sweep["value"].astype(int)):
        method = P.run_train_config(cfg, run, runs)["method"]
        assert (method["t_min"], method.get("t_max", 999)) == (1000 - n, 999)


def test_table2_shows_references_without_gpu_hours(paper, tmp_path):
    cfg, sheet, runs = paper
    table = P.ablation_runs_table(sheet, cfg)
    assert table.loc[table["run"] == "base", "benchmark"].tolist() == [""]
    for bench in set(table["benchmark"]) - {""}:
        (tmp_path / bench).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / bench).write_text("s\th:m:s\n900\t0:15:00\n")
    scores = pd.DataFrame([
        {"model": m, "prompt_set": "hpdv2", "index": i, "prompt": "p", "evaluator": "hps",
         "evaluator_version": "v2.0", "score": float(i)}
        for m in dict.fromkeys(sheet["run"]) for i in range(3)])
    long = T.ablation_long(scores, table, benchmark_root=tmp_path).set_index(["run", "sweep"])
    assert len(long) == len(sheet)
    base, dpo = long.loc[("base", "reference")], long.loc[("dpo", "reference")]
    assert pd.isna(base["gpu_hours"]) and base["paper"] == pytest.approx(26.647)
    assert dpo["gpu_hours"] == pytest.approx(0.25 * 8) and dpo["paper_gpu_hours"] == pytest.approx(204.8)
    kto = long.loc[("kto", "reference")]  # Diffusion-KTO's training GPU-hours (no Table 2 row in the paper)
    assert kto["gpu_hours"] == pytest.approx(0.25 * 8) and pd.isna(kto["paper_gpu_hours"])
    assert long.loc[("inv-cfg-1", "inversion_cfg"), "paper_gpu_hours"] == pytest.approx(62.4)
