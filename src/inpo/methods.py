"""How each method builds ``(x_t, target)`` and its loss from a batch.

InPO, Diffusion-DPO, SFT and KTO share everything else (the trainer, the encoders, the error
computation); they differ only in :func:`build_inputs` and :func:`method_loss`.

Every random draw of a pair (caption dropout, timestep, VAE posterior sample, noise, inversion
noise) comes from generators seeded by ``(seed, epoch, pair index)``, so a pair's draws do not
depend on which micro-batch, process or resumed run it lands in. This is what makes
``B x A`` accumulation, one process vs two, and resume-after-kill give the same result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .config import MethodConfig
from .inversion import add_noise, ddim_invert, reparametrized_target
from .losses import dpo_loss, kto_kl, kto_loss, sft_loss

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


# --------------------------------------------------------------------------- conditioning


@dataclass
class Cond:
    """UNet conditioning for a batch: ``encoder_hidden_states`` (+ SDXL ``added_cond_kwargs``)."""

    hidden: torch.Tensor
    added: dict[str, torch.Tensor] | None = None

    def kwargs(self) -> dict:
        out = {"encoder_hidden_states": self.hidden}
        if self.added is not None:
            out["added_cond_kwargs"] = self.added
        return out

    def select(self, mask_or_index) -> Cond:
        added = None if self.added is None else {k: v[mask_or_index] for k, v in self.added.items()}
        return Cond(self.hidden[mask_or_index], added)

    def repeat2(self) -> Cond:
        """Winner and loser rows: ``cat([c, c])``."""
        added = None if self.added is None else {k: torch.cat([v, v]) for k, v in self.added.items()}
        return Cond(torch.cat([self.hidden, self.hidden]), added)

    @staticmethod
    def cat(a: Cond, b: Cond) -> Cond:
        added = None if a.added is None else {k: torch.cat([a.added[k], b.added[k]]) for k in a.added}
        return Cond(torch.cat([a.hidden, b.hidden]), added)


class TextConditioner:
    """Encodes captions into UNet conditioning, for SD1.5 (one CLIP text encoder) and SDXL
    (two encoders, penultimate hidden states concatenated, pooled embedding of the second,
    micro-conditioning ``time_ids = [res, res, 0, 0, res, res]``)."""

    def __init__(self, tokenizers, text_encoders, *, kind: str = "sd15", resolution: int = 512):
        self.tokenizers = list(tokenizers)
        self.text_encoders = list(text_encoders)
        self.kind = kind
        self.resolution = resolution

    @torch.no_grad()
    def __call__(self, captions: Sequence[str], device) -> Cond:
        if self.kind == "sd15":
            ids = self._ids(self.tokenizers[0], captions, device)
            return Cond(self.text_encoders[0](ids)[0])
        hidden, pooled = [], None
        for tok, enc in zip(self.tokenizers, self.text_encoders):
            out = enc(self._ids(tok, captions, device), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]  # CLIPTextModelWithProjection: text_embeds of the last encoder
        r = self.resolution
        time_ids = torch.tensor([[r, r, 0, 0, r, r]] * len(captions), device=device, dtype=pooled.dtype)
        return Cond(torch.cat(hidden, dim=-1), {"text_embeds": pooled, "time_ids": time_ids})

    @staticmethod
    def _ids(tokenizer, captions, device):
        return tokenizer(
            list(captions), padding="max_length", max_length=tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids.to(device)


class UNetEps:
    """``eps_fn(z, timesteps)`` for :func:`inpo.inversion.ddim_invert`: a UNet with its
    conditioning bound, optional classifier-free guidance, and ``subset(mask)``."""

    def __init__(self, unet, cond: Cond, *, uncond: Cond | None = None, guidance_scale: float = 1.0,
                 _counter: list[int] | None = None):
        if guidance_scale != 1.0 and uncond is None:
            raise ValueError("inversion guidance_scale != 1 needs the unconditional branch")
        self.unet, self.cond, self.uncond, self.guidance_scale = unet, cond, uncond, guidance_scale
        self._counter = _counter if _counter is not None else [0]

    @property
    def calls(self) -> int:
        """UNet calls made through this predictor and its subsets."""
        return self._counter[0]

    def __call__(self, z: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self._counter[0] += 1
        if self.guidance_scale == 1.0:
            return self.unet(z, timesteps, **self.cond.kwargs()).sample
        both = Cond.cat(self.uncond, self.cond)
        eps_u, eps_c = self.unet(torch.cat([z, z]), torch.cat([timesteps, timesteps]), **both.kwargs()).sample.chunk(2)
        return eps_u + self.guidance_scale * (eps_c - eps_u)

    def subset(self, mask: torch.Tensor) -> UNetEps:
        return UNetEps(
            self.unet, self.cond.select(mask),
            uncond=None if self.uncond is None else self.uncond.select(mask),
            guidance_scale=self.guidance_scale, _counter=self._counter,
        )


# --------------------------------------------------------------------------- inputs and losses


@dataclass
class Inputs:
    """What the shared step feeds the policy and reference: ``unet(x_t, t, cond) ~ target``."""

    x_t: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    cond: Cond
    desirable: torch.Tensor | None = None  # KTO labels, one per row


def build_inputs(
    cfg: MethodConfig,
    latents_w: torch.Tensor,
    latents_l: torch.Tensor | None,
    cond: Cond,
    gens: PairGenerators,
    alphas_cumprod: torch.Tensor,
    *,
    inversion_unet=None,
    uncond: Cond | None = None,
) -> Inputs:
    """Build ``(x_t, t, target)`` for one micro-batch of ``B`` pairs (rows: winners then losers)."""
    device = latents_w.device
    shape = latents_w.shape[1:]
    if cfg.name == "sft":
        t = draw_timesteps(gens.pair, cfg.t_min, cfg.t_max).to(device)
        noise = _randn_each(gens.w, shape, device, latents_w.dtype)
        return Inputs(add_noise(latents_w, noise, t, alphas_cumprod), t, noise, cond)

    assert latents_l is not None, f"method {cfg.name} needs winner and loser images"
    x0 = torch.cat([latents_w, latents_l])
    cond2 = cond.repeat2()
    if cfg.name == "dpo":
        t = draw_timesteps(gens.pair, cfg.t_min, cfg.t_max).to(device)
        noise = _randn_each(gens.pair, shape, device, latents_w.dtype)  # shared by w and l
        t2, noise2 = torch.cat([t, t]), torch.cat([noise, noise])
        return Inputs(add_noise(x0, noise2, t2, alphas_cumprod), t2, noise2, cond2)
    if cfg.name == "kto":
        t2 = torch.cat([draw_timesteps(gens.w, cfg.t_min, cfg.t_max), draw_timesteps(gens.l, cfg.t_min, cfg.t_max)])
        t2 = t2.to(device)
        noise2 = torch.cat([_randn_each(gens.w, shape, device, x0.dtype), _randn_each(gens.l, shape, device, x0.dtype)])
        desirable = torch.tensor([True] * len(latents_w) + [False] * len(latents_l), device=device)
        return Inputs(add_noise(x0, noise2, t2, alphas_cumprod), t2, noise2, cond2, desirable)
    if cfg.name == "inpo":
        t = draw_timesteps(gens.pair, cfg.t_min, cfg.t_max).to(device)
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
    raise ValueError(f"unknown method {cfg.name!r}")


def per_image_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_CHW((pred - target)^2)`` per image, in float32."""
    return ((pred.float() - target.float()) ** 2).mean(dim=list(range(1, pred.ndim)))


def method_loss(
    cfg: MethodConfig,
    model_err: torch.Tensor,
    ref_err: torch.Tensor | None,
    inputs: Inputs,
    *,
    all_reduce_mean=None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of ``cfg.name`` from per-image errors (rows: winners then losers)."""
    if cfg.name == "sft":
        return sft_loss(model_err)
    assert ref_err is not None
    if cfg.name in ("dpo", "inpo"):
        mw, ml = model_err.chunk(2)
        rw, rl = ref_err.chunk(2)
        return dpo_loss(mw, ml, rw, rl, cfg.beta)
    if cfg.name == "kto":
        g_mean = (ref_err - model_err).mean().detach()
        if all_reduce_mean is not None:
            g_mean = all_reduce_mean(g_mean)
        kl = g_mean.clamp(min=0) if all_reduce_mean is not None else kto_kl(model_err, ref_err)
        return kto_loss(model_err, ref_err, inputs.desirable, cfg.beta, kl=kl)
    raise ValueError(f"unknown method {cfg.name!r}")


def needs_reference(cfg: MethodConfig) -> bool:
    return cfg.name != "sft"
