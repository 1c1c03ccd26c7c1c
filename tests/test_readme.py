"""Every command the README shows is run here, so a documented command cannot break silently.

The commands are the lines of the README's ```bash blocks (and inline `snakemake ...` / `make ...` /
`source ...` spans of the prose). Each one is:

- ``snakemake ...``: dry-run (``-n`` added) in a scratch copy of the workflow, offline; the
  ``--profile slurm`` ones through the user's SLURM profile (linked as `make setup` does), whose
  executor plans every job of the paper without submitting any;
- ``make <target>``: ``make -n <target>`` must succeed, and every snakemake command the target
  would run is dry-run as above, every pytest command collected (``--collect-only``);
- ``source <file>``: sourced in bash, which must then find ``snakemake``;
- ``$EDITOR <file>``: the file must exist and hold the ``SITE`` lines the README sends users to.

A command of any other kind fails the test: add a way to run it here when the README gains one.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_utils import REPO, copy_workflow, run_snakemake

pytestmark = pytest.mark.slow

README = REPO / "README.md"
INLINE = re.compile(r"`((?:snakemake|make|source) [^`]+)`")


def readme_commands(text: str) -> list[str]:
    """The README's commands, in order, each once (``a && b`` gives two)."""
    lines = [ln for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S) for ln in block.splitlines()]
    lines += INLINE.findall(text)
    out: list[str] = []
    for line in lines:
        tokens = shlex.split(line, comments=True)
        while tokens:
            cmd = tokens[: tokens.index("&&")] if "&&" in tokens else tokens
            tokens = tokens[len(cmd) + 1:]
            text_cmd = shlex.join(cmd)
            if cmd and text_cmd not in out:
                out.append(text_cmd)
    return out


COMMANDS = readme_commands(README.read_text())


def test_readme_commands_found():
    """The parser sees the README's commands (a README without them would pass the tests below vacuously)."""
    assert "snakemake --profile slurm all" in COMMANDS
    assert "snakemake --profile slurm sdxl_all" in COMMANDS
    assert "make toy" in COMMANDS and "snakemake --cores 2 sweep_beta" in COMMANDS
    assert readme_commands("```bash\nmake a && source b  # c\n```\nsee `snakemake -n x`.\n") == [
        "make a", "source b", "snakemake -n x"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("readme"))


def dry_run(work: Path, args: list[str]) -> str:
    """``snakemake args`` with ``-n``; returns its output (the run must succeed)."""
    if not {"-n", "--dry-run", "--dryrun"} & set(args):
        args = ["-n", *args]
    r = run_snakemake(work, *args, timeout=600)
    out = r.stdout + r.stderr
    if "--list-target-rules" in args or "--list-rules" in args:
        assert "all" in r.stdout.split(), out[-3000:]
    else:
        assert "Job stats" in out or "Nothing to be done" in out, out[-3000:]
    return out


def make_dry(target: str) -> list[list[str]]:
    """The commands `make <target>` would run (``make -n``), split into argument lists."""
    r = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, f"make -n {target}: {r.stderr}"
    return [shlex.split(line) for line in r.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command(command, work):
    argv = shlex.split(command)
    head, args = argv[0], argv[1:]
    if head == "snakemake":
        out = dry_run(work, args)
        if "--profile" in args and "slurm" in args and "--configfile" not in args:  # the profile selects the paper
            assert ("sd15_all" in out.split()) if "--list-target-rules" in args else ("config/paper.yaml" in out)
    elif head == "make":
        assert len(args) == 1, command
        ran = 0
        for cmd in make_dry(args[0]):
            exe = Path(cmd[0]).name
            if exe == "snakemake":
                dry_run(work, cmd[1:])
                ran += 1
            elif cmd[-1:] == ["tests/mutations.py"]:  # make mutants: the mutation list loads
                r = subprocess.run([sys.executable, "tests/mutations.py", "--list"], cwd=REPO, capture_output=True,
                                   text=True)
                assert r.returncode == 0 and r.stdout.strip(), r.stdout + r.stderr
                ran += 1
            elif exe == "pytest":
                r = subprocess.run([sys.executable, "-m", "pytest", *cmd[1:], "--collect-only"], cwd=REPO,
                                   capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                assert r.returncode == 0 and re.search(r"\d+ tests? collected", r.stdout), r.stdout[-3000:]
                ran += 1
        if args[0] == "setup":
            assert (REPO / ".venv" / ".installed").is_file(), "make setup has not run in this clone"
        else:
            assert ran, f"make {args[0]} runs neither snakemake nor pytest: teach this test what it does"
    elif head == "source":
        r = subprocess.run(["bash", "-c", f"source {shlex.quote(args[0])} && command -v snakemake"], cwd=REPO,
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip().endswith("snakemake"), r.stderr
    elif head == "inpo":  # the command line: the subcommand exists and explains itself
        r = subprocess.run([sys.executable, "-m", "inpo.cli", *args, *([] if "--help" in args else ["--help"])],
                           cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0 and "usage: inpo" in r.stdout, r.stdout + r.stderr
    elif head == "$EDITOR":
        assert "SITE" in (REPO / args[0]).read_text()
    else:
        pytest.fail(f"README command {command!r}: this test does not know how to run it; add a case")
