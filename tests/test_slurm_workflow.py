"""The workflow itself on a real SLURM cluster (the single-node one from ``.ci/slurm-up``): kill and
resume. The toy "base" pretraining, made longer by an overlay config, is killed by ``scancel``
after its first checkpoints; the profile's ``retries`` resubmits it, the new SLURM job resumes from
the latest checkpoint, and the result (log rows, UNet weights) equals an uninterrupted local run of
the same config.

A whole DAG through the SLURM executor (every non-local job a COMPLETED SLURM job, numbers equal to
a local run's) is tests/test_tiny_real.py's: the paper DAG, both families, on tiny real models.

The SLURM run and the local reference run are started together (module fixture) so that their
waiting times overlap.

    .ci/slurm-up && pytest -m slurm tests/test_slurm_workflow.py

Skipped (with the reason) where ``sinfo`` does not answer. See docs/slurm.md.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from workflow_utils import (
    SLURM_CI_PROFILE,
    SMOKE,
    Background,
    cancel_slurm_jobs_of,
    copy_workflow,
    run_snakemake,
    slurm_states,
    slurm_submitted,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# the toy "base" pretraining long enough to catch between checkpoints
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
RESUME_TIMEOUT = 900


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


def _unet(work: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted((work / "results" / "models" / "base" / "unet").glob("*.safetensors"))
    assert files, f"no UNet weights in {work}"
    out = {}
    for f in files:
        out.update(load_file(f))
    return out


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Start the SLURM run and (in a thread) the local reference."""
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("slurm_wf")
    dirs = {k: copy_workflow(root / k) for k in ("slurm_resume", "local_resume")}
    for k in ("slurm_resume", "local_resume"):
        (dirs[k] / "config" / "resume.yaml").write_text(RESUME_OVERLAY)

    resume = Background(dirs["slurm_resume"], *SLURM_CI_PROFILE, BASE_MODEL, *RESUME_CONFIG, timeout=RESUME_TIMEOUT)
    killed: dict = {}
    killer = threading.Thread(target=_killer, args=(dirs["slurm_resume"], resume, killed), daemon=True)
    killer.start()
    local: dict = {}

    def run_local():
        try:
            t = time.monotonic()
            run_snakemake(dirs["local_resume"], "--cores", "2", BASE_MODEL, *RESUME_CONFIG, timeout=RESUME_TIMEOUT)
            local["resume_wall"] = time.monotonic() - t
        except BaseException as e:  # reported by the test that needs it
            local["error"] = e

    th = threading.Thread(target=run_local, daemon=True)
    th.start()
    try:
        yield dict(dirs=dirs, resume=resume, killer=killer, killed=killed, local=local, local_thread=th)
    finally:
        cancel_slurm_jobs_of(dirs["slurm_resume"])
        resume.stop()
        th.join(timeout=60)
        print(f"\n[slurm workflow] fixture wall {time.monotonic() - t0:.0f} s")


def _local_done(runs, key: str) -> None:
    runs["local_thread"].join(timeout=RESUME_TIMEOUT)
    if "error" in runs["local"]:
        raise runs["local"]["error"]
    assert key in runs["local"], "local reference run did not finish"


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
    train_jobs = [jid for jid, path in slurm_submitted(log) if "/rule_train/" in path]
    assert len(train_jobs) == 2 and train_jobs[0] == first, train_jobs
    assert slurm_states(train_jobs) == {first: "CANCELLED", train_jobs[1]: "COMPLETED"}
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
