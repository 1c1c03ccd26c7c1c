"""PickScore v1: ``logit_scale.exp() * cos(text_emb, image_emb)`` (about 21-23 on SD images).

Reference: the model card of ``yuvalkirstain/PickScore_v1``: ``AutoProcessor`` of
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (CLIP image processor: resize the shortest side to 224,
centre crop; CLIP tokenizer, ``padding=True, truncation=True, max_length=77``), ``AutoModel`` of
``yuvalkirstain/PickScore_v1`` (a transformers ``CLIPModel``) in float32, ``get_image_features`` /
``get_text_features``, L2-normalise, ``model.logit_scale.exp() * (text_embs @ image_embs.T)``.

The processor is loaded as a ``CLIPProcessor`` (what ``AutoProcessor`` returns for the hub repo):
``AutoProcessor`` on a local copy of the processor files without the repo's ``config.json`` returns
a bare tokenizer, which cannot preprocess images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inpo import hub
from inpo.evaluators import check_inputs
from inpo.evaluators.common import autocast, batched_scores, check_precision

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
MAX_LENGTH = 77  # the model card's tokenizer call


def features(out) -> torch.Tensor:
    """The projected embedding of ``get_*_features``: a tensor (transformers 4) or a model output
    whose ``pooler_output`` is projected (transformers 5)."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("image_embeds", "text_embeds", "pooler_output"):
        val = getattr(out, key, None)
        if val is not None:
            return val
    raise TypeError(f"cannot find embeddings in {type(out).__name__}")


class PickScoreEvaluator:
    """Options: ``model`` (hub id or local folder of the CLIPModel), ``processor`` (hub id or local
    folder of the CLIP processor files), ``precision`` (default ``fp32``, the model card's; ``amp``:
    fp16 autocast on CUDA), ``device``, ``batch_size``."""

    def __init__(
        self,
        model: str | Path = PICKSCORE_MODEL,
        processor: str | Path = PICKSCORE_PROCESSOR,
        *,
        precision: str = "fp32",
        device: str | torch.device | None = None,
        batch_size: int = 16,
        version: str | None = None,
        clip_model=None,
        clip_processor=None,
    ) -> None:
        self.model_id = str(model)
        self.processor_id = str(processor)
        self.precision = check_precision(precision)
        self.device = hub.resolve_device(device)
        self.batch_size = int(batch_size)
        self.version = version or Path(self.model_id).name  # "PickScore_v1"
        if clip_processor is None:
            from transformers import CLIPProcessor

            clip_processor = hub.from_pretrained(CLIPProcessor, self.processor_id, what="PickScore processor",
                                                 option="processor")
        if clip_model is None:
            from transformers import CLIPModel

            clip_model = hub.from_pretrained(CLIPModel, self.model_id, what="PickScore model", option="model")
        self.processor = clip_processor
        self.model = clip_model.eval().to(self.device, torch.float32)

    @classmethod
    def from_models(cls, model, processor, **kwargs) -> PickScoreEvaluator:
        """Build around an already-built ``CLIPModel`` and ``CLIPProcessor`` (no download)."""
        return cls(clip_model=model, clip_processor=processor, **kwargs)

    @torch.inference_mode()
    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """``logit_scale.exp() * cos`` of one batch of (image, prompt) pairs, float64 on CPU."""
        kw = dict(padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        img_in = self.processor(images=list(images), **kw).to(self.device)
        txt_in = self.processor(text=list(prompts), **kw).to(self.device)
        with autocast(self.precision, self.device):
            img = features(self.model.get_image_features(**img_in))
            img = img / torch.norm(img, dim=-1, keepdim=True)
            txt = features(self.model.get_text_features(**txt_in))
            txt = txt / torch.norm(txt, dim=-1, keepdim=True)
            scores = self.model.logit_scale.exp() * torch.diagonal(txt @ img.T)
        return scores.double().cpu()

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        check_inputs(images, prompts)
        return batched_scores(self.score_batch, images, prompts, self.batch_size)
