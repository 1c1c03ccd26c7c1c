"""HPSv2 (Human Preference Score v2): open_clip ViT-H-14 with the HPS checkpoint, ``100 * cos``.

Reference: the ``hpsv2`` package's scorer (``hpsv2.img_score.score``, v1.2.0): the model from
``create_model_and_transforms("ViT-H-14", ..., precision="amp", light_augmentation=True,
output_dict=True)`` with the checkpoint's ``state_dict`` loaded; ``preprocess_val`` (ToTensor,
resize the longest side to 224, zero-pad to a square, normalise: :func:`pad_square_transform`);
``get_tokenizer("ViT-H-14")``; under ``torch.cuda.amp.autocast()`` the diagonal of
``image_features @ text_features.T``. hpsv2 returns that cosine; the paper reports it x 100, which
is what this evaluator returns. We do not depend on ``hpsv2`` (its pins conflict with ours); the
parity test runs it from a scratch install.

Checkpoints (hub repo ``xswu/HPSv2``): ``HPS_v2_compressed.pt`` (v2.0, the one the Diffusion-DPO
``utils/hps_utils.py`` loads and the default of ``hpsv2.score``) and ``HPS_v2.1_compressed.pt``
(v2.1, the default of ``hpsv2.evaluate``); each ``{"state_dict": <full open_clip ViT-H-14>}``.
The two give different numbers: the version is in ``evaluator.version`` (``"hpsv2.0"``) and so in
every score file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inpo import hub
from inpo.evaluators.clip import OpenClipEvaluator
from inpo.evaluators.common import load_open_clip

HPS_REPO = "xswu/HPSv2"
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}


def normalize_hps_version(v: str) -> str:
    key = str(v).lower().removeprefix("hps").removeprefix("v")
    key = {"2": "v2.0", "2.0": "v2.0", "2.1": "v2.1"}.get(key)
    if key is None:
        raise ValueError(f"unknown hps_version {v!r}; use 'v2.0' or 'v2.1'")
    return key


def load_hps_state_dict(path: str | Path, *, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an HPS checkpoint file (``{"state_dict": ...}``), ``module.`` stripped."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=weights_only)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{path}: not an HPS checkpoint (expected a dict with a 'state_dict' key)")
    return {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}


class HpsEvaluator(OpenClipEvaluator):
    """HPSv2 score, ``100 * cos(image_emb, text_emb)``; about 26-30 on SD images.

    Options: ``hps_version`` ("v2.0", the default, or "v2.1"), ``checkpoint`` (local path of the
    HPS checkpoint; default: ``HPS_FILES[hps_version]`` from hub repo ``hub_repo``, cache first),
    ``model_name`` (open_clip architecture or model-config JSON, default ViT-H-14),
    ``image_transform`` (default ``pad_square``, hpsv2's; ``center_crop``: open_clip's),
    ``precision`` (``amp``: fp16 autocast on CUDA as hpsv2; ``fp32``), ``device``, ``batch_size``,
    ``weights_only`` (torch.load safety, default True).
    """

    default_transform = "pad_square"

    def __init__(
        self,
        hps_version: str = "v2.0",
        checkpoint: str | Path | None = None,
        *,
        hub_repo: str = HPS_REPO,
        model_name: str | Path = "ViT-H-14",
        weights_only: bool = True,
        **kwargs,
    ) -> None:
        self.hps_version = normalize_hps_version(hps_version)
        self.checkpoint = checkpoint
        self.hub_repo = hub_repo
        self.weights_only = weights_only
        super().__init__(model_name=model_name, pretrained=None, **kwargs)

    def _default_version(self) -> str:
        return "hps" + self.hps_version  # "hpsv2.0" / "hpsv2.1"

    def _load(self):
        if self.checkpoint is not None:
            path = Path(self.checkpoint).expanduser()
            if not path.is_file():
                raise hub.missing_path("HPS checkpoint", self.checkpoint, "checkpoint")
        else:
            path = hub.hub_file(self.hub_repo, HPS_FILES[self.hps_version], what="HPS checkpoint",
                                option="checkpoint")
        sd = load_hps_state_dict(path, weights_only=self.weights_only)
        model, tokenizer = load_open_clip(self.model_name, None, option="checkpoint")
        model.load_state_dict(sd, strict=True)
        return model, tokenizer
