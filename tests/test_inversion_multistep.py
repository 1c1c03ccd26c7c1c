"""Multi-step DDIM inversion against an independent hand computation.

The predictor here depends on the state ``z`` and on the level ``s`` (a constant predictor would
make the path irrelevant), so calling it on the wrong input, at the wrong level, stepping to the
wrong next level, dropping the stochastic term or the classifier-free guidance all change the
result. The hand computation runs per sample in float64, straight from the spec
(``algorithm.md`` section 1.4; the docstring of :mod:`inpo.inversion`).
"""

from __future__ import annotations

import math

import pytest
import torch

from inpo.conditioning import Cond
from inpo.config import MethodConfig
from inpo.inversion import ddim_invert, reparametrized_target
from inpo.methods import PairGenerators, get_method

SHAPE = (4, 6, 6)


def sd_alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def eps_of(z: torch.Tensor, s: float) -> torch.Tensor:
    """A state- and level-dependent stand-in noise predictor (row-wise, any dtype)."""
    return torch.tanh(z) * (1.0 + s / 1000.0) + 0.1 * torch.sin(3.0 * z) - 0.02 * s / 1000.0


class Recording:
    """The predictor as ``ddim_invert`` sees it; records every call's levels and inputs."""

    def __init__(self):
        self.calls: list[tuple[list[int], torch.Tensor]] = []

    def __call__(self, z, timesteps):
        self.calls.append((timesteps.tolist(), z.detach().clone()))
        return eps_of(z, timesteps.float().view(-1, *([1] * (z.ndim - 1))))


def hand_invert(x0, t, acp, n_inv, eta, seeds, eps=eps_of):
    """Per-sample DDIM inversion in float64, with the predictor inputs each sample fed in.

    Noise ``xi`` is drawn for every sample at every level run while any sample is still active
    (one ``randn(C, H, W)`` per sample from its own generator), as the spec says.
    """
    acp64 = acp.double()
    step = 1000 // n_inv
    levels = [1 - step + k * step for k in range(n_inv)]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    zs = [x0[i].double().clone() for i in range(len(x0))]
    fed: list[list[tuple[int, torch.Tensor]]] = [[] for _ in zs]

    def a(k):
        return acp64[max(k, 0)]

    for s in levels:
        if not any(s < int(ti) for ti in t):
            break
        xis = [torch.randn(x0.shape[1:], generator=g, dtype=torch.float32).double() for g in gens]
        for i, z in enumerate(zs):
            if not s < int(t[i]):
                continue
            fed[i].append((s, z.clone()))
            e = eps(z, float(s))
            a_s, a_n = a(s), a(s + step)
            x0_hat = (z - math.sqrt(1 - a_s) * e) / math.sqrt(a_s)
            z_next = math.sqrt(a_n) * x0_hat + math.sqrt(1 - a_n) * e
            sigma = math.sqrt((1 - a_s) / (1 - a_n) * (1 - a_n / a_s))
            zs[i] = z_next + eta * sigma * xis[i]
    return torch.stack(zs), fed


def test_single_sample_path_levels_and_inputs():
    acp = sd_alphas_cumprod()
    torch.manual_seed(0)
    x0 = torch.randn(1, *SHAPE)
    fn = Recording()
    z = ddim_invert(fn, x0, torch.tensor([550]), acp, n_inv=10, eta=0.0)
    expected, fed = hand_invert(x0, [550], acp, 10, 0.0, [0])
    assert [c[0] for c in fn.calls] == [[s] for s in (-99, 1, 101, 201, 301, 401, 501)]
    assert [s for s, _ in fed[0]] == [-99, 1, 101, 201, 301, 401, 501]
    # the predictor saw the current state at every level: x0 first, then each intermediate z
    torch.testing.assert_close(fn.calls[0][1], x0, rtol=0, atol=0)
    for (_, seen), (_, want) in zip(fn.calls, fed[0]):
        torch.testing.assert_close(seen.double(), want.unsqueeze(0), rtol=0, atol=2e-5)
    assert not torch.allclose(fn.calls[3][1], x0, atol=0.1)  # the path really moves
    torch.testing.assert_close(z.double(), expected, rtol=0, atol=5e-5)


@pytest.mark.parametrize("n_inv", [3, 5, 10])
def test_batch_with_noise_equals_hand_computation(n_inv):
    acp = sd_alphas_cumprod()
    torch.manual_seed(1)
    x0 = torch.randn(4, *SHAPE)
    t = torch.tensor([0, 150, 550, 999])
    seeds = [11, 12, 13, 14]
    fn = Recording()
    z = ddim_invert(fn, x0, t, acp, n_inv=n_inv, eta=0.1,
                    generator=[torch.Generator().manual_seed(s) for s in seeds])
    expected, fed = hand_invert(x0, t.tolist(), acp, n_inv, 0.1, seeds)
    torch.testing.assert_close(z.double(), expected, rtol=0, atol=1e-4)
    # a plain function has no subset(): it is called on the whole batch at every level run
    step = 1000 // n_inv
    assert [c[0] for c in fn.calls] == [[1 - step + k * step] * 4 for k in range(n_inv)]
    for i in range(4):  # every sample's own inputs, as long as it is active
        for k, (_s, want) in enumerate(fed[i]):
            torch.testing.assert_close(fn.calls[k][1][i].double(), want, rtol=0, atol=1e-4)
    # without the stochastic term the result is different (eta is applied)
    z0 = ddim_invert(Recording(), x0, t, acp, n_inv=n_inv, eta=0.0)
    assert (z0 - z)[1:].abs().max() > 1e-3


