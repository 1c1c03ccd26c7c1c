"""Resume is proven to happen: the run says which update it resumed from, runs exactly the
remaining updates, keeps the earlier log rows, and ends bit-identical to an uninterrupted run,
also after a real SIGKILL of the training process in the middle of an update, across epoch
boundaries (4 pairs, 3 per update: epochs end inside micro-batches)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from train_utils import make_run_cfg, read_log, unet_state

from inpo.trainer import train


def _same_weights(a_dir, b_dir) -> bool:
    a, b = unet_state(a_dir), unet_state(b_dir)
    return all(torch.equal(a[k], b[k]) for k in a)


def test_resume_says_where_and_runs_only_the_rest(trainer_world, tmp_path, capsys):
    method = {"name": "dpo", "beta": 500.0}
    full = make_run_cfg(trainer_world, "full", tmp_path, method=method, max_updates=3)
    assert train(full)["resumed_from"] == 0
    cut = make_run_cfg(trainer_world, "cut", tmp_path, method=method, max_updates=3, checkpoint_every=1)
    first = train(cut, stop_after=2)
    assert (first["stopped_at"], first["resumed_from"], first["updates_run"]) == (2, 0, 2)
    before = read_log(cut.log_csv)
    assert [int(r["update"]) for r in before] == [1, 2]
    # drop the newest checkpoint: the next call must resume from update 1 and redo update 2
    os.rename(Path(cut.state_dir) / "checkpoint-2", Path(cut.state_dir) / "removed-2")
    capsys.readouterr()
    second = train(cut)
    out = capsys.readouterr().out
    assert "checkpoint-1 (update 1)" in out
    assert (second["resumed_from"], second["updates_run"]) == (1, 2)
    after = read_log(cut.log_csv)
    assert [int(r["update"]) for r in after] == [1, 2, 3]
    assert after[:1] == before[:1]  # earlier rows kept as written (wall_s included)
    assert int(after[2]["pairs_seen"]) == 3 * 2
    assert _same_weights(full.output_dir, cut.output_dir)


@pytest.mark.slow
def test_sigkill_mid_update_then_resume_across_epochs(trainer_world, tmp_path):
    over = dict(method={"name": "inpo", "beta": 500.0}, micro_batch_size=3, grad_accum=1, max_updates=3)
    ref = make_run_cfg(trainer_world, "ref", tmp_path, **over)
    killed = make_run_cfg(trainer_world, "killed", tmp_path, checkpoint_every=1, **over)
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(yaml.safe_dump(killed.to_dict()))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "inpo.trainer", "--config", str(cfg_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state = Path(killed.state_dir)
    deadline = time.monotonic() + 300
    while not (state / "checkpoint-1" / "trainer_state.json").is_file():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint-1 within 300 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # checkpoint-1 written: the process is in update 2
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not Path(killed.output_dir).exists()
    done = sorted(int(p.name.split("-")[1]) for p in state.glob("checkpoint-*"))
    k = done[-1]
    assert 1 <= k < 3, done
    before = read_log(killed.log_csv)
    assert [int(r["update"]) for r in before][:k] == list(range(1, k + 1))

    r = subprocess.run([sys.executable, "-m", "inpo.trainer", "--config", str(cfg_path)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"checkpoint-{k} (update {k})" in r.stdout
    after = read_log(killed.log_csv)
    assert [int(x["update"]) for x in after] == [1, 2, 3]
    assert after[:k] == before[:k]  # rows up to the checkpoint kept, later ones redone
    assert int(after[-1]["pairs_seen"]) == 3 * 3

    train(ref)  # uninterrupted, same thread count
    ref_rows = read_log(ref.log_csv)
    for a, b in zip(ref_rows, after):
        assert a["loss"] == b["loss"] and a["model_err_w"] == b["model_err_w"], (a, b)
    assert _same_weights(ref.output_dir, killed.output_dir)


def test_each_epoch_draws_anew(trainer_world, tmp_path):
    """With a zero learning rate the model is fixed, so each logged error is a function of the
    draws alone: one update per epoch (all 4 pairs), and the second epoch must not repeat the
    first's draws (the same draws in another order would give the same mean up to round-off)."""
    cfg = make_run_cfg(trainer_world, "epochs", tmp_path, method={"name": "dpo", "beta": 500.0},
                       micro_batch_size=2, grad_accum=2, max_updates=2,
                       optim={"learning_rate": 0.0, "scale_lr": False, "warmup_updates": 0})
    train(cfg)
    rows = read_log(cfg.log_csv)
    for col in ("model_err_w", "model_err_l"):
        e0, e1 = float(rows[0][col]), float(rows[1][col])
        assert abs(e0 - e1) > 1e-3 * abs(e0), (col, e0, e1)
    errs = [float(r["model_err_w"]) for r in rows]
    ref = [float(r["ref_err_w"]) for r in rows]
    assert errs == pytest.approx(ref, rel=1e-5)  # lr 0: the policy is still the reference
