"""Sharded, resumable image generation with paired seeds.

One image per prompt, written to ``out_dir/{index:05d}.png``. The initial latent noise of prompt
``index`` is drawn on the CPU from ``torch.Generator("cpu").manual_seed(seed_base + index)`` (in
float32, then cast), so every model sees the same noise for the same prompt (paired comparison) and
the image does not depend on the batch size, the shard split or the device. The same per-prompt
generator then feeds any stochastic scheduler step (e.g. ``eta > 0`` or ancestral samplers).

Shard ``(i, n)`` takes the prompt rows ``i::n``. A run is resumable: an existing PNG that opens and
verifies is skipped; images are written to a temporary file and renamed, so a killed run never
leaves a truncated PNG behind under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from PIL import Image

from inpo import hub

FAMILIES = ("sd15", "sdxl")
DEFAULT_GUIDANCE = {"sd15": 7.5, "sdxl": 5.0}  # spec section 5: CFG 7.5 (SD1.5) / 5 (SDXL)

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "ddpm": "DDPMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "dpmsolver": "DPMSolverMultistepScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}


def image_path(out_dir: str | Path, index: int) -> Path:
    return Path(out_dir) / f"{int(index):05d}.png"


def is_valid_png(path: str | Path) -> bool:
    """True when ``path`` exists and is a complete, decodable PNG."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                return False
            im.verify()
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


def shard_rows(prompts: pd.DataFrame, shard: tuple[int, int] = (0, 1)) -> pd.DataFrame:
    """Rows ``i::n`` of ``prompts`` (columns ``index``, ``prompt``) for shard ``(i, n)``."""
    i, n = (int(s) for s in shard)
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    missing = {"index", "prompt"} - set(prompts.columns)
    if missing:
        raise ValueError(f"prompts needs columns 'index' and 'prompt'; missing {sorted(missing)}")
    if prompts["index"].duplicated().any():
        raise ValueError("prompts['index'] has duplicates: each index names one image file")
    return prompts.iloc[i::n]


def initial_latents(index: int, shape: Sequence[int], seed_base: int = 0) -> tuple[torch.Tensor, torch.Generator]:
    """float32 CPU noise of shape ``shape`` for prompt ``index`` + the generator that drew it."""
    gen = torch.Generator("cpu").manual_seed(int(seed_base) + int(index))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32), gen


