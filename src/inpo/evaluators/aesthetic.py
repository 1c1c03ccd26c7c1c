"""LAION improved aesthetic predictor (v2): CLIP ViT-L/14 image embedding -> linear MLP.

The image embedding of OpenAI CLIP ViT-L/14 (768-d, projected) is L2-normalised and fed to an MLP
768-1024-128-64-16-1 without activations (``sac+logos+ava1-l14-linearMSE.pth``, keys
``layers.{0,2,4,6,7}``), as in github.com/christophschuhmann/improved-aesthetic-predictor. Scores
are about 5-7 for real / SD images.

Backends for the CLIP embedding:
- ``"transformers"`` (default): ``CLIPVisionModelWithProjection`` ``openai/clip-vit-large-patch14``
  (hub id or local folder, option ``clip_model``) with its own ``CLIPImageProcessor``;
- ``"open_clip"``: open_clip ``ViT-L-14`` with ``pretrained="openai"`` (tag or local file),
  quick-GELU, open_clip's own preprocessing.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from inpo.evaluators import check_inputs, register
from inpo.evaluators.clip import (
    batch_slices,
    hf_file,
    hub_offline,
    load_open_clip,
    open_clip_transform,
    resolve_device,
    resolve_dtype,
    to_rgb,
    unavailable,
)

WEIGHTS_FILE = "sac+logos+ava1-l14-linearMSE.pth"
WEIGHTS_SHA256 = "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"
WEIGHTS_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/"
    "6934dd81792f086e613a121dbce43082cb8be85e/sac%2Blogos%2Bava1-l14-linearMSE.pth"
)
CLIP_L14_HF = "openai/clip-vit-large-patch14"


class AestheticMLP(nn.Module):
    """The improved-aesthetic-predictor head: keys ``layers.0 .2 .4 .6 .7`` (no activations)."""

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def shared_data_dir() -> Path:
    """``$INPO_SHARED_DATA`` or ``../shared/data`` relative to the current directory (repo root)."""
    return Path(os.environ.get("INPO_SHARED_DATA", Path.cwd().parent / "shared" / "data"))


def resolve_weights(weights: str | Path | None) -> Path:
    """Local path of the MLP weights.

    ``weights``: a local file; ``"hf:<org>/<repo>/<file>"`` (Hugging Face hub); an ``http(s)://`` URL
    (downloaded once into ``~/.cache/inpo``); or ``None``: ``<shared data>/aesthetic/<file>`` if
    present, else the pinned GitHub URL.
    """
    if weights is None:
        local = shared_data_dir() / "aesthetic" / WEIGHTS_FILE
        if local.is_file():
            return local
        weights = WEIGHTS_URL
    weights = str(weights)
    if weights.startswith("hf:"):
        repo, _, fname = weights[3:].rpartition("/")
        return Path(hf_file(repo, fname, "weights"))
    if weights.startswith(("http://", "https://")):
        cache = Path(os.environ.get("INPO_CACHE", Path.home() / ".cache" / "inpo"))
        target = cache / WEIGHTS_FILE if weights == WEIGHTS_URL else cache / Path(weights).name
        if not target.is_file():
            if hub_offline():
                raise unavailable("aesthetic MLP weights", weights, "weights")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(weights, str(target), progress=False)
            except Exception as e:
                raise unavailable("aesthetic MLP weights", weights, "weights", e) from e
        return target
    path = Path(weights)
    if not path.is_file():
        raise unavailable("aesthetic MLP weights", weights, "weights", FileNotFoundError(weights))
    return path


def load_aesthetic_mlp(weights: str | Path | None = None) -> AestheticMLP:
    """The MLP with weights loaded by ``torch.load(weights_only=True)``, eval mode, float32, CPU."""
    path = resolve_weights(weights)
    if path.name == WEIGHTS_FILE:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != WEIGHTS_SHA256:
            warnings.warn(f"{path}: sha256 {digest} differs from the published {WEIGHTS_SHA256}", stacklevel=2)
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    mlp = AestheticMLP(input_size=sd["layers.0.weight"].shape[1])
    mlp.load_state_dict(sd, strict=True)
    return mlp.eval()


@register("aesthetic")
class AestheticEvaluator:
    """Options: ``weights`` (see :func:`resolve_weights`), ``backend`` ("transformers" or
    "open_clip"), ``clip_model`` (transformers: hub id / local folder; open_clip: architecture name),
    ``pretrained`` (open_clip only: tag or local checkpoint), ``device``, ``dtype``, ``batch_size``.
    """

    name = "aesthetic"

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        backend: str = "transformers",
        clip_model: str | None = None,
        pretrained: str | None = "openai",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 16,
        version: str | None = None,
        vision_model: nn.Module | None = None,
        image_processor=None,
        mlp: AestheticMLP | None = None,
    ) -> None:
        if backend not in ("transformers", "open_clip"):
            raise ValueError(f"backend must be 'transformers' or 'open_clip', got {backend!r}")
        self.backend = backend
        self.clip_model = clip_model or (CLIP_L14_HF if backend == "transformers" else "ViT-L-14")
        self.pretrained = pretrained
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = int(batch_size)
        self.version = version or "laion-aesthetic-v2-" + WEIGHTS_FILE.removesuffix(".pth")
        if mlp is None:
            mlp = load_aesthetic_mlp(weights)
        if vision_model is None:
            vision_model, image_processor_ = self._load_clip()
            image_processor = image_processor or image_processor_
        if image_processor is None and backend == "open_clip":
            image_processor = open_clip_transform(vision_model)
        self.image_processor = image_processor
        self.vision_model = vision_model.eval().to(self.device, self.dtype)
        self.mlp = mlp.eval().to(self.device)  # the head stays float32

    @classmethod
    def from_models(cls, vision_model, image_processor=None, mlp=None, **kwargs) -> AestheticEvaluator:
        """Build around an already-built CLIP vision model + its preprocessing (no CLIP download).

        transformers backend: ``CLIPVisionModelWithProjection`` (or ``CLIPModel``) and a
        ``CLIPImageProcessor``; open_clip backend: an open_clip model and its transform.
        ``mlp``: an :class:`AestheticMLP`; default: loaded from ``weights``.
        """
        return cls(vision_model=vision_model, image_processor=image_processor, mlp=mlp, **kwargs)

    def _load_clip(self):
        if self.backend == "open_clip":
            model, preprocess, _ = load_open_clip(
                self.clip_model, self.pretrained, option="pretrained",
                force_quick_gelu=self.pretrained == "openai",
            )
            return model, preprocess
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        try:
            processor = CLIPImageProcessor.from_pretrained(self.clip_model)
            model = CLIPVisionModelWithProjection.from_pretrained(self.clip_model)
        except Exception as e:
            raise unavailable("CLIP ViT-L/14", self.clip_model, "clip_model", e, repo=self.clip_model) from e
        return model, processor

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """L2-normalised float32 CLIP image embeddings of one batch (on the evaluator's device)."""
        images = to_rgb(images)
        if self.backend == "open_clip":
            pixels = torch.stack([self.image_processor(im) for im in images])
            emb = self.vision_model.encode_image(pixels.to(self.device, self.dtype))
        else:
            pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, self.dtype)
            if hasattr(self.vision_model, "get_image_features"):  # a full CLIPModel
                from inpo.evaluators.pickscore import _features

                emb = _features(self.vision_model.get_image_features(pixel_values=pixels))
            else:
                emb = self.vision_model(pixel_values=pixels).image_embeds
        emb = emb.float()
        return emb / emb.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def score_embeddings(self, emb: torch.Tensor) -> np.ndarray:
        """MLP scores of already L2-normalised embeddings ``[N, 768]``."""
        return self.mlp(emb.to(self.device, torch.float32)).squeeze(-1).double().cpu().numpy()

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        check_inputs(images, prompts)
        out = np.empty(len(images), dtype=np.float64)
        for sl in batch_slices(len(images), self.batch_size):
            out[sl] = self.score_embeddings(self.embed(images[sl]))
        return out
