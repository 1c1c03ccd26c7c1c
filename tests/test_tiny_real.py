"""The PAPER DAG end to end on tiny real-architecture models (``config/tiny_real.yaml``).

``inpo.tiny_real.build`` writes tiny random models of the real classes in their real on-disk formats
(SD1.5 / SDXL diffusers folders, the separate fp16-fix VAE, the four evaluators' checkpoints with the
real aesthetic MLP), a Pick-a-Pic v2 mirror in the exact schema (ties, undecodable images, several
row groups per shard) and links to the real HPDv2 / Parti prompt files. Then the paper configs run
with the overlay (only ids, paths and sizes change) in scratch copies of the workflow, and every
table and notebook of the paper must come out with a row for every paper model and ablation run,
holding the numbers the score files give. Both families run in ONE snakemake invocation of the
experiment file ``config/tiny_real_paper.yaml``, exactly as ``snakemake --profile slurm all`` runs
``config/paper.yaml``.

Two executors, started together so that their waits overlap, each running ONE family's whole `all`
and a slice of the other family (:data:`SLICE`: base and InPO on HPDv2, every evaluator):

- SLURM: ``snakemake --profile profiles/slurm-ci sdxl_all <SD1.5 slice>`` on the CI cluster
  (``.ci/slurm-up``): every non-local job must run inside a COMPLETED SLURM job (the CI profile
  groups the many short score / generation jobs, see profiles/slurm-ci);
- local: ``snakemake --cores 2 sd15_all <SDXL slice>``.

So every table and notebook of both families comes out (SDXL's through SLURM, SD1.5's locally),
every rule of both families runs on both executors, and the slices' scores and training losses must
equal the other executor's. Why not `all` through both: a SLURM job starts snakemake twice (batch
script, then job step), which doubles the cost of the DAG's ~250 few-second jobs on the 2-core CI
machine; the whole experiment on each executor would cost ~3x the local run alone (the
``all`` of both families at once is the dry runs' in tests/test_workflow.py).

    .ci/slurm-up && pytest -m slow tests/test_tiny_real.py
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_utils import (
    REPO,
    SLURM_CI_PROFILE,
    Background,
    cancel_slurm_jobs_of,
    copy_workflow,
    experiment_families,
    local_rules,
    planned_jobs,
    run_snakemake,
    slurm_states,
    slurm_submitted,
    workflow_notebooks,
)

EXPERIMENT = "config/tiny_real_paper.yaml"
OVERLAYS = {  # each family's files after the paper configs (config/paper.yaml), as EXPERIMENT lists them
    "sd15": ["config/tiny_real.yaml"],
    "sdxl": ["config/tiny_real.yaml", "config/tiny_real_sdxl.yaml"],
}
REAL_EVALUATORS = {"aesthetic", "pickscore", "hps", "clip"}
EXECUTOR_OF = {"sdxl": "slurm", "sd15": "local"}  # where each family's whole `all` runs
SLICE_MODELS, SLICE_PROMPT_SET = ["base", "inpo"], "hpdv2"  # each family's slice on the other executor
SCORE_KEYS = ["model", "prompt_set", "evaluator", "index"]
DAG_TIMEOUT = 3000  # s, each run; measured on 2 shared cores: see the module fixture's print


def _merged(family: str) -> dict:
    return experiment_families(EXPERIMENT)[family]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, shared_data) -> tuple[Path, dict]:
    from inpo.tiny_real import build

    out = tmp_path_factory.mktemp("tiny_real")
    return out, build(out, shared_data=shared_data)


def _slice(family: str) -> list[str]:
    cfg = _merged(family)
    return [f"{cfg['results']}/scores/{m}/{SLICE_PROMPT_SET}/{e}.parquet"
            for m in SLICE_MODELS for e in cfg["evaluation"]["evaluators"]]


def _targets(executor: str) -> list[str]:
    """The executor's family `all` and the other family's slice."""
    return [t for fam, ex in EXECUTOR_OF.items() for t in ([f"{fam}_all"] if ex == executor else _slice(fam))]


@pytest.fixture(scope="module")
def paper_runs(cluster, tmp_path_factory, fixtures):
    """The tiny-real paper experiment through SLURM and, at the same time, locally (:func:`_targets`);
    yields the folders, the two runs and the SLURM run's planned jobs (its dry run)."""
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("wf_tiny_real")
    dirs = {k: copy_workflow(root / k) for k in ("slurm", "local")}
    for work in dirs.values():
        (work / "resources").mkdir()
        (work / "resources" / "tiny_real").symlink_to(fixtures[0])
    slurm_args = [*_targets("slurm"), "--configfile", EXPERIMENT]
    planned = planned_jobs(run_snakemake(dirs["slurm"], "-n", *slurm_args).stdout)
    slurm = Background(dirs["slurm"], *SLURM_CI_PROFILE, *slurm_args, timeout=DAG_TIMEOUT)
    local = Background(dirs["local"], "--cores", "2", *_targets("local"), "--configfile", EXPERIMENT, timeout=DAG_TIMEOUT)
    try:
        yield dict(dirs=dirs, slurm=slurm, local=local, planned=planned)
    finally:
        cancel_slurm_jobs_of(dirs["slurm"])
        slurm.stop()
        local.stop()
        full = {ex: next(t for t in _targets(ex) if t.endswith("_all")) for ex in ("slurm", "local")}
        print(f"\n[tiny-real] SLURM {full['slurm']} + slice: {slurm.wall:.0f} s ({len(planned)} jobs); "
              f"local {full['local']} + slice: {local.wall:.0f} s; fixture wall {time.monotonic() - t0:.0f} s")