def resolve_device_dtype(device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
    """cuda if available else cpu; float16 on GPU, float32 on CPU unless ``dtype`` says otherwise."""
    device = hub.resolve_device(device)
    return device, hub.resolve_dtype(dtype, default=torch.float16 if device.type == "cuda" else torch.float32)


def _pipeline_class(family: str):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return StableDiffusionPipeline if family == "sd15" else StableDiffusionXLPipeline


def load_pipeline(pipeline_path_or_components: Any, family: str = "sd15", *, dtype: torch.dtype | None = None):
    """A diffusers pipeline from a folder / hub id, a dict of components, or a pipeline (returned as is).

    The safety checker is off (it blacks out images and is not part of the evaluation protocol).
    """
    from diffusers import DiffusionPipeline

    cls = _pipeline_class(family)
    src = pipeline_path_or_components
    if isinstance(src, DiffusionPipeline):
        pipe = src
    elif isinstance(src, Mapping):
        comps = dict(src)
        if family == "sd15":
            comps.setdefault("safety_checker", None)
            comps.setdefault("feature_extractor", None)
            comps.setdefault("requires_safety_checker", False)
        pipe = cls(**comps)
    else:
        extra = {"safety_checker": None, "requires_safety_checker": False} if family == "sd15" else {}
        pipe = hub.from_pretrained(cls, str(src), what="diffusers pipeline", option="pipeline path",
                                   torch_dtype=dtype or torch.float32, **extra)
    if family == "sd15" and getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    return pipe


def set_scheduler(pipe, scheduler) -> None:
    """``None``: keep the pipeline's own scheduler; a name (``"ddim"``, ...) or class name, built from the
    pipeline scheduler's config; or a scheduler instance."""
    if scheduler is None:
        return
    if isinstance(scheduler, str):
        import diffusers

        cls_name = SCHEDULERS.get(scheduler.lower(), scheduler)
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            raise ValueError(f"unknown scheduler {scheduler!r}; use one of {sorted(SCHEDULERS)} or a class name")
        extra = {"algorithm_type": "dpmsolver++"} if scheduler.lower() == "dpm++" else {}
        scheduler = cls.from_config(pipe.scheduler.config, **extra)
    pipe.scheduler = scheduler


def sample_images(
    pipe: Any,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    num_inference_steps: int,
    guidance_scale: float,
    height: int,
    width: int,
) -> list[Image.Image]:
    """One image per ``(prompt, seed)`` from a loaded pipeline, in one batch: the initial noise of
    :func:`initial_latents` ``(seed)`` and the same generator for any stochastic scheduler step. The
    sampler of the evaluation (:func:`generate_images`) and of the toy's preference pairs
    (:func:`inpo.data.toy.sample_base_images`)."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    sf = pipe.vae_scale_factor
    shape = (pipe.unet.config.in_channels, height // sf, width // sf)
    noise, gens = zip(*(initial_latents(s, shape) for s in seeds))
    latents = torch.stack(noise).to(pipe.device, pipe.unet.dtype)
    with torch.inference_mode():
        return pipe(
            prompt=list(prompts),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            latents=latents,
            generator=list(gens),
            num_images_per_prompt=1,
            output_type="pil",
        ).images


def generate_images(
    pipeline_path_or_components: Any,
    prompts: pd.DataFrame,
    out_dir: str | Path,
    *,
    family: str = "sd15",
    num_inference_steps: int = 50,
    guidance_scale: float | None = None,
    seed_base: int = 0,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 4,
    shard: tuple[int, int] = (0, 1),
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    scheduler: Any = None,
    progress: bool = True,
) -> list[Path]:
    """Generate one image per prompt row of this shard into ``out_dir/{index:05d}.png``.

    ``pipeline_path_or_components``: diffusers folder or hub id (``from_pretrained``), a dict of
    pipeline components, or a pipeline object. ``guidance_scale``: ``None`` -> 7.5 for ``sd15`` and 5.0
    for ``sdxl``. ``height`` / ``width``: ``None`` -> the UNet's native size. Returns the paths of
    all images of the shard in row order (already present ones included; those are not rewritten).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = shard_rows(prompts, shard)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [image_path(out_dir, i) for i in rows["index"]]
    todo = [(int(i), str(p), path) for i, p, path in zip(rows["index"], rows["prompt"], paths)
            if not is_valid_png(path)]
    if not todo:
        return paths

    device, dtype = resolve_device_dtype(device, dtype)
    pipe = load_pipeline(pipeline_path_or_components, family, dtype=dtype)
    pipe = pipe.to(device)
    if pipe.unet.dtype != dtype:
        pipe = pipe.to(dtype)
    set_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    if guidance_scale is None:
        guidance_scale = DEFAULT_GUIDANCE[family]
    sf = pipe.vae_scale_factor
    height = height or pipe.unet.config.sample_size * sf
    width = width or pipe.unet.config.sample_size * sf
    if height % sf or width % sf:
        raise ValueError(f"height/width must be multiples of the VAE scale factor {sf}")

    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), disable=not progress,
               desc=f"generate {out_dir.name} shard {shard[0]}/{shard[1]}", unit="img")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        images = sample_images(pipe, [p for _, p, _ in batch], [seed_base + i for i, _, _ in batch],
                               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                               height=height, width=width)
        for (_, _, path), im in zip(batch, images):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            im.save(tmp, format="PNG")
            os.replace(tmp, path)
        bar.update(len(batch))
    bar.close()
    return paths
