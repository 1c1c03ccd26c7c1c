"""DDIM inversion: grid semantics, the reparametrization identity, determinism."""

import math

import pytest
import torch

from inpo.inversion import (
    add_noise,
    ddim_invert,
    inversion_grid,
    inversion_plan,
    reparametrized_target,
)


def sd_alphas_cumprod():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


class CountingEps:
    """eps_fn returning a fixed noise map and recording every call's timesteps."""

    def __init__(self, eps):
        self.eps = eps
        self.calls = []

    def __call__(self, z, timesteps):
        self.calls.append(timesteps.tolist())
        return self.eps[: z.shape[0]].to(z.dtype)


def test_grid_matches_reference():
    assert inversion_grid(10) == [-99, 1, 101, 201, 301, 401, 501, 601, 701, 801]
    assert inversion_grid(5) == [-199, 1, 201, 401, 601]
    assert inversion_grid(3)[:2] == [-332, 1]
    assert len(inversion_grid(30)) == 30


@pytest.mark.parametrize(
    "t,calls,end",
    [(0, 1, 1), (1, 1, 1), (2, 2, 101), (550, 7, 601), (801, 9, 801), (802, 10, 901), (999, 10, 901)],
)
def test_call_counts_and_final_level(t, calls, end):
    assert inversion_plan(t) == (calls, end)
    acp = sd_alphas_cumprod()
    torch.manual_seed(0)
    x0 = torch.randn(1, 4, 8, 8)
    eps = torch.randn(1, 4, 8, 8)
    fn = CountingEps(eps)
    z = ddim_invert(fn, x0, torch.tensor([t]), acp, eta=0.0)
    assert len(fn.calls) == calls
    assert fn.calls[0] == [-99]  # the UNet really is called at -99 first
    # with a constant eps, x0_hat is fixed after the first step (from z = x0 at level a_0), so z
    # lands exactly on level `end`: z = sqrt(a_end) x0_hat + sqrt(1 - a_end) eps
    x0_hat = (x0 - math.sqrt(1 - acp[0]) * eps) / math.sqrt(acp[0])
    expected = math.sqrt(acp[end]) * x0_hat + math.sqrt(1 - acp[end]) * eps
    torch.testing.assert_close(z, expected, rtol=1e-5, atol=1e-5)


def test_mean_calls_over_uniform_t():
    mean_calls = sum(inversion_plan(t)[0] for t in range(1000)) / 1000
    assert mean_calls == pytest.approx(6.4, abs=0.05)


def test_per_sample_t_equals_separate_runs():
    acp = sd_alphas_cumprod()
    torch.manual_seed(1)
    x0 = torch.randn(3, 4, 8, 8)

    def eps_fn(z, s):  # a state-dependent predictor, so the path matters
        return torch.tanh(z) * (1 + s.float().view(-1, 1, 1, 1) / 1000)

    t = torch.tensor([0, 550, 999])
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    joint = ddim_invert(eps_fn, x0, t, acp, eta=0.1, generator=gens)
    for i in range(3):
        alone = ddim_invert(eps_fn, x0[i : i + 1], t[i : i + 1], acp, eta=0.1,
                            generator=[torch.Generator().manual_seed(i)])
        torch.testing.assert_close(joint[i : i + 1], alone)


def test_subset_predictor_used_for_inactive_rows():
    acp = sd_alphas_cumprod()
    x0 = torch.randn(2, 4, 8, 8)

    class Sub:
        def __init__(self):
            self.rows = []

        def __call__(self, z, s):
            self.rows.append(z.shape[0])
            return torch.zeros_like(z)

        def subset(self, mask):
            return self

    fn = Sub()
    ddim_invert(fn, x0, torch.tensor([150, 999]), acp, eta=0.0)
    assert fn.rows == [2, 2, 2, 1, 1, 1, 1, 1, 1, 1]  # levels -99, 1, 101 < 150


def test_reparametrization_identity_exact():
    acp = sd_alphas_cumprod()
    torch.manual_seed(2)
    x0 = torch.randn(4, 4, 8, 8)
    t = torch.tensor([0, 1, 550, 999])
    z = ddim_invert(lambda z, s: torch.sin(z), x0, t, acp, eta=0.1, generator=torch.Generator().manual_seed(0))
    eps_hat = reparametrized_target(z, x0, t, acp)
    a = acp[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(a.sqrt() * x0 + (1 - a).sqrt() * eps_hat, z, rtol=0, atol=2e-5)
    torch.testing.assert_close(add_noise(x0, eps_hat, t, acp), z, rtol=0, atol=2e-5)


def test_eta_zero_is_deterministic_and_eta_positive_is_not():
    acp = sd_alphas_cumprod()
    x0 = torch.randn(2, 4, 8, 8)
    t = torch.tensor([700, 700])
    fn = lambda z, s: torch.tanh(z)  # noqa: E731
    a = ddim_invert(fn, x0, t, acp, eta=0.0, generator=torch.Generator().manual_seed(0))
    b = ddim_invert(fn, x0, t, acp, eta=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    c = ddim_invert(fn, x0, t, acp, eta=0.1, generator=torch.Generator().manual_seed(0))
    d = ddim_invert(fn, x0, t, acp, eta=0.1, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(c, d)
    e = ddim_invert(fn, x0, t, acp, eta=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(c, e)


def test_stochastic_term_has_ddim_sigma():
    """One step (level -99 -> 1) from z = 0 with eps == 0 leaves only the noise, of std eta*sigma."""
    acp = sd_alphas_cumprod()
    x0 = torch.zeros(1, 1, 256, 256)
    z = ddim_invert(lambda z, s: torch.zeros_like(z), x0, torch.tensor([1]), acp, eta=1.0,
                    generator=torch.Generator().manual_seed(0))
    a_s, a_n = acp[0], acp[1]
    sigma = math.sqrt((1 - a_s) / (1 - a_n) * (1 - a_n / a_s))
    assert z.std().item() == pytest.approx(sigma, rel=0.02)
