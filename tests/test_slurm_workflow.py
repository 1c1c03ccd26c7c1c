"""The workflow itself on a real SLURM cluster (the single-node one from ``.ci/slurm-up``).

1. The toy DAG at smoke size (``all``) through Snakemake's SLURM executor plugin
   (``--profile profiles/slurm-ci``): every non-local job (training, generation, scoring, ...)
   runs as a SLURM batch job, and the scores equal those of a local run (``--cores 2``) of the
   same DAG (the local run covers a subset of the models to save time).
2. Kill and resume: the toy "base" pretraining, made longer by an overlay config, is killed by
   ``scancel`` after its first checkpoints; the profile's ``retries`` resubmits it, the new SLURM
   job resumes from the latest checkpoint, and the result (log rows, UNet weights) equals an
   uninterrupted local run of the same config.

The SLURM runs and the local reference runs are started together (module fixture) so that their
waiting times overlap; each test waits only for the runs it checks.

    .ci/slurm-up && pytest -m slurm tests/test_slurm_workflow.py

Skipped (with the reason) where ``sinfo`` does not answer. See docs/slurm.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from workflow_utils import SMOKE, copy_workflow, run_snakemake, snakemake_bin

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = ["--profile", "profiles/slurm-ci"]
# rules that must run as SLURM jobs in the toy DAG (rules with `localrule: True` run in snakemake)
SLURM_RULES = {"toy_init", "train", "toy_pairs", "filter_pairs", "generate", "score"}
# the local reference run of test 1: these models' scores (every evaluator) - base, and InPO on
# top of SFT on top of base (toy_init, toy_pairs, filter_pairs, 3 trainings, 2 generations)
LOCAL_MODELS = ["base", "inpo"]
SCORE_KEYS = ["model", "prompt_set", "evaluator", "index"]

# test 2: the toy "base" pretraining long enough to catch between checkpoints
RESUME_UPDATES, RESUME_EVERY = 60, 10
RESUME_OVERLAY = f"""\
runs:
  base:
    init: toy_init
    overrides: {{data.toy_images: 64, max_updates: {RESUME_UPDATES}, checkpoint_every: {RESUME_EVERY},
                micro_batch_size: 8}}
"""
RESUME_CONFIG = [*SMOKE, "config/resume.yaml"]
BASE_MODEL = "results/models/base/model_index.json"

DAG_TIMEOUT = 1500  # s, the SLURM run of the whole toy DAG (60 SLURM jobs: 11.6 min on 2 busy cores)
RESUME_TIMEOUT = 900


def _env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class Background:
    """A snakemake run in the background, output in ``<work>/snakemake.out``.

    Like ``workflow_utils.run_snakemake``: ``timeout -s INT`` (SIGINT makes snakemake ``scancel``
    its SLURM jobs; on SIGTERM it would wait for them) with a KILL fallback."""

    def __init__(self, work: Path, *args: str, timeout: int):
        self.work, self.args, self.t0 = work, args, time.monotonic()
        self.out = work / "snakemake.out"
        cmd = ["timeout", "-s", "INT", "-k", "30", str(timeout), snakemake_bin(), *args]
        self._fh = open(self.out, "w")
        self.proc = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=self._fh, stderr=subprocess.STDOUT)
        self.wall: float | None = None  # measured when the run ends, not when a test waits for it
        self._waiter = threading.Thread(target=self._time, daemon=True)
        self._waiter.start()

    def _time(self) -> None:
        self.proc.wait()
        self.wall = time.monotonic() - self.t0

    def wait(self) -> tuple[int, str]:
        rc = self.proc.wait()
        self._waiter.join()
        self._fh.close()
        return rc, self.out.read_text()


def _node_memory_mb() -> int:
    out = subprocess.run(["scontrol", "show", "node", "-o"], capture_output=True, text=True).stdout
    mems = [int(m) for m in re.findall(r"RealMemory=(\d+)", out)]
    return max(mems, default=0)


def _memory_overrides() -> list[str]:
    """--set-resources that shrink the config's memory requests to what the CI node has.

    The config asks 4000 MB for training / generation / scoring jobs (default 2000); a node
    with less RealMemory would leave those jobs PENDING forever. Empty when the node admits them."""
    mem = _node_memory_mb()
    if mem >= 4000 or mem == 0:
        return []
    per_job = max(mem // 2, 200)
    rules = ["toy_init", "train", "toy_pairs", "generate", "score", "filter_pairs", "ai_feedback"]
    return ["--set-resources", *[f"{r}:mem_mb={per_job}" for r in rules]]


def _local_rules(work: Path) -> set[str]:
    """The workflow's named rules that say `localrule: True` (they run inside snakemake)."""
    local = set()
    for f in [work / "workflow" / "Snakefile", *sorted((work / "workflow" / "rules").glob("*.smk"))]:
        for block in re.split(r"^[ \t]*rule[ \t]+", f.read_text(), flags=re.M)[1:]:
            m = re.match(r"(\w+):", block)
            if m and re.search(r"^[ \t]+localrule:[ \t]*True", block.split("\n\n\n")[0], re.M):
                local.add(m.group(1))
    assert local, "no `localrule: True` in the workflow"
    return local


