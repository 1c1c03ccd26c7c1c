"""Helpers for tests that train through the public entry points (``inpo.trainer.train``, the
``python -m inpo.trainer`` command) on a tiny random SD1.5 pipeline and a few fixed pairs."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from inpo.config import TrainConfig, train_config_from_dict

# A large Adam eps makes the update linear in the gradient (see test_trainer.LINEAR_OPT).
LINEAR_OPT = {"learning_rate": 1e-1, "scale_lr": False, "warmup_updates": 0, "adam_eps": 1.0}
WINNER_RGB, LOSER_RGB = (230, 40, 40), (40, 40, 230)
RESOLUTION = 16


def build_world(root: Path, jpeg, write_shard, n_pairs: int = 4) -> Path:
    """``root/base`` (a tiny random SD1.5 pipeline) and ``root/pairs.parquet``: ``n_pairs`` pairs
    whose preferred image is always the red one and the rejected one always blue, the preferred
    image alternating between ``jpg_0`` and ``jpg_1`` (so the label decides which is the winner)."""
    from inpo.data.pickapic import filter_pairs
    from inpo.models import build_tiny_sd15, save_pipeline

    comps = build_tiny_sd15(sample_size=RESOLUTION, unet_block_channels=(32, 64), unet_norm_groups=8,
                            vae_block_channels=(16, 32), vae_norm_groups=8, seed=0)
    save_pipeline(comps, root / "base")
    rows = []
    for i in range(n_pairs):
        w, lo = jpeg(WINNER_RGB, size=(20, 16), marker=None), jpeg(LOSER_RGB, size=(20, 16), marker=None)
        first_wins = i % 2 == 0
        rows.append(dict(caption=f"a colour swatch {i}", label_0=1.0 if first_wins else 0.0,
                         jpg_0=w if first_wins else lo, jpg_1=lo if first_wins else w))
    write_shard(root / "shards" / "train-00000-of-00001.parquet", rows)
    filter_pairs(root / "shards", root / "pairs.parquet", root / "manifest.json")
    return root


def make_run_cfg(world: Path, name: str, tmp: Path, **over) -> TrainConfig:
    """A validated run config on ``world``; keyword arguments replace top-level keys."""
    d = {
        "output_dir": str(tmp / name / "model"),
        "state_dir": str(tmp / name / "state"),
        "method": {"name": "inpo", "beta": 500.0},
        "model": {"pretrained": str(world / "base")},
        "data": {"examples": "pairs", "index": str(world / "pairs.parquet"), "resolution": RESOLUTION},
        "optim": {"learning_rate": 1e-3, "scale_lr": False, "warmup_updates": 0},
        "micro_batch_size": 2, "grad_accum": 1, "max_updates": 2, "seed": 3,
        "checkpoint_every": 0, "log_csv": str(tmp / name / "log.csv"), "progress": False,
    }
    d.update(over)
    return train_config_from_dict(d)


def read_log(path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def unet_state(path) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(path, subfolder="unet").state_dict()


def max_unet_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)
