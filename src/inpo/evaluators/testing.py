"""Tiny random evaluator checkpoints written in the real on-disk formats.

Each writer produces files that the real evaluator (and its official reference code) loads through
the same path as the published weights, only with small random models, so that tests and tiny
pipelines exercise real loading, preprocessing and scoring without downloads:

- ``hps``: ``HPS_v2_compressed.pt`` / ``HPS_v2.1_compressed.pt``, ``{"state_dict": ...}`` of an
  open_clip CLIP as the hub files, plus the architecture's open_clip config JSON
  (:func:`write_tiny_hps_checkpoint`; options ``checkpoint``, ``model_name``);
- ``clip``: an open_clip checkpoint (bare state dict, as open_clip's hub files) plus the config JSON
  (:func:`write_tiny_open_clip_checkpoint`; options ``pretrained``, ``model_name``);
- ``pickscore``: ``model/`` (transformers ``CLIPModel``, safetensors) and ``processor/`` laid out
  as the laion processor repo (:func:`write_tiny_pickscore`; options ``model``, ``processor``);
- ``aesthetic``: ``ViT-L-14.pt``, OpenAI CLIP as a TorchScript archive like OpenAI's file,
  ViT-L/14-shaped (224 px, patch 14, 768-d embedding), tiny widths (:func:`write_tiny_openai_clip`;
  option ``clip_model``); the MLP is the real file or :func:`write_tiny_aesthetic_mlp` (``weights``).

Entry point: :func:`write_tiny_evaluators` writes all four under one folder and returns the
``evaluator_options`` mapping for them. Models are float32, seeded, and the same for the same seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

#: open_clip architecture of the tiny HPS / CLIP-score model: ViT-H-14's input (224 px, patch 14,
#: 77-token context, 49,408-token vocabulary), tiny widths.
TINY_OPEN_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 16, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_OPEN_CLIP_NAME = "inpo-tiny-ViT-H-14"

#: the tiny OpenAI-format CLIP of the aesthetic predictor: ViT-L/14-shaped (224 px, patch 14, 768-d
#: projection, the MLP's input), widths multiples of 64 (OpenAI CLIP derives heads = width // 64)
TINY_OPENAI_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 768,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 64, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}
TINY_OPENAI_CLIP_NAME = "inpo-tiny-ViT-L-14-openai"


#: ``preprocessor_config.json`` of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (the PickScore processor):
#: the old feature-extractor form, without ``processor_class`` (so ``AutoProcessor`` needs the repo's
#: ``config.json`` to find ``CLIPProcessor``)
LAION_PREPROCESSOR_CONFIG: dict[str, Any] = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}


def write_open_clip_config(folder: str | Path, name: str = TINY_OPEN_CLIP_NAME,
                           config: dict | None = None) -> Path:
    """``folder/<name>.json``: an open_clip model config (the evaluators' ``model_name`` accepts it)."""
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config or TINY_OPEN_CLIP_CONFIG, indent=2))
    return path


def build_tiny_open_clip(config_path: str | Path, seed: int = 0) -> torch.nn.Module:
    """A random open_clip CLIP of the architecture in ``config_path`` (registered in open_clip)."""
    import open_clip

    from inpo.evaluators.common import open_clip_architecture

    name = open_clip_architecture(config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None, device="cpu")
    with torch.no_grad():  # open_clip initialises logit_scale to log(1/0.07); any value works, keep it
        for p in model.parameters():  # larger random weights than the init: scores that differ visibly
            if p.ndim >= 2:
                p.normal_(0.0, 0.1)
    return model.eval()


def write_tiny_hps_checkpoint(folder: str | Path, hps_version: str = "v2.0", seed: int = 0) -> tuple[Path, Path]:
    """``(checkpoint, model_config)``: ``folder/HPS_v2_compressed.pt`` (or ``HPS_v2.1_...``) as
    ``{"state_dict": <open_clip CLIP state dict>}`` like the hub files, and the architecture JSON."""
    from inpo.evaluators.hps import HPS_FILES, normalize_hps_version

    folder = Path(folder)
    cfg = write_open_clip_config(folder)
    model = build_tiny_open_clip(cfg, seed)
    path = folder / HPS_FILES[normalize_hps_version(hps_version)]
    torch.save({"state_dict": model.state_dict()}, path)
    return path, cfg


def write_tiny_open_clip_checkpoint(folder: str | Path, seed: int = 1) -> tuple[Path, Path]:
    """``(checkpoint, model_config)``: ``folder/open_clip_pytorch_model.bin`` (a bare state dict, the
    format of open_clip's hub checkpoints) and the architecture JSON."""
    folder = Path(folder)
    cfg = write_open_clip_config(folder)
    model = build_tiny_open_clip(cfg, seed)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return path, cfg


