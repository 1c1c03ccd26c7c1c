"""Training methods: each one class in one registry (:data:`METHODS`).

InPO, Diffusion-DPO, SFT and KTO share everything else (the trainer, the encoders, the error
computation). A method states what it :meth:`~Method.needs` from the trainer (a frozen reference,
the loser image, the unconditional branch, an inversion UNet), how it builds (:meth:`~Method.build`)
``(x_t, t, target)`` for a micro-batch, and its :meth:`~Method.loss` from per-image errors. The
trainer and :func:`inpo.config.validate` ask the registry (:func:`get_method`) and name no method.

Add a method: a subclass of :class:`Method` in this module, decorated with :func:`register`, and
its loss function in :mod:`inpo.losses`; ``method.name`` in a config then selects it (every
process that reads a config imports this module, so it knows the method). ``tests/test_methods.py`` registers one and trains it through the real trainer.

Every random draw of a pair (caption dropout, timestep, VAE posterior sample, noise, inversion
noise) comes from generators seeded by ``(seed, epoch, pair index)``, so a pair's draws do not
depend on which micro-batch, process or resumed run it lands in. This is what makes
``B x A`` accumulation, one process vs two, and resume-after-kill give the same result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from .conditioning import Cond, UNetEps
from .inversion import add_noise, ddim_invert, reparametrized_target
from .losses import dpo_loss, kto_kl, kto_loss, sft_loss

if TYPE_CHECKING:
    from .config import MethodConfig

# --------------------------------------------------------------------------- seeding


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@dataclass
class PairGenerators:
    """Three generators per pair: pair-level draws, winner-image draws, loser-image draws."""

    pair: list[torch.Generator]
    w: list[torch.Generator]
    l: list[torch.Generator]

    @classmethod
    def for_indices(cls, seed: int, epoch: int, indices: Sequence[int]) -> PairGenerators:
        def gens(stream: int) -> list[torch.Generator]:
            return [torch.Generator().manual_seed(derive_seed(seed, epoch, int(i), stream)) for i in indices]

        return cls(pair=gens(0), w=gens(1), l=gens(2))


def _randn_each(gens: list[torch.Generator], shape, device, dtype=torch.float32) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in gens]).to(device, dtype)


def draw_timesteps(gens: list[torch.Generator], t_min: int, t_max: int) -> torch.Tensor:
    return torch.cat([torch.randint(t_min, t_max + 1, (1,), generator=g) for g in gens])


def draw_dropout(gens: list[torch.Generator], p: float) -> list[bool]:
    return [bool(torch.rand((), generator=g) < p) for g in gens]


# --------------------------------------------------------------------------- the method interface


@dataclass(frozen=True)
class Needs:
    """What a method needs the trainer to provide."""

    reference: bool = True
    """A frozen copy of the initial policy, whose per-image errors ``ref_err`` reach :meth:`Method.loss`."""
    loser: bool = True
    """The loser image of each pair (``latents_l``); ``False``: winners only (no loser is decoded)."""
    uncond: bool = False
    """The conditioning of the empty caption (``uncond``), e.g. for classifier-free guidance."""
    inversion: bool = False
    """A UNet to invert with (``inversion_unet``): the policy or the reference, per ``inversion.model``."""
    labels: bool = False
    """Per-image labels (``desirable``, one bool per image): the data is a per-image labelled set
    (``data.examples: images``, :mod:`inpo.data.per_image`), each item one image, not a pair."""


@dataclass
class Inputs:
    """What the shared step feeds the policy and reference: ``unet(x_t, t, cond) ~ target``."""

    x_t: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    cond: Cond
    desirable: torch.Tensor | None = None  # KTO labels, one per row


AllReduceMean = Callable[[torch.Tensor], torch.Tensor]


class Method:
    """A training method. Subclasses set :attr:`name` and implement :meth:`build` and :meth:`loss`."""

    name: ClassVar[str]

    def needs(self, cfg: MethodConfig) -> Needs:
        """What the trainer must provide for ``cfg`` (default: reference and loser)."""
        return Needs()

    def validate(self, cfg: MethodConfig) -> None:
        """Method-specific config checks (raise ``ValueError`` naming the key); default: none."""

    def build(
        self,
        cfg: MethodConfig,
        latents_w: torch.Tensor,
        latents_l: torch.Tensor | None,
        cond: Cond,
        gens: PairGenerators,
        alphas_cumprod: torch.Tensor,
        *,
        inversion_unet=None,
        uncond: Cond | None = None,
        desirable: torch.Tensor | None = None,
    ) -> Inputs:
        """``(x_t, t, target)`` for one micro-batch of ``B`` pairs (or images), under ``no_grad``.

        Rows are the winners (then the losers when :attr:`Needs.loser`); ``latents_l``,
        ``inversion_unet``, ``uncond`` and ``desirable`` (per-image labels) are given exactly when
        :meth:`needs` asks for them.
        """
        raise NotImplementedError

    def loss(
        self,
        cfg: MethodConfig,
        model_err: torch.Tensor,
        ref_err: torch.Tensor | None,
        inputs: Inputs,
        *,
        all_reduce_mean: AllReduceMean | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss and metrics from per-image errors (rows as in :meth:`build`); ``ref_err`` is
        ``None`` exactly when :attr:`Needs.reference` is false; ``all_reduce_mean`` averages a
        tensor over the processes (the trainer passes it; the identity with one process)."""
        raise NotImplementedError


