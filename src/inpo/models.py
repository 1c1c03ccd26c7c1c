"""Load, build and save diffusers pipelines: the real SD1.5 / SDXL models and tiny toy models.

Every model the pipeline produces is a standard diffusers folder (``model_index.json``, ``unet/``,
``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``; SDXL adds ``text_encoder_2/`` and
``tokenizer_2/``) with safetensors weights, loadable by ``StableDiffusionPipeline.from_pretrained``
or ``StableDiffusionXLPipeline.from_pretrained``.

The tiny models use the real classes (``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel`` [+ ``CLIPTextModelWithProjection``]), the real 49,408-token CLIP tokenizer
(:mod:`inpo.tokenizer`) and the SD1.5 noise schedule, so every code path (VAE scaling factor,
text conditioning, SDXL micro-conditioning, schedulers) is the one the real models take.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from inpo import hub
from inpo.hub import ModelUnavailableError

SD15_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SDXL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")


def sd_scheduler_config() -> dict[str, Any]:
    """The SD1.5 / SDXL training noise schedule (also used by the toy models)."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "trained_betas": None,
        "steps_offset": 1,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "prediction_type": "epsilon",
    }


def default_scheduler(family: str = "sd15"):
    """The scheduler the real pipeline ships: PNDM (SD1.5) / EulerDiscrete (SDXL), SD schedule."""
    from diffusers import EulerDiscreteScheduler, PNDMScheduler

    cfg = sd_scheduler_config()
    if family == "sdxl":
        return EulerDiscreteScheduler(
            num_train_timesteps=cfg["num_train_timesteps"],
            beta_start=cfg["beta_start"],
            beta_end=cfg["beta_end"],
            beta_schedule=cfg["beta_schedule"],
            steps_offset=1,
            prediction_type="epsilon",
            timestep_spacing="leading",
            interpolation_type="linear",
            use_karras_sigmas=False,
        )
    return PNDMScheduler(
        num_train_timesteps=cfg["num_train_timesteps"],
        beta_start=cfg["beta_start"],
        beta_end=cfg["beta_end"],
        beta_schedule=cfg["beta_schedule"],
        steps_offset=1,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        prediction_type="epsilon",
    )


@dataclass
class TinySDConfig:
    """Sizes of a tiny SD-shaped model (defaults: the calibrated toy-world model).

    - ``sample_size``: image side in pixels; the latent side is
      ``sample_size // 2 ** (len(vae_block_channels) - 1)``.
    - ``latent_channels``: 4, as SD.
    - ``vae_block_channels`` / ``vae_layers_per_block`` / ``vae_norm_groups``: AutoencoderKL.
    - ``unet_block_channels``: one entry per resolution level; ``unet_cross_attn`` says which
      levels carry cross-attention (``CrossAttnDownBlock2D`` / ``CrossAttnUpBlock2D``);
      ``unet_layers_per_block``, ``unet_attention_head_dim``, ``unet_norm_groups``.
    - ``text_hidden_size`` / ``text_layers`` / ``text_heads`` / ``text_intermediate_size``: the
      random CLIPTextModel (vocabulary = real CLIP's 49,408 tokens, 77 positions). SDXL: both text
      encoders get these sizes; UNet ``cross_attention_dim = 2 * text_hidden_size``.
    - ``text_projection_dim``: SDXL ``text_encoder_2`` projection size (pooled embedding).
    - ``addition_time_embed_dim``: SDXL micro-conditioning embedding per time id (6 ids).
    - ``seed``: weight initialisation seed.
    """

    sample_size: int = 16
    latent_channels: int = 4
    vae_block_channels: tuple[int, ...] = (32,)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 8
    unet_block_channels: tuple[int, ...] = (32, 64)
    unet_cross_attn: tuple[bool, ...] = (False, True)
    unet_layers_per_block: int = 1
    unet_attention_head_dim: int = 8
    unet_norm_groups: int = 16
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 2
    text_intermediate_size: int = 128
    text_projection_dim: int = 32
    addition_time_embed_dim: int = 8
    seed: int = 0

    @property
    def latent_size(self) -> int:
        return self.sample_size // 2 ** (len(self.vae_block_channels) - 1)

    def to_dict(self) -> dict:
        return asdict(self)


