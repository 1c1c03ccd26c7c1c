"""Helpers to run the workflow in a scratch copy of the repository's workflow files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "notebooks", "profiles", "envs"]
SMOKE = ["--configfile", "config/config.yaml", "config/smoke.yaml"]


def snakemake_bin() -> str:
    return str(Path(sys.executable).with_name("snakemake"))


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def link_user_profile(workdir: Path) -> Path:
    """What `make setup` does for a user (``~/.config/snakemake/slurm`` -> ``profiles/slurm``), inside
    ``workdir``: returns the folder to use as ``XDG_CONFIG_HOME``, so that ``--profile slurm`` finds the
    scratch copy's profile and not whichever clone last ran `make setup`."""
    xdg = workdir / ".xdg"
    (xdg / "snakemake").mkdir(parents=True, exist_ok=True)
    link = xdg / "snakemake" / "slurm"
    if not link.is_symlink():
        link.symlink_to(workdir / "profiles" / "slurm", target_is_directory=True)
    return xdg


def run_snakemake(workdir: Path, *args: str, timeout: int = 1500, check: bool = True) -> subprocess.CompletedProcess:
    """``snakemake *args`` in ``workdir`` offline; ``--profile slurm`` means the scratch copy's profile."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if "--profile" in args:
        env["XDG_CONFIG_HOME"] = str(link_user_profile(workdir))
    cmd = ["timeout", "-s", "INT", "-k", "30", str(timeout), snakemake_bin(), *args]
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def planned_job_fields(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, {field: value}) of every job a dry run lists (``wildcards``, ``threads``, ``resources``, ...;
    the first value of each field)."""
    jobs = []
    for line in dry_run_output.splitlines():
        s = line.strip()
        if s.startswith(("rule ", "localrule ")) and s.endswith(":"):
            jobs.append((s.split(" ", 1)[1][:-1], {}))
        elif jobs and ":" in s:
            field, value = s.split(":", 1)
            jobs[-1][1].setdefault(field, value.strip())
    return jobs


def planned_jobs(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run lists."""
    return [(rule, dict(part.strip().split("=", 1) for part in f.get("wildcards", "").split(",") if "=" in part))
            for rule, f in planned_job_fields(dry_run_output)]


def experiment_families(experiment_file: str) -> dict[str, dict]:
    """Each family's merged config of an experiment file (paths relative to the repository), as the
    top-level Snakefile builds it (inpo.experiment.experiment_configs)."""
    import yaml

    from inpo.experiment import experiment_configs

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return experiment_configs(yaml.safe_load((REPO / experiment_file).read_text()))
    finally:
        os.chdir(cwd)


def workflow_notebooks(sheet: bool) -> list[str]:
    """The notebooks rule ``notebook`` renders for a config with or without an ablation sheet (the one
    list, inpo.report.NOTEBOOKS; conditional_grids has its own rule)."""
    from inpo.report import notebooks_for

    return notebooks_for({"tables": {}, "train_logs": {}, "images": {}, "efficiency": {},
                          "ablations": {} if sheet else None})


# ------------------------------------------------------------------------ SLURM runs (tests marked slurm)

SLURM_CI_PROFILE = ["--profile", "profiles/slurm-ci"]


def snakemake_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class Background:
    """A snakemake run in the background, output in ``<work>/snakemake.out``.

    Like :func:`run_snakemake`: ``timeout -s INT`` (SIGINT makes snakemake ``scancel`` its SLURM
    jobs; on SIGTERM it would wait for them) with a KILL fallback."""

    def __init__(self, work: Path, *args: str, timeout: int):
        import threading
        import time

        self.work, self.args, self.t0 = work, args, time.monotonic()
        self.out = work / "snakemake.out"
        cmd = ["timeout", "-s", "INT", "-k", "30", str(timeout), snakemake_bin(), *args]
        self._fh = open(self.out, "w")
        self.proc = subprocess.Popen(cmd, cwd=work, env=snakemake_env(), stdout=self._fh, stderr=subprocess.STDOUT)
        self.wall: float | None = None  # measured when the run ends, not when a test waits for it

        def _time() -> None:
            self.proc.wait()
            self.wall = time.monotonic() - self.t0

        self._waiter = threading.Thread(target=_time, daemon=True)
        self._waiter.start()

    def wait(self) -> tuple[int, str]:
        rc = self.proc.wait()
        self._waiter.join()
        self._fh.close()
        return rc, self.out.read_text()

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.wait()


def slurm_submitted(log: str) -> list[tuple[str, str]]:
    """(SLURM job id, plugin log path) of every submission, from snakemake's output."""
    import re

    return re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]+)\)", log)


def slurm_states(jobids) -> dict[str, str]:
    """SLURM states from squeue (finished jobs stay listed for MinJobAge seconds)."""
    jobids = list(jobids)
    if not jobids:
        return {}
    out = subprocess.run(["squeue", "-h", "--states=all", "-j", ",".join(jobids), "-o", "%i|%T"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("|") for line in out.split())


def local_rules(work: Path) -> set[str]:
    """The workflow's named rules that say `localrule: True` (they run inside snakemake)."""
    import re

    local = set()
    files = [work / "Snakefile", work / "workflow" / "Snakefile", *sorted((work / "workflow" / "rules").glob("*.smk"))]
    for f in files:
        for block in re.split(r"^[ \t]*rule[ \t]+", f.read_text(), flags=re.M)[1:]:
            m = re.match(r"(\w+):", block)
            if m and re.search(r"^[ \t]+localrule:[ \t]*True", block.split("\n\n\n")[0], re.M):
                local.add(m.group(1))
    assert local, "no `localrule: True` in the workflow"
    return local


def cancel_slurm_jobs_of(*works: Path) -> None:
    """scancel the SLURM jobs still pending / running from these folders."""
    out = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING", "-o", "%i %Z"],
                         capture_output=True, text=True).stdout
    left = [line.split()[0] for line in out.splitlines() if any(str(w) in line for w in works)]
    if left:
        subprocess.run(["scancel", *left])
