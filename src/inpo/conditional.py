"""Paper section 5.5, conditional generation: the trained UNet, unchanged, inside ControlNet and inpainting.

The paper drops InPO-SDXL's UNet into the diffusers ControlNet pipeline (depth and canny conditions,
``controlnet_conditioning_scale`` 0.5, CFG 5) and the inpainting pipeline (``strength`` 0.85, CFG 5)
and shows grids against Base-SDXL and DPO-SDXL. Here the same holds for both families: every model
shares the base pipeline's components (VAE, text encoders, tokenizers, scheduler, ControlNet) and only
its UNet differs (:func:`load_pipeline`), so a grid column differs only by the UNet.

Source images: a folder with ``sources.csv`` (columns ``image``, ``prompt`` and optionally ``mask``,
file names relative to the folder); row ``i`` is source ``index`` ``i``. Every source (and mask) is
cropped to its centre square and resized to the generation resolution (:func:`load_source`) before
any condition is computed, so conditions and images are pixel-aligned.

Conditions (the registry :data:`TASKS`, one function per task with one signature):

- ``canny``: ``cv2.Canny`` on the RGB source with thresholds ``canny_low`` / ``canny_high``, the
  edge map repeated over 3 channels (the diffusers SDXL canny ControlNet recipe).
- ``depth``: ``predicted_depth`` of the depth model named by ``depth_model`` (loaded with
  ``AutoModelForDepthEstimation`` + ``AutoImageProcessor``), bicubic-resized to the resolution,
  min-max normalised per image to [0, 255], 3 channels (the diffusers SDXL depth ControlNet recipe).
- ``inpaint``: the mask (white = repainted): the mask given beside the image in ``sources.csv``,
  binarised at 128, or else the centred square of side ``round(mask_fraction * resolution)``
  (:func:`centre_mask`).

Paired seeds: the initial noise (and any stochastic step) of source ``index`` comes from
``torch.Generator("cpu").manual_seed(seed_base + index)``, the same for every model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from inpo.generate import FAMILIES, resolve_device_dtype, set_scheduler

SOURCES_CSV = "sources.csv"


# ----------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ConditionalConfig:
    """The ``conditional:`` block of the workflow config.

    - ``sources``: folder holding ``sources.csv`` and the source images (and masks).
    - ``models``: models compared in the grids ('base' or runs), in grid row order.
    - ``tasks``: names in :data:`TASKS`.
    - ``controlnets``: task -> ControlNetModel folder or hub id, for every ControlNet task in ``tasks``
      (paper SDXL: ``diffusers/controlnet-depth-sdxl-1.0``, ``diffusers/controlnet-canny-sdxl-1.0``).
    - ``depth_model``: depth estimator folder or hub id (transformers ``AutoModelForDepthEstimation``).
    - ``controlnet_conditioning_scale``: 0.5, paper 5.5.
    - ``guidance_scale``: 5.0, paper 5.5 (ControlNet and inpainting alike).
    - ``strength``: 0.85, paper 5.5 (inpainting).
    - ``steps``: 50, the paper's generation steps (spec section 5; 5.5 states none of its own).
    - ``scheduler``: ``None`` keeps the pipeline's default scheduler (spec section 5), or a name
      of :data:`inpo.generate.SCHEDULERS`.
    - ``seed_base``: source ``index`` draws from seed ``seed_base + index`` (paired across models).
    - ``resolution``: square side in pixels; ``None``: the base UNet's native size.
    - ``canny_low`` / ``canny_high``: 100 / 200, the thresholds of the diffusers SDXL canny
      ControlNet example (the paper states none).
    - ``mask_fraction``: side of the centred square mask / image side, for sources without a mask
      (ours: the paper shows masks but states no rule).
    - ``dtype``: ``None``: float16 on GPU, float32 on CPU (see :func:`inpo.generate.resolve_device_dtype`).
    - ``toy_sources``: ``{n, image_size}`` of the source folder the toy renderer draws when ``sources``
      is the workflow's ``results/conditional/sources`` (:func:`write_toy_sources`; ours, for worlds
      without source photographs).
    """

    sources: str
    models: tuple[str, ...] = ("base", "dpo", "inpo")
    tasks: tuple[str, ...] = ("depth", "canny", "inpaint")
    controlnets: Mapping[str, str] = field(default_factory=dict)
    depth_model: str = "Intel/dpt-hybrid-midas"
    controlnet_conditioning_scale: float = 0.5
    guidance_scale: float = 5.0
    strength: float = 0.85
    steps: int = 50
    scheduler: str | None = None
    seed_base: int = 0
    resolution: int | None = None
    canny_low: int = 100
    canny_high: int = 200
    mask_fraction: float = 0.5
    dtype: str | None = None
    toy_sources: Mapping[str, int] = field(default_factory=lambda: {"n": 4, "image_size": 64})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "conditional") -> ConditionalConfig:
        """Build and check; an unknown or bad key raises ValueError naming ``where.key``."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
        if "sources" not in d:
            raise ValueError(f"{where}.sources: required (a folder with {SOURCES_CSV})")
        kw = dict(d)
        for k in ("models", "tasks"):
            if k in kw:
                kw[k] = tuple(kw[k])
        kw["controlnets"] = dict(kw.get("controlnets") or {})
        toy = dict(kw.get("toy_sources") or {})
        if set(toy) - {"n", "image_size"}:
            raise ValueError(f"{where}.toy_sources: unknown key(s) {sorted(set(toy) - {'n', 'image_size'})}")
        kw["toy_sources"] = {"n": 4, "image_size": 64, **toy}
        cfg = cls(**kw)
        cfg.check(where)
        return cfg

    def check(self, where: str = "conditional") -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise ValueError(f"{where}.tasks: unknown task(s) {bad}; known: {sorted(TASKS)}")
        missing = [t for t in self.tasks if TASKS[t].pipeline == "controlnet" and t not in self.controlnets]
        if missing:
            raise ValueError(f"{where}.controlnets: no ControlNet for task(s) {missing}")
        if not self.models:
            raise ValueError(f"{where}.models: empty")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"{where}.strength: must be in (0, 1], got {self.strength}")
        if not 0.0 < self.mask_fraction <= 1.0:
            raise ValueError(f"{where}.mask_fraction: must be in (0, 1], got {self.mask_fraction}")
        if not 0 <= self.canny_low <= self.canny_high:
            raise ValueError(f"{where}.canny_low/canny_high: need 0 <= low <= high, got {self.canny_low}, {self.canny_high}")
        if self.steps < 1:
            raise ValueError(f"{where}.steps: must be >= 1, got {self.steps}")
        if self.resolution is not None and self.resolution < 1:
            raise ValueError(f"{where}.resolution: must be >= 1 or null, got {self.resolution}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["models"], d["tasks"], d["controlnets"] = list(self.models), list(self.tasks), dict(self.controlnets)
        d["toy_sources"] = dict(self.toy_sources)
        return d


# ---------------------------------------------------------------------------------------- sources
def read_sources(folder: str | os.PathLike) -> pd.DataFrame:
    """``folder/sources.csv`` -> columns ``index`` (row number), ``image``, ``prompt``, ``mask`` (absolute
    paths; ``mask`` None where not given). Raises naming the file, row and column of a problem."""
    folder = Path(folder)
    csv = folder / SOURCES_CSV
    if not csv.is_file():
        raise FileNotFoundError(f"conditional.sources: {csv} does not exist (columns image, prompt[, mask])")
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = {"image", "prompt"} - set(df.columns)
    if missing:
        raise ValueError(f"{csv}: missing column(s) {sorted(missing)}; columns are image, prompt[, mask]")
    extra = set(df.columns) - {"image", "prompt", "mask"}
    if extra:
        raise ValueError(f"{csv}: unknown column(s) {sorted(extra)}; columns are image, prompt[, mask]")
    if df.empty:
        raise ValueError(f"{csv}: no rows")
    out = pd.DataFrame({"index": range(len(df)), "prompt": df["prompt"]})
    for col in ("image", "mask"):
        paths = []
        for row, name in enumerate(df[col] if col in df else [""] * len(df)):
            if not name:
                if col == "image":
                    raise ValueError(f"{csv}: row {row}: empty 'image'")
                paths.append(None)
                continue
            p = folder / name
            if not p.is_file():
                raise FileNotFoundError(f"{csv}: row {row}, column {col!r}: {p} does not exist")
            paths.append(str(p.resolve()))
        out[col] = pd.Series(paths, dtype=object)  # None stays None (not NaN)
    return out


def load_source(path: str | os.PathLike, size: int, *, mode: str = "RGB") -> Image.Image:
    """The image at ``path`` cropped to its centre square and resized to ``size`` x ``size``
    (LANCZOS for images, NEAREST for ``mode="L"`` masks, which are then binarised at 128)."""
    with Image.open(path) as im:
        im = im.convert(mode)
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if mode == "L":
        im = im.resize((size, size), Image.NEAREST)
        return im.point(lambda v: 255 if v >= 128 else 0)
    return im.resize((size, size), Image.LANCZOS)


def write_toy_sources(out_dir: str | os.PathLike, *, n: int, image_size: int, scene: Mapping | None = None,
                      seed: int = 0) -> Path:
    """A source folder drawn by the toy renderer (:class:`inpo.data.toy.ToyWorld` options ``scene``, at
    ``image_size`` pixels): ``n`` images of the toy captions (cycled in order), ``seed`` for the
    drawing; ``sources.csv`` without masks (the centred rule applies)."""
    from inpo.data.toy import ToyWorld

    w = ToyWorld.from_dict({**dict(scene or {}), "image_size": int(image_size)})
    caps = [w.captions[i % len(w.captions)] for i in range(n)]
    images = w.render_batch(caps, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"source_{i:03d}.png" for i in range(n)]
    for name, img in zip(names, images):
        Image.fromarray(img).save(out / name)
    pd.DataFrame({"image": names, "prompt": caps}).to_csv(out / SOURCES_CSV, index=False)
    return out


# ------------------------------------------------------------------------------------- conditions
def canny_condition(image: Image.Image, low: int, high: int) -> Image.Image:
    """``cv2.Canny(rgb_uint8, low, high)`` (0 / 255 edges) repeated over 3 channels."""
    import cv2

    edges = cv2.Canny(np.asarray(image.convert("RGB")), int(low), int(high))
    return Image.fromarray(np.repeat(edges[:, :, None], 3, axis=2))


def centre_mask(size: int, fraction: float) -> Image.Image:
    """L-mode ``size`` x ``size`` mask, 255 (repaint) on the centred square of side
    ``round(fraction * size)`` starting at ``(size - side) // 2``, 0 elsewhere."""
    side = max(1, round(fraction * size))
    a = np.zeros((size, size), np.uint8)
    o = (size - side) // 2
    a[o : o + side, o : o + side] = 255
    return Image.fromarray(a)


def load_depth_estimator(source: str, device: str | torch.device = "cpu"):
    """(model, image processor) of a depth model folder or hub id (``AutoModelForDepthEstimation``)."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    from inpo.models import _from_pretrained

    model = _from_pretrained(AutoModelForDepthEstimation, str(source), "depth model").to(device).eval()
    processor = _from_pretrained(AutoImageProcessor, str(source), "depth model")
    return model, processor


def depth_condition(image: Image.Image, model, processor) -> Image.Image:
    """``predicted_depth`` bicubic-resized to the image size, min-max normalised to [0, 255], 3 channels."""
    w, h = image.size
    pixels = processor(images=image.convert("RGB"), return_tensors="pt").pixel_values
    dev = next(model.parameters()).device
    with torch.inference_mode():
        depth = model(pixel_values=pixels.to(dev, next(model.parameters()).dtype)).predicted_depth.float()
    depth = torch.nn.functional.interpolate(depth[:, None], size=(h, w), mode="bicubic", align_corners=False)
    lo, hi = depth.amin(dim=(1, 2, 3), keepdim=True), depth.amax(dim=(1, 2, 3), keepdim=True)
    depth = (depth - lo) / (hi - lo).clamp_min(1e-12)
    a = (depth[0, 0].cpu().numpy() * 255.0).clip(0, 255).round().astype(np.uint8)
    return Image.fromarray(np.repeat(a[:, :, None], 3, axis=2))


ConditionFn = Callable[[Sequence[Image.Image], Sequence[Image.Image | None], ConditionalConfig, Any],
                       list[Image.Image]]


def _canny(images, masks, cfg, device):
    return [canny_condition(im, cfg.canny_low, cfg.canny_high) for im in images]


def _depth(images, masks, cfg, device):
    model, processor = load_depth_estimator(cfg.depth_model, device)
    return [depth_condition(im, model, processor) for im in images]


def _inpaint(images, masks, cfg, device):
    return [m if m is not None else centre_mask(im.size[0], cfg.mask_fraction) for im, m in zip(images, masks)]


@dataclass(frozen=True)
class Task:
    """``pipeline``: 'controlnet' or 'inpaint'; ``condition(images, masks, cfg, device)`` -> one
    condition image per source (the ControlNet image, or the inpainting mask)."""

    pipeline: str
    condition: ConditionFn


TASKS: dict[str, Task] = {
    "canny": Task("controlnet", _canny),
    "depth": Task("controlnet", _depth),
    "inpaint": Task("inpaint", _inpaint),
}


def compute_conditions(task: str, sources: pd.DataFrame, cfg: ConditionalConfig, size: int,
                       out_dir: str | os.PathLike, *, device: str | torch.device | None = None) -> list[Path]:
    """Write the ``task`` condition of every source to ``out_dir/{index:05d}.png``; returns the paths."""
    device, _ = resolve_device_dtype(device, "float32")
    images = [load_source(p, size) for p in sources["image"]]
    masks = [None if m is None else load_source(m, size, mode="L") for m in sources["mask"]]
    conds = TASKS[task].condition(images, masks, cfg, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{int(i):05d}.png" for i in sources["index"]]
    for p, c in zip(paths, conds):
        c.save(p)
    return paths


# --------------------------------------------------------------------------------------- pipelines
def vae_scale_factor(vae_config: Mapping) -> int:
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def native_resolution(base: str, vae: str | None = None) -> int:
    """The base UNet's ``sample_size`` x the VAE scale factor (configs only; no weights loaded)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from inpo.models import _from_pretrained

    class _Cfg:  # _from_pretrained needs a from_pretrained; load_config reads config.json only
        def __init__(self, cls):
            self.cls = cls

        def from_pretrained(self, src, **kw):
            return self.cls.load_config(src, **kw)

    unet = _from_pretrained(_Cfg(UNet2DConditionModel), str(base), "model", subfolder="unet")
    vae_src = str(vae if vae is not None else base)
    sub = {"subfolder": "vae"} if vae is None or (Path(vae_src) / "vae").is_dir() else {}
    vcfg = _from_pretrained(_Cfg(AutoencoderKL), vae_src, "VAE", **sub)
    return int(unet["sample_size"]) * vae_scale_factor(vcfg)


def _pipeline_class(task: str, family: str):
    from diffusers import (
        StableDiffusionControlNetPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionXLControlNetPipeline,
        StableDiffusionXLInpaintPipeline,
    )

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    table = {
        ("controlnet", "sd15"): StableDiffusionControlNetPipeline,
        ("controlnet", "sdxl"): StableDiffusionXLControlNetPipeline,
        ("inpaint", "sd15"): StableDiffusionInpaintPipeline,
        ("inpaint", "sdxl"): StableDiffusionXLInpaintPipeline,
    }
    return table[(TASKS[task].pipeline, family)]


def load_pipeline(task: str, family: str, base: str, unet: str, *, controlnet: str | None = None,
                  vae: str | None = None, dtype: torch.dtype = torch.float32):
    """The ``task`` pipeline of the model ``family``: every component from ``base`` (+ the separate ``vae``),
    the UNet from the diffusers folder (or hub id) ``unet`` (its ``unet/`` subfolder), and, for a
    ControlNet task, the ``ControlNetModel`` at ``controlnet``. No safety checker, no watermark."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from inpo.models import _from_pretrained, load_components

    comps = load_components(base, family=family, vae=vae, dtype=dtype)
    comps["unet"] = _from_pretrained(UNet2DConditionModel, str(unet), "model", subfolder="unet", torch_dtype=dtype)
    cls = _pipeline_class(task, family)
    if TASKS[task].pipeline == "controlnet":
        if controlnet is None:
            raise ValueError(f"task {task!r} needs a ControlNet (conditional.controlnets.{task})")
        comps["controlnet"] = _from_pretrained(ControlNetModel, str(controlnet), "ControlNet", torch_dtype=dtype)
    if family == "sd15":
        comps.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        comps.update(add_watermarker=False, force_zeros_for_empty_prompt=True)
    return cls(**comps)


def generate_conditional(pipe, task: str, sources: pd.DataFrame, conditions: Sequence[str | os.PathLike],
                         out_dir: str | os.PathLike, cfg: ConditionalConfig, size: int) -> list[Path]:
    """One image per source into ``out_dir/{index:05d}.png`` with the pipeline from :func:`load_pipeline`
    (already on its device). ControlNet tasks pass the condition image and
    ``controlnet_conditioning_scale``; inpainting passes the source, the mask and ``strength``."""
    pipe.set_progress_bar_config(disable=True)
    set_scheduler(pipe, cfg.scheduler)
    sf = pipe.vae_scale_factor
    if size % sf:
        raise ValueError(f"conditional.resolution {size} is not a multiple of the VAE scale factor {sf}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for (_, row), cond_path in zip(sources.iterrows(), conditions):
        with Image.open(cond_path) as c:
            cond = c.copy()
        gen = torch.Generator("cpu").manual_seed(int(cfg.seed_base) + int(row["index"]))
        kw: dict[str, Any] = dict(prompt=row["prompt"], num_inference_steps=cfg.steps,
                                  guidance_scale=cfg.guidance_scale, height=size, width=size,
                                  generator=gen, output_type="pil")
        if TASKS[task].pipeline == "controlnet":
            kw.update(image=cond, controlnet_conditioning_scale=cfg.controlnet_conditioning_scale)
        else:
            kw.update(image=load_source(row["image"], size), mask_image=cond, strength=cfg.strength)
        with torch.inference_mode():
            image = pipe(**kw).images[0]
        p = out / f"{int(row['index']):05d}.png"
        image.save(p)
        paths.append(p)
    return paths


def run_generation(task: str, family: str, base: str, unet: str, sources_dir: str, conditions_dir: str,
                   out_dir: str, cfg: ConditionalConfig, *, vae: str | None = None, device=None) -> list[Path]:
    """Load the pipeline of ``task`` with the UNet of ``unet`` and generate every source (the rule's job)."""
    device, dtype = resolve_device_dtype(device, cfg.dtype)
    sources = read_sources(sources_dir)
    size = cfg.resolution or native_resolution(base, vae)
    conds = [Path(conditions_dir) / f"{int(i):05d}.png" for i in sources["index"]]
    absent = [str(p) for p in conds if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"conditions of task {task!r} missing: {absent}")
    pipe = load_pipeline(task, family, base, unet, controlnet=cfg.controlnets.get(task), vae=vae, dtype=dtype)
    return generate_conditional(pipe.to(device), task, sources, conds, out_dir, cfg, size)


# ------------------------------------------------------------------------- stand-in models (toy / CI)
def toy_controlnet(unet_source: str, out_dir: str | os.PathLike, *, seed: int = 0, init_std: float = 0.02) -> Path:
    """An UNTRAINED ControlNet for a world without a real one (toy, tiny-real CI): ``from_unet`` of the
    UNet at ``unet_source`` (a pipeline folder), its zero convolutions re-drawn from N(0, ``init_std``)
    with ``seed`` so that the condition reaches the UNet (zero convolutions would make it a no-op).
    It proves the plumbing, not the paper's effect. The condition embedding downsamples by the
    VAE scale factor of the same folder."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    src = Path(unet_source)
    unet = UNet2DConditionModel.from_pretrained(str(src), subfolder="unet")
    sf = vae_scale_factor(AutoencoderKL.load_config(str(src), subfolder="vae"))
    channels = tuple(16 * 2**i for i in range(int(math.log2(sf)) + 1))
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
    gen = torch.Generator().manual_seed(seed)
    zero = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for m in zero:
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * init_std)
    out = Path(out_dir)
    net.save_pretrained(str(out), safe_serialization=True)
    return out


def tiny_depth_model(out_dir: str | os.PathLike, *, image_size: int = 32, seed: int = 0) -> Path:
    """A random tiny ``DPTForDepthEstimation`` + ``DPTImageProcessor`` folder (stand-in for
    ``Intel/dpt-hybrid-midas`` where the hub is out of reach: toy world, tests)."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(seed)
    cfg = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
                    image_size=image_size, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
                    neck_hidden_sizes=[8, 16, 16, 32], fusion_hidden_size=16, is_hybrid=False)
    out = Path(out_dir)
    DPTForDepthEstimation(cfg).eval().save_pretrained(str(out), safe_serialization=True)
    DPTImageProcessor(size={"height": image_size, "width": image_size}, keep_aspect_ratio=False,
                      do_rescale=True, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(str(out))
    return out


# -------------------------------------------------------------------------------------------- grids
def grid_paths(conditions_dir: str | os.PathLike, images_dir: str | os.PathLike, sources_dir: str | os.PathLike,
               task: str, models: Sequence[str]) -> pd.DataFrame:
    """Rows ``source``, ``condition``, then ``models``; columns the source ``index``; cells the image
    path (``None`` where the file does not exist). Layout: ``conditions_dir/{task}/{index:05d}.png``,
    ``images_dir/{model}/{task}/{index:05d}.png``."""
    src = read_sources(sources_dir)
    idx = [int(i) for i in src["index"]]

    def have(p: Path) -> str | None:
        return str(p) if p.is_file() else None

    rows = {"source": list(src["image"]),
            "condition": [have(Path(conditions_dir) / task / f"{i:05d}.png") for i in idx]}
    for m in models:
        rows[m] = [have(Path(images_dir) / m / task / f"{i:05d}.png") for i in idx]
    return pd.DataFrame(list(rows.values()), index=list(rows), columns=pd.Index(idx, name="index"), dtype=object)


__all__ = [
    "ConditionalConfig",
    "TASKS",
    "Task",
    "canny_condition",
    "centre_mask",
    "compute_conditions",
    "depth_condition",
    "generate_conditional",
    "grid_paths",
    "load_depth_estimator",
    "load_pipeline",
    "load_source",
    "native_resolution",
    "read_sources",
    "run_generation",
    "tiny_depth_model",
    "toy_controlnet",
    "write_toy_sources",
]
