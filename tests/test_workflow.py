"""The toy DAG end to end at smoke size, selective reruns, and the paper DAG (dry run)."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
import yaml
from workflow_utils import (
    REPO,
    SMOKE,
    copy_workflow,
    experiment_families,
    planned_job_fields,
    planned_jobs,
    run_snakemake,
    workflow_notebooks,
)

pytestmark = pytest.mark.slow


def test_smoke_dag_outputs(smoke_run):
    work = smoke_run
    for name in workflow_notebooks(sheet=True):
        html = work / "results" / "notebooks" / f"{name}.html"
        assert html.stat().st_size > 10_000, html
    scores = pd.read_parquet(work / "results" / "scores" / "all.parquet")
    assert set(scores["model"]) == {"base", "sft", "inpo", "dpo", "kto", "inpo-aif", "inpo-shuffled", "beta-500",
                                    "init-sft"}
    assert scores.groupby(["model", "evaluator"]).size().eq(12).all()
    t1 = pd.read_csv(work / "results" / "tables" / "table1_winrates.csv")
    assert set(zip(t1["model"], t1["baseline"])) == {("inpo", "base"), ("inpo", "sft"), ("inpo", "dpo"), ("inpo", "kto"),
                                                     ("inpo-shuffled", "base")}  # the shuffled-label control
    t2 = pd.read_csv(work / "results" / "tables" / "table2_ablations.csv")
    assert {"beta-500", "init-sft", "inpo"} <= set(t2["run"])
    assert t2["gpu_hours"].notna().all()
    q = pd.read_csv(work / "results" / "tables" / "toy_base_quality.csv")  # base samples vs its 64 training images
    assert q[["prompt_set", "n_samples", "n_train"]].values.tolist() == [["toy", 12, 64]]
    assert q["ratio"][0] == pytest.approx(q["samples_mean"][0] / q["train_mean"][0])
    rows = list(csv.DictReader(open(work / "results" / "logs" / "train" / "inpo.csv")))
    assert [int(r["update"]) for r in rows] == [1, 2]
    manifest = json.loads((work / "results" / "data" / "pairs_manifest.json").read_text())
    assert manifest["dropped"]["undecodable_image"] == 2  # the toy shards' corrupt rows, dropped whole
    # AI feedback: the relabelled set exists and the inpo-aif run trained on it
    fb = json.loads((work / "results" / "data" / "pairs_toy_pickscore.json").read_text())
    assert 0 <= fb["agreement_with_human"] <= 1
    run_cfg = yaml.safe_load((work / "results" / "configs" / "inpo-aif.yaml").read_text())
    assert run_cfg["data"]["index"] == "results/data/pairs_toy_pickscore.parquet"
    # the control: the same pairs, each winner drawn by a coin (about half agree with the hidden reward's)
    coin = json.loads((work / "results" / "data" / "pairs_coin.json").read_text())
    assert coin["evaluator"]["name"] == "coin" and coin["pairs_kept"] == fb["pairs_kept"]
    run_cfg = yaml.safe_load((work / "results" / "configs" / "inpo-shuffled.yaml").read_text())
    assert run_cfg["data"]["index"] == "results/data/pairs_coin.parquet"
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


@pytest.mark.parametrize("edit, reruns, keeps", [
    # (old text, new text) in config/smoke.yaml; the toy stages the dry run must plan again / must not
    (("n_prompts: 24", "n_prompts: 20"), {"toy_pairs"}, {"toy_init", "prompts"}),
    (("vae: {steps: 20,", "vae: {steps: 21,"), {"toy_init", "toy_pairs"}, {"prompts"}),
    # the pairs' sampler is the evaluation's (toy.pairs does not set it): one edit moves both
    (("generation: {steps: 4,", "generation: {steps: 5,"), {"toy_pairs", "generate"}, {"toy_init"}),
])
def test_editing_the_toy_config_reruns_the_stages_it_feeds(smoke_run, edit, reruns, keeps):
    """toy_init and toy_pairs read the config: their rules take what they read as params, so that an
    edit of toy.* (or of the sampler the pairs share with the evaluation) reruns them; a script's own reads
    of snakemake.config are invisible to Snakemake's rerun triggers."""
    work = smoke_run
    smoke = work / "config" / "smoke.yaml"
    original = smoke.read_text()
    assert edit[0] in original
    try:
        smoke.write_text(original.replace(*edit))
        planned = {rule for rule, _ in planned_jobs(run_snakemake(work, "-n", "all", *SMOKE).stdout)}
        assert reruns <= planned and not keeps & planned, sorted(planned)
    finally:
        smoke.write_text(original)


