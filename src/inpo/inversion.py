"""DDIM inversion on the reference code's grid, and the reparametrized InPO target (pure functions).

Spec (``algorithm.md`` section 1, steps 4-5). With ``n_inv`` inversion steps the step is
``D = T // n_inv`` (``T`` = 1000 training timesteps) and the grid of levels is
``G = [1 - D, 1, 1 + D, ..., 1 + (n_inv - 2) D]`` (for ``n_inv = 10``: ``-99, 1, 101, ..., 801``).
Starting from ``z = x0``, every level ``s`` of ``G`` with ``s < t`` is run, in increasing order::

    eps    = eps_fn(z, s)                       # the UNet really is called with s = -99 first
    x0_hat = (z - sqrt(1 - a_s) eps) / sqrt(a_s)
    z      = sqrt(a_{s+D}) x0_hat + sqrt(1 - a_{s+D}) eps + eta * sigma * xi,  xi ~ N(0, I)
    sigma^2 = (1 - a_s) / (1 - a_{s+D}) * (1 - a_{s+D} / a_s)

where ``a_k = alphas_cumprod[max(k, 0)]`` (level ``1 - D`` stands for ``alphas_cumprod[0]``).
So ``t = 550`` runs 7 calls and ends at level 601; ``t <= 1`` runs one call and ends at 1;
``t > 1 + (n_inv - 2) D`` runs all ``n_inv`` calls and ends at ``1 + (n_inv - 1) D``.
The target is then taken at the sampled ``t`` (not at the level where ``z`` landed):
``eps_hat = (z - sqrt(a_t) x0) / sqrt(1 - a_t)``, so ``z = sqrt(a_t) x0 + sqrt(1 - a_t) eps_hat`` exactly.

``DDIMInverseScheduler`` is deliberately not used: its grid and step semantics changed in
diffusers 0.22 (it skips inversion for t <= 1 and indexes past the schedule for t > 901).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def inversion_grid(n_inv: int = 10, num_train_timesteps: int = 1000) -> list[int]:
    """The levels ``s`` at which the noise predictor is called, in increasing order."""
    if n_inv < 1:
        raise ValueError(f"n_inv must be >= 1, got {n_inv}")
    step = num_train_timesteps // n_inv
    return [1 - step + k * step for k in range(n_inv)]


def inversion_plan(t: int, n_inv: int = 10, num_train_timesteps: int = 1000) -> tuple[int, int]:
    """``(number of noise-predictor calls, level where z ends)`` for one sample at timestep ``t``."""
    step = num_train_timesteps // n_inv
    levels = [s for s in inversion_grid(n_inv, num_train_timesteps) if s < t]
    if not levels:  # t below the first level cannot happen for t >= 0, kept for clarity
        return 0, 0
    return len(levels), levels[-1] + step


def _abar(alphas_cumprod: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    return alphas_cumprod[levels.clamp(min=0)]


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


@torch.no_grad()
def ddim_invert(
    eps_fn: EpsFn,
    x0: torch.Tensor,
    t: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    *,
    n_inv: int = 10,
    eta: float = 0.1,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Invert clean latents ``x0`` towards timestep ``t`` (one per sample) with DDIM.

    ``eps_fn(z, timesteps) -> eps`` is the noise predictor with its conditioning bound inside
    (and classifier-free guidance, if any). When samples have different ``t``, only the samples
    whose next level is below their ``t`` are updated; if ``eps_fn`` has a ``subset(mask)`` method
    returning the predictor for those rows, it is called on the active rows only (saving calls),
    otherwise on the whole batch.

    ``generator`` may be one generator or a list with one per sample (per-sample draws make the
    result independent of how samples are grouped into batches). The stochastic term draws
    ``xi`` for every sample at every level, active or not, so draws do not depend on ``t``.
    Arithmetic is done in float32; the result has ``x0``'s dtype.
    """
    if t.ndim != 1 or t.shape[0] != x0.shape[0]:
        raise ValueError(f"t must hold one timestep per sample: t {tuple(t.shape)}, x0 {tuple(x0.shape)}")
    num_train_timesteps = alphas_cumprod.shape[0]
    step = num_train_timesteps // n_inv
    acp = alphas_cumprod.to(device=x0.device, dtype=torch.float32)
    t = t.to(x0.device)
    z = x0.float().clone()
    for s in inversion_grid(n_inv, num_train_timesteps):
        active = s < t
        if not bool(active.any()):
            break
        s_vec = torch.full_like(t, s)
        a_s, a_next = _abar(acp, s_vec), _abar(acp, s_vec + step)
        xi = _draw_noise(z, generator) if eta > 0 else None
        if bool(active.all()):
            eps = eps_fn(z.to(x0.dtype), s_vec).float()
        elif hasattr(eps_fn, "subset"):
            eps = torch.zeros_like(z)
            eps[active] = eps_fn.subset(active)(z[active].to(x0.dtype), s_vec[active]).float()
        else:
            eps = eps_fn(z.to(x0.dtype), s_vec).float()
        a_s, a_next = _bcast(a_s, z), _bcast(a_next, z)
        x0_hat = (z - (1 - a_s).sqrt() * eps) / a_s.sqrt()
        z_next = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps
        if xi is not None:
            sigma = ((1 - a_s) / (1 - a_next) * (1 - a_next / a_s)).sqrt()
            z_next = z_next + eta * sigma * xi
        z = torch.where(_bcast(active, z), z_next, z)
    return z.to(x0.dtype)


def _draw_noise(like: torch.Tensor, generator) -> torch.Tensor:
    if isinstance(generator, (list, tuple)):
        if len(generator) != like.shape[0]:
            raise ValueError(f"{len(generator)} generators for {like.shape[0]} samples")
        return torch.stack(
            [torch.randn(like.shape[1:], generator=g, dtype=torch.float32) for g in generator]
        ).to(like.device)
    return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.device)


def reparametrized_target(
    z: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """``eps_hat = (z - sqrt(a_t) x0) / sqrt(1 - a_t)`` at the sampled ``t`` (float32 arithmetic)."""
    a_t = _bcast(alphas_cumprod.to(device=z.device, dtype=torch.float32)[t.to(z.device)], z)
    return ((z.float() - a_t.sqrt() * x0.float()) / (1 - a_t).sqrt()).to(z.dtype)


def add_noise(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """Forward diffusion ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise`` (float32 arithmetic)."""
    a_t = _bcast(alphas_cumprod.to(device=x0.device, dtype=torch.float32)[t.to(x0.device)], x0)
    return (a_t.sqrt() * x0.float() + (1 - a_t).sqrt() * noise.float()).to(x0.dtype)
