"""HPSv2 (Human Preference Score v2): open_clip ViT-H-14 with the HPS checkpoint, ``100 * cos``.

The HPS checkpoints (``HPS_v2_compressed.pt`` for v2.0, ``HPS_v2.1_compressed.pt`` for v2.1, hub
repo ``xswu/HPSv2``) are full open_clip ViT-H-14 state_dicts (wrapped in ``{"state_dict": ...}``);
they load unchanged into ``open_clip.create_model("ViT-H-14")``. Preprocessing and tokenizer are
open_clip's own for ViT-H-14 (resize 224 bicubic, center crop, OpenAI mean/std), as in the ``hpsv2``
package, which we do not depend on (its pins conflict with ours). v2.0 and v2.1 give different
numbers: the version is in ``evaluator.version`` (``"hpsv2.1"``) and so in every score file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inpo.evaluators import register
from inpo.evaluators.clip import OpenClipEvaluator, hf_file, load_open_clip, unavailable

HPS_REPO = "xswu/HPSv2"
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}


def normalize_hps_version(v: str) -> str:
    key = str(v).lower().removeprefix("hps").removeprefix("v")
    key = {"2": "v2.0", "2.0": "v2.0", "2.1": "v2.1"}.get(key)
    if key is None:
        raise ValueError(f"unknown hps_version {v!r}; use 'v2.0' or 'v2.1'")
    return key


def load_hps_state_dict(path: str | Path, *, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """State dict of an HPS checkpoint file (``{"state_dict": ...}`` or bare), ``module.`` stripped."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=weights_only)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: not a state_dict checkpoint (got {type(sd).__name__})")
    return {k.removeprefix("module."): v for k, v in sd.items()}


@register("hps")
class HpsEvaluator(OpenClipEvaluator):
    """HPSv2 score, ``100 * cos(image_emb, text_emb)``; about 26-30 on SD images.

    Options: ``hps_version`` ("v2.0" or "v2.1", default "v2.1"), ``checkpoint`` (local path of the HPS
    checkpoint; default: ``HPS_FILES[hps_version]`` from hub repo ``hub_repo``), ``model_name``
    (open_clip architecture, default ViT-H-14), ``device``, ``dtype``, ``batch_size``,
    ``weights_only`` (torch.load safety, default True).
    """

    name = "hps"

    def __init__(
        self,
        hps_version: str = "v2.1",
        checkpoint: str | Path | None = None,
        *,
        hub_repo: str = HPS_REPO,
        model_name: str = "ViT-H-14",
        weights_only: bool = True,
        **kwargs,
    ) -> None:
        self.hps_version = normalize_hps_version(hps_version)
        self.checkpoint = checkpoint
        self.hub_repo = hub_repo
        self.weights_only = weights_only
        kwargs.setdefault("pretrained", None)
        super().__init__(model_name=model_name, **kwargs)

    def _default_version(self) -> str:
        return "hps" + self.hps_version  # "hpsv2.0" / "hpsv2.1"

    def _load(self):
        if self.checkpoint is not None:
            path = Path(self.checkpoint)
            if not path.is_file():
                raise unavailable("HPS checkpoint", str(path), "checkpoint", FileNotFoundError(str(path)))
        else:
            path = hf_file(self.hub_repo, HPS_FILES[self.hps_version], "checkpoint")
        sd = load_hps_state_dict(path, weights_only=self.weights_only)
        model, preprocess, tokenizer = load_open_clip(self.model_name, None, option="checkpoint")
        model.load_state_dict(sd, strict=True)
        return model, preprocess, tokenizer
