"""LAION improved aesthetic predictor (v2): CLIP ViT-L/14 image embedding -> linear MLP.

Reference: ``simple_inference.py`` of github.com/christophschuhmann/improved-aesthetic-predictor:
``clip.load("ViT-L/14", device)`` of the OpenAI ``clip`` package (float16 weights on CUDA, float32
on CPU) and its ``preprocess`` (resize the shortest side to 224, PIL bicubic, centre crop, RGB,
normalise); ``encode_image``; L2-normalise in numpy (``normalized``); the MLP
768-1024-128-64-16-1 without activations (``sac+logos+ava1-l14-linearMSE.pth``, keys
``layers.{0,2,4,6,7}``) in float32. Scores are about 5-7 for real / SD images.

Backends for the CLIP embedding (option ``backend``):

- ``"clip"`` (default, the reference): OpenAI CLIP ViT-L/14 built from an OpenAI-format checkpoint
  as the ``clip`` package builds it (architecture inferred from the weights, QuickGELU), through
  ``open_clip.load_openai_model``; ``clip_model`` is ``"openai"`` (open_clip's copy of the OpenAI
  weights, from its cache / the hub) or a local checkpoint file (OpenAI's ``ViT-L-14.pt``
  TorchScript archive or a state dict). Preprocessing is :func:`openai_clip_transform`.
- ``"transformers"``: ``CLIPModel`` ``openai/clip-vit-large-patch14`` (hub id or local folder) with
  its ``CLIPImageProcessor``, as in the Diffusion-DPO ``utils/aes_utils.py``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from inpo import hub
from inpo.evaluators import check_inputs
from inpo.evaluators.common import (
    autocast,
    batched_scores,
    check_precision,
    openai_clip_transform,
    uses_amp,
)

WEIGHTS_FILE = "sac+logos+ava1-l14-linearMSE.pth"
WEIGHTS_SHA256 = "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"
WEIGHTS_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/"
    "6934dd81792f086e613a121dbce43082cb8be85e/sac%2Blogos%2Bava1-l14-linearMSE.pth"
)
CLIP_L14_OPENAI = "openai"  # open_clip's tag of the OpenAI ViT-L/14 weights
CLIP_L14_HF = "openai/clip-vit-large-patch14"
BACKENDS = ("clip", "transformers")


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


def resolve_weights(weights: str | Path) -> Path:
    """Local path of the MLP weights: a local file, or an ``http(s)://`` URL downloaded once into
    :func:`inpo.hub.cache_dir` (the default, :data:`WEIGHTS_URL`, is the pinned GitHub file)."""
    s = str(weights)
    if s.startswith(("http://", "https://")):
        name = WEIGHTS_FILE if s == WEIGHTS_URL else Path(s).name
        return hub.url_file(s, name, what="aesthetic MLP weights", option="weights")
    path = Path(s).expanduser()
    if not path.is_file():
        raise hub.missing_path("aesthetic MLP weights", s, "weights")
    return path


def load_aesthetic_mlp(weights: str | Path = WEIGHTS_URL) -> AestheticMLP:
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


def normalized(a: np.ndarray, axis: int = -1, order: int = 2) -> np.ndarray:
    """The reference's numpy L2 normalisation (zero vectors left as they are), in ``a``'s dtype."""
    l2 = np.atleast_1d(np.linalg.norm(a, order, axis))
    l2[l2 == 0] = 1
    return a / np.expand_dims(l2, axis)


def load_openai_clip(source: str | Path, *, fp16: bool, device: torch.device) -> nn.Module:
    """OpenAI CLIP built as ``clip.load`` builds it (QuickGELU, architecture from the weights);
    float16 weights when ``fp16`` (``clip.load`` on CUDA), else float32."""
    import open_clip

    precision = "fp16" if fp16 else "fp32"
    if str(source) == CLIP_L14_OPENAI:
        try:
            model = open_clip.create_model("ViT-L-14", pretrained="openai", precision=precision, device=device)
        except Exception as e:  # noqa: BLE001 - hub / url errors of open_clip's download
            hub_id = (open_clip.get_pretrained_cfg("ViT-L-14", "openai") or {}).get("hf_hub", "").rstrip("/")
            raise hub.unavailable("OpenAI CLIP ViT-L/14", hub_id or "openai", "clip_model", e) from e
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise hub.missing_path("OpenAI CLIP checkpoint", source, "clip_model")
        model = open_clip.load_openai_model(str(path), precision=precision, device=device)
    return model.eval()


class AestheticEvaluator:
    """Options: ``weights`` (MLP weights: local file or URL; default the pinned GitHub file, cached),
    ``backend`` ("clip", the default, or "transformers"), ``clip_model`` (clip: ``"openai"`` or a
    local OpenAI-format checkpoint; transformers: hub id or local folder), ``precision`` (``amp``:
    float16 CLIP weights on CUDA as ``clip.load``, fp16 autocast for the transformers backend;
    ``fp32``), ``device``, ``batch_size``.
    """

    def __init__(
        self,
        weights: str | Path = WEIGHTS_URL,
        *,
        backend: str = "clip",
        clip_model: str | Path | None = None,
        precision: str = "amp",
        device: str | torch.device | None = None,
        batch_size: int = 16,
        version: str | None = None,
        vision_model: nn.Module | None = None,
        image_processor=None,
        mlp: AestheticMLP | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.clip_model = str(clip_model or (CLIP_L14_OPENAI if backend == "clip" else CLIP_L14_HF))
        self.precision = check_precision(precision)
        self.device = hub.resolve_device(device)
        self.batch_size = int(batch_size)
        self.version = version or "laion-aesthetic-v2-" + WEIGHTS_FILE.removesuffix(".pth")
        self.mlp = (mlp if mlp is not None else load_aesthetic_mlp(weights)).eval().to(self.device, torch.float32)
        fp16 = backend == "clip" and uses_amp(self.precision, self.device)
        if vision_model is None:
            vision_model, image_processor = self._load_clip(fp16)
        self.vision_model = vision_model.eval().to(self.device, torch.float16 if fp16 else torch.float32)
        if backend == "clip":
            size = self.vision_model.visual.image_size
            image_processor = openai_clip_transform(int(size[0] if isinstance(size, tuple | list) else size))
        elif image_processor is None:
            raise ValueError("the transformers backend needs the model's CLIPImageProcessor (image_processor=)")
        self.image_processor = image_processor

    @classmethod
    def from_models(cls, vision_model, image_processor=None, mlp=None, **kwargs) -> AestheticEvaluator:
        """Build around an already-built CLIP model (no CLIP download): clip backend: an open_clip
        ``CLIP`` (its preprocessing is the ``clip`` package's); transformers backend: a ``CLIPModel``
        or ``CLIPVisionModelWithProjection`` and its ``CLIPImageProcessor``. ``mlp``: an
        :class:`AestheticMLP`; default: loaded from ``weights``."""
        return cls(vision_model=vision_model, image_processor=image_processor, mlp=mlp, **kwargs)

    def _load_clip(self, fp16: bool):
        if self.backend == "clip":
            return load_openai_clip(self.clip_model, fp16=fp16, device=self.device), None
        from transformers import CLIPImageProcessor, CLIPModel

        processor = hub.from_pretrained(CLIPImageProcessor, self.clip_model, what="CLIP ViT-L/14 processor",
                                        option="clip_model")
        model = hub.from_pretrained(CLIPModel, self.clip_model, what="CLIP ViT-L/14", option="clip_model")
        return model, processor

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised CLIP image embeddings of one batch, as the reference computes them
        (numpy, in the model's output dtype)."""
        if self.backend == "clip":
            dtype = next(self.vision_model.parameters()).dtype
            pixels = torch.stack([self.image_processor(im) for im in images]).to(self.device, dtype)
            emb = self.vision_model.encode_image(pixels)
        else:
            from inpo.evaluators.pickscore import features

            pixels = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
            with autocast(self.precision, self.device):
                if hasattr(self.vision_model, "get_image_features"):  # a full CLIPModel
                    emb = features(self.vision_model.get_image_features(pixel_values=pixels))
                else:  # CLIPVisionModelWithProjection
                    emb = self.vision_model(pixel_values=pixels).image_embeds
        return normalized(emb.cpu().numpy())

    @torch.inference_mode()
    def score_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """MLP scores (float32) of already L2-normalised embeddings ``[N, 768]``."""
        x = torch.from_numpy(np.ascontiguousarray(emb)).to(self.device, torch.float32)
        return self.mlp(x).squeeze(-1).double().cpu().numpy()

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        check_inputs(images, prompts)
        return batched_scores(lambda ims, _: self.score_embeddings(self.embed(ims)), images, prompts,
                              self.batch_size)
