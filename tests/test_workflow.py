"""The toy DAG end to end at smoke size, selective reruns, and the paper DAG (dry run)."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
import yaml
from workflow_utils import SMOKE, copy_workflow, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    run_snakemake(work, "--cores", "2", "all", *SMOKE)
    return work


def test_smoke_dag_outputs(smoke_run):
    work = smoke_run
    for name in ["table1_winrates", "table2_ablations", "supp_median_mean", "training_curves", "image_grids"]:
        html = work / "results" / "notebooks" / f"{name}.html"
        assert html.stat().st_size > 10_000, html
    scores = pd.read_parquet(work / "results" / "scores" / "all.parquet")
    assert set(scores["model"]) == {"base", "sft", "inpo", "dpo", "kto", "inpo-aif", "beta-500", "init-sft"}
    assert scores.groupby(["model", "evaluator"]).size().eq(12).all()
    t1 = pd.read_csv(work / "results" / "tables" / "table1_winrates.csv")
    assert set(t1["baseline"]) == {"base", "sft", "dpo", "kto"}
    t2 = pd.read_csv(work / "results" / "tables" / "table2_ablations.csv")
    assert {"beta-500", "init-sft", "inpo"} <= set(t2["run"])
    assert t2["gpu_hours"].notna().all()
    rows = list(csv.DictReader(open(work / "results" / "logs" / "train" / "inpo.csv")))
    assert [int(r["update"]) for r in rows] == [1, 2]
    manifest = json.loads((work / "results" / "data" / "pairs_manifest.json").read_text())
    assert manifest["dropped"]["undecodable_image"] == 2  # the toy shards' corrupt rows, dropped whole
    # AI feedback: the relabelled set exists and the inpo-aif run trained on it
    fb = json.loads((work / "results" / "data" / "pairs_toy_pickscore.json").read_text())
    assert 0 <= fb["agreement_with_human"] <= 1
    run_cfg = yaml.safe_load((work / "results" / "configs" / "inpo-aif.yaml").read_text())
    assert run_cfg["data"]["index"] == "results/data/pairs_toy_pickscore.parquet"
    # a finished DAG has nothing left to do
    r = run_snakemake(work, "-n", "all", *SMOKE)
    assert planned_jobs(r.stdout) == []


def test_editing_one_ablation_row_retrains_only_that_run(smoke_run):
    work = smoke_run
    sheet = work / "config" / "ablations_smoke.tsv"
    original = sheet.read_text()
    try:
        sheet.write_text(original.replace("method.beta=500", "method.beta=700"))
        jobs = planned_jobs(run_snakemake(work, "-n", "all", *SMOKE).stdout)
        trained = sorted(w["run"] for rule, w in jobs if rule == "train")
        assert trained == ["beta-500"]
        generated = sorted(w["model"] for rule, w in jobs if rule == "generate")
        assert generated == ["beta-500"]
        # the sweep target covers the same run
        jobs = planned_jobs(run_snakemake(work, "-n", "sweep_beta", *SMOKE).stdout)
        assert sorted(w["run"] for rule, w in jobs if rule == "train") == ["beta-500"]
    finally:
        sheet.write_text(original)


def test_paper_dag_dry_run(tmp_path):
    work = copy_workflow(tmp_path)
    r = run_snakemake(work, "-n", "all", "--configfile", "config/paper_sd15.yaml", timeout=300)
    jobs = planned_jobs(r.stdout)
    count = pd.Series([rule for rule, _ in jobs]).value_counts()
    runs = {"sft", "inpo", "dpo", "kto", "beta-1000", "beta-5000", "beta-10000", "inv-steps-3", "inv-steps-5",
            "inv-steps-30", "inv-cfg-1", "inv-cfg-5", "inv-cfg-7.5", "t-last-900", "t-last-800", "t-last-700",
            "t-last-600", "t-last-500", "init-base", "inpo-pickscore"}
    assert {w["run"] for rule, w in jobs if rule == "train"} == runs
    models = runs | {"base"}
    assert count["generate"] == len(models) * 3 * 8  # 3 prompt sets, 8 shards each
    assert count["score"] == len(models) * 3 * 4  # 4 evaluators
    sets = {w["prompt_set"] for rule, w in jobs if rule == "prompts"}
    assert sets == {"hpdv2", "parti", "pickapic_test"}
    assert "toy_init" not in count and "toy_pairs" not in count
    assert "gpu=8" in r.stdout  # the 8-GPU training jobs
    assert ("ai_feedback", {"feedback": "pickscore"}) in jobs


def test_bad_config_fails_before_any_job(tmp_path):
    work = copy_workflow(tmp_path)
    cfg = work / "config" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("method.beta: 2000}", "method.bta: 2000}", 1))
    r = run_snakemake(work, "-n", "all", check=False)
    assert r.returncode != 0
    assert "run 'inpo'" in (r.stdout + r.stderr) and "bta" in (r.stdout + r.stderr)


def test_paper_config_offline_fails_fast_naming_the_source(tmp_path):
    """No network: the first jobs (pair filter, prompt sets) fail at once and say what to set."""
    import time

    work = copy_workflow(tmp_path)
    t0 = time.perf_counter()
    r = run_snakemake(work, "--cores", "1", "results/data/pairs.parquet", "--configfile",
                      "config/paper_sd15.yaml", check=False, timeout=300)
    assert r.returncode != 0
    log = (work / "results" / "logs" / "filter_pairs.log").read_text()
    assert "yuvalkirstain/pickapic_v2" in log
    assert time.perf_counter() - t0 < 120, "offline failure must not hang in hub retries"


def test_changed_generation_settings_drop_old_images(tmp_path):
    from inpo.pipeline import reset_images_if_settings_changed

    for i in range(4):
        (tmp_path / f"{i:05d}.png").write_bytes(b"x")
    assert reset_images_if_settings_changed(tmp_path, {"steps": 20}, (0, 2), [0, 2]) == 0  # first run
    assert reset_images_if_settings_changed(tmp_path, {"steps": 20}, (0, 2), [0, 2]) == 0  # unchanged
    assert reset_images_if_settings_changed(tmp_path, {"steps": 10}, (0, 2), [0, 2]) == 2  # changed
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["00001.png", "00003.png"]  # other shard kept
