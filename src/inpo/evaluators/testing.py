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

Entry point: :func:`write_tiny_evaluators` writes all four under one folder in the layouts of the hub
repos they stand in for (the files the tiny-real paper overlay ``config/tiny_real.yaml`` reads, via
:mod:`inpo.tiny_real`) and returns the ``evaluator_options`` mapping for them; the writers above are
its parts, which the parity tests also use one by one. Models are float32, seeded, and the same for
the same seed. This module is the one home of tiny evaluator checkpoints.
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

#: the CLIP towers of :func:`write_tiny_evaluators` (open_clip and transformers alike): the real 224 px
#: input, tiny widths; ``embed_dim``: the joint embedding (the aesthetic CLIP projects to 768 instead)
TINY_CLIP_ARCH: dict[str, int] = {"image_size": 224, "patch_size": 32, "width": 32, "layers": 2, "heads": 2,
                                  "embed_dim": 16}
#: the transformers CLIP of :func:`write_tiny_pickscore` (ViT-H-14's patch 14, GELU)
TINY_PICKSCORE_ARCH: dict[str, Any] = {"image_size": 224, "patch_size": 14, "width": 32, "layers": 2, "heads": 2,
                                       "hidden_act": "gelu"}


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
    """A random open_clip CLIP of the architecture in ``config_path``: a model-config JSON (registered
    in open_clip) or ``local-dir:<folder>`` of a hub-layout ``open_clip_config.json``."""
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
    from inpo.tokenizer import build_clip_tokenizer

    folder = Path(folder)
    model_dir, proc_dir = folder / "model", folder / "processor"
    model = build_tiny_hf_clip(TINY_PICKSCORE_ARCH, projection_dim=16, seed=seed)
    cfg = model.config
    model.save_pretrained(str(model_dir), safe_serialization=True)
    build_clip_tokenizer(proc_dir, pad_token="!")  # vocab.json, merges.txt, tokenizer configs
    (proc_dir / "preprocessor_config.json").write_text(json.dumps(LAION_PREPROCESSOR_CONFIG, indent=2))
    cfg.save_pretrained(str(proc_dir))
    return model_dir, proc_dir


def build_tiny_hf_clip(arch: dict[str, Any], projection_dim: int, seed: int,
                       logit_scale: float = math.log(100.0)) -> torch.nn.Module:
    """A random transformers ``CLIPModel`` (eval mode): both towers ``arch``'s width / layers / heads
    (MLP 2 x width, ``hidden_act`` if given), the real 49,408-token vocabulary and 77 positions,
    ``image_size`` / ``patch_size``, weights ~ N(0, 0.1) (scores that differ visibly) and
    ``logit_scale`` (default log 100, PickScore_v1's trained value)."""
    from transformers import CLIPConfig, CLIPModel

    common = dict(hidden_size=arch["width"], intermediate_size=2 * arch["width"], num_attention_heads=arch["heads"],
                  num_hidden_layers=arch["layers"], **({"hidden_act": arch["hidden_act"]} if "hidden_act" in arch else {}))
    cfg = CLIPConfig(
        text_config=dict(**common, vocab_size=49408, max_position_embeddings=77, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=1),
        vision_config=dict(**common, image_size=arch["image_size"], patch_size=arch["patch_size"]),
        projection_dim=projection_dim,
        logit_scale_init_value=logit_scale,
    )
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.1)
    return model


def write_tiny_hf_clip_repo(folder: str | Path, arch: dict[str, Any], projection_dim: int, seed: int) -> Path:
    """A transformers CLIP hub repo as ``openai/clip-vit-large-patch14`` or the laion ones ship it:
    ``config.json`` + safetensors (a ``CLIPModel``), ``preprocessor_config.json`` (``CLIPImageProcessor``:
    resize shortest edge, center crop, bicubic, OpenAI mean / std) and the tokenizer files, so that
    ``AutoProcessor`` resolves it to a ``CLIPProcessor``."""
    from transformers import CLIPImageProcessor

    from inpo.tokenizer import write_clip_tokenizer_files

    folder = Path(folder)
    build_tiny_hf_clip(arch, projection_dim, seed).save_pretrained(str(folder), safe_serialization=True)
    size = arch["image_size"]
    CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, do_center_crop=True,
        image_mean=LAION_PREPROCESSOR_CONFIG["image_mean"], image_std=LAION_PREPROCESSOR_CONFIG["image_std"],
        resample=3,
    ).save_pretrained(str(folder))
    write_clip_tokenizer_files(folder)
    return folder


