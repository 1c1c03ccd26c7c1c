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


def planned_jobs(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs, rule = [], None
    for line in dry_run_output.splitlines():
        s = line.strip()
        if s.startswith("rule ") and s.endswith(":"):
            rule = s[5:-1]
            jobs.append((rule, {}))
        elif s.startswith("localrule ") and s.endswith(":"):
            rule = s[10:-1]
            jobs.append((rule, {}))
        elif s.startswith("wildcards:") and jobs:
            for part in s[len("wildcards:"):].split(","):
                if "=" in part:
                    k, v = part.strip().split("=", 1)
                    jobs[-1][1][k] = v
    return jobs


def experiment_families(experiment_file: str) -> dict[str, dict]:
    """Each family's merged config of an experiment file (paths relative to the repository), as the
    top-level Snakefile builds it (inpo.pipeline.experiment_configs)."""
    import yaml

    from inpo.pipeline import experiment_configs

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

    return notebooks_for({"tables": {}, "train_logs": {}, "images": {}, "ablations": {} if sheet else None})