# the paper's families (config/paper.yaml): models evaluated, prompt sets x shards, evaluators
SD15_RUNS = {"sft", "inpo", "dpo", "kto", "beta-1000", "beta-5000", "beta-10000", "inv-steps-3", "inv-steps-5",
             "inv-steps-30", "inv-cfg-1", "inv-cfg-5", "inv-cfg-7.5", "t-last-900", "t-last-800", "t-last-700",
             "t-last-600", "t-last-500", "init-base", "inpo-pickscore"}
SDXL_RUNS = {"sft", "inpo", "dpo"}
# `snakemake --profile slurm -n all`: the count is checked rule by rule below. 1080, + per_image (Diffusion-KTO's
# per-image set, SD1.5) = 1081, + Figure 4: per family one snapshot_eval per snapshot (SD1.5: InPO and KTO every
# 50 of 400 updates, 7 each, DPO every 250 of 2000, 7; SDXL: InPO and DPO, 7 each) and efficiency_tables (the
# fig4_efficiency notebook is one more job of rule notebook): 21 + 2 + 14 + 2 = 39
PAPER_JOBS = 1120
EFFICIENCY_SNAPSHOTS = {"sd15": {"inpo": 7, "dpo": 7, "kto": 7}, "sdxl": {"inpo": 7, "dpo": 7}}


def test_paper_dag_dry_run_through_the_slurm_profile(tmp_path):
    """`snakemake --profile slurm all`, verbatim (plus -n): the whole paper, both families, every
    table and notebook, through the SLURM executor with the user profile (which selects config/paper.yaml)."""
    work = copy_workflow(tmp_path)
    r = run_snakemake(work, "--profile", "slurm", "-n", "all", timeout=300)
    assert "config/paper.yaml" in r.stdout + r.stderr
    jobs = planned_jobs(r.stdout)
    count = pd.Series([rule for rule, _ in jobs]).value_counts()
    for fam, runs, n_models, shards in [("sd15", SD15_RUNS, len(SD15_RUNS) + 1, 8), ("sdxl", SDXL_RUNS, 4, 16)]:
        assert {w["run"] for rule, w in jobs if rule == f"{fam}_train"} == runs, fam
        assert count[f"{fam}_run_config"] == len(runs)
        assert count[f"{fam}_generate"] == n_models * 3 * shards  # 3 prompt sets
        assert count[f"{fam}_score"] == n_models * 3 * 4  # 4 evaluators
        assert {w["prompt_set"] for rule, w in jobs if rule == f"{fam}_prompts"} == {"hpdv2", "parti", "pickapic_test"}
        assert {w["notebook"] for rule, w in jobs if rule == f"{fam}_notebook"} == set(workflow_notebooks(fam == "sd15"))
        assert {"table1_winrates", "supp_median_mean", "training_curves", "image_grids", "fig4_efficiency"} <= set(
            workflow_notebooks(False))
        for rule in ("filter_pairs", "tables", "aggregate_scores", "efficiency_tables"):
            assert count[f"{fam}_{rule}"] == 1
        # Figure 4: the snapshots of each run of `efficiency`, every 50 updates (DPO: 250)
        snaps = pd.Series([w["run"] for rule, w in jobs if rule == f"{fam}_snapshot_eval"]).value_counts()
        assert snaps.to_dict() == EFFICIENCY_SNAPSHOTS[fam], fam
        assert sorted(int(w["snapshot"]) for rule, w in jobs if rule == f"{fam}_snapshot_eval" and w["run"] == "dpo") == [
            250, 500, 750, 1000, 1250, 1500, 1750]
        assert f"results/paper/{fam}/notebooks/fig4_efficiency.html" in r.stdout
        assert f"results/paper/{fam}/notebooks/table1_winrates.html" in r.stdout
    assert count["sd15_ablation_runs"] == 1 and "sdxl_ablation_runs" not in count  # Table 2: SD1.5 only
    assert count["sd15_per_image"] == 1 and "sdxl_per_image" not in count  # Diffusion-KTO's data: SD1.5 only
    assert ("sd15_ai_feedback", {"feedback": "pickscore"}) in jobs  # paper 5.3
    assert not any("toy" in rule for rule in count.index)
    # paper 5.5 (SDXL): 3 models x 3 tasks, the conditions, the toy-drawn sources, the grids notebook
    assert count["sdxl_conditional_generate"] == 9 and count["sdxl_conditional_conditions"] == 3
    assert count["sdxl_conditional_notebook"] == 1 and not any(r.startswith("sd15_conditional") for r in count.index)
    assert "results/paper/sdxl/notebooks/conditional_grids.html" in r.stdout
    assert count["all"] == 1 and len(jobs) == PAPER_JOBS
    assert "gpu=8" in r.stdout  # the 8-GPU training jobs
    print(f"\n[paper DAG] snakemake --profile slurm -n all: {len(jobs)} jobs")


