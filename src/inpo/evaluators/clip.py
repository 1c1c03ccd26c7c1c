"""CLIP score (open_clip ViT-H-14, laion2B-s32B-b79K): ``100 * cos(image_emb, text_emb)``.

Also holds the helpers shared by the real evaluators (device / dtype resolution, batching, hub
errors) and :class:`OpenClipEvaluator`, the open_clip image-text scorer that ``hps`` reuses.

Real weights are loaded when the evaluator is built (``inpo.evaluators.build("clip")``), never at
import. Every model can be given as a hub tag/id or a local path, and every evaluator can be built
from already-built model objects (``from_models``), which is how the tests use tiny random models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from inpo.evaluators import check_inputs, register

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class ModelUnavailableError(RuntimeError):
    """A model or weight file could not be found locally nor downloaded (e.g. offline)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | None = None) -> torch.dtype:
    """``None`` -> float32 (scores are compared against published numbers; fp32 is the safe default)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def to_rgb(images: Sequence[Image.Image]) -> list[Image.Image]:
    return [im if im.mode == "RGB" else im.convert("RGB") for im in images]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def unavailable(
    what: str, model_id: str, option: str, err: BaseException | None = None, *, repo: str | None = None
) -> ModelUnavailableError:
    """Error naming the model id and the option through which a local path can be given."""
    why = f" ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})" if err else ""
    offline = " HF_HUB_OFFLINE is set, so nothing is downloaded." if hub_offline() else ""
    return ModelUnavailableError(
        f"cannot load {what} {model_id!r}{why}.{offline} Download it where the network is available "
        f"(e.g. `hf download {repo or '<repo>'}`, or copy the files) and pass the local path with "
        f"`{option}=/path/to/...`, or warm the Hugging Face cache (HF_HOME) before going offline."
    )


def hf_file(repo_id: str, filename: str, option: str) -> str:
    """Local path of ``repo_id/filename`` from the Hugging Face cache or hub; fails fast offline."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename)
    except Exception as e:  # LocalEntryNotFoundError, offline, 404, ...
        raise unavailable("file", f"{repo_id}/{filename}", option, e, repo=f"{repo_id} {filename}") from e


def open_clip_transform(model: torch.nn.Module) -> Callable[[Image.Image], torch.Tensor]:
    """open_clip's own inference preprocessing for ``model`` (resize, center crop, normalise)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = getattr(model.visual, "preprocess_cfg", None) or {"size": model.visual.image_size}
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


def load_open_clip(
    model_name: str,
    pretrained: str | None,
    *,
    option: str = "pretrained",
    **create_kwargs: Any,
) -> tuple[torch.nn.Module, Callable, Callable]:
    """``(model, preprocess, tokenizer)`` from open_clip, on CPU in float32, eval mode.

    ``pretrained``: an open_clip tag (e.g. ``laion2b_s32b_b79k``, fetched from the hub cache), a local
    checkpoint file, or ``None`` (random init: the caller loads its own state_dict).
    """
    import open_clip

    if pretrained is not None and os.path.sep in pretrained and not Path(pretrained).is_file():
        raise unavailable("open_clip checkpoint", pretrained, option, FileNotFoundError(pretrained))
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device="cpu", **create_kwargs
        )
    except Exception as e:
        if isinstance(e, KeyError | ValueError) or "not found in built-ins" in str(e):
            raise
        tag = open_clip.get_pretrained_cfg(model_name, pretrained or "") if pretrained else {}
        hub = (tag or {}).get("hf_hub", "").rstrip("/") or pretrained
        raise unavailable(
            f"open_clip {model_name} weights", f"{pretrained} (hub: {hub})", option, e, repo=hub
        ) from e
    tokenizer = open_clip.get_tokenizer(model_name)
    return model.eval(), preprocess, tokenizer


class OpenClipEvaluator:
    """``scale * cos(image_emb, text_emb)`` with an open_clip model; ``scale`` = 100 for CLIP and HPS."""

    name = "clip"
    scale = 100.0

    def __init__(
        self,
        model_name: str = "ViT-H-14",
        pretrained: str | None = "laion2b_s32b_b79k",
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 16,
        version: str | None = None,
        model: torch.nn.Module | None = None,
        preprocess: Callable[[Image.Image], torch.Tensor] | None = None,
        tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None,
    ) -> None:
        self.model_name = model_name
        self.pretrained = pretrained
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = int(batch_size)
        self.version = version or self._default_version()
        if model is None:
            model, preprocess_, tokenizer_ = self._load()
            preprocess = preprocess or preprocess_
            tokenizer = tokenizer or tokenizer_
        if preprocess is None:
            preprocess = open_clip_transform(model)
        if tokenizer is None:
            import open_clip

            tokenizer = open_clip.get_tokenizer(model_name)
        self.model = model.eval().to(self.device, self.dtype)
        self.preprocess = preprocess
        self.tokenizer = tokenizer

    @classmethod
    def from_models(cls, model, preprocess=None, tokenizer=None, **kwargs):
        """Build around already-built open_clip ``model`` / ``preprocess`` / ``tokenizer`` (no download)."""
        return cls(model=model, preprocess=preprocess, tokenizer=tokenizer, **kwargs)

    def _default_version(self) -> str:
        tag = Path(self.pretrained).name if self.pretrained else "random"
        return f"open_clip-{self.model_name}-{tag}"

    def _load(self):
        return load_open_clip(self.model_name, self.pretrained, option="pretrained")

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised float32 ``(image_emb, text_emb)`` of one batch, on CPU."""
        pixels = torch.stack([self.preprocess(im) for im in to_rgb(images)]).to(self.device, self.dtype)
        tokens = self.tokenizer(list(prompts)).to(self.device)
        img = self.model.encode_image(pixels).float()
        txt = self.model.encode_text(tokens).float()
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        return img.cpu(), txt.cpu()

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        check_inputs(images, prompts)
        out = np.empty(len(images), dtype=np.float64)
        for sl in batch_slices(len(images), self.batch_size):
            img, txt = self.embed(images[sl], prompts[sl])
            out[sl] = (self.scale * (img * txt).sum(-1)).double().numpy()
        return out


@register("clip")
class ClipEvaluator(OpenClipEvaluator):
    """CLIP score: open_clip ViT-H-14 ``laion2b_s32b_b79k``, ``100 * cos``; about 33-39 on SD images.

    Options: ``model_name`` (open_clip architecture), ``pretrained`` (tag or local checkpoint file),
    ``device``, ``dtype``, ``batch_size``.
    """

    name = "clip"
