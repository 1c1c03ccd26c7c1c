"""Snakemake's SLURM executor on a real cluster (the single-node one from ``.ci/slurm-up``).

Runs ``tests/slurm/Snakefile`` with ``--profile profiles/slurm-ci`` in a scratch directory and
checks that every job ran as a SLURM batch job (job ids in the outputs, in the plugin's log
paths ``.snakemake/slurm_logs/`` and in ``squeue``), and that a job killed by ``scancel`` or by
its time limit is resubmitted by ``--retries``.

    .ci/slurm-up && pytest -m slurm tests/test_slurm_smoke.py

Skipped (with the reason) where ``sinfo`` does not answer. See docs/slurm.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO_ROOT / "tests" / "slurm" / "Snakefile"
PROFILE = REPO_ROOT / "profiles" / "slurm-ci"


def _snakemake_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "snakemake"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


@pytest.fixture
def workdir(tmp_path: Path, cluster):
    """Scratch directory; SLURM jobs still alive from it are cancelled at teardown."""
    yield tmp_path
    out = subprocess.run(
        ["squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING", "-o", "%i %Z"], capture_output=True, text=True
    ).stdout
    left = [line.split()[0] for line in out.splitlines() if str(tmp_path) in line]
    if left:
        subprocess.run(["scancel", *left])


def _snakemake(workdir: Path, *args: str, timeout: int = 240, background: bool = False):
    # SIGINT makes snakemake scancel its SLURM jobs and exit; on SIGTERM it waits for the running
    # jobs to finish ("Will exit after finishing currently running jobs"), so: -s INT, KILL fallback.
    cmd = ["timeout", "-s", "INT", "-k", "30", str(timeout), *_snakemake_cmd(), "-s", str(SNAKEFILE)]
    cmd += ["--profile", str(PROFILE), *args]
    log = open(workdir / "snakemake.out", "w")
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, text=True)
    if background:
        return proc
    proc.wait()
    log.close()
    return proc.returncode, (workdir / "snakemake.out").read_text()


def _finish(workdir: Path, proc) -> tuple[int, str]:
    proc.wait()
    return proc.returncode, (workdir / "snakemake.out").read_text()


def _states(*jobids: str) -> dict[str, str]:
    """SLURM states from squeue (finished jobs stay listed for MinJobAge seconds)."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", ",".join(jobids), "-o", "%i|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|") for line in out.split())


def _fields(path: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in path.read_text().split())


def _submitted(log: str) -> dict[str, str]:
    """SLURM job id -> plugin log file, from 'submitted with SLURM jobid N (log: PATH)'."""
    return dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]+)\)", log))


def _wait_for(path: Path, proc, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    pytest.fail(
        f"{path.name} not written by the first SLURM job:\n{path.parent.parent.joinpath('snakemake.out').read_text()}"
    )


def test_profile_runs_jobs_on_slurm(workdir: Path):
    t0 = time.monotonic()
    rc, log = _snakemake(workdir, "all")
    wall = time.monotonic() - t0
    assert rc == 0, log
    print(f"slurm smoke DAG (3 SLURM jobs): {wall:.1f} s")

    lines = (workdir / "gather.txt").read_text().split("\n")
    jobs = {f["name"]: f["job"] for f in (dict(i.split("=", 1) for i in ln.split()) for ln in lines if ln)}
    assert set(jobs) == {"a", "b", "gather"}
    assert all(j.isdigit() for j in jobs.values()), jobs  # "none" would mean it ran outside SLURM
    assert len(set(jobs.values())) == 3

    submitted = _submitted(log)
    assert set(submitted) == set(jobs.values()), (submitted, jobs)
    logs = workdir / ".snakemake" / "slurm_logs"
    assert (logs / "rule_hello" / "a" / f"{jobs['a']}.log").is_file()
    assert (logs / "rule_hello" / "b" / f"{jobs['b']}.log").is_file()
    assert (logs / "rule_gather" / f"{jobs['gather']}.log").is_file()
    assert _states(*jobs.values()) == {j: "COMPLETED" for j in jobs.values()}
    assert "localrule all" in log  # localrules stay on the submitting host


def _interrupted_then_resubmitted(workdir: Path, target: str, kill, timeout: int, retries: str = "1"):
    proc = _snakemake(workdir, target, "--retries", retries, timeout=timeout, background=True)
    first = _wait_for(workdir / "marker" / target.removesuffix(".txt"), proc, 120)
    kill(first)
    rc, log = _finish(workdir, proc)
    return first, rc, log


def test_scancelled_job_is_resubmitted(workdir: Path):
    t0 = time.monotonic()
    first, rc, log = _interrupted_then_resubmitted(
        workdir, "resubmit.txt", lambda jid: subprocess.run(["scancel", jid], check=True), timeout=240
    )
    wall = time.monotonic() - t0
    assert rc == 0, log
    print(f"scancel + resubmit: {wall:.1f} s")
    out = _fields(workdir / "resubmit.txt")
    assert out["first"] == first and out["attempt"] == "2" and out["job"] != first, out
    assert f"SLURM-job '{first}' failed, SLURM status is: 'CANCELLED'" in log
    assert "Trying to restart job" in log
    assert _states(first, out["job"]) == {first: "CANCELLED", out["job"]: "COMPLETED"}
    # the plugin keeps the log of the failed attempt
    assert (workdir / ".snakemake" / "slurm_logs" / "rule_resubmit" / f"{first}.log").is_file()


def test_scancelled_job_without_retries_fails(workdir: Path):
    first, rc, log = _interrupted_then_resubmitted(
        workdir,
        "resubmit.txt",
        lambda jid: subprocess.run(["scancel", jid], check=True),
        timeout=240,
        retries="0",
    )
    assert rc == 1, log  # fails (does not hang, does not resubmit)
    assert "SLURM status is: 'CANCELLED'" in log
    assert not (workdir / "resubmit.txt").exists()
    assert _submitted(log).keys() == {first}


@pytest.mark.slow
def test_timed_out_job_is_resubmitted(workdir: Path):
    t0 = time.monotonic()
    first, rc, log = _interrupted_then_resubmitted(workdir, "timelimit.txt", lambda jid: None, timeout=400)
    wall = time.monotonic() - t0
    assert rc == 0, log
    print(f"time limit (1 min) + resubmit: {wall:.1f} s")
    out = _fields(workdir / "timelimit.txt")
    assert out["first"] == first and out["attempt"] == "2", out
    assert f"SLURM-job '{first}' failed, SLURM status is: 'TIMEOUT'" in log
    assert _states(first, out["job"]) == {first: "TIMEOUT", out["job"]: "COMPLETED"}
    assert os.path.getsize(workdir / "timelimit.txt") > 0