def _evaluators(work: Path) -> list[str]:
    """Evaluators of the smoke config (a list: the last config file that sets it wins)."""
    import yaml

    ev: list = []
    for f in SMOKE[1:]:
        ev = (yaml.safe_load((work / f).read_text()).get("evaluation") or {}).get("evaluators") or ev
    return list(ev)


def _submitted(log: str) -> list[tuple[str, str]]:
    """(SLURM job id, plugin log path) of every submission, from snakemake's output."""
    return re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]+)\)", log)


def _states(jobids) -> dict[str, str]:
    """SLURM states from squeue (finished jobs stay listed for MinJobAge seconds)."""
    jobids = list(jobids)
    if not jobids:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", ",".join(jobids), "-o", "%i|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|") for line in out.split())


def _running_job(work: Path, comment: str) -> str | None:
    """Id of the RUNNING SLURM job with this comment, submitted from ``work``.

    The plugin names every job of one snakemake run by the run's uuid (``--job-name``) and puts
    ``rule_<rule>_wildcards_<values>`` in ``--comment``."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        jid, com, wd = line.split("|", 2)
        if com == comment and Path(wd) == work:
            return jid
    return None


def _checkpoints(work: Path) -> list[int]:
    d = work / "results" / "state" / "base"
    return sorted(
        int(p.name.split("-")[1]) for p in d.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
    )


def _killer(work: Path, run: Background, found: dict) -> None:
    """Wait for checkpoint >= RESUME_EVERY of the SLURM training job, then scancel the job."""
    deadline = time.monotonic() + RESUME_TIMEOUT
    while time.monotonic() < deadline and run.proc.poll() is None:
        ckpts = _checkpoints(work)
        if ckpts and ckpts[-1] >= RESUME_EVERY:
            jid = _running_job(work, "rule_train_wildcards_base")
            if jid is None:
                found["error"] = f"checkpoints {ckpts} but no RUNNING SLURM job of rule train"
                return
            subprocess.run(["scancel", jid], check=True)
            found.update(jobid=jid, checkpoints=ckpts, t=time.monotonic() - run.t0)
            return
        time.sleep(0.1)
    found["error"] = "no checkpoint before snakemake ended / timed out"


def _scores(path_or_paths) -> pd.DataFrame:
    paths = path_or_paths if isinstance(path_or_paths, list) else [path_or_paths]
    df = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return df.sort_values(SCORE_KEYS).reset_index(drop=True)


def _unet(work: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted((work / "results" / "models" / "base" / "unet").glob("*.safetensors"))
    assert files, f"no UNet weights in {work}"
    out = {}
    for f in files:
        out.update(load_file(f))
    return out


def _cancel_left(*works: Path) -> None:
    out = subprocess.run(
        ["squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING", "-o", "%i %Z"], capture_output=True, text=True
    ).stdout
    left = [line.split()[0] for line in out.splitlines() if any(str(w) in line for w in works)]
    if left:
        subprocess.run(["scancel", *left])


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Start the two SLURM runs and (in one thread, one after the other) the local references."""
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("slurm_wf")
    mem = _memory_overrides()
    dirs = {k: copy_workflow(root / k) for k in ("slurm_dag", "local_dag", "slurm_resume", "local_resume")}
    for k in ("slurm_resume", "local_resume"):
        (dirs[k] / "config" / "resume.yaml").write_text(RESUME_OVERLAY)

    resume = Background(
        dirs["slurm_resume"], *PROFILE, *mem, BASE_MODEL, *RESUME_CONFIG, timeout=RESUME_TIMEOUT
    )
    killed: dict = {}
    killer = threading.Thread(target=_killer, args=(dirs["slurm_resume"], resume, killed), daemon=True)
    killer.start()
    dag = Background(dirs["slurm_dag"], *PROFILE, *mem, "all", *SMOKE, timeout=DAG_TIMEOUT)

    local: dict = {}
    evaluators = _evaluators(dirs["local_dag"])
    local_targets = [f"results/scores/{m}/toy/{e}.parquet" for m in LOCAL_MODELS for e in evaluators]

    def run_local():
        try:
            t = time.monotonic()
            run_snakemake(dirs["local_dag"], "--cores", "2", *local_targets, *SMOKE, timeout=DAG_TIMEOUT)
            local["dag_wall"] = time.monotonic() - t
            # same toy_init (same config) as the local DAG: reuse it rather than train the VAE again
            shutil.copytree(
                dirs["local_dag"] / "results" / "models" / "toy_init",
                dirs["local_resume"] / "results" / "models" / "toy_init",
            )
            t = time.monotonic()
            run_snakemake(
                dirs["local_resume"], "--cores", "2", BASE_MODEL, *RESUME_CONFIG, timeout=RESUME_TIMEOUT
            )
            local["resume_wall"] = time.monotonic() - t
        except BaseException as e:  # reported by the test that needs it
            local["error"] = e

    th = threading.Thread(target=run_local, daemon=True)
    th.start()
    try:
        yield dict(
            dirs=dirs,
            dag=dag,
            resume=resume,
            killer=killer,
            killed=killed,
            local=local,
            local_thread=th,
            mem=mem,
            evaluators=evaluators,
        )
    finally:
        _cancel_left(dirs["slurm_dag"], dirs["slurm_resume"])
        for bg in (dag, resume):
            if bg.proc.poll() is None:
                bg.proc.send_signal(signal.SIGINT)
                bg.wait()
        th.join(timeout=60)
        print(f"\n[slurm workflow] fixture wall {time.monotonic() - t0:.0f} s")


