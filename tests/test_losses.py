"""Losses against hand-computed values."""

import math

import pytest
import torch

from inpo.losses import dpo_loss, kto_loss, sft_loss


def test_dpo_loss_hand_computed():
    mw, ml = torch.tensor([0.10, 0.30]), torch.tensor([0.20, 0.10])
    rw, rl = torch.tensor([0.15, 0.20]), torch.tensor([0.15, 0.20])
    beta = 10.0
    # pair 0: inside = -5 * ((0.1 - 0.2) - 0) = 0.5 ; pair 1: -5 * (0.2 - 0) = -1.0
    expected = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(1.0)))) / 2
    loss, m = dpo_loss(mw, ml, rw, rl, beta)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["implicit_acc"].item() == pytest.approx(0.5)
    assert m["inside"].item() == pytest.approx(-0.25)


def test_dpo_loss_sign_and_limits():
    rw = rl = torch.tensor([0.2])
    # policy got better on the winner relative to the reference -> loss below log 2
    better, m = dpo_loss(torch.tensor([0.1]), torch.tensor([0.2]), rw, rl, 100.0)
    worse, _ = dpo_loss(torch.tensor([0.3]), torch.tensor([0.2]), rw, rl, 100.0)
    assert better.item() < math.log(2) < worse.item()
    assert m["implicit_acc"].item() == 1.0
    tiny, _ = dpo_loss(torch.tensor([0.1]), torch.tensor([0.9]), rw, rl, 1e-9)
    assert tiny.item() == pytest.approx(math.log(2), abs=1e-8)
    same, m0 = dpo_loss(rw, rl, rw, rl, 2000.0)
    assert same.item() == pytest.approx(math.log(2))
    assert m0["implicit_acc"].item() == 0.0


def test_dpo_loss_gradient_direction():
    mw = torch.tensor([0.2], requires_grad=True)
    ml = torch.tensor([0.2], requires_grad=True)
    loss, _ = dpo_loss(mw, ml, torch.tensor([0.2]), torch.tensor([0.2]), 2.0)
    loss.backward()
    # d/dm_w = -(beta/2) * -sigmoid(-0) ... = beta/4 > 0: descending lowers the winner's error
    assert mw.grad.item() == pytest.approx(0.5)
    assert ml.grad.item() == pytest.approx(-0.5)


def test_sft_loss():
    loss, m = sft_loss(torch.tensor([0.1, 0.3]))
    assert loss.item() == pytest.approx(0.2)


def test_kto_loss_hand_computed():
    m = torch.tensor([0.10, 0.30])
    r = torch.tensor([0.20, 0.20])
    desirable = torch.tensor([True, False])
    beta = 5.0
    # g = r - m = [0.1, -0.1]; KL = clamp(mean(g), 0) = 0
    h = torch.sigmoid(torch.tensor([beta * 0.1, -beta * -0.1]))
    loss, met = kto_loss(m, r, desirable, beta)
    assert loss.item() == pytest.approx((1 - h).mean().item(), rel=1e-6)
    assert met["kl"].item() == 0.0
    # a positive KL is subtracted
    loss2, met2 = kto_loss(m, r, desirable, beta, kl=torch.tensor(0.05))
    h2 = torch.sigmoid(torch.tensor([beta * 0.05, -beta * -0.15]))
    assert loss2.item() == pytest.approx((1 - h2).mean().item(), rel=1e-6)