def test_paper_named_targets_through_the_slurm_profile(tmp_path):
    """A family alone, and the SD1.5 family's sweeps without prefix."""
    work = copy_workflow(tmp_path)
    jobs = planned_jobs(run_snakemake(work, "--profile", "slurm", "-n", "sdxl_all", timeout=300).stdout)
    assert {rule.split("_")[0] for rule, _ in jobs} == {"sdxl"}
    assert {w["run"] for rule, w in jobs if rule == "sdxl_train"} == SDXL_RUNS
    jobs = planned_jobs(run_snakemake(work, "--profile", "slurm", "-n", "sweep_beta", timeout=300).stdout)
    assert {w["run"] for rule, w in jobs if rule == "sd15_train"} == {"sft", "inpo", "beta-1000", "beta-5000",
                                                                          "beta-10000"}


def test_paper_families_merge_and_validate():
    """SDXL is a merge patch on SD1.5: shared keys stay, null deletes, and the result validates."""
    from snakemake.utils import validate

    from inpo.experiment import all_runs, model_vae, run_train_config

    fams = experiment_families("config/paper.yaml")
    sd15, sdxl = fams["sd15"], fams["sdxl"]
    for cfg in (sd15, sdxl):
        validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert (sd15["results"], sdxl["results"]) == ("results/paper/sd15", "results/paper/sdxl")
    assert sdxl["data"] == sd15["data"] and sdxl["evaluation"]["prompt_sets"] == sd15["evaluation"]["prompt_sets"]
    assert set(sdxl["runs"]) == SDXL_RUNS and "ablations" not in sdxl
    assert "kto" not in sdxl["report"]["name_map"]
    # the paper's evaluators: HPSv2.0, fp16 autocast
    for cfg in (sd15, sdxl):
        opts = cfg["evaluation"]["evaluator_options"]
        assert opts["hps"] == {"hps_version": "v2.0", "precision": "amp"}
        assert all(opts[e]["precision"] == "amp" for e in ("aesthetic", "pickscore", "clip"))
    runs = all_runs(sdxl, None)
    vae = "madebyollin/sdxl-vae-fp16-fix"
    for run in SDXL_RUNS:
        tc = run_train_config(sdxl, run, runs)
        assert tc["model"]["vae"] == vae and tc["model"]["pretrained"] == "stabilityai/stable-diffusion-xl-base-1.0"
        assert tc["optim"]["optimizer"] == "adafactor" and tc["data"]["resolution"] == 1024
        assert tc["output_dir"] == f"results/paper/sdxl/models/{run}"
    dpo = run_train_config(sdxl, "dpo", runs)
    assert (dpo["optim"]["warmup_updates"], dpo["grad_accum"], dpo["max_updates"]) == (200, 256, 2000)  # launchers/sdxl.sh
    assert run_train_config(sd15, "dpo", all_runs(sd15, None))["optim"]["warmup_updates"] == 500  # launchers/sd15.sh
    # one VAE for every SDXL model: Base-SDXL is generated with it too (trained folders carry it)
    assert model_vae(sdxl, "base", runs) == vae and model_vae(sdxl, "inpo", runs) is None
    assert model_vae(sd15, "base", all_runs(sd15, None)) is None