def _local_done(runs, key: str) -> None:
    runs["local_thread"].join(timeout=DAG_TIMEOUT + RESUME_TIMEOUT)
    if "error" in runs["local"]:
        raise runs["local"]["error"]
    assert key in runs["local"], "local reference run did not finish"


def test_toy_dag_on_slurm_equals_local(runs):
    work, dag = runs["dirs"]["slurm_dag"], runs["dag"]
    rc, log = dag.wait()
    print(f"\n[slurm workflow] SLURM toy DAG (all, smoke): {dag.wall:.0f} s")
    assert rc == 0, log[-6000:]
    assert (work / "results" / "notebooks" / "table1_winrates.html").is_file()

    # every non-local job was a SLURM batch job, and all of them COMPLETED
    planned = re.findall(r"^(local)?rule (\w+):$", log, re.M)
    local_rules = _local_rules(work)
    remote: dict[str, int] = {}
    for is_local, rule in planned:
        assert bool(is_local) == (rule in local_rules), (rule, is_local)
        if not is_local:
            remote[rule] = remote.get(rule, 0) + 1
    assert SLURM_RULES <= remote.keys(), remote
    subs = _submitted(log)
    logs = work / ".snakemake" / "slurm_logs"
    per_rule: dict[str, int] = {}
    for jid, path in subs:
        rel = Path(path).relative_to(logs)  # rule_<rule>/<wildcard values>/<jobid>.log
        assert rel.name == f"{jid}.log" and Path(path).is_file(), path
        rule = rel.parts[0].removeprefix("rule_")
        per_rule[rule] = per_rule.get(rule, 0) + 1
    assert per_rule == remote, (per_rule, remote)
    states = _states(jid for jid, _ in subs)
    assert len(states) == len(subs) and set(states.values()) == {"COMPLETED"}, states
    assert {p.name.removeprefix("rule_") for p in logs.iterdir()} == remote.keys()
    print(
        f"[slurm workflow] {len(subs)} SLURM jobs: {dict(sorted(per_rule.items()))}; "
        f"local rules: {sorted({r for loc, r in planned if loc})}"
    )
    # each job's plugin log is the job step's snakemake output for that rule
    train_log = next((logs / "rule_train" / "inpo").glob("*.log")).read_text()
    assert "rule train:" in train_log and "wildcards: run=inpo" in train_log

    # the scores equal a local run's (seeded, CPU-deterministic; 1 thread per job on both sides)
    _local_done(runs, "dag_wall")
    evaluators = runs["evaluators"]
    print(
        f"[slurm workflow] local reference ({', '.join(LOCAL_MODELS)} x {len(evaluators)} evaluators, "
        f"--cores 2): {runs['local']['dag_wall']:.0f} s"
    )
    slurm = _scores(work / "results" / "scores" / "all.parquet")
    assert set(LOCAL_MODELS) < set(slurm["model"]) and set(slurm["evaluator"]) == set(evaluators)
    assert slurm.groupby(["model", "evaluator"]).size().eq(12).all()
    local_dir = runs["dirs"]["local_dag"] / "results" / "scores"
    local = _scores([local_dir / m / "toy" / f"{e}.parquet" for m in LOCAL_MODELS for e in evaluators])
    sub = slurm[slurm["model"].isin(LOCAL_MODELS)].reset_index(drop=True)
    assert len(sub) == len(local) == len(LOCAL_MODELS) * len(evaluators) * 12
    pd.testing.assert_frame_equal(sub.drop(columns="score"), local.drop(columns="score"))
    diff = (sub["score"] - local["score"]).abs().max()
    print(f"[slurm workflow] max |score(SLURM) - score(local)| = {diff:.3g}")
    assert diff <= 1e-6, sub.assign(local=local["score"]).loc[(sub["score"] - local["score"]).abs() > 1e-6]
    # the trained models behind them, too (train logs: loss per update)
    for run in LOCAL_MODELS:
        a = pd.read_csv(work / "results" / "logs" / "train" / f"{run}.csv")
        b = pd.read_csv(runs["dirs"]["local_dag"] / "results" / "logs" / "train" / f"{run}.csv")
        pd.testing.assert_series_equal(a["loss"], b["loss"], atol=1e-6, rtol=0)


