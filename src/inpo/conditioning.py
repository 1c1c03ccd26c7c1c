"""How the UNets are fed: text conditioning (SD1.5 / SDXL) and a UNet bound to it as ``eps_fn``.

Shared by every training method (:mod:`inpo.methods`) and the trainer; nothing here depends on a
method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


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

    def __init__(self, tokenizers, text_encoders, *, family: str = "sd15", resolution: int = 512):
        self.tokenizers = list(tokenizers)
        self.text_encoders = list(text_encoders)
        self.family = family
        self.resolution = resolution

    @torch.no_grad()
    def __call__(self, captions: Sequence[str], device) -> Cond:
        if self.family == "sd15":
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

    def __init__(self, unet, cond: Cond, *, uncond: Cond | None = None, guidance_scale: float = 1.0):
        if guidance_scale != 1.0 and uncond is None:
            raise ValueError("inversion guidance_scale != 1 needs the unconditional branch")
        self.unet, self.cond, self.uncond, self.guidance_scale = unet, cond, uncond, guidance_scale

    def __call__(self, z: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.guidance_scale == 1.0:
            return self.unet(z, timesteps, **self.cond.kwargs()).sample
        both = Cond.cat(self.uncond, self.cond)
        eps_u, eps_c = self.unet(torch.cat([z, z]), torch.cat([timesteps, timesteps]), **both.kwargs()).sample.chunk(2)
        return eps_u + self.guidance_scale * (eps_c - eps_u)

    def subset(self, mask: torch.Tensor) -> UNetEps:
        return UNetEps(
            self.unet, self.cond.select(mask),
            uncond=None if self.uncond is None else self.uncond.select(mask),
            guidance_scale=self.guidance_scale,
        )