METHODS: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` selectable as ``method.name: <cls.name>``."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} is already registered ({type(METHODS[cls.name]).__name__})")
    METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method.name: unknown method {name!r}; registered: {sorted(METHODS)}") from None


# --------------------------------------------------------------------------- the methods


def _pair_rows(latents_w: torch.Tensor, latents_l: torch.Tensor, cond: Cond) -> tuple[torch.Tensor, Cond]:
    """Winner rows then loser rows, each with its pair's conditioning."""
    return torch.cat([latents_w, latents_l]), cond.repeat2()


@register
class SFT(Method):
    """Plain epsilon-MSE on the winner image only; no reference model; optional offset noise
    (``method.noise_offset``)."""

    name = "sft"

    def needs(self, cfg):
        return Needs(reference=False, loser=False)

    def build(self, cfg, latents_w, latents_l, cond, gens, alphas_cumprod, *, inversion_unet=None, uncond=None):
        t = draw_timesteps(gens.pair, cfg.t_min, cfg.t_max).to(latents_w.device)
        noise = _randn_each(gens.w, latents_w.shape[1:], latents_w.device, latents_w.dtype)
        if cfg.noise_offset:  # drawn after the noise from the same generator: offset 0 draws nothing more
            offset = _randn_each(gens.w, (latents_w.shape[1], 1, 1), latents_w.device, latents_w.dtype)
            noise = noise + cfg.noise_offset * offset
        return Inputs(add_noise(latents_w, noise, t, alphas_cumprod), t, noise, cond)

    def loss(self, cfg, model_err, ref_err, inputs, *, all_reduce_mean=None):
        return sft_loss(model_err)


@register
class DPO(Method):
    """Diffusion-DPO: one ``t`` and one noise per pair, shared by its winner and loser; target = noise."""

    name = "dpo"

    def build(self, cfg, latents_w, latents_l, cond, gens, alphas_cumprod, *, inversion_unet=None, uncond=None):
        device = latents_w.device
        x0, cond2 = _pair_rows(latents_w, latents_l, cond)
        t = draw_timesteps(gens.pair, cfg.t_min, cfg.t_max).to(device)
        noise = _randn_each(gens.pair, latents_w.shape[1:], device, latents_w.dtype)  # shared by w and l
        t2, noise2 = torch.cat([t, t]), torch.cat([noise, noise])
        return Inputs(add_noise(x0, noise2, t2, alphas_cumprod), t2, noise2, cond2)

    def loss(self, cfg, model_err, ref_err, inputs, *, all_reduce_mean=None):
        mw, ml = model_err.chunk(2)
        rw, rl = ref_err.chunk(2)
        return dpo_loss(mw, ml, rw, rl, cfg.beta)


@register
class InPO(DPO):
    """DDIM-InPO (``algorithm.md`` section 1): one ``t`` per pair; each image DDIM-inverted to
    ``t`` with its own reparametrized target; the DPO-form loss."""

    name = "inpo"

    def needs(self, cfg):
        return Needs(uncond=cfg.inversion.guidance_scale != 1.0, inversion=True)

    def build(self, cfg, latents_w, latents_l, cond, gens, alphas_cumprod, *, inversion_unet=None, uncond=None):
        x0, cond2 = _pair_rows(latents_w, latents_l, cond)
        t = draw_timesteps(gens.pair, cfg.t_min, cfg.t_max).to(latents_w.device)
        t2 = torch.cat([t, t])  # one t per pair, shared by its winner and loser
        inv = cfg.inversion
        eps_fn = UNetEps(
            inversion_unet, cond2,
            uncond=None if uncond is None else uncond.repeat2(),
            guidance_scale=inv.guidance_scale,
        )
        z = ddim_invert(eps_fn, x0, t2, alphas_cumprod, n_inv=inv.n_steps, eta=inv.eta,
                        generator=gens.w + gens.l)
        target = reparametrized_target(z, x0, t2, alphas_cumprod)  # each image its own target
        return Inputs(z, t2, target, cond2)


@register
class KTO(Method):
    """Diffusion-KTO as its repository runs it (``train_kto_sd_v1.5.py``): per-image data, each item
    one image with its own label (desirable / undesirable, :mod:`inpo.data.per_image`), its own
    ``t`` and noise; the KL estimate is all-reduced across processes before clamping."""

    name = "kto"

    def needs(self, cfg):
        return Needs(loser=False, labels=True)

    def build(self, cfg, latents_w, latents_l, cond, gens, alphas_cumprod, *, inversion_unet=None, uncond=None,
              desirable=None):
        t = draw_timesteps(gens.pair, cfg.t_min, cfg.t_max).to(latents_w.device)
        noise = _randn_each(gens.w, latents_w.shape[1:], latents_w.device, latents_w.dtype)
        return Inputs(add_noise(latents_w, noise, t, alphas_cumprod), t, noise, cond, desirable.bool())

    def loss(self, cfg, model_err, ref_err, inputs, *, all_reduce_mean=None):
        if all_reduce_mean is None:
            kl = kto_kl(model_err, ref_err)
        else:
            kl = all_reduce_mean((ref_err - model_err).mean().detach()).clamp(min=0)
        return kto_loss(model_err, ref_err, inputs.desirable, cfg.beta, kl=kl)


@register
class KTOPairs(KTO):
    """Diffusion-KTO on pairs (this project's earlier baseline, not the reference's recipe): the winner
    desirable, the loser undesirable (50:50), each image its own ``t`` and noise."""

    name = "kto_pairs"

    def needs(self, cfg):
        return Needs()

    def build(self, cfg, latents_w, latents_l, cond, gens, alphas_cumprod, *, inversion_unet=None, uncond=None):
        device = latents_w.device
        x0, cond2 = _pair_rows(latents_w, latents_l, cond)
        shape = latents_w.shape[1:]
        t2 = torch.cat([draw_timesteps(gens.w, cfg.t_min, cfg.t_max), draw_timesteps(gens.l, cfg.t_min, cfg.t_max)])
        t2 = t2.to(device)
        noise2 = torch.cat([_randn_each(gens.w, shape, device, x0.dtype), _randn_each(gens.l, shape, device, x0.dtype)])
        desirable = torch.tensor([True] * len(latents_w) + [False] * len(latents_l), device=device)
        return Inputs(add_noise(x0, noise2, t2, alphas_cumprod), t2, noise2, cond2, desirable)
