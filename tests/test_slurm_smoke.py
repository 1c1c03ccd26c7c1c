"""Snakemake's SLURM executor on a real cluster (the single-node one from ``.ci/slurm-up``).

Runs ``tests/slurm/Snakefile`` with ``--profile profiles/slurm-ci`` in a scratch directory and
checks that every job ran as a SLURM batch job (job ids in the outputs, in the plugin's log
paths ``.snakemake/slurm_logs/`` and in ``squeue``), and that a job killed by ``scancel`` or by
its time limit is resubmitted by ``--retries``. The four scenarios are started together (module
fixture ``scenarios``, one scratch directory each) so that their SLURM status waits overlap; each
test waits for its own.

    .ci/slurm-up && pytest -m slurm tests/test_slurm_smoke.py

Skipped (with the reason) where ``sinfo`` does not answer. See docs/slurm.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
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


def _cancel_left(*dirs: Path) -> None:
    out = subprocess.run(
        ["squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING", "-o", "%i %Z"], capture_output=True, text=True
    ).stdout
    left = [line.split()[0] for line in out.splitlines() if any(str(d) in line for d in dirs)]
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
    raise AssertionError(
        f"{path.name} not written by the first SLURM job:\n{path.parent.parent.joinpath('snakemake.out').read_text()}"
    )


def _scancel(jid: str) -> None:
    subprocess.run(["scancel", jid], check=True)


#: scenario -> (target, kill of the first SLURM job (None: its time limit kills it), --retries, timeout s)
SCENARIOS = {
    "dag": ("all", None, None, 240),
    "scancel": ("resubmit.txt", _scancel, "1", 240),
    "scancel_no_retries": ("resubmit.txt", _scancel, "0", 240),
    "timelimit": ("timelimit.txt", lambda jid: None, "1", 400),
}


@pytest.fixture(scope="module")
def scenarios(cluster, tmp_path_factory):
    """Start every scenario in its own scratch directory; a thread per interrupted scenario waits for
    the first SLURM job's marker, kills that job and waits for snakemake. Yields name -> result dict
    (``rc``, ``log``, ``first``, ``wall``, ``error``) filled in when the scenario ends."""
    root = tmp_path_factory.mktemp("slurm_smoke")
    results: dict[str, dict] = {}
    threads = []
    for name, (target, kill, retries, timeout) in SCENARIOS.items():
        work = root / name
        work.mkdir()
        res = results[name] = {"workdir": work}

        def run(work=work, res=res, target=target, kill=kill, retries=retries, timeout=timeout):
            t0 = time.monotonic()
            try:
                args = (target,) if retries is None else (target, "--retries", retries)
                proc = _snakemake(work, *args, timeout=timeout, background=True)
                if kill is not None:
                    res["first"] = _wait_for(work / "marker" / target.removesuffix(".txt"), proc, 120)
                    kill(res["first"])
                res["rc"], res["log"] = _finish(work, proc)
            except BaseException as e:  # reported by the test of this scenario
                res["error"] = e
            res["wall"] = time.monotonic() - t0

        th = threading.Thread(target=run, daemon=True)
        th.start()
        threads.append((name, th))
    try:
        yield {name: (th, results[name]) for name, th in threads}
    finally:
        _cancel_left(root)
        for _, th in threads:
            th.join(timeout=60)


def _result(scenarios, name: str) -> tuple[Path, dict]:
    th, res = scenarios[name]
    th.join(timeout=SCENARIOS[name][3] + 60)
    if "error" in res:
        raise res["error"]
    assert "rc" in res, f"scenario {name} did not finish"
    print(f"slurm smoke {name}: {res['wall']:.1f} s")
    return res["workdir"], res


def test_profile_runs_jobs_on_slurm(scenarios):
    workdir, res = _result(scenarios, "dag")
    rc, log = res["rc"], res["log"]
    assert rc == 0, log

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


def test_scancelled_job_is_resubmitted(scenarios):
    workdir, res = _result(scenarios, "scancel")
    first, rc, log = res["first"], res["rc"], res["log"]
    assert rc == 0, log
    out = _fields(workdir / "resubmit.txt")
    assert out["first"] == first and out["attempt"] == "2" and out["job"] != first, out
    assert f"SLURM-job '{first}' failed, SLURM status is: 'CANCELLED'" in log
    assert "Trying to restart job" in log
    assert _states(first, out["job"]) == {first: "CANCELLED", out["job"]: "COMPLETED"}
    # the plugin keeps the log of the failed attempt
    assert (workdir / ".snakemake" / "slurm_logs" / "rule_resubmit" / f"{first}.log").is_file()


def test_scancelled_job_without_retries_fails(scenarios):
    workdir, res = _result(scenarios, "scancel_no_retries")
    first, rc, log = res["first"], res["rc"], res["log"]
    assert rc == 1, log  # fails (does not hang, does not resubmit)
    assert "SLURM status is: 'CANCELLED'" in log
    assert not (workdir / "resubmit.txt").exists()
    assert _submitted(log).keys() == {first}


@pytest.mark.slow
def test_timed_out_job_is_resubmitted(scenarios):
    workdir, res = _result(scenarios, "timelimit")
    first, rc, log = res["first"], res["rc"], res["log"]
    assert rc == 0, log
    out = _fields(workdir / "timelimit.txt")
    assert out["first"] == first and out["attempt"] == "2", out
    assert f"SLURM-job '{first}' failed, SLURM status is: 'TIMEOUT'" in log
    assert _states(first, out["job"]) == {first: "TIMEOUT", out["job"]: "COMPLETED"}
    assert os.path.getsize(workdir / "timelimit.txt") > 0
