"""PickScore v1: ``logit_scale.exp() * cos(text_emb, image_emb)`` (about 21-23 on SD images).

Model ``yuvalkirstain/PickScore_v1`` (a transformers ``CLIPModel``, ViT-H-14 sized), processor
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (CLIP image processor + tokenizer, max length 77), exactly
as in the PickScore reference code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inpo.evaluators import check_inputs, register
from inpo.evaluators.clip import batch_slices, resolve_device, resolve_dtype, to_rgb, unavailable

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def _features(out) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` is projected; 4.x a tensor."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("image_embeds", "text_embeds", "pooler_output"):
        val = getattr(out, key, None)
        if val is not None:
            return val
    raise TypeError(f"cannot find embeddings in {type(out).__name__}")


@register("pickscore")
class PickScoreEvaluator:
    """Options: ``model`` (hub id or local folder of the CLIPModel), ``processor`` (hub id or local
    folder of the CLIPProcessor), ``device``, ``dtype``, ``batch_size``."""

    name = "pickscore"

    def __init__(
        self,
        model: str | Path = PICKSCORE_MODEL,
        processor: str | Path = PICKSCORE_PROCESSOR,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 16,
        version: str | None = None,
        clip_model=None,
        clip_processor=None,
    ) -> None:
        self.model_id = str(model)
        self.processor_id = str(processor)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = int(batch_size)
        self.version = version or f"{Path(self.model_id).name}"  # "PickScore_v1"
        if clip_processor is None:
            clip_processor = self._load_processor()
        if clip_model is None:
            clip_model = self._load_model()
        self.processor = clip_processor
        self.model = clip_model.eval().to(self.device, self.dtype)

    @classmethod
    def from_models(cls, model, processor, **kwargs) -> PickScoreEvaluator:
        """Build around an already-built ``CLIPModel`` and ``CLIPProcessor`` (no download)."""
        return cls(clip_model=model, clip_processor=processor, **kwargs)

    def _load_processor(self):
        from transformers import AutoProcessor

        try:
            return AutoProcessor.from_pretrained(self.processor_id)
        except Exception as e:
            raise unavailable("PickScore processor", self.processor_id, "processor", e, repo=self.processor_id) from e

    def _load_model(self):
        from transformers import CLIPModel

        try:
            return CLIPModel.from_pretrained(self.model_id)
        except Exception as e:
            raise unavailable("PickScore model", self.model_id, "model", e, repo=self.model_id) from e

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised float32 ``(image_emb, text_emb)`` of one batch, on CPU."""
        img_in = self.processor(images=to_rgb(images), return_tensors="pt")
        txt_in = self.processor(
            text=list(prompts), padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        pixels = img_in["pixel_values"].to(self.device, self.dtype)
        img = _features(self.model.get_image_features(pixel_values=pixels)).float()
        txt = _features(
            self.model.get_text_features(
                input_ids=txt_in["input_ids"].to(self.device),
                attention_mask=txt_in["attention_mask"].to(self.device),
            )
        ).float()
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        return img.cpu(), txt.cpu()

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        check_inputs(images, prompts)
        scale = self.model.logit_scale.detach().float().exp().cpu()
        out = np.empty(len(images), dtype=np.float64)
        for sl in batch_slices(len(images), self.batch_size):
            img, txt = self.embed(images[sl], prompts[sl])
            out[sl] = (scale * (txt * img).sum(-1)).double().numpy()
        return out
