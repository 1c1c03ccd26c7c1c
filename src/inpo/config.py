"""Typed, documented configuration of a training run.

The Snakemake config (validated against ``workflow/schemas/config.schema.yaml``) is turned into a
:class:`TrainConfig` per run by the workflow; the trainer only ever sees this dataclass. Every
hyperparameter an ablation sweeps lives here, never as a literal in code.
Unknown keys are errors that name the key and where it was found.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


@dataclass
class InversionConfig:
    """DDIM inversion of InPO (``algorithm.md`` section 1.4)."""

    model: Literal["policy", "reference"] = "policy"
    """Which UNet inverts: the policy being trained (reference code) or the frozen reference."""
    n_steps: int = 10
    """Number of inversion levels ``n_inv`` (paper ablation: 3, 5, 10, 30)."""
    eta: float = 0.1
    """Stochastic inversion term (reference code 0.1; the paper's deterministic DDIM is 0)."""
    guidance_scale: float = 1.0
    """Classifier-free guidance during inversion; > 1 also runs the unconditional branch."""


@dataclass
class MethodConfig:
    """How ``(x_t, target)`` and the loss are built."""

    name: str = "inpo"
    """A method registered in :data:`inpo.methods.METHODS` (inpo, dpo, sft, kto, or one you add)."""
    beta: float = 2000.0
    """DPO/KTO temperature (InPO SD1.5: 2000, SDXL: 5000; Diffusion-DPO 5000; KTO 1000)."""
    t_min: int = 0
    """Timesteps are drawn from ``U{t_min..t_max}`` (paper S9 trains on the last 900, 800, ...)."""
    t_max: int = 999
    caption_dropout: float = 0.2
    """Probability that a caption is replaced by "" (before inversion, so it is conditioned the same)."""
    noise_offset: float = 0.0
    """``sft`` only: offset noise (diffusers' ``train_text_to_image.py --noise_offset``; SDXL's
    pretraining): the noise gets ``noise_offset x N(0, 1)`` per image and latent channel, constant
    over the image. SD's schedule keeps an image's mean colour at ``t = 999``, so a model trained
    without it cannot correct the random mean of its initial noise (tinted backgrounds). The toy
    base uses it; the paper's runs leave it 0 (they fine-tune SD)."""
    inversion: InversionConfig = field(default_factory=InversionConfig)


@dataclass
class OptimConfig:
    optimizer: Literal["adamw", "adamw8bit", "adafactor"] = "adamw"
    """``adamw8bit``: bitsandbytes' 8-bit AdamW on GPU (Diffusion-KTO's ``--use_8bit_adam``), plain
    AdamW with a logged warning on CPU (:func:`inpo.trainer.make_optimizer`)."""
    learning_rate: float = 1e-8
    scale_lr: bool = True
    """Multiply ``learning_rate`` by the pairs per update (paper: 1e-8 x 1024 = 1.024e-5)."""
    weight_decay: float = 1e-2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    warmup_updates: int = 200
    """Linear warm-up over this many optimizer updates, then ``lr_schedule``."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """After warm-up: ``constant`` (the paper's runs) or ``cosine`` decay to ``min_lr_ratio`` x lr at
    ``max_updates`` (the toy base's pretraining: its last iterate then samples far better)."""
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0


@dataclass
class ModelConfig:
    pretrained: str = ""
    """Pipeline the policy and the reference start from: a local diffusers folder or a hub id."""
    family: Literal["sd15", "sdxl"] = "sd15"
    """Model family: SD1.5, or SDXL (two text encoders, pooled embedding, micro-conditioning)."""
    vae: str | None = None
    """Optional separate VAE (SDXL paper runs: madebyollin/sdxl-vae-fp16-fix)."""
    gradient_checkpointing: bool = False


@dataclass
class DataConfig:
    examples: Literal["pairs", "images", "toy_images"] = "pairs"
    """What one training example is. ``pairs``: a preference pair of a filtered Pick-a-Pic index;
    ``images``: one image of a per-image labelled index derived from it (:mod:`inpo.data.per_image`,
    Diffusion-KTO); ``toy_images``: one procedural toy image (pretraining)."""
    index: str = ""
    """Path of the filtered pair index (``pairs``) or of the per-image index (``images``)."""
    positive_ratio: float = 0.5
    """``images``: probability that a draw is a desirable image (weighted sampling with replacement;
    Diffusion-KTO's ``--positive_ratio``, default 0.5, its launcher 0.8)."""
    resolution: int = 512
    random_flip: bool = True
    toy_images: int = 0
    """Number of toy images (``toy_images``)."""
    toy_scene: dict[str, Any] = field(default_factory=dict)
    """Keyword options of :class:`inpo.data.toy.ToyWorld` (``toy_images``; the workflow's ``toy.scene``)."""
    num_workers: int = 0
    """DataLoader worker processes per rank that read, decode and preprocess micro-batches (0: in
    the training process)."""
    prefetch_factor: int = 2
    """Micro-batches each worker loads ahead of the step (torch's default 2; used when num_workers > 0)."""
    latents: str = ""
    """Optional latents store of ``index`` (:func:`inpo.data.latents.encode_latents`: the VAE posterior
    of every image, both flips, encoded once): training reads it instead of the images and skips the
    VAE encode (same flips, same posterior sample up to float noise). Empty: encode on the fly, as the
    reference implementations do."""


@dataclass
class TrainConfig:
    """One training run: a method, its data, its model and its schedule."""

    output_dir: str
    """Where the trained pipeline (a diffusers folder) is written."""
    state_dir: str
    """Checkpoints for resume; kept outside Snakemake's declared outputs so reruns can resume."""
    method: MethodConfig = field(default_factory=MethodConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    micro_batch_size: int = 1
    """Pairs per process per micro-step (paper: 1)."""
    grad_accum: int = 128
    """Micro-steps per optimizer update (paper: 128, with 8 processes -> 1024 pairs per update)."""
    max_updates: int = 400
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    seed: int = 0
    """Seed of everything random in training (data order, noise, timesteps, caption dropout, the toy
    world's images); the workflow sets it from the config's top-level ``seed``. Must be >= 0."""
    checkpoint_every: int = 50
    """Save a resumable checkpoint every N optimizer updates (0: never)."""
    checkpoints_total_limit: int = 2
    snapshot_every: int = 0
    """Save the policy UNet every N updates below ``max_updates`` into ``state_dir/snapshots/update-<N>``
    (0: never): the points of the efficiency curve (paper Figure 4, :mod:`inpo.efficiency`). Kept
    beside the checkpoints, so a resumed run keeps the snapshots written before it was killed."""
    ema_decay: float = 0.0
    """0: the saved model is the policy's last weights. Else it is an exponential moving average of the
    policy's weights after each update (:class:`diffusers.training_utils.EMAModel`: the decay after update
    ``n`` is ``min(ema_decay, n / (n + 9))``, 0 after the first), as are the snapshots; the average is
    kept in the checkpoints, so a resumed run saves the same model. Training itself is unchanged."""
    log_csv: str | None = None
    tensorboard_dir: str | None = None
    progress: bool = True

    def pairs_per_update(self, num_processes: int = 1) -> int:
        return self.micro_batch_size * self.grad_accum * num_processes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_dict(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise TypeError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value, f"{where}.{key}")
        else:
            kwargs[key] = _check_value(hint, value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise KeyError(f"{where}: {exc}") from None


FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
"""A number as text. PyYAML reads YAML 1.1, where ``1e-4`` (no dot) is a string, not a float."""


def _check_value(hint, value, where):
    """Check ``value`` against a field's type: a Literal's choices; a float field takes a number (a YAML
    1.1 string such as ``"1e-4"`` becomes the float it spells; an int stays an int), an int or a bool
    field one of its kind. Other types (str, optional and container fields) pass as they are."""
    if typing.get_origin(hint) is Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if hint is float:
        if isinstance(value, str) and FLOAT_TEXT.match(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return value
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{where}: expected an integer, got {value!r}")
    if hint is bool and not isinstance(value, bool):
        raise TypeError(f"{where}: expected true or false, got {value!r}")
    return value


RENAMED_KEYS = {"model.kind": "model.family", "data.kind": "data.examples", "data.toy_world": "data.toy_scene"}
"""Run-config keys that were renamed (old dotted key -> new): a config that still uses one fails with
its new name (:func:`check_renamed_keys`), not as an unknown key."""


def _has_key(data: Any, dotted: str) -> bool:
    """Whether ``data`` holds ``dotted`` as nested mappings, as one dotted key (a run override), or
    as a mix of the two (``{"data": {"kind": ...}}``, ``{"data.kind": ...}``)."""
    if not isinstance(data, dict):
        return False
    head, _, rest = dotted.partition(".")
    return dotted in data or (bool(rest) and _has_key(data.get(head), rest))


def check_renamed_keys(data: Any, renamed: dict[str, str] = RENAMED_KEYS, where: str = "") -> None:
    """Fail on the first old key of ``renamed`` (old dotted key -> new) found in ``data``, naming both."""
    for old, new in renamed.items():
        if _has_key(data, old):
            raise ValueError(f"{where + ': ' if where else ''}config key `{old}` was renamed to `{new}`")


def train_config_from_dict(data: dict[str, Any], where: str = "train") -> TrainConfig:
    check_renamed_keys(data, where=where)
    cfg = _from_dict(TrainConfig, data, where)
    try:
        validate(cfg)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return cfg


def load_train_config(path: str | Path) -> TrainConfig:
    with open(path) as fh:
        return train_config_from_dict(yaml.safe_load(fh), where=str(path))


def validate(cfg: TrainConfig) -> None:
    """Check value ranges and ask the method registry whether ``method.name`` exists, what it needs
    from the data and whether its own settings are valid (:meth:`inpo.methods.Method.validate`)."""
    from .methods import get_method  # lazy: importing inpo.config stays torch-free

    m = cfg.method
    method = get_method(m.name)
    if not 0 <= cfg.ema_decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1) (0: no average), got {cfg.ema_decay}")
    if not 0 <= m.t_min <= m.t_max <= 999:
        raise ValueError(f"method: need 0 <= t_min <= t_max <= 999, got [{m.t_min}, {m.t_max}]")
    if not 0 <= m.caption_dropout <= 1:
        raise ValueError(f"method.caption_dropout must be in [0, 1], got {m.caption_dropout}")
    if m.noise_offset < 0:
        raise ValueError(f"method.noise_offset must be >= 0, got {m.noise_offset}")
    if m.noise_offset and m.name != "sft":
        raise ValueError(f"method.noise_offset: only method sft (the base's pretraining) adds offset noise, "
                         f"got {m.noise_offset} with method {m.name!r}")
    if m.inversion.n_steps < 1:
        raise ValueError(f"method.inversion.n_steps must be >= 1, got {m.inversion.n_steps}")
    if m.inversion.guidance_scale < 1:
        raise ValueError("method.inversion.guidance_scale must be >= 1")
    method.validate(m)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {cfg.seed!r}")
    if cfg.micro_batch_size < 1 or cfg.grad_accum < 1 or cfg.max_updates < 0:
        raise ValueError("micro_batch_size and grad_accum must be >= 1, max_updates >= 0")
    if cfg.data.num_workers < 0 or cfg.data.prefetch_factor < 1:
        raise ValueError(f"data: need num_workers >= 0 and prefetch_factor >= 1, got "
                         f"{cfg.data.num_workers} and {cfg.data.prefetch_factor}")
    if cfg.data.examples in ("pairs", "images") and not cfg.data.index:
        raise ValueError(f"data.index: the index is required for data.examples = {cfg.data.examples}")
    if method.needs(m).labels != (cfg.data.examples == "images"):
        raise ValueError(f"data.examples = {cfg.data.examples}: method {m.name!r} "
                         + ("needs per-image labels (use data.examples = images)" if method.needs(m).labels
                            else "does not train on per-image labelled data (data.examples = images)"))
    if not 0 <= cfg.data.positive_ratio <= 1:
        raise ValueError(f"data.positive_ratio must be in [0, 1], got {cfg.data.positive_ratio}")
    if cfg.data.latents and not cfg.data.index:
        raise ValueError("data.latents: a latents store is read with the index it was encoded from (data.index)")
    if cfg.snapshot_every < 0:
        raise ValueError(f"snapshot_every must be >= 0 (0: no snapshots), got {cfg.snapshot_every}")
    if cfg.data.examples == "toy_images" and method.needs(m).loser:
        raise ValueError(f"data.examples = toy_images has no loser images; method {m.name!r} needs pairs "
                         "(use a winners-only method such as sft)")
