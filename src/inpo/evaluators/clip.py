"""CLIP score: open_clip ViT-H-14 ``laion2b_s32b_b79k``, ``100 * cos(image_emb, text_emb)``.

Reference: open_clip's README recipe (``create_model_and_transforms`` + ``get_tokenizer``; under
``torch.no_grad(), torch.cuda.amp.autocast()``: ``encode_image`` / ``encode_text``, L2-normalise,
``100.0 * image_features @ text_features.T``); here the diagonal, one score per (image, prompt).

Also holds :class:`OpenClipEvaluator`, the open_clip image-text scorer that ``hps`` reuses. Real
weights are loaded when the evaluator is built, never at import; every evaluator can also be built
around already-built model objects (``from_models``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inpo import hub
from inpo.evaluators import check_inputs
from inpo.evaluators.common import (
    OPENAI_MEAN,
    OPENAI_STD,
    autocast,
    batched_scores,
    check_precision,
    load_open_clip,
    open_clip_transform,
    pad_square_transform,
)

#: ``center_crop``: open_clip's inference transform (resize the shortest side, centre crop);
#: ``pad_square``: hpsv2's (resize the longest side, zero-pad to a square).
IMAGE_TRANSFORMS = ("center_crop", "pad_square")


class OpenClipEvaluator:
    """``scale * cos(image_emb, text_emb)`` with an open_clip model (``scale`` = 100 for CLIP and HPS).

    Under ``precision="amp"`` on CUDA the model (float32 weights) runs under fp16 autocast and the
    score is the diagonal of ``image_features @ text_features.T`` computed inside it, as in hpsv2 and
    open_clip's recipe.
    """

    scale = 100.0
    default_transform = "center_crop"

    def __init__(
        self,
        model_name: str | Path = "ViT-H-14",
        pretrained: str | None = "laion2b_s32b_b79k",
        *,
        image_transform: str | None = None,
        precision: str = "amp",
        device: str | torch.device | None = None,
        batch_size: int = 16,
        version: str | None = None,
        model: torch.nn.Module | None = None,
        tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None,
    ) -> None:
        self.model_name = str(model_name)
        self.pretrained = pretrained
        self.image_transform = image_transform or self.default_transform
        if self.image_transform not in IMAGE_TRANSFORMS:
            raise ValueError(f"image_transform must be one of {IMAGE_TRANSFORMS}, got {self.image_transform!r}")
        self.precision = check_precision(precision)
        self.device = hub.resolve_device(device)
        self.batch_size = int(batch_size)
        self.version = version or self._default_version()
        if model is None:
            model, tokenizer = self._load()
        if tokenizer is None:
            raise ValueError("from_models() needs the model's tokenizer (open_clip.get_tokenizer(name))")
        self.model = model.eval().to(self.device, torch.float32)
        self.tokenizer = tokenizer
        self.preprocess = self._transform(self.model)

    @classmethod
    def from_models(cls, model, tokenizer, **kwargs):
        """Build around an already-built open_clip ``model`` and its ``tokenizer`` (no download)."""
        return cls(model=model, tokenizer=tokenizer, **kwargs)

    def _transform(self, model: torch.nn.Module) -> Callable[[Image.Image], torch.Tensor]:
        if self.image_transform == "center_crop":
            return open_clip_transform(model)
        size = model.visual.image_size
        size = size[0] if isinstance(size, tuple | list) else size
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
        return pad_square_transform(int(size), cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD))

    def _default_version(self) -> str:
        tag = Path(self.pretrained).name if self.pretrained else "random"
        return f"open_clip-{Path(self.model_name).stem}-{tag}"

    def _load(self):
        return load_open_clip(self.model_name, self.pretrained, option="pretrained")

    @torch.inference_mode()
    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """``scale * cos`` of one batch of (image, prompt) pairs, float64 on CPU."""
        pixels = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        tokens = self.tokenizer(list(prompts)).to(self.device)
        with autocast(self.precision, self.device):
            img = self.model.encode_image(pixels, normalize=True)
            txt = self.model.encode_text(tokens, normalize=True)
            cos = torch.diagonal(img @ txt.T)
        return self.scale * cos.double().cpu()

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        check_inputs(images, prompts)
        return batched_scores(self.score_batch, images, prompts, self.batch_size)


class ClipEvaluator(OpenClipEvaluator):
    """CLIP score, open_clip ViT-H-14 ``laion2b_s32b_b79k``, ``100 * cos``; about 33-39 on SD images.

    Options: ``model_name`` (open_clip architecture, or the path of an open_clip model-config JSON),
    ``pretrained`` (open_clip tag or local checkpoint file), ``image_transform`` (``center_crop``:
    open_clip's, the default; ``pad_square``: hpsv2's, which the Diffusion-DPO ``utils/clip_utils.py``
    uses), ``precision`` (``amp``: fp16 autocast on CUDA as in open_clip's recipe; ``fp32``),
    ``device``, ``batch_size``.
    """
