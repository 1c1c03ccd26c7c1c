"""Values of the SFT, KTO and DPO inputs (``x_t``, ``t``, target, labels), not only "it trains":
each target is the noise that built its ``x_t`` from its own image, drawn per image (KTO) or per
pair (DPO), independent of the image, and timesteps cover ``[t_min, t_max]`` inclusive."""

from __future__ import annotations

import torch

from inpo.conditioning import Cond
from inpo.config import MethodConfig
from inpo.methods import PairGenerators, get_method

SHAPE = (4, 6, 6)


def acp() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def forward_by_hand(x0, noise, t, a):
    """``sqrt(a_t) x0 + sqrt(1 - a_t) noise`` in float64."""
    at = a.double()[t].view(-1, 1, 1, 1)
    return at.sqrt() * x0.double() + (1 - at).sqrt() * noise.double()


def _inputs(name, lw, ll, idx=(4, 5, 6), **kw):
    cfg = MethodConfig(name=name, **kw)
    cond = Cond(torch.arange(len(lw) * 2 * 3, dtype=torch.float32).view(len(lw), 2, 3))
    return get_method(cfg.name).build(cfg, lw, ll, cond, PairGenerators.for_indices(7, 1, list(idx)), acp()), cond


def test_sft_target_is_the_winner_noise():
    torch.manual_seed(0)
    lw, ll = torch.randn(3, *SHAPE), torch.randn(3, *SHAPE)
    inp, cond = _inputs("sft", lw, None, t_min=100, t_max=300)
    assert inp.x_t.shape == (3, *SHAPE) and inp.t.shape == (3,)  # winners only
    assert all(100 <= v <= 300 for v in inp.t.tolist())
    torch.testing.assert_close(inp.x_t.double(), forward_by_hand(lw, inp.target, inp.t, acp()), rtol=0, atol=1e-5)
    assert torch.equal(inp.cond.hidden, cond.hidden)
    again, _ = _inputs("sft", 3 * lw + 1, ll, t_min=100, t_max=300)  # the draws do not depend on the image
    assert torch.equal(again.target, inp.target) and torch.equal(again.t, inp.t)
    assert not torch.allclose(inp.target[0], inp.target[1])
    assert abs(inp.target.mean().item()) < 0.2 and 0.8 < inp.target.std().item() < 1.2  # N(0, 1) noise


def test_kto_per_image_its_own_t_noise_and_given_label():
    """Diffusion-KTO on per-image data: one row per image, its label as given, its own ``t`` and noise."""
    torch.manual_seed(2)
    x0 = torch.randn(4, *SHAPE)
    cfg = MethodConfig(name="kto", t_min=0, t_max=999)
    cond = Cond(torch.arange(4 * 2 * 3, dtype=torch.float32).view(4, 2, 3))
    labels = torch.tensor([True, False, False, True])
    inp = get_method("kto").build(cfg, x0, None, cond, PairGenerators.for_indices(7, 1, [4, 5, 6, 7]), acp(),
                                  desirable=labels)
    assert inp.desirable.tolist() == [True, False, False, True] and inp.x_t.shape == (4, *SHAPE)
    torch.testing.assert_close(inp.x_t.double(), forward_by_hand(x0, inp.target, inp.t, acp()), rtol=0, atol=1e-5)
    assert len(set(inp.t.tolist())) == 4 and torch.equal(inp.cond.hidden, cond.hidden)
    assert all(not torch.allclose(inp.target[i], inp.target[j]) for i in range(4) for j in range(i))
    again = get_method("kto").build(cfg, 2 * x0, None, cond, PairGenerators.for_indices(7, 1, [4, 5, 6, 7]), acp(),
                                    desirable=~labels)
    assert torch.equal(again.target, inp.target) and torch.equal(again.t, inp.t)  # draws: not from image or label
    assert again.desirable.tolist() == [False, True, True, False]


def test_kto_pairs_each_image_its_own_t_and_noise_and_label():
    torch.manual_seed(1)
    lw, ll = torch.randn(3, *SHAPE), torch.randn(3, *SHAPE)
    inp, cond = _inputs("kto_pairs", lw, ll, t_min=0, t_max=999)
    assert inp.desirable.tolist() == [True] * 3 + [False] * 3  # winners desirable, losers not
    x0 = torch.cat([lw, ll])
    torch.testing.assert_close(inp.x_t.double(), forward_by_hand(x0, inp.target, inp.t, acp()), rtol=0, atol=1e-5)
    t_w, t_l = inp.t.chunk(2)
    assert (t_w != t_l).all()  # not shared within a pair
    n_w, n_l = inp.target.chunk(2)
    assert all(not torch.allclose(n_w[i], n_l[i]) for i in range(3))
    assert torch.equal(inp.cond.hidden, torch.cat([cond.hidden, cond.hidden]))
    again, _ = _inputs("kto_pairs", ll, lw, t_min=0, t_max=999)
    assert torch.equal(again.target, inp.target) and torch.equal(again.t, inp.t)


def test_timesteps_cover_the_closed_range():
    lw = torch.zeros(64, 1, 2, 2)
    inp, _ = _inputs("dpo", lw, lw, idx=range(64), t_min=5, t_max=7)
    assert set(inp.t.tolist()) == {5, 6, 7}
    one, _ = _inputs("sft", lw, None, idx=range(64), t_min=999, t_max=999)
    assert set(one.t.tolist()) == {999}