def _slurm_done(runs) -> tuple[Path, str]:
    rc, log = runs["slurm"].wait()
    assert rc == 0, log[-6000:]
    return runs["dirs"]["slurm"], log


def _local_done(runs) -> Path:
    rc, log = runs["local"].wait()
    assert rc == 0, log[-6000:]
    return runs["dirs"]["local"]


def _full_run(runs, family: str) -> Path:
    """The folder of the run that made ``family``'s whole `all`."""
    return _slurm_done(runs)[0] if EXECUTOR_OF[family] == "slurm" else _local_done(runs)


# ------------------------------------------------------------------------------------ the overlay


def test_overlay_changes_only_ids_paths_and_sizes():
    """Every leaf the overlay sets already exists in both paper configs (no new structure), except
    the size knobs a paper config may leave at their defaults (prompt ``limit``, generation
    ``resolution``, the grid's prompt indices) and the evaluators' weight-path options."""
    overlay = yaml.safe_load((REPO / "config/tiny_real.yaml").read_text())
    allowed_new = {("evaluation", "prompt_sets", s, "limit") for s in ("hpdv2", "parti", "pickapic_test")}
    allowed_new |= {("evaluation", "generation", "resolution"), ("report", "grid_indices")}
    allowed_new |= {("evaluation", "evaluator_options", e, k) for e, opts in overlay["evaluation"]["evaluator_options"].items()
                    for k in opts}  # evaluator weights paths: options of the same four evaluators

    def leaves(d, prefix=()):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                yield from leaves(v, (*prefix, k))
            else:
                yield (*prefix, k)

    papers = experiment_families("config/paper.yaml")
    for paper, base in papers.items():
        for path in leaves(overlay):
            node, ok = base, True
            for k in path:
                if isinstance(node, dict) and k in node:
                    node = node[k]
                else:
                    ok = False
                    break
            dropped_again = path == ("ablations",) and not base.get("ablations")  # tiny_real_sdxl.yaml: null
            assert ok or path in allowed_new or dropped_again, f"{paper}: the overlay adds {'.'.join(path)}"
    # the same runs, evaluators, prompt sets and report models as the paper configs
    for family in OVERLAYS:
        paper, merged = papers[family], _merged(family)
        for key in ("runs", "evaluation"):
            assert set(merged[key]) == set(paper[key]), (family, key)
        assert set(merged["runs"]) == set(paper["runs"])
        assert merged["evaluation"]["evaluators"] == paper["evaluation"]["evaluators"]
        assert merged["evaluation"]["models"] == paper["evaluation"]["models"]
        assert set(merged["evaluation"]["prompt_sets"]) == set(paper["evaluation"]["prompt_sets"])
        assert merged["report"]["baselines"] == paper["report"]["baselines"]
        assert merged["world"] == "real"
        assert bool(paper.get("ablations")) == bool(merged.get("ablations")), family
        assert merged["results"] == f"results/tiny_real/{family}"
        assert {k: v for k, v in merged["evaluation"]["evaluator_options"]["hps"].items() if k != "checkpoint"
                and k != "model_name"} == paper["evaluation"]["evaluator_options"]["hps"]  # v2.0, amp


