"""Tiny-real fixtures: the paper's real models, data and evaluators, tiny and random, in their real formats.

``python -m inpo.tiny_real OUT_DIR`` (or :func:`build`) writes everything the paper configs
(``config/paper_sd15.yaml``, ``config/paper_sdxl.yaml``) read from the hub, so that the paper DAG
runs end to end offline in minutes with ``config/tiny_real.yaml`` on top (that overlay changes only
ids, paths and sizes; it expects the fixtures in ``resources/tiny_real``):

- ``models/sd15``: a ``StableDiffusionPipeline`` folder (``UNet2DConditionModel``, ``AutoencoderKL``,
  ``CLIPTextModel``, the real 49,408-token ``CLIPTokenizer``, PNDM scheduler, no safety checker), as
  ``stable-diffusion-v1-5/stable-diffusion-v1-5`` on disk;
- ``models/sdxl``: a ``StableDiffusionXLPipeline`` folder (``CLIPTextModel`` + ``CLIPTextModelWithProjection``,
  two tokenizers, ``text_time`` UNet conditioning, Euler scheduler), as ``stabilityai/stable-diffusion-xl-base-1.0``;
- ``models/sdxl-vae-fp16-fix``: a separate ``AutoencoderKL`` folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors`` at its root), as ``madebyollin/sdxl-vae-fp16-fix``;
- ``pickapic_v2/data/{split}-{k:05d}-of-{n:05d}-{hash}.parquet``: a Pick-a-Pic v2 mirror in the exact
  schema (:data:`inpo.data.pickapic.PICKAPIC_V2_SCHEMA`) with several row groups per shard, ties and
  undecodable images in the ``train`` split, and ``validation``, ``validation_unique``, ``test``,
  ``test_unique`` splits (``test_unique`` holds the ``pickapic_test`` prompts);
- ``prompts/hpdv2``, ``prompts/parti``: links to the real prompt files (``<shared data>/hpdv2``,
  ``<shared data>/parti``);
- ``evaluators/``: the four real evaluators' weights in their real on-disk formats (folders named
  after the hub repos they stand in for; written by :func:`inpo.evaluators.testing.write_tiny_evaluators`):
  ``hps/HPS_v2.1_compressed.pt`` and ``hps/HPS_v2_compressed.pt`` (``{"state_dict": ...}`` of an
  open_clip CLIP, as ``xswu/HPSv2``) with the architecture in ``hps/ViT-H-14/open_clip_config.json``
  (open_clip's ``local-dir:`` schema stands in for the built-in name ``ViT-H-14``);
  ``clip/CLIP-ViT-H-14-laion2B-s32B-b79K`` in the layout of that laion repo (``open_clip_config.json``
  + ``open_clip_pytorch_model.bin``); ``pickscore/PickScore_v1`` (a ``CLIPModel`` folder, as
  ``yuvalkirstain/PickScore_v1``) and ``pickscore/CLIP-ViT-H-14-laion2B-s32B-b79K`` (its processor's
  repo: ``config.json`` + weights, ``preprocessor_config.json``, tokenizer files);
  ``aesthetic/sac+logos+ava1-l14-linearMSE.pth`` (a link to the real MLP weights) and
  ``aesthetic/clip-vit-large-patch14`` (as ``openai/clip-vit-large-patch14``: a ``CLIPModel`` whose
  projected image embedding has the real 768 dimensions the MLP reads, + processor files).

Sizes are in :class:`TinyRealConfig`; everything is deterministic given its ``seed``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .evaluators.testing import TINY_CLIP_ARCH

FAMILIES = ("sd15", "sdxl")
SPLITS = ("train", "validation", "validation_unique", "test", "test_unique")
AESTHETIC_WEIGHTS = "sac+logos+ava1-l14-linearMSE.pth"


@dataclass
class PickapicMirror:
    """Sizes of the synthetic Pick-a-Pic v2 mirror.

    ``rows`` per split (train: enough for a few updates after the drops), ``shards`` per split,
    ``row_group_size`` (rows per parquet row group: several per shard, so readers must cross row
    groups), ``ties`` (rows labelled 0.5 / 0.5) and ``corrupt`` (decided rows whose ``jpg_0`` or
    ``jpg_1`` bytes are truncated) in ``train``, and the image sides drawn per row (real Pick-a-Pic
    images are not all square).
    """

    rows: dict[str, int] = field(default_factory=lambda: {
        "train": 48, "validation": 8, "validation_unique": 4, "test": 8, "test_unique": 6})
    shards: dict[str, int] = field(default_factory=lambda: {"train": 3})
    row_group_size: int = 6
    ties: int = 4
    corrupt: int = 3
    image_sizes: tuple[tuple[int, int], ...] = ((64, 64), (80, 64), (64, 96))


@dataclass
class TinyRealConfig:
    """Sizes of the tiny-real fixtures.

    ``sd``: :class:`inpo.models.TinySDConfig` fields of both pipelines (the VAE has 4 levels, so its
    scale factor is 8 as in SD: 64 px images, 8x8 latents); ``vae_scaling_factor``: the real
    ``vae/config.json`` values (SD1.5 0.18215, SDXL 0.13025). ``clip``: the tiny CLIP towers of every
    evaluator (open_clip and transformers alike; images are preprocessed at the real 224 px).
    ``aesthetic_projection_dim``: the CLIP ViT-L/14 embedding size the aesthetic MLP reads.
    """

    sd: dict[str, Any] = field(default_factory=lambda: {
        "sample_size": 64, "vae_block_channels": (8, 16, 16, 16), "vae_norm_groups": 4,
        "unet_block_channels": (32, 64), "unet_cross_attn": (False, True), "unet_norm_groups": 16,
        "text_hidden_size": 32, "text_layers": 2, "text_heads": 2, "text_intermediate_size": 64,
        "text_projection_dim": 32})
    vae_scaling_factor: dict[str, float] = field(default_factory=lambda: {"sd15": 0.18215, "sdxl": 0.13025})
    clip: dict[str, int] = field(default_factory=lambda: dict(TINY_CLIP_ARCH))
    aesthetic_projection_dim: int = 768
    pickapic: PickapicMirror = field(default_factory=PickapicMirror)
    seed: int = 0


def shared_data_dir() -> Path:
    """``$INPO_SHARED_DATA``, else ``../shared/data`` beside the repository (as the tests find it)."""
    env = os.environ.get("INPO_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


# --------------------------------------------------------------------------------- diffusion models


def _vae_scaling(components: dict, factor: float) -> None:
    components["vae"].register_to_config(scaling_factor=float(factor))


def build_models(out: Path, cfg: TinyRealConfig, families=FAMILIES) -> dict[str, str]:
    """The tiny SD1.5 / SDXL pipeline folders (+ the separate SDXL VAE); returns name -> folder."""
    from .models import build_tiny_sd15, build_tiny_sdxl, save_pipeline

    paths = {}
    if "sd15" in families:
        comps = build_tiny_sd15(**{**cfg.sd, "seed": cfg.seed})
        _vae_scaling(comps, cfg.vae_scaling_factor["sd15"])
        paths["sd15"] = str(save_pipeline(comps, out / "sd15"))
    if "sdxl" in families:
        comps = build_tiny_sdxl(**{**cfg.sd, "seed": cfg.seed + 10})
        _vae_scaling(comps, cfg.vae_scaling_factor["sdxl"])
        paths["sdxl"] = str(save_pipeline(comps, out / "sdxl"))
        # the fp16-fix VAE: same architecture and scaling factor, other weights (so a run that
        # forgets model.vae decodes differently from one that uses it)
        vae = build_tiny_sdxl(**{**cfg.sd, "seed": cfg.seed + 20})["vae"]
        vae.register_to_config(scaling_factor=float(cfg.vae_scaling_factor["sdxl"]), force_upcast=False)
        vae.save_pretrained(str(out / "sdxl-vae-fp16-fix"), safe_serialization=True)
        paths["sdxl_vae"] = str(out / "sdxl-vae-fp16-fix")
    return paths


# --------------------------------------------------------------------------------- Pick-a-Pic v2


_SUBJECTS = ("a red fox", "an astronaut", "a lighthouse", "a bowl of ramen", "a cyberpunk city",
             "a watercolor cat", "an old oak tree", "a steam locomotive", "a dragon", "a glass teapot",
             "a mountain lake", "a robot chef", "a medieval castle", "a koi pond", "a vintage car",
             "a desert caravan")
_STYLES = ("at sunset", "in the style of Studio Ghibli", "highly detailed, 8k", "oil painting",
           "photorealistic", "pixel art", "trending on artstation", "under neon lights")


def _captions(n: int, rng: np.random.Generator) -> list[str]:
    return [f"{_SUBJECTS[rng.integers(len(_SUBJECTS))]}, {_STYLES[rng.integers(len(_STYLES))]}"
            for _ in range(n)]


def _jpeg(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    """A smooth random-colour JPEG of ``size`` (w, h): two colours blended along a random direction."""
    from PIL import Image

    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * xx / w + np.sin(a) * yy / h + 1) / 2
    img = (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _uid(rng: np.random.Generator) -> str:
    import uuid

    return str(uuid.UUID(bytes=rng.integers(0, 256, 16, dtype=np.uint8).tobytes(), version=4))


def _split_rows(split: str, n: int, rng: np.random.Generator, m: PickapicMirror, start_index: int) -> tuple[list[dict], dict]:
    caps = _captions(n, rng)
    if split.endswith("_unique"):  # one row per caption, as the real *_unique splits
        seen: set[str] = set()
        for i, c in enumerate(caps):
            while c in seen:
                c = f"{c}, variation {i}"
            seen.add(c)
            caps[i] = c
    ties = set(rng.choice(n, size=min(m.ties, n), replace=False).tolist()) if split == "train" else set()
    decided = [i for i in range(n) if i not in ties]
    corrupt = set(rng.choice(decided, size=min(m.corrupt, len(decided)), replace=False).tolist()) \
        if split == "train" else set()
    t0 = np.datetime64("2023-04-01T12:00:00", "ns")
    rows = []
    for i in range(n):
        sizes = [m.image_sizes[int(k)] for k in rng.integers(len(m.image_sizes), size=2)]
        jpg = [_jpeg(rng, s) for s in sizes]
        if i in corrupt:
            k = int(rng.integers(2))
            jpg[k] = jpg[k][: len(jpg[k]) // 3]  # truncated JPEG: undecodable
        uid = [_uid(rng), _uid(rng)]
        l0 = 0.5 if i in ties else float(rng.integers(2))
        rows.append({
            "are_different": True,
            "best_image_uid": uid[0] if l0 == 1.0 else (uid[1] if l0 == 0.0 else ""),
            "caption": caps[i],
            "created_at": t0 + np.timedelta64(int(i) * 37_000_000_000, "ns"),
            "has_label": True,
            "image_0_uid": uid[0],
            "image_0_url": f"https://images.pickapic.invalid/{uid[0]}.png",
            "image_1_uid": uid[1],
            "image_1_url": f"https://images.pickapic.invalid/{uid[1]}.png",
            "jpg_0": jpg[0],
            "jpg_1": jpg[1],
            "label_0": l0,
            "label_1": 1.0 - l0,
            "model_0": str(rng.choice(["stabilityai/stable-diffusion-2-1", "CompVis/stable-diffusion-v1-4"])),
            "model_1": str(rng.choice(["stabilityai/stable-diffusion-xl-base-0.9", "runwayml/stable-diffusion-v1-5"])),
            "ranking_id": int(400000 + start_index + i),
            "user_id": int(1 + rng.integers(500)),
            "num_example_per_prompt": 1,
            "__index_level_0__": int(start_index + i),
        })
    return rows, {"rows": n, "ties": sorted(ties), "corrupt": sorted(corrupt)}


def build_pickapic(out: Path, m: PickapicMirror, seed: int = 0) -> dict:
    """The Pick-a-Pic v2 mirror under ``out/data``; returns its manifest (counts, tie / corrupt rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .data.pickapic import PICKAPIC_V2_SCHEMA

    rng = np.random.default_rng([seed, 959040])
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"schema": "yuvalkirstain/pickapic_v2", "row_group_size": m.row_group_size, "splits": {}}
    start = 0
    for split in SPLITS:
        n = m.rows[split]
        rows, info = _split_rows(split, n, rng, m, start)
        start += n
        k_shards = m.shards.get(split, 1)
        bounds = np.linspace(0, n, k_shards + 1).astype(int)
        files = []
        for k in range(k_shards):
            table = pa.Table.from_pylist(rows[bounds[k]:bounds[k + 1]], schema=PICKAPIC_V2_SCHEMA)
            digest = hashlib.sha256(f"{seed}-{split}-{k}".encode()).hexdigest()[:16]
            path = data / f"{split}-{k:05d}-of-{k_shards:05d}-{digest}.parquet"
            pq.write_table(table, path, row_group_size=m.row_group_size)
            files.append(path.name)
        manifest["splits"][split] = {**info, "files": files, "row_bounds": bounds.tolist()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


# --------------------------------------------------------------------------------- evaluators


def build_evaluators(out: Path, cfg: TinyRealConfig, shared: Path) -> dict[str, dict[str, str]]:
    """The four evaluators' weights (:func:`inpo.evaluators.testing.write_tiny_evaluators`, the one
    writer of tiny evaluator checkpoints) with the real aesthetic MLP of the shared data folder;
    returns their ``evaluator_options``."""
    from .evaluators.testing import write_tiny_evaluators

    src = shared / "aesthetic" / AESTHETIC_WEIGHTS
    if not src.is_file():
        raise FileNotFoundError(f"aesthetic MLP weights not found: {src} (set INPO_SHARED_DATA or --shared-data)")
    return write_tiny_evaluators(out, aesthetic_weights=src, arch=cfg.clip,
                                 aesthetic_projection_dim=cfg.aesthetic_projection_dim, seed=cfg.seed)


# --------------------------------------------------------------------------------- prompts and API


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    dst.symlink_to(src.resolve())


def link_prompts(out: Path, shared: Path) -> dict[str, str]:
    """Links ``out/hpdv2`` and ``out/parti`` to the real prompt files of the shared data folder."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("hpdv2", "parti"):
        src = shared / name
        if not src.is_dir():
            raise FileNotFoundError(f"real prompt files not found: {src} (set INPO_SHARED_DATA or --shared-data)")
        _link(src, out / name)
        paths[name] = str(out / name)
    return paths


def build(out_dir: str | Path, families=FAMILIES, *, shared_data: str | Path | None = None,
          config: TinyRealConfig | None = None) -> dict:
    """Write every tiny-real fixture under ``out_dir`` (see the module docstring); returns a manifest
    (also ``out_dir/manifest.json``) with the paths, the Pick-a-Pic counts and the build time."""
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"families: unknown {sorted(unknown)}; choose from {FAMILIES}")
    cfg = config or TinyRealConfig()
    shared = Path(shared_data) if shared_data else shared_data_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = {
        "config": asdict(cfg),
        "models": build_models(out / "models", cfg, families),
        "pickapic": build_pickapic(out / "pickapic_v2", cfg.pickapic, cfg.seed),
        "prompts": link_prompts(out / "prompts", shared),
        "evaluators": build_evaluators(out / "evaluators", cfg, shared),
    }
    manifest["build_s"] = round(time.perf_counter() - t0, 2)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m inpo.tiny_real", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="where to write the fixtures (config/tiny_real.yaml reads resources/tiny_real)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--shared-data", default=None,
                   help="folder of the real prompt files and aesthetic weights (default: $INPO_SHARED_DATA or ../shared/data)")
    args = p.parse_args(argv)
    m = build(args.out_dir, args.families, shared_data=args.shared_data)
    print(f"tiny-real fixtures in {args.out_dir} ({m['build_s']} s)")


if __name__ == "__main__":
    main()