def write_open_clip_repo_config(folder: str | Path, arch: dict[str, Any]) -> str:
    """``folder/open_clip_config.json`` as the laion hub repos ship it (``model_cfg`` of ``arch``, an
    open_clip model config, + ``preprocess_cfg``: OpenAI mean / std); returns the open_clip model
    name ``local-dir:<folder>`` that reads it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"model_cfg": arch, "preprocess_cfg": {"mean": LAION_PREPROCESSOR_CONFIG["image_mean"],
                                                 "std": LAION_PREPROCESSOR_CONFIG["image_std"]}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
    return f"local-dir:{folder}"


def _link(src: Path, dst: Path) -> Path:
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    dst.symlink_to(Path(src).resolve())
    return dst


def write_tiny_evaluators(folder: str | Path, *, aesthetic_weights: str | Path | None = None,
                          hps_version: str = "v2.0", arch: dict[str, Any] | None = None,
                          aesthetic_projection_dim: int = 768, seed: int = 0) -> dict[str, dict[str, str]]:
    """Tiny random checkpoints of the four real evaluators under ``folder``, in the layouts of the hub
    repos they stand in for (folders named after them); returns their ``evaluator_options`` (paths
    relative to the working directory when ``folder`` is).

    - ``clip/CLIP-ViT-H-14-laion2B-s32B-b79K``: ``open_clip_config.json`` + ``open_clip_pytorch_model.bin``
      (a bare state dict), the laion repo's layout;
    - ``hps/HPS_v2_compressed.pt`` and ``hps/HPS_v2.1_compressed.pt`` (``{"state_dict": ...}`` as
      ``xswu/HPSv2``), the architecture in ``hps/ViT-H-14/open_clip_config.json`` (open_clip's
      ``local-dir:`` stands in for the built-in name ``ViT-H-14``); ``hps_version`` picks the option's;
    - ``pickscore/PickScore_v1`` (a ``CLIPModel`` folder, logit scale 100) and its processor's repo
      ``pickscore/CLIP-ViT-H-14-laion2B-s32B-b79K`` (a full transformers CLIP repo);
    - ``aesthetic/sac+logos+ava1-l14-linearMSE.pth`` (a link to ``aesthetic_weights``, the real MLP,
      else random weights of its shape) and ``aesthetic/clip-vit-large-patch14`` (as
      ``openai/clip-vit-large-patch14``: projected image embedding of ``aesthetic_projection_dim``, the
      MLP's 768 inputs; transformers backend).

    ``arch``: the CLIP towers of all four (:data:`TINY_CLIP_ARCH`; images at the real 224 px).
    """
    from inpo.evaluators.aesthetic import WEIGHTS_FILE
    from inpo.evaluators.hps import HPS_FILES, normalize_hps_version

    a = arch or TINY_CLIP_ARCH
    oc = {"embed_dim": a["embed_dim"],
          "vision_cfg": {"image_size": a["image_size"], "layers": a["layers"], "width": a["width"],
                         "head_width": a["width"] // a["heads"], "patch_size": a["patch_size"]},
          "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": a["width"], "heads": a["heads"],
                       "layers": a["layers"]}}
    folder = Path(folder)
    common = {"precision": "fp32", "device": "cpu"}
    clip_dir = folder / "clip" / "CLIP-ViT-H-14-laion2B-s32B-b79K"
    clip_name = write_open_clip_repo_config(clip_dir, oc)
    torch.save(build_tiny_open_clip(clip_name, seed + 100).state_dict(), clip_dir / "open_clip_pytorch_model.bin")
    hps_name = write_open_clip_repo_config(folder / "hps" / "ViT-H-14", oc)
    for k, name in enumerate(sorted(HPS_FILES.values())):
        torch.save({"state_dict": build_tiny_open_clip(hps_name, seed + 200 + k).state_dict()}, folder / "hps" / name)
    ps = folder / "pickscore"
    build_tiny_hf_clip(a, a["embed_dim"], seed + 300).save_pretrained(str(ps / "PickScore_v1"), safe_serialization=True)
    write_tiny_hf_clip_repo(ps / "CLIP-ViT-H-14-laion2B-s32B-b79K", a, a["embed_dim"], seed + 310)
    aes = folder / "aesthetic"
    aes.mkdir(parents=True, exist_ok=True)
    mlp = _link(Path(aesthetic_weights), aes / WEIGHTS_FILE) if aesthetic_weights \
        else write_tiny_aesthetic_mlp(aes, seed + 400)
    write_tiny_hf_clip_repo(aes / "clip-vit-large-patch14", a, aesthetic_projection_dim, seed + 410)
    return {
        "hps": {"hps_version": hps_version, "model_name": hps_name,
                "checkpoint": str(folder / "hps" / HPS_FILES[normalize_hps_version(hps_version)]), **common},
        "clip": {"model_name": clip_name, "pretrained": str(clip_dir / "open_clip_pytorch_model.bin"), **common},
        "pickscore": {"model": str(ps / "PickScore_v1"), "processor": str(ps / "CLIP-ViT-H-14-laion2B-s32B-b79K"),
                      **common},
        "aesthetic": {"backend": "transformers", "weights": str(mlp),
                      "clip_model": str(aes / "clip-vit-large-patch14"), **common},
    }


__all__ = [
    "TINY_CLIP_ARCH",
    "TINY_OPENAI_CLIP_CONFIG",
    "TINY_OPEN_CLIP_CONFIG",
    "TINY_PICKSCORE_ARCH",
    "build_tiny_hf_clip",
    "build_tiny_open_clip",
    "write_open_clip_config",
    "write_open_clip_repo_config",
    "write_tiny_aesthetic_mlp",
    "write_tiny_evaluators",
    "write_tiny_hf_clip_repo",
    "write_tiny_hps_checkpoint",
    "write_tiny_open_clip_checkpoint",
    "write_tiny_openai_clip",
    "write_tiny_pickscore",
]