def test_scancelled_training_resumes_from_checkpoint(runs):
    work, resume = runs["dirs"]["slurm_resume"], runs["resume"]
    rc, log = resume.wait()
    runs["killer"].join(timeout=30)
    killed = runs["killed"]
    print(
        f"\n[slurm workflow] SLURM kill + resume of {RESUME_UPDATES}-update training: {resume.wall:.0f} s "
        f"(scancel at {killed.get('t', float('nan')):.0f} s, checkpoints then {killed.get('checkpoints')})"
    )
    assert "error" not in killed, f"{killed['error']}\n{log[-6000:]}"
    first = killed["jobid"]
    assert rc == 0, log[-6000:]

    # the plugin saw the cancellation and snakemake resubmitted the job (profile: retries: 1)
    assert f"SLURM-job '{first}' failed, SLURM status is: 'CANCELLED'" in log, log[-6000:]
    assert "Trying to restart job" in log
    train_jobs = [jid for jid, path in _submitted(log) if "/rule_train/" in path]
    assert len(train_jobs) == 2 and train_jobs[0] == first, train_jobs
    assert _states(train_jobs) == {first: "CANCELLED", train_jobs[1]: "COMPLETED"}
    slurm_logs = work / ".snakemake" / "slurm_logs" / "rule_train" / "base"
    assert {p.name for p in slurm_logs.glob("*.log")} == {f"{j}.log" for j in train_jobs}
    assert "--attempt 2" in (slurm_logs / f"{train_jobs[1]}.log").read_text()

    # the second attempt resumed from the latest checkpoint the first one wrote
    train_log = (work / "results" / "logs" / "train" / "base.log").read_text()
    m = re.search(r"\[inpo\] resuming \S+ from (\S+) \(update (\d+)\)", train_log)
    assert m, train_log[-3000:]
    resumed_at = int(m.group(2))
    assert Path(m.group(1)).name == f"checkpoint-{resumed_at}"
    assert resumed_at >= killed["checkpoints"][-1] >= RESUME_EVERY and resumed_at % RESUME_EVERY == 0
    assert resumed_at < RESUME_UPDATES, "the first attempt finished before it was cancelled"
    print(f"[slurm workflow] resumed from update {resumed_at}")
    rows = pd.read_csv(work / "results" / "logs" / "train" / "base.csv")
    assert rows["update"].tolist() == list(range(1, RESUME_UPDATES + 1))

    # ... and ends where an uninterrupted run ends
    _local_done(runs, "resume_wall")
    print(f"[slurm workflow] local uninterrupted reference: {runs['local']['resume_wall']:.0f} s")
    ref_dir = runs["dirs"]["local_resume"]
    ref_rows = pd.read_csv(ref_dir / "results" / "logs" / "train" / "base.csv")
    pd.testing.assert_series_equal(rows["loss"], ref_rows["loss"], atol=0, rtol=0)
    got, ref = _unet(work), _unet(ref_dir)
    assert got.keys() == ref.keys()
    max_diff = max(float((got[k].double() - ref[k].double()).abs().max()) for k in ref)
    print(f"[slurm workflow] max |UNet(resumed on SLURM) - UNet(uninterrupted local)| = {max_diff:.3g}")
    assert max_diff == 0.0