def test_tiny_ablation_sheet_is_rows_of_the_paper_sheet():
    """The overlay's smaller sheet: verbatim rows of the paper sheet, every sweep with two values."""
    def rows(path):
        df = pd.read_csv(REPO / path, sep="\t", dtype=str, keep_default_na=False, comment="#")
        return df, {tuple(r) for r in df.itertuples(index=False)}

    paper, paper_rows = rows("config/ablations_paper.tsv")
    tiny, tiny_rows = rows(yaml.safe_load((REPO / "config/tiny_real.yaml").read_text())["ablations"])
    assert list(tiny.columns) == list(paper.columns)
    assert tiny_rows <= paper_rows
    assert set(tiny["sweep"]) == set(paper["sweep"])
    assert tiny.groupby("sweep")["value"].nunique().eq(2).all()


# ------------------------------------------------------------------------------------ the fixtures


def test_fixture_models_load_as_the_real_classes(fixtures):
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline

    root, _ = fixtures
    sd = StableDiffusionPipeline.from_pretrained(root / "models" / "sd15", safety_checker=None)
    assert type(sd.text_encoder).__name__ == "CLIPTextModel"
    assert sd.vae_scale_factor == 8 and sd.vae.config.scaling_factor == pytest.approx(0.18215)
    assert sd.tokenizer.model_max_length == 77 and len(sd.tokenizer) == 49408
    assert sd.tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]  # the real CLIP BPE ids
    xl = StableDiffusionXLPipeline.from_pretrained(root / "models" / "sdxl")
    assert type(xl.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert xl.unet.config.addition_embed_type == "text_time"
    assert xl.tokenizer_2.pad_token == "!" and xl.vae.config.scaling_factor == pytest.approx(0.13025)
    fix = AutoencoderKL.from_pretrained(root / "models" / "sdxl-vae-fp16-fix")  # a bare VAE folder
    assert fix.config.block_out_channels == xl.vae.config.block_out_channels
    assert not np.allclose(fix.decoder.conv_out.weight.detach(), xl.vae.decoder.conv_out.weight.detach())


def test_fixture_pickapic_mirror_has_the_exact_schema(fixtures):
    import pyarrow.parquet as pq

    from inpo.data.pickapic import PICKAPIC_V2_SCHEMA, check_schema, resolve_shards
    from inpo.data.prompts import load_prompt_set

    root, manifest = fixtures
    mirror = root / "pickapic_v2"
    train = resolve_shards(mirror, "train")
    # named as the hub files are: data/train-00000-of-00645-b66ac786bf6fb553.parquet
    assert [re.sub(r"-[0-9a-f]{16}\.parquet$", "", p.name) for p in train] == [f"train-{k:05d}-of-00003" for k in range(3)]
    check_schema(mirror, split="train")
    for f in train:
        md = pq.read_metadata(f)
        assert pq.read_schema(f).remove_metadata().equals(PICKAPIC_V2_SCHEMA)
        assert md.num_row_groups == 3 and md.num_rows == 16
    labels = pd.concat([pq.read_table(f, columns=["label_0", "label_1"]).to_pandas() for f in train])
    assert (labels["label_0"] == 0.5).sum() == 4 and (labels["label_0"] + labels["label_1"] == 1).all()
    assert len(manifest["pickapic"]["splits"]["train"]["corrupt"]) == 3
    test = load_prompt_set("pickapic_test", mirror)  # the test_unique split, one row per caption
    assert len(test) == 6 and test["prompt"].is_unique


def test_fixture_evaluators_load_through_the_overlay_options(fixtures, monkeypatch):
    """Each real evaluator builds from the overlay's options alone (as the score jobs do) and scores."""
    import torch
    from PIL import Image

    from inpo.evaluators import build
    from inpo.evaluators.aesthetic import WEIGHTS_SHA256

    root, _ = fixtures
    work = root.parent / "eval_cwd"
    (work / "resources").mkdir(parents=True, exist_ok=True)
    if not (work / "resources" / "tiny_real").exists():
        (work / "resources" / "tiny_real").symlink_to(root)
    monkeypatch.chdir(work)
    options = yaml.safe_load((REPO / "config/tiny_real.yaml").read_text())["evaluation"]["evaluator_options"]
    assert set(options) == REAL_EVALUATORS
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    prompts = ["a red fox at sunset", "an astronaut", "a bowl of ramen"]
    for name, opts in options.items():
        ev = build(name, **opts)
        s = np.asarray(ev.score(images, prompts))
        assert s.shape == (3,) and np.isfinite(s).all() and np.ptp(s) > 0, name
    ckpt = torch.load(root / "evaluators" / "hps" / "HPS_v2_compressed.pt", weights_only=True)
    assert list(ckpt) == ["state_dict"]
    mlp = (root / "evaluators" / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth").read_bytes()
    assert hashlib.sha256(mlp).hexdigest() == WEIGHTS_SHA256  # the real weights, not a stand-in


# ------------------------------------------------------------------------------------ the DAGs


def _check_run(work: Path, family: str) -> dict:
    """Assertions shared by both families; returns the merged config."""
    from inpo.evaluators.hps import normalize_hps_version

    cfg = _merged(family)
    work = work / cfg["results"]  # results/tiny_real/<family>
    runs = set(cfg["runs"])
    sheet = cfg.get("ablations")
    ablation_runs = set() if not sheet else set(pd.read_csv(REPO / sheet, sep="\t", comment="#")["run"])
    models = {"base"} | runs | ablation_runs
    for name in workflow_notebooks(bool(sheet)):  # no sheet (SDXL): no Table 2
        html = work / "notebooks" / f"{name}.html"
        assert html.stat().st_size > 10_000, html
        nb = json.loads((work / "notebooks" / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (name, errors[:1])

    scores = pd.read_parquet(work / "scores" / "all.parquet")
    assert set(scores["model"]) == models
    assert set(scores["evaluator"]) == REAL_EVALUATORS
    assert set(scores["prompt_set"]) == {"hpdv2", "parti", "pickapic_test"}
    assert scores.groupby(["model", "prompt_set", "evaluator"]).size().eq(4).all()  # limit: 4
    assert np.isfinite(scores["score"]).all()
    versions = scores.groupby("evaluator")["evaluator_version"].unique()
    hps_version = cfg["evaluation"]["evaluator_options"]["hps"]["hps_version"]
    assert list(versions["hps"]) == ["hps" + normalize_hps_version(hps_version)]  # the paper config's
    prompts = scores[(scores.model == "base") & (scores.evaluator == "clip") & (scores.prompt_set == "parti")]
    assert list(prompts.sort_values("index")["prompt"]) == ["bond", "element", "molecule", "life"]  # the real file

    # Table 1: InPO's win-rate over every baseline, per prompt set and evaluator, = the score files',
    # with the paper's figure beside ours on HPDv2 and Parti
    t1 = pd.read_csv(work / "tables" / "table1_winrates.csv")
    assert set(t1["baseline"]) == set(cfg["report"]["baselines"]) and set(t1["model"]) == {"inpo"}
    assert len(t1) == len(cfg["report"]["baselines"]) * 3 * 4  # baselines x prompt sets x evaluators
    s = scores.set_index(["model", "prompt_set", "evaluator", "index"])["score"].sort_index()
    for r in t1.itertuples(index=False):
        a = s.loc[("inpo", r.prompt_set, r.evaluator)]
        b = s.loc[(r.baseline, r.prompt_set, r.evaluator)]
        want = 100 * float(np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)).mean())
        assert r.win_rate_pct == pytest.approx(want), r
        assert r.n == 4
    paper_sets = t1[t1["prompt_set"].isin(["hpdv2", "parti"])]
    assert paper_sets["paper_pct"].notna().all(), paper_sets
    assert t1.loc[t1["prompt_set"] == "pickapic_test", "paper_pct"].isna().all()

    # supplementary table: median and mean of every model on every prompt set, = the score files'
    supp = pd.read_csv(work / "tables" / "supp_median_mean.csv")
    assert set(supp["model"]) == models and len(supp) == len(models) * 3 * 4
    for r in supp.itertuples(index=False):
        v = s.loc[(r.model, r.prompt_set, r.evaluator)]
        assert r.median == pytest.approx(float(np.median(v))) and r.mean == pytest.approx(float(v.mean())), r
    assert supp.loc[(supp["prompt_set"] == "hpdv2") & (supp["model"] == "inpo"), "paper_median"].notna().all()

    # every trained run logged its updates
    for run in runs | (ablation_runs - {"base"}):  # the sheet's Base row is the base model, not trained
        log = pd.read_csv(work / "logs" / "train" / f"{run}.csv")
        assert list(log["update"]) == [1, 2], run
    manifest = json.loads((work / "data" / "pairs_manifest.json").read_text())
    assert manifest["rows_in"] == 48 and manifest["dropped"]["tie"] == 4
    assert manifest["dropped"]["undecodable_image"] == 3 and manifest["pairs_kept"] == 41
    return cfg


@pytest.mark.slow
@pytest.mark.slurm
def test_sd15_paper_dag(paper_runs):
    work = _full_run(paper_runs, "sd15")
    cfg = _check_run(work, "sd15")
    # a finished DAG has nothing left to do
    assert planned_jobs(run_snakemake(work, "-n", "sd15_all", "--configfile", EXPERIMENT).stdout) == []
    work = work / cfg["results"]
    sheet = pd.read_csv(REPO / cfg["ablations"], sep="\t", comment="#", dtype=str, keep_default_na=False)
    # Table 2: a row per ablation run and evaluator, its median HPDv2 score = the score files', the
    # training GPU-hours measured, the paper's figure beside ours where the sheet names its row
    t2 = pd.read_csv(work / "tables" / "table2_ablations.csv")
    assert set(t2["run"]) == set(sheet["run"])
    assert len(t2) == len(sheet) * 4
    scores = pd.read_parquet(work / "scores" / "all.parquet")
    hp = scores[scores["prompt_set"] == "hpdv2"].groupby(["model", "evaluator"])["score"].median()
    for r in t2.itertuples(index=False):
        assert r.ours == pytest.approx(hp[(r.run, r.evaluator)]), r
        assert r.gpu_hours > 0 if r.run != "base" else np.isnan(r.gpu_hours), r  # the base is not trained here
    with_row = set(sheet.loc[sheet["paper_row"] != "", "run"])
    assert t2.loc[t2["run"].isin(with_row) & t2["evaluator"].isin(["pickscore", "hps"]), "paper"].notna().all()
    fb = json.loads((work / "data" / "pairs_pickscore.json").read_text())
    assert fb["pairs_in"] == 41 and fb["evaluator"]["name"] == "pickscore"
    run_cfg = yaml.safe_load((work / "configs" / "inpo-pickscore.yaml").read_text())
    assert run_cfg["data"]["index"] == "results/tiny_real/sd15/data/pairs_pickscore.parquet"


def _check_sdxl(work: Path, fixtures) -> None:
    """SDXL: the trained models carry the separate fp16-fix VAE (model.vae), not the base's own."""
    from safetensors.torch import load_file

    cfg = _check_run(work, "sdxl")
    work = work / cfg["results"]
    # paper 5.5: the grids of every model and task, on ControlNets and a depth model built from the tiny base
    html = (work / "notebooks" / "conditional_grids.html").read_text()
    assert html.count('src="data:image/png;base64') == len(cfg["conditional"]["tasks"])
    for m in cfg["conditional"]["models"]:
        for t in cfg["conditional"]["tasks"]:
            assert len(list((work / "conditional" / "images" / m / t).glob("*.png"))) == 2, (m, t)
    fix = load_file(fixtures[0] / "models" / "sdxl-vae-fp16-fix" / "diffusion_pytorch_model.safetensors")
    for run in ("sft", "inpo", "dpo"):
        got = load_file(work / "models" / run / "vae" / "diffusion_pytorch_model.safetensors")
        assert all(np.array_equal(got[k].numpy(), fix[k].numpy()) for k in fix), run


@pytest.mark.slow
@pytest.mark.slurm
def test_sdxl_paper_dag(paper_runs, fixtures):
    work = _full_run(paper_runs, "sdxl")
    _check_sdxl(work, fixtures)
    assert planned_jobs(run_snakemake(work, "-n", "sdxl_all", "--configfile", EXPERIMENT).stdout) == []


@pytest.mark.slow
@pytest.mark.slurm
def test_every_job_ran_on_slurm_and_equals_the_local_run(paper_runs):
    """Every non-local job of the SLURM run ran inside a COMPLETED SLURM job (grouped or not), every
    `localrule: True` job ran inside snakemake, and each family's slice (scores, training losses)
    equals its whole run on the other executor (seeded, CPU-deterministic)."""
    work, log = _slurm_done(paper_runs)
    # a dry run prints no local/remote decision (snakemake 9 leaves it to the executor), so the plan's
    # split comes from the rules that say `localrule: True`; the run's own log shows it was honoured
    local = local_rules(work)
    families = tuple(experiment_families(EXPERIMENT))

    def bare(rule: str) -> str:
        return next((rule.removeprefix(f"{f}_") for f in families if rule.startswith(f"{f}_")), rule)

    planned = Counter(rule for rule, _ in paper_runs["planned"])
    remote = Counter({r: n for r, n in planned.items() if bare(r) not in local})
    assert {"sd15_train", "sd15_generate", "sd15_score", "sdxl_train", "sdxl_generate", "sdxl_score",
            "sdxl_conditional_generate"} <= remote.keys()
    assert {"sdxl_run_config", "sdxl_tables", "sdxl_notebook"} <= (planned - remote).keys()
    ran_here = Counter(re.findall(r"^localrule (\w+):$", log, re.M))
    assert ran_here == planned - remote, (ran_here, planned - remote)
    # what ran inside the SLURM jobs: each job log holds the job step's snakemake output, where the
    # step's own (local) executor prints every job it runs as `localrule X:`
    subs = slurm_submitted(log)
    states = slurm_states(jid for jid, _ in subs)
    assert len(states) == len(subs) and set(states.values()) == {"COMPLETED"}, states
    ran: Counter = Counter()
    for jid, path in subs:
        assert Path(path).name == f"{jid}.log" and Path(path).is_file(), path
        jobs = re.findall(r"^localrule (\w+):$", Path(path).read_text(), re.M)
        assert jobs, path
        ran.update(jobs)
    assert ran == remote, (ran - remote, remote - ran)
    groups = [p for _, p in subs if "/group_" in p]
    print(f"\n[tiny-real] {sum(remote.values())} non-local jobs in {len(subs)} SLURM jobs "
          f"({len(groups)} group jobs); {sum(ran_here.values())} local jobs")
    assert groups, "the CI profile's groups did not apply"

    # each family's slice equals its whole run on the other executor
    lwork = _local_done(paper_runs)
    for family, executor in EXECUTOR_OF.items():
        res = _merged(family)["results"]
        full, part = (work, lwork) if executor == "slurm" else (lwork, work)
        files = sorted((part / res / "scores").glob(f"*/{SLICE_PROMPT_SET}/*.parquet"))
        assert len(files) == len(SLICE_MODELS) * len(REAL_EVALUATORS), files
        got = pd.concat([pd.read_parquet(f) for f in files]).sort_values(SCORE_KEYS).reset_index(drop=True)
        ref = pd.read_parquet(full / res / "scores" / "all.parquet")
        ref = ref.merge(got[SCORE_KEYS], on=SCORE_KEYS).sort_values(SCORE_KEYS).reset_index(drop=True)
        assert len(ref) == len(got) > 0, family
        pd.testing.assert_frame_equal(got.drop(columns="score"), ref.drop(columns="score"))
        diff = float((got["score"] - ref["score"]).abs().max())
        print(f"[tiny-real] {family} slice ({executor} ran the whole family): {len(got)} scores, "
              f"max |SLURM - local| = {diff:.3g}")
        assert diff <= 1e-6, family
        logs = sorted((part / res / "logs" / "train").glob("*.csv"))
        assert logs, family
        for f in logs:
            a, b = pd.read_csv(f), pd.read_csv(full / res / "logs" / "train" / f.name)
            pd.testing.assert_series_equal(a["loss"], b["loss"], atol=1e-6, rtol=0)