def _tiny_vae(cfg: TinySDConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_block_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.vae_block_channels),
        layers_per_block=cfg.vae_layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.vae_norm_groups,
        sample_size=cfg.sample_size,
        scaling_factor=1.0,
    )


def _tiny_text_encoder(cfg: TinySDConfig, *, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from inpo.tokenizer import VOCAB_SIZE

    tcfg = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=cfg.text_hidden_size,
        intermediate_size=cfg.text_intermediate_size,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=77,
        hidden_act="quick_gelu" if not with_projection else "gelu",
        projection_dim=cfg.text_projection_dim,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407 if not with_projection else 0,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(tcfg)


def _tiny_unet(cfg: TinySDConfig, *, sdxl: bool = False):
    from diffusers import UNet2DConditionModel

    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.unet_cross_attn)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.unet_cross_attn))
    kw: dict[str, Any] = {}
    cross = cfg.text_hidden_size
    if sdxl:
        cross = 2 * cfg.text_hidden_size
        kw = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": cfg.addition_time_embed_dim,
            # 6 micro-conditioning ids (orig size, crop top-left, target size) + pooled text_2
            "projection_class_embeddings_input_dim": 6 * cfg.addition_time_embed_dim + cfg.text_projection_dim,
            "use_linear_projection": True,
        }
    return UNet2DConditionModel(
        sample_size=cfg.latent_size,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(cfg.unet_block_channels),
        layers_per_block=cfg.unet_layers_per_block,
        attention_head_dim=cfg.unet_attention_head_dim,
        norm_num_groups=cfg.unet_norm_groups,
        cross_attention_dim=cross,
        **kw,
    )


def _tokenizer_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"inpo_clip_tokenizer_{os.getuid()}"
    return d


def build_tiny_sd15(config: TinySDConfig | None = None, **overrides) -> dict:
    """Random tiny SD1.5-shaped components: {unet, vae, text_encoder, tokenizer, scheduler}.

    ``overrides`` are TinySDConfig fields (e.g. ``sample_size=16, seed=1``).
    """
    from inpo.tokenizer import build_clip_tokenizer

    cfg = TinySDConfig(**{**(asdict(config) if config else {}), **overrides})
    torch.manual_seed(cfg.seed)
    vae = _tiny_vae(cfg)
    torch.manual_seed(cfg.seed + 1)
    text_encoder = _tiny_text_encoder(cfg)
    torch.manual_seed(cfg.seed + 2)
    unet = _tiny_unet(cfg)
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": build_clip_tokenizer(_tokenizer_dir() / "sd15"),
        "scheduler": default_scheduler("sd15"),
    }


def build_tiny_sdxl(config: TinySDConfig | None = None, **overrides) -> dict:
    """Random tiny SDXL-shaped components (two text encoders, ``text_time`` UNet conditioning)."""
    from inpo.tokenizer import build_clip_tokenizer

    cfg = TinySDConfig(**{**(asdict(config) if config else {}), **overrides})
    torch.manual_seed(cfg.seed)
    vae = _tiny_vae(cfg)
    torch.manual_seed(cfg.seed + 1)
    text_encoder = _tiny_text_encoder(cfg)
    torch.manual_seed(cfg.seed + 3)
    text_encoder_2 = _tiny_text_encoder(cfg, with_projection=True)
    torch.manual_seed(cfg.seed + 2)
    unet = _tiny_unet(cfg, sdxl=True)
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": build_clip_tokenizer(_tokenizer_dir() / "sd15"),
        "tokenizer_2": build_clip_tokenizer(_tokenizer_dir() / "sdxl2", pad_token="!"),
        "scheduler": default_scheduler("sdxl"),
    }


def make_pipeline(components: dict):
    """Wrap components into StableDiffusionPipeline / StableDiffusionXLPipeline (no safety checker)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if "text_encoder_2" in components:
        keys = SDXL_COMPONENTS
        return StableDiffusionXLPipeline(**{k: components[k] for k in keys}, force_zeros_for_empty_prompt=True)
    return StableDiffusionPipeline(
        **{k: components[k] for k in SD15_COMPONENTS},
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(components: dict, out_dir: str | Path) -> Path:
    """Save components as a standard diffusers folder (safetensors)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    make_pipeline(components).save_pretrained(str(out), safe_serialization=True)
    return out


