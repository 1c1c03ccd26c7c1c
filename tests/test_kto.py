"""Diffusion-KTO with a nonzero KL estimate: hand-computed values, the detached KL, and the
all-reduced KL of a two-process run (equal to one process holding the same pairs)."""

from __future__ import annotations

import math
import os
import subprocess

import pytest
import torch
import yaml

from inpo.launch import trainer_command
from inpo.losses import kto_kl, kto_loss
from inpo.trainer import train


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_kto_positive_mean_subtracts_kl():
    m = torch.tensor([0.10, 0.20, 0.05, 0.30])
    r = torch.tensor([0.30, 0.28, 0.10, 0.20])
    desirable = torch.tensor([True, True, False, False])
    beta = 4.0
    # g = r - m = [0.2, 0.08, 0.05, -0.1]; mean 0.0575 > 0, so KL = 0.0575
    # sign * (g - KL) = [0.1425, 0.0225, 0.0075, 0.1575]
    expected = sum(1 - _sigmoid(beta * x) for x in (0.1425, 0.0225, 0.0075, 0.1575)) / 4
    assert kto_kl(m, r).item() == pytest.approx(0.0575, abs=1e-7)
    loss, met = kto_loss(m, r, desirable, beta)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert met["kl"].item() == pytest.approx(0.0575, abs=1e-7)
    assert met["implicit_acc"].item() == 1.0
    assert met["model_err_w"].item() == pytest.approx(0.15) and met["ref_err_l"].item() == pytest.approx(0.15)


def test_kto_negative_mean_clamps_kl_to_zero():
    m = torch.tensor([0.30, 0.20])
    r = torch.tensor([0.10, 0.15])
    desirable = torch.tensor([True, False])
    beta = 10.0
    # g = [-0.2, -0.05]; mean -0.125 < 0, so KL = 0 (not -0.125, not +0.125)
    expected = ((1 - _sigmoid(beta * -0.2)) + (1 - _sigmoid(-beta * -0.05))) / 2
    assert kto_kl(m, r).item() == 0.0
    loss, met = kto_loss(m, r, desirable, beta)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert met["implicit_acc"].item() == 0.5  # the winner got worse than the reference, the loser too


def test_kto_gradient_treats_kl_as_constant():
    m = torch.tensor([0.10, 0.20, 0.05, 0.30], requires_grad=True)
    r = torch.tensor([0.30, 0.28, 0.10, 0.20])
    sign = [1.0, 1.0, -1.0, -1.0]
    beta = 4.0
    loss, _ = kto_loss(m, r, torch.tensor([True, True, False, False]), beta)
    loss.backward()
    # L = mean(1 - sigmoid(x)), x = sign * beta * (r - m - KL), KL detached:
    # dL/dm_i = sigmoid'(x_i) * sign_i * beta / N
    xs = [0.1425, 0.0225, 0.0075, 0.1575]
    want = [_sigmoid(beta * x) * (1 - _sigmoid(beta * x)) * s * beta / 4 for x, s in zip(xs, sign)]
    assert m.grad.tolist() == pytest.approx(want, abs=1e-6)


# --------------------------------------------------------------------------- two processes


@pytest.mark.slow
def test_kto_two_processes_all_reduce_kl(trainer_world, tmp_path):
    """Each of two processes holds one image of the per-image set: the KL must be the mean over both
    images (all-reduced, then clamped), as in one process holding both."""
    from train_utils import LINEAR_OPT, RESOLUTION, make_run_cfg, max_unet_diff, unet_state

    from inpo.data.per_image import build_image_index

    build_image_index(trainer_world / "pairs.parquet", trainer_world / "manifest.json", tmp_path / "img.parquet",
                      tmp_path / "img.json")
    data = {"examples": "images", "index": str(tmp_path / "img.parquet"), "resolution": RESOLUTION, "positive_ratio": 0.5}
    method = {"name": "kto", "beta": 200.0, "caption_dropout": 0.0}
    cfg1 = make_run_cfg(trainer_world, "k1", tmp_path, method=method, data=data, micro_batch_size=2, grad_accum=1,
                        max_updates=4, optim=LINEAR_OPT)
    cfg2 = make_run_cfg(trainer_world, "k2", tmp_path, method=method, data=data, micro_batch_size=1, grad_accum=1,
                        max_updates=4, optim=LINEAR_OPT)
    p = tmp_path / "k2.yaml"
    p.write_text(yaml.safe_dump(cfg2.to_dict()))
    train(cfg1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(trainer_command(str(p), num_processes=2), shell=True, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = unet_state(cfg1.output_dir), unet_state(cfg2.output_dir)
    assert max_unet_diff(a, unet_state(trainer_world / "base")) > 1e-4
    assert max_unet_diff(a, b) < 1e-5
