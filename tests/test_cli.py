"""The ``inpo`` console script: every subcommand's help, and a real run of each stage on tiny data."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_trainer import max_diff, run_cfg, unet_state, world  # noqa: F401  (world: a fixture)

from inpo.launch import trainer_command

INPO = str(Path(sys.executable).with_name("inpo"))  # the console script installed with the package
COMMANDS = ["train", "generate", "score", "filter", "report"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def inpo(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([INPO, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


def test_inpo_help_lists_every_command():
    assert Path(INPO).is_file(), f"console script missing: {INPO} (pip install -e .)"
    r = inpo("--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: inpo")
    for cmd in COMMANDS:
        assert f"\n    {cmd} " in r.stdout  # one line per subcommand in the command list
    bare = inpo()
    assert bare.returncode == 2 and "required: COMMAND" in bare.stderr


@pytest.mark.parametrize("cmd, options", [
    ("train", ["--gpus", "--processes", "--print-command"]),
    ("generate", ["--steps", "--guidance-scale", "--seed-base", "--shard", "--scheduler", "--family"]),
    ("score", ["--evaluator", "--options", "--out", "--batch-size"]),
    ("filter", ["--split", "--check-images", "--max-rows"]),
    ("report", ["--scores", "--out-dir", "--runs", "--benchmark-root", "--options"]),
])
def test_each_command_explains_itself(cmd, options):
    r = inpo(cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: inpo {cmd}")
    description = r.stdout.split("\n\n")[1]
    assert len(description.split()) >= 15  # a paragraph that explains the stage, not a stub
    for opt in options:
        assert opt in r.stdout


def _write(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def test_train_launch_command_is_the_workflows(world, tmp_path):  # noqa: F811
    p = _write(run_cfg(world, "cmd", tmp_path), tmp_path / "cmd.yaml")
    for extra, kw in ((["--processes", "2"], {"num_processes": 2}), (["--gpus", "4"], {"gpus": 4}), ([], {})):
        r = inpo("train", p, *extra, "--print-command")
        assert r.returncode == 0, r.stderr
        cmd = re.sub(r"\S*python[\d.]*(?= -m )", "PY", r.stdout.strip())  # the console script's own
        assert cmd == trainer_command(str(p), mixed_precision="no", python="PY", **kw)
    bad = tmp_path / "bad.yaml"
    bad.write_text(p.read_text().replace("name: inpo", "name: orpo"))
    r = inpo("train", bad)
    assert r.returncode != 0 and "method.name: unknown method 'orpo'" in r.stderr


def test_train_one_update(world, tmp_path):  # noqa: F811
    cfg = run_cfg(world, "cli", tmp_path, max_updates=1, grad_accum=1)
    r = inpo("train", _write(cfg, tmp_path / "cli.yaml"))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert (summary["updates"], summary["pairs_seen"]) == (1, 2)
    rows = list(csv.DictReader(open(cfg.log_csv)))
    assert [int(x["update"]) for x in rows] == [1]
    assert float(rows[0]["loss"]) == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at update 1
    assert max_diff(unet_state(cfg.output_dir), unet_state(world / "base")) > 0


def test_filter_generate_score_report(world, tmp_path):  # noqa: F811
    r = inpo("filter", world / "shards", tmp_path / "pairs.parquet", tmp_path / "manifest.json")
    assert r.returncode == 0, r.stderr[-3000:]
    ours = json.loads((tmp_path / "manifest.json").read_text())
    ref = json.loads((world / "manifest.json").read_text())  # filter_pairs called directly
    assert ours["pairs_kept"] == ref["pairs_kept"] == 12 and ours["winner_counts"] == ref["winner_counts"]
    assert pd.read_parquet(tmp_path / "pairs.parquet").equals(pd.read_parquet(world / "pairs.parquet"))

    prompts = pd.DataFrame({"index": [0, 1, 2], "prompt": ["a red circle", "a blue square", "a green star"]})
    prompts.to_parquet(tmp_path / "prompts.parquet")
    images = tmp_path / "images" / "base" / "toyset"
    r = inpo("generate", world / "base", tmp_path / "prompts.parquet", images, "--steps", 2, "--device", "cpu",
             "--batch-size", 2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in images.glob("*.png")) == ["00000.png", "00001.png", "00002.png"]

    scores = tmp_path / "scores.parquet"
    r = inpo("score", images, tmp_path / "prompts.parquet", "--evaluator", "toy_reward",
             "--options", '{"image_size": 16}', "--out", scores)
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_parquet(scores)
    assert list(df["model"].unique()) == ["base"] and list(df["prompt_set"].unique()) == ["toyset"]
    assert df["index"].tolist() == [0, 1, 2] and df["score"].notna().all()

    r = inpo("report", "--scores", scores, "--out-dir", tmp_path / "tables", "--options", '{"model": "base"}')
    assert r.returncode == 0, r.stderr[-3000:]
    supp = pd.read_csv(tmp_path / "tables" / "supp_median_mean.csv")
    row = supp[(supp["model"] == "base") & (supp["evaluator"] == "toy_reward")].iloc[0]
    assert row["median"] == pytest.approx(df["score"].median()) and row["n"] == 3
    assert (tmp_path / "tables" / "table1_winrates.tex").is_file()