def _from_pretrained(cls, source: str, what: str, **kw):
    """``cls.from_pretrained`` through :mod:`inpo.hub` (local folder, or hub id cache first)."""
    option = "model.vae" if what == "VAE" else "model.base"
    return hub.from_pretrained(cls, source, what=what, option=option, **kw)


def load_components(
    source: str | Path,
    *,
    family: str = "sd15",
    vae: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Load pipeline components from a local diffusers folder or a hub id.

    ``family``: "sd15" -> {unet, vae, text_encoder, tokenizer, scheduler};
    "sdxl" adds {text_encoder_2, tokenizer_2}. ``vae``: optional separate AutoencoderKL (local
    folder or hub id, e.g. ``madebyollin/sdxl-vae-fp16-fix``). Raises :class:`ModelUnavailableError`
    quickly when a hub id cannot be resolved.
    """
    from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if family not in {"sd15", "sdxl"}:
        raise ValueError(f"family must be 'sd15' or 'sdxl', got {family!r}")
    src = str(source)
    out: dict[str, Any] = {}
    out["unet"] = _from_pretrained(UNet2DConditionModel, src, "model", subfolder="unet", torch_dtype=dtype)
    if vae is not None:
        vae_src = str(vae)
        sub = {"subfolder": "vae"} if (Path(vae_src) / "vae").is_dir() else {}
        out["vae"] = _from_pretrained(AutoencoderKL, vae_src, "VAE", torch_dtype=dtype, **sub)
    else:
        out["vae"] = _from_pretrained(AutoencoderKL, src, "model", subfolder="vae", torch_dtype=dtype)
    out["text_encoder"] = _from_pretrained(CLIPTextModel, src, "model", subfolder="text_encoder", dtype=dtype)
    out["tokenizer"] = _from_pretrained(CLIPTokenizer, src, "model", subfolder="tokenizer")
    if family == "sdxl":
        out["text_encoder_2"] = _from_pretrained(
            CLIPTextModelWithProjection, src, "model", subfolder="text_encoder_2", dtype=dtype
        )
        out["tokenizer_2"] = _from_pretrained(CLIPTokenizer, src, "model", subfolder="tokenizer_2")
    out["scheduler"] = _load_scheduler(src)
    assert isinstance(out["scheduler"], SchedulerMixin)
    return out


def _load_scheduler(src: str):
    import diffusers

    cfg = _from_pretrained(_SchedulerConfigLoader, src, "model", subfolder="scheduler")
    cls = getattr(diffusers, cfg.get("_class_name", "DDIMScheduler"))
    return cls.from_config(cfg)


class _SchedulerConfigLoader:
    @classmethod
    def from_pretrained(cls, source, **kw):
        from diffusers import DDIMScheduler

        return DDIMScheduler.load_config(source, **kw)


def export_pipeline(base_dir: str | Path, unet, out_dir: str | Path) -> Path:
    """Write ``out_dir`` = the pipeline folder ``base_dir`` with its ``unet/`` replaced by ``unet``.

    Other files are hard-linked when possible (same filesystem), else copied. ``unet`` is a
    ``UNet2DConditionModel`` (unwrap accelerate/DDP wrappers first) or a path to a unet folder.
    """
    base, out = Path(base_dir), Path(out_dir)
    if not (base / "model_index.json").is_file():
        raise FileNotFoundError(f"{base} is not a diffusers pipeline folder (no model_index.json)")
    tmp = out.with_name(out.name + ".tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)

    def _link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("unet"), copy_function=_link_or_copy)
    if isinstance(unet, (str, Path)):
        shutil.copytree(unet, tmp / "unet", copy_function=shutil.copy2)
    else:
        module = getattr(unet, "module", unet)
        module.save_pretrained(str(tmp / "unet"), safe_serialization=True)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


__all__ = [
    "ModelUnavailableError",
    "TinySDConfig",
    "build_tiny_sd15",
    "build_tiny_sdxl",
    "default_scheduler",
    "export_pipeline",
    "load_components",
    "make_pipeline",
    "save_pipeline",
    "sd_scheduler_config",
]