def test_merge_patch():
    from inpo.experiment import merge_patch

    base = {"a": {"b": 1, "c": [1, 2]}, "d": None, "e": 5}
    assert merge_patch(base, {"a": {"b": 2, "c": [3]}, "e": None, "f": {"g": None}}) == {
        "a": {"b": 2, "c": [3]}, "d": None, "f": {}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": None, "e": 5}  # not modified


def test_experiment_errors_name_the_family(tmp_path):
    from inpo.experiment import experiment_configs

    a = tmp_path / "a.yaml"
    a.write_text("results: out/x\n")
    with pytest.raises(FileNotFoundError, match=r"experiments.two: config file .*missing.yaml.* \(item 2\)"):
        experiment_configs({"experiments": {"two": [str(a), str(tmp_path / "missing.yaml")]}})
    with pytest.raises(ValueError, match="families 'one' and 'two' both write to 'out/x'"):
        experiment_configs({"experiments": {"one": [str(a)], "two": [str(a), {"seed": 1}]}})


@pytest.mark.parametrize("configfile", [None, "config/paper.yaml"])
def test_snakemake_lint_is_clean(tmp_path, configfile):
    """`make lint` (CI) runs `snakemake --lint`; a lint (e.g. a hard-coded path prefix in params) fails here too."""
    work = copy_workflow(tmp_path)
    args = ["--lint"] + (["--configfile", configfile] if configfile else [])
    r = run_snakemake(work, *args, check=False, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "Lints for" not in r.stdout + r.stderr


def test_toy_serial_head_takes_every_core(tmp_path):
    """toy_init, the base's pretraining and toy_pairs run alone (everything else waits on them): they take
    `resources.head.threads` cores, lowered to --cores, and ask SLURM for as many; every other job takes 1."""
    work = copy_workflow(tmp_path)
    for cores, head in [(2, 2), (1, 1), (8, 2)]:
        out = run_snakemake(work, "-n", "all", "--cores", str(cores), timeout=300).stdout
        threads, cpus = {}, {}
        for rule, f in planned_job_fields(out):
            key = f"{rule}[{f.get('wildcards', '')}]"
            threads[key] = int(f.get("threads", 1))
            res = f.get("resources", "")
            cpus[key] = int(res.split("cpus_per_task=")[1].split(",")[0]) if "cpus_per_task=" in res else None
        heads = {"toy_init[]", "train[run=base]", "toy_pairs[]"}
        assert heads <= set(threads), sorted(threads)[:20]
        assert {k: threads[k] for k in heads} == {k: head for k in heads}, cores
        assert {k: cpus[k] for k in heads} == {k: 2 for k in heads}  # SLURM: the config's head threads
        others = {k: v for k, v in threads.items() if k not in heads and k.split("[")[0] in ("train", "generate", "score")}
        assert len(others) > 20 and set(others.values()) == {1}, cores
        assert cpus["train[run=inpo]"] == 1


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
    r = run_snakemake(work, "--cores", "1", "results/paper/sd15/data/pairs.parquet", "--configfile",
                      "config/paper_sd15.yaml", check=False, timeout=300)
    assert r.returncode != 0
    log = (work / "results" / "paper" / "sd15" / "logs" / "filter_pairs.log").read_text()
    assert "yuvalkirstain/pickapic_v2" in log
    assert time.perf_counter() - t0 < 120, "offline failure must not hang in hub retries"


def test_changed_generation_settings_drop_old_images(tmp_path):
    from inpo.experiment import reset_images_if_settings_changed

    for i in range(4):
        (tmp_path / f"{i:05d}.png").write_bytes(b"x")
    assert reset_images_if_settings_changed(tmp_path, {"steps": 20}, (0, 2), [0, 2]) == 0  # first run
    assert reset_images_if_settings_changed(tmp_path, {"steps": 20}, (0, 2), [0, 2]) == 0  # unchanged
    assert reset_images_if_settings_changed(tmp_path, {"steps": 10}, (0, 2), [0, 2]) == 2  # changed
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["00001.png", "00003.png"]  # other shard kept


def test_base_sdxl_generated_with_the_separate_vae(tmp_path):
    """The generate rule's script decodes a hub/folder base with `model.vae` (rule param `vae`): the
    image equals one decoded by that VAE and differs from one decoded by the base's own VAE."""
    import runpy
    import sys
    from types import SimpleNamespace

    import numpy as np
    from diffusers import AutoencoderKL
    from PIL import Image

    from inpo.models import build_tiny_sdxl, save_pipeline

    base, vae_dir = tmp_path / "base", tmp_path / "vae_fp16_fix"
    save_pipeline(build_tiny_sdxl(seed=0), base)
    build_tiny_sdxl(seed=7)["vae"].save_pretrained(vae_dir)  # another VAE, same shapes
    prompts = tmp_path / "prompts.parquet"
    pd.DataFrame({"index": [0], "prompt": ["a red circle"]}).to_parquet(prompts)
    gen = {"steps": 2, "guidance_scale": 5.0, "seed_base": 0, "batch_size": 1, "scheduler": None, "dtype": None}

    def run(vae, name):
        done = tmp_path / name / "shard-0-of-1.done"
        smk = SimpleNamespace(
            input=SimpleNamespace(prompts=str(prompts)), output=[str(done)], log=[str(tmp_path / f"{name}.log")],
            wildcards=SimpleNamespace(shard="0"),
            params=SimpleNamespace(model=str(base), vae=vae, gen=gen, family="sdxl", n_shards=1, seed_base=0),
        )
        runpy.run_path(str(REPO / "workflow" / "scripts" / "generate.py"), init_globals={"snakemake": smk})
        return np.asarray(Image.open(done.parent / "00000.png"), dtype=np.int16)

    sys_path = list(sys.path)
    sys.path.insert(0, str(REPO / "workflow" / "scripts"))  # the scripts' `_log`
    stdout, stderr = sys.stdout, sys.stderr
    try:
        own = run(None, "own")
        swapped = run(str(vae_dir), "swapped")
    finally:
        sys.stdout, sys.stderr = stdout, stderr  # _log sends them to the log file
        sys.path[:] = sys_path
    assert own.shape == swapped.shape and np.abs(own - swapped).max() > 0
    # the same as decoding with that VAE put into the base pipeline by hand
    from inpo.generate import generate_images
    from inpo.models import load_components

    comps = load_components(base, family="sdxl")
    comps["vae"] = AutoencoderKL.from_pretrained(vae_dir)
    generate_images(comps, pd.read_parquet(prompts), tmp_path / "by_hand", family="sdxl", num_inference_steps=2,
                    guidance_scale=5.0, seed_base=0, batch_size=1, progress=False)
    by_hand = np.asarray(Image.open(tmp_path / "by_hand" / "00000.png"), dtype=np.int16)
    assert np.array_equal(swapped, by_hand)