def test_subset_predictor_gets_only_active_rows_at_their_levels():
    acp = sd_alphas_cumprod()
    torch.manual_seed(2)
    x0 = torch.randn(3, *SHAPE)
    t = torch.tensor([150, 999, 2])

    class Sub(Recording):
        def __init__(self, rows=None, log=None):
            super().__init__()
            self.rows = rows
            self.log = log if log is not None else self.calls

        def __call__(self, z, timesteps):
            self.log.append((self.rows, timesteps.tolist(), z.detach().clone()))
            return eps_of(z, timesteps.float().view(-1, 1, 1, 1))

        def subset(self, mask):
            return Sub(mask.nonzero().flatten().tolist(), self.log)

    fn = Sub()
    z = ddim_invert(fn, x0, t, acp, n_inv=10, eta=0.1, generator=[torch.Generator().manual_seed(i) for i in range(3)])
    expected, fed = hand_invert(x0, t.tolist(), acp, 10, 0.1, [0, 1, 2])
    torch.testing.assert_close(z.double(), expected, rtol=0, atol=1e-4)
    rows = [r for r, _, _ in fn.calls]
    assert rows == [None, None, [0, 1], [1], [1], [1], [1], [1], [1], [1]]  # -99, 1 all; 101 < 150; then 999 only
    assert [s for _, s, _ in fn.calls][2] == [101, 101]
    for i in range(3):  # each sample's own inputs, in order, while it is active
        seen = [z_k[i] if r is None else z_k[r.index(i)] for r, _, z_k in fn.calls if r is None or i in r]
        assert len(seen) == len(fed[i])
        for got, (_, want) in zip(seen, fed[i]):
            torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4)


def test_target_is_taken_at_sampled_t_not_landing_level():
    acp = sd_alphas_cumprod()
    torch.manual_seed(3)
    x0 = torch.randn(2, *SHAPE)
    t = torch.tensor([550, 950])  # lands at 601 and 901
    z = ddim_invert(Recording(), x0, t, acp, n_inv=10, eta=0.1,
                    generator=[torch.Generator().manual_seed(i) for i in range(2)])
    eps_hat = reparametrized_target(z, x0, t, acp)
    a = acp.double()[t].view(-1, 1, 1, 1)
    want = (z.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()
    torch.testing.assert_close(eps_hat.double(), want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ through InPO's input builder


class CondUnet:
    """A stand-in UNet whose output depends on the state, the level and the conditioning."""

    def __init__(self):
        self.seen: list[tuple[int, list[int]]] = []

    def __call__(self, z, t, encoder_hidden_states):
        self.seen.append((z.shape[0], t.tolist()))
        c = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return type("Out", (), {"sample": eps_of(z, t.float().view(-1, 1, 1, 1)) * (1 + c) + c})()


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_inpo_inputs_follow_hand_inversion_with_guidance(guidance):
    acp = sd_alphas_cumprod()
    torch.manual_seed(4)
    lw, ll = torch.randn(2, *SHAPE), torch.randn(2, *SHAPE)
    cond = Cond(torch.full((2, 3, 5), 0.3) + 0.1 * torch.arange(2).view(-1, 1, 1))
    uncond = Cond(torch.full((2, 3, 5), -0.2))
    cfg = MethodConfig(name="inpo", t_min=200, t_max=999)
    cfg.inversion.eta = 0.0
    cfg.inversion.guidance_scale = guidance
    unet = CondUnet()
    inp = get_method(cfg.name).build(cfg, lw, ll, cond, PairGenerators.for_indices(0, 0, [3, 4]), acp,
                       inversion_unet=unet, uncond=uncond if guidance != 1.0 else None)
    x0 = torch.cat([lw, ll])
    c = torch.tensor([0.3, 0.4, 0.3, 0.4]).double()  # winner rows then loser rows share their pair's caption
    u = -0.2

    def guided(i):
        def eps(z, s):
            e_c = eps_of(z, s) * (1 + c[i]) + c[i]
            if guidance == 1.0:
                return e_c
            e_u = eps_of(z, s) * (1 + u) + u
            return e_u + guidance * (e_c - e_u)
        return eps

    t = inp.t.tolist()
    assert t[:2] == t[2:] and all(200 <= v <= 999 for v in t)
    for i in range(4):
        z_i, _ = hand_invert(x0[i : i + 1], [t[i]], acp, 10, 0.0, [0], eps=guided(i))
        torch.testing.assert_close(inp.x_t[i : i + 1].double(), z_i, rtol=0, atol=1e-4)
        a = acp.double()[t[i]]
        target = (z_i - a.sqrt() * x0[i : i + 1].double()) / (1 - a).sqrt()
        torch.testing.assert_close(inp.target[i : i + 1].double(), target, rtol=0, atol=2e-4)
    rows = 8 if guidance != 1.0 else 4  # unconditional + conditional rows in one call when guided
    assert unet.seen[0] == (rows, [-99] * rows)