def write_tiny_openai_clip(folder: str | Path, seed: int = 2) -> Path:
    """``folder/ViT-L-14.pt``: a TorchScript archive holding an OpenAI CLIP state dict (keys of
    ``clip.model.CLIP`` plus ``input_resolution`` / ``context_length`` / ``vocab_size``), the format
    of OpenAI's ``ViT-L-14.pt``, which ``clip.load(path, jit=False)`` and
    ``open_clip.load_openai_model(path)`` both rebuild (QuickGELU, sizes from the weights)."""
    from torch import nn

    folder = Path(folder)
    cfg = write_open_clip_config(folder / "arch", TINY_OPENAI_CLIP_NAME, TINY_OPENAI_CLIP_CONFIG)
    model = build_tiny_open_clip(cfg, seed)
    root = nn.Module()
    for key, value in model.state_dict().items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, nn.Module())
            module = getattr(module, name)
        module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    vision, text = TINY_OPENAI_CLIP_CONFIG["vision_cfg"], TINY_OPENAI_CLIP_CONFIG["text_cfg"]
    sizes = {"input_resolution": vision["image_size"], "context_length": text["context_length"],
             "vocab_size": text["vocab_size"]}
    for key, value in sizes.items():
        root.register_buffer(key, torch.tensor(value))
    path = folder / "ViT-L-14.pt"
    torch.jit.save(torch.jit.script(root), str(path))
    return path


def write_tiny_aesthetic_mlp(folder: str | Path, seed: int = 3) -> Path:
    """``folder/sac+logos+ava1-l14-linearMSE.pth`` with random weights (the real file's keys)."""
    from inpo.evaluators.aesthetic import WEIGHTS_FILE, AestheticMLP

    torch.manual_seed(seed)
    path = Path(folder) / WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(AestheticMLP().state_dict(), path)
    return path


def write_tiny_pickscore(folder: str | Path, seed: int = 4) -> tuple[Path, Path]:
    """``(model_dir, processor_dir)``: a transformers ``CLIPModel`` folder (``config.json`` +
    safetensors, ``logit_scale`` = log 100 as PickScore_v1) and a processor folder laid out as the
    ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` repo (:data:`LAION_PREPROCESSOR_CONFIG`, the CLIP
    tokenizer files with ``"!"`` padding, ``config.json``), loadable with the model card's
    ``AutoProcessor`` / ``AutoModel``."""
    from transformers import CLIPConfig, CLIPModel

    from inpo.tokenizer import build_clip_tokenizer

    folder = Path(folder)
    model_dir, proc_dir = folder / "model", folder / "processor"
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                         vocab_size=49408, max_position_embeddings=77, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=1, hidden_act="gelu"),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                           image_size=224, patch_size=14, hidden_act="gelu"),
        projection_dim=16,
        logit_scale_init_value=math.log(100.0),
    )
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.1)
    model.save_pretrained(str(model_dir), safe_serialization=True)
    build_clip_tokenizer(proc_dir, pad_token="!")  # vocab.json, merges.txt, tokenizer configs
    (proc_dir / "preprocessor_config.json").write_text(json.dumps(LAION_PREPROCESSOR_CONFIG, indent=2))
    cfg.save_pretrained(str(proc_dir))
    return model_dir, proc_dir


def write_tiny_evaluators(folder: str | Path, *, aesthetic_weights: str | Path | None = None,
                          hps_version: str = "v2.0") -> dict[str, dict[str, str]]:
    """Write tiny real-format files for all four real evaluators under ``folder``; return their
    ``evaluator_options`` (``{"hps": {...}, "clip": {...}, "pickscore": {...}, "aesthetic": {...}}``),
    with ``precision: fp32`` and ``device: cpu``. ``aesthetic_weights``: the real MLP file to use
    (default: a random one written here)."""
    folder = Path(folder)
    hps_ckpt, hps_cfg = write_tiny_hps_checkpoint(folder / "hps", hps_version)
    clip_ckpt, clip_cfg = write_tiny_open_clip_checkpoint(folder / "clip")
    pick_model, pick_proc = write_tiny_pickscore(folder / "pickscore")
    openai_clip = write_tiny_openai_clip(folder / "aesthetic")
    mlp = Path(aesthetic_weights) if aesthetic_weights else write_tiny_aesthetic_mlp(folder / "aesthetic")
    common = {"precision": "fp32", "device": "cpu"}
    return {
        "hps": {"hps_version": hps_version, "checkpoint": str(hps_ckpt), "model_name": str(hps_cfg), **common},
        "clip": {"pretrained": str(clip_ckpt), "model_name": str(clip_cfg), **common},
        "pickscore": {"model": str(pick_model), "processor": str(pick_proc), **common},
        "aesthetic": {"weights": str(mlp), "clip_model": str(openai_clip), **common},
    }


__all__ = [
    "TINY_OPENAI_CLIP_CONFIG",
    "TINY_OPEN_CLIP_CONFIG",
    "build_tiny_open_clip",
    "write_open_clip_config",
    "write_tiny_aesthetic_mlp",
    "write_tiny_evaluators",
    "write_tiny_hps_checkpoint",
    "write_tiny_open_clip_checkpoint",
    "write_tiny_openai_clip",
    "write_tiny_pickscore",
]
