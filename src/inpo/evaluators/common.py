"""Pieces shared by the real evaluators: precision, batching, the references' image transforms and
the open_clip loader. Model access (hub ids, local paths, offline mode, errors) is :mod:`inpo.hub`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from inpo import hub

#: ``amp``: the references' mixed precision on CUDA (each evaluator says what its reference does);
#: ``fp32`` everywhere. On CPU both are float32.
PRECISIONS = ("amp", "fp32")

#: OpenAI CLIP's normalisation (``clip._transform``, open_clip's OPENAI_DATASET_MEAN/STD)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def uses_amp(precision: str, device: torch.device) -> bool:
    """Mixed precision applies: ``precision == "amp"`` on a CUDA device."""
    return precision == "amp" and device.type == "cuda"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """fp16 autocast on CUDA under ``amp`` (``torch.cuda.amp.autocast()`` as in hpsv2 / open_clip's
    README); a no-op otherwise."""
    if uses_amp(precision, device):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def batched_scores(score_batch: Callable[[Sequence, Sequence[str]], Any], images: Sequence,
                   prompts: Sequence[str], batch_size: int) -> np.ndarray:
    """float64 scores of all (image, prompt) pairs, ``score_batch`` applied ``batch_size`` at a time."""
    out = np.empty(len(images), dtype=np.float64)
    for sl in batch_slices(len(images), batch_size):
        out[sl] = np.asarray(score_batch(images[sl], prompts[sl]), dtype=np.float64)
    return out


def pad_square_transform(image_size: int, mean=OPENAI_MEAN, std=OPENAI_STD) -> Callable[[Image.Image], torch.Tensor]:
    """hpsv2's inference transform (``create_model_and_transforms(..., light_augmentation=True)``,
    ``ResizeMaxSize``): ToTensor; resize the *longest* side to ``image_size`` with torchvision bicubic
    on the float tensor (``round`` for the other side); zero-pad to a centred square; normalise.

    One deliberate difference, where hpsv2 fails: RGBA images are converted to RGB (alpha dropped,
    as ``Image.convert("RGB")`` does) where hpsv2 keeps 4 channels and its 3-channel patch embedding
    raises; an image whose longest side already equals ``image_size`` is padded to a square where
    hpsv2 skips the padding too and then fails on the non-square tensor.
    """

    def transform(image: Image.Image) -> torch.Tensor:
        x = TF.to_tensor(image.convert("RGB"))
        height, width = x.shape[1:]
        scale = image_size / float(max(height, width))
        if scale != 1.0:
            x = TF.resize(x, [round(height * scale), round(width * scale)], InterpolationMode.BICUBIC)
        pad_h, pad_w = image_size - x.shape[1], image_size - x.shape[2]
        x = TF.pad(x, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
        return TF.normalize(x, mean, std)

    return transform


def openai_clip_transform(n_px: int) -> Callable[[Image.Image], torch.Tensor]:
    """``clip._transform(n_px)`` of the OpenAI ``clip`` package, step for step: resize the shortest
    side to ``n_px`` (PIL bicubic), centre crop, *then* convert to RGB, ToTensor, normalise."""

    def transform(image: Image.Image) -> torch.Tensor:
        image = TF.resize(image, n_px, InterpolationMode.BICUBIC)
        image = TF.center_crop(image, n_px)
        return TF.normalize(TF.to_tensor(image.convert("RGB")), OPENAI_MEAN, OPENAI_STD)

    return transform


def open_clip_transform(model: torch.nn.Module) -> Callable[[Image.Image], torch.Tensor]:
    """open_clip's own inference preprocessing for ``model`` (RGB, resize shortest side, centre crop,
    normalise with the model's pretrained mean/std), as ``create_model_and_transforms`` returns it."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = getattr(model.visual, "preprocess_cfg", None) or {"size": model.visual.image_size}
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


def open_clip_architecture(model_name: str | Path) -> str:
    """An open_clip architecture name; a path to an open_clip model-config JSON is registered first
    (its file stem becomes the name), so tiny or custom architectures work from a config file."""
    import open_clip

    path = Path(model_name)
    if path.suffix == ".json":
        if not path.is_file():
            raise hub.missing_path("open_clip model config", path, "model_name")
        open_clip.add_model_config(path)
        return path.stem
    return str(model_name)


def load_open_clip(
    model_name: str | Path, pretrained: str | None, *, option: str = "pretrained", **create_kwargs: Any
) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor]]:
    """``(model, tokenizer)`` from open_clip, float32 on CPU, eval mode.

    ``pretrained``: an open_clip tag (``laion2b_s32b_b79k``; open_clip fetches it from the hub
    cache), a local checkpoint file, or ``None`` (random init: the caller loads its own weights).
    """
    import open_clip

    name = open_clip_architecture(model_name)
    if open_clip.get_model_config(name) is None:
        raise ValueError(f"unknown open_clip architecture {name!r} (option model_name); "
                         f"give a built-in name or the path of a model-config JSON")
    tag = open_clip.get_pretrained_cfg(name, pretrained) if pretrained is not None else {}
    if pretrained is not None and not tag and not Path(pretrained).expanduser().is_file():
        raise hub.missing_path(f"open_clip {name} checkpoint", pretrained, option)  # not a tag: a file
    try:
        model = open_clip.create_model(name, pretrained=pretrained, device="cpu", **create_kwargs)
    except RuntimeError as e:  # open_clip's download failure (offline, not cached, no network)
        source = tag.get("hf_hub", "").rstrip("/") or tag.get("url") or str(pretrained)
        raise hub.unavailable(f"open_clip {name} weights {pretrained!r}", source, option, e) from e
    return model.eval(), open_clip.get_tokenizer(name)
