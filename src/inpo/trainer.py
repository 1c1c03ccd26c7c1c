"""The one training loop shared by InPO, Diffusion-DPO, SFT and KTO (and toy pretraining).

Start it in every worker with::

    accelerate launch --num_processes N -m inpo.trainer --config run.yaml

Sample order: update ``u`` consumes the pairs at positions ``u * P .. (u + 1) * P - 1`` of a
stream made of one seeded permutation of the data per epoch (``P`` = pairs per update =
micro-batch x accumulation x processes). Within an update, process ``r`` at micro-step ``a`` takes
the slots ``a * (B * n_proc) + r * B + [0, B)``. Together with per-pair random draws
(:mod:`inpo.methods`), an update sees the same pairs with the same draws whatever ``B``, ``A``
and the number of processes, and a resumed run continues exactly where the checkpoint was taken.

Checkpoints (``state_dir/checkpoint-<update>``: model, optimizer, trainer state) live outside the
declared outputs, so a job killed by its scheduler resumes from the latest one when rerun. So do the
policy snapshots of ``snapshot_every`` (``state_dir/snapshots/update-<update>``, :func:`save_snapshot`).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from .conditioning import TextConditioner
from .config import TrainConfig, load_train_config
from .efficiency import snapshot_path
from .losses import per_image_error
from .methods import PairGenerators, derive_seed, draw_dropout, get_method

LOG_COLUMNS = [
    "update", "pairs_seen", "loss", "implicit_acc", "model_err_w", "model_err_l",
    "ref_err_w", "ref_err_l", "lr", "grad_norm", "wall_s",
]


# --------------------------------------------------------------------------- data order


class PairStream:
    """Deterministic global order of dataset indices: one seeded permutation per epoch."""

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise ValueError("the training dataset is empty")
        self.n, self.seed = n, seed
        self._cache: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 7919))
            self._cache[epoch] = torch.randperm(self.n, generator=g)
        return self._cache[epoch]

    def at(self, positions: range) -> list[tuple[int, int]]:
        """``(epoch, dataset index)`` at each global stream position."""
        out = []
        for pos in positions:
            epoch, k = divmod(pos, self.n)
            out.append((epoch, int(self.permutation(epoch)[k])))
        return out


def micro_batch_positions(update: int, micro: int, rank: int, cfg: TrainConfig, n_proc: int) -> range:
    B = cfg.micro_batch_size
    start = update * cfg.pairs_per_update(n_proc) + micro * B * n_proc + rank * B
    return range(start, start + B)


def build_dataset(cfg: TrainConfig):
    d = cfg.data
    if d.examples == "images":
        from .data.per_image import LabelledImages

        return LabelledImages(d.index, d.resolution, random_flip=d.random_flip, seed=cfg.seed)
    if d.examples == "pairs":
        from .data.pickapic import PreferencePairs

        return PreferencePairs(
            d.index, d.resolution, random_flip=d.random_flip, seed=cfg.seed,
            winners_only=not get_method(cfg.method.name).needs(cfg.method).loser,
        )
    from .data.toy import ToyImageDataset, ToyWorld

    return ToyImageDataset(ToyWorld(**d.toy_scene), d.toy_images, seed=cfg.seed)


def build_latent_dataset(cfg: TrainConfig, vae_sha256: str | None):
    """The dataset of ``cfg.data.index`` read from its latents store ``cfg.data.latents``
    (:func:`inpo.data.latents.open_latents`: posterior parameters instead of pixels, the same keys,
    flips and order), checked against the run's resolution and VAE (``vae_sha256``)."""
    from .data.latents import open_latents

    d = cfg.data
    return open_latents(d.index, d.latents, d.resolution, random_flip=d.random_flip, seed=cfg.seed,
                        vae_sha256=vae_sha256,
                        winners_only=not get_method(cfg.method.name).needs(cfg.method).loser)


def build_stream(cfg: TrainConfig, dataset):
    """The global sample order: a seeded permutation per epoch (:class:`PairStream`), or for a
    per-image labelled set the weighted draws of :class:`inpo.data.per_image.WeightedImageStream`."""
    if cfg.data.examples == "images":
        from .data.per_image import WeightedImageStream

        return WeightedImageStream(dataset.desirable, cfg.data.positive_ratio, cfg.seed)
    return PairStream(len(dataset), cfg.seed)


class StreamItems:
    """``dataset`` keyed by ``(epoch, index)``: the item of ``index`` as drawn at ``epoch`` (flips)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return {**self.dataset[index], "epoch": epoch}


class MicroBatches:
    """Batch sampler of one process: the ``(epoch, index)`` items of each of its micro-batches, in
    training order, from update ``start`` to ``cfg.max_updates`` (the global :class:`PairStream`
    order cut by :func:`micro_batch_positions`)."""

    def __init__(self, stream, cfg: TrainConfig, n_proc: int, rank: int, start: int = 0):
        self.stream, self.cfg, self.n_proc, self.rank, self.start = stream, cfg, n_proc, rank, start

    def __len__(self) -> int:
        return max(0, self.cfg.max_updates - self.start) * self.cfg.grad_accum

    def __iter__(self):
        for update in range(self.start, self.cfg.max_updates):
            for micro in range(self.cfg.grad_accum):
                yield self.stream.at(micro_batch_positions(update, micro, self.rank, self.cfg, self.n_proc))


#: Per-image tensors of a batch: pixels, or the VAE posterior parameters of a latents store.
IMAGE_KEYS = ("pixel_w", "pixel_l", "moments_w", "moments_l")


def assemble_batch(rows: list[dict]) -> dict:
    """Collate items of :class:`StreamItems` into a micro-batch (``pixel_w`` [, ``pixel_l``], or from a
    latents store ``moments_w`` [, ``moments_l``], stacked)."""
    batch = {
        "caption": [r["caption"] for r in rows],
        "index": [r["index"] for r in rows],
        "epoch": [r["epoch"] for r in rows],
    }
    for key in IMAGE_KEYS:
        if key in rows[0]:
            batch[key] = torch.stack([r[key] for r in rows])
    if "desirable" in rows[0]:
        batch["desirable"] = torch.tensor([bool(r["desirable"]) for r in rows])
    return batch


def micro_batch_loader(dataset, stream, cfg: TrainConfig, n_proc: int, rank: int, start: int = 0,
                       *, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """The micro-batches of process ``rank`` from update ``start`` on, loaded by
    ``cfg.data.num_workers`` worker processes (0: in this process) that prefetch
    ``cfg.data.prefetch_factor`` micro-batches each ahead of the step.
    Worker ``w`` loads micro-batches ``w, w + W, ...``; the loader returns them in training order."""
    return torch.utils.data.DataLoader(
        StreamItems(dataset), batch_sampler=MicroBatches(stream, cfg, n_proc, rank, start),
        num_workers=cfg.data.num_workers, collate_fn=assemble_batch, pin_memory=pin_memory,
        prefetch_factor=cfg.data.prefetch_factor if cfg.data.num_workers else None,
    )


# --------------------------------------------------------------------------- the model bundle


class Models:
    """Policy (trainable), frozen reference, frozen VAE and text encoders, and the schedule."""

    def __init__(self, cfg: TrainConfig, device, weight_dtype):
        from .models import load_components

        comps = load_components(cfg.model.pretrained, family=cfg.model.family, vae=cfg.model.vae)
        self.components = comps
        self.policy = comps["unet"]
        self.policy.train()
        if cfg.model.gradient_checkpointing:
            self.policy.enable_gradient_checkpointing()
        self.reference = None
        if get_method(cfg.method.name).needs(cfg.method).reference:
            import copy

            self.reference = copy.deepcopy(self.policy).requires_grad_(False).eval().to(device, weight_dtype)
        self.vae = comps["vae"].requires_grad_(False).eval()
        # the weights a latents store (data.latents) must have been encoded with, hashed as loaded
        self.vae_sha256 = _vae_sha256(self.vae) if cfg.data.latents else None
        # the VAE stays fp32 for SDXL (the fp16-fix VAE is still safer in fp32 on CPU); SD1.5 follows weights
        self.vae.to(device, torch.float32 if cfg.model.family == "sdxl" else weight_dtype)
        encoders = [comps["text_encoder"]] + ([comps["text_encoder_2"]] if cfg.model.family == "sdxl" else [])
        tokenizers = [comps["tokenizer"]] + ([comps["tokenizer_2"]] if cfg.model.family == "sdxl" else [])
        for enc in encoders:
            enc.requires_grad_(False).eval().to(device, weight_dtype)
        self.text = TextConditioner(tokenizers, encoders, family=cfg.model.family, resolution=cfg.data.resolution)
        self.alphas_cumprod = comps["scheduler"].alphas_cumprod.to(device=device, dtype=torch.float32)
        self.scaling_factor = self.vae.config.scaling_factor

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        """``vae.encode(img).latent_dist.sample() * scaling_factor``, one generator per image."""
        moments = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist.parameters
        return sample_latents(moments, gens, self.scaling_factor)

    def latents(self, batch: dict, sides: tuple[str, ...], gens: list[torch.Generator]) -> torch.Tensor:
        """Latents of the batch's images of ``sides`` (``"w"``, ``"l"``), concatenated: encoded from
        ``pixel_*`` in one VAE call, or sampled from a latents store's ``moments_*`` (in the VAE's
        dtype) by the same :func:`sample_latents`."""
        if "moments_w" in batch:
            moments = torch.cat([batch[f"moments_{s}"] for s in sides])
            return sample_latents(moments.to(self.vae.device, self.vae.dtype), gens, self.scaling_factor)
        return self.encode(torch.cat([batch[f"pixel_{s}"] for s in sides]), gens)


@torch.no_grad()
def sample_latents(moments: torch.Tensor, gens: list[torch.Generator], scaling_factor: float) -> torch.Tensor:
    """``DiagonalGaussianDistribution(moments).sample() * scaling_factor`` with one generator per
    image: ``mean + std * noise``. ``moments``: the VAE posterior's parameters (mean and log-variance
    on the channel axis), straight from the VAE or from a latents store (:mod:`inpo.data.latents`);
    the one place training draws the posterior sample."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    dist = DiagonalGaussianDistribution(moments)
    noise = torch.stack([torch.randn(dist.mean.shape[1:], generator=g) for g in gens])
    latents = dist.mean + dist.std * noise.to(dist.mean.device, dist.mean.dtype)
    return (latents * scaling_factor).float()


def micro_step(cfg: TrainConfig, models: Models, policy, batch: dict, device, all_reduce_mean=None):
    """Loss and metrics of one micro-batch. The method (:func:`inpo.methods.get_method`) says what
    it needs; this step provides it, runs the method's ``build``, the policy and reference
    forwards, and returns the method's ``loss``."""
    mcfg = cfg.method
    method = get_method(mcfg.name)
    needs = method.needs(mcfg)
    gens = PairGenerators.for_indices(cfg.seed, batch["epoch"][0], batch["index"])
    if len(set(batch["epoch"])) > 1:  # a micro-batch across an epoch boundary: per-pair epochs
        per = [PairGenerators.for_indices(cfg.seed, e, [i]) for e, i in zip(batch["epoch"], batch["index"])]
        gens = PairGenerators([p.pair[0] for p in per], [p.w[0] for p in per], [p.l[0] for p in per])
    drop = draw_dropout(gens.pair, mcfg.caption_dropout)
    captions = ["" if d else c for d, c in zip(drop, batch["caption"])]
    cond = models.text(captions, device)
    uncond = models.text([""] * len(captions), device) if needs.uncond else None
    if needs.loser:  # one VAE call for winners and losers
        if "pixel_l" not in batch and "moments_l" not in batch:
            raise ValueError(f"method {mcfg.name!r} needs loser images, but the batch has none")
        latents_w, latents_l = models.latents(batch, ("w", "l"), gens.w + gens.l).chunk(2)
    else:
        latents_w, latents_l = models.latents(batch, ("w",), gens.w), None
    inv_unet = None
    if needs.inversion:
        inv_unet = models.reference if mcfg.inversion.model == "reference" else _unwrap(policy)
    labels = {}
    if needs.labels:
        if "desirable" not in batch:
            raise ValueError(f"method {mcfg.name!r} needs per-image labels (data.examples: images); the batch has none")
        labels["desirable"] = batch["desirable"].to(device)
    with torch.no_grad():
        inputs = method.build(mcfg, latents_w, latents_l, cond, gens, models.alphas_cumprod,
                              inversion_unet=inv_unet, uncond=uncond, **labels)
    pred = policy(inputs.x_t, inputs.t, **inputs.cond.kwargs()).sample
    model_err = per_image_error(pred, inputs.target)
    ref_err = None
    if needs.reference:
        with torch.no_grad():
            ref_pred = models.reference(inputs.x_t, inputs.t, **inputs.cond.kwargs()).sample
        ref_err = per_image_error(ref_pred, inputs.target)
    return method.loss(mcfg, model_err, ref_err, inputs, all_reduce_mean=all_reduce_mean)


def _vae_sha256(vae) -> str:
    from .data.latents import weights_sha256

    return weights_sha256(vae)


def _unwrap(model):
    return getattr(model, "module", model)


# --------------------------------------------------------------------------- optimizer, schedule


def make_optimizer(cfg: TrainConfig, params, lr: float, device: torch.device | str = "cpu"):
    """AdamW, 8-bit AdamW (bitsandbytes) or Adafactor per ``cfg.optim.optimizer``.

    ``adamw8bit`` is ``bitsandbytes.optim.AdamW8bit`` when ``device`` (where training runs) is a GPU (an
    ImportError naming the package when it is missing, as the reference's ``--use_8bit_adam``);
    on CPU, where bitsandbytes' 8-bit states are not available, it is plain AdamW with a logged
    warning, so CPU runs (toy, tiny-real, tests) keep the recipe's other settings."""
    o = cfg.optim
    params = list(params)
    kw = dict(lr=lr, betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_eps, weight_decay=o.weight_decay)
    if o.optimizer == "adamw8bit":
        device = torch.device(device)
        if device.type == "cuda":
            try:
                import bitsandbytes as bnb
            except ImportError as e:
                raise ImportError("optim.optimizer = adamw8bit needs the bitsandbytes package on GPU "
                                  "(pip install bitsandbytes)") from e
            return bnb.optim.AdamW8bit(params, **kw)
        import logging

        logging.getLogger("inpo.trainer").warning(
            "optim.optimizer = adamw8bit: 8-bit AdamW (bitsandbytes) runs on GPU only; plain AdamW on %s",
            device.type)
        return torch.optim.AdamW(params, **kw)
    if o.optimizer == "adamw":
        return torch.optim.AdamW(params, **kw)
    from transformers.optimization import Adafactor

    return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False,
                     warmup_init=False, weight_decay=o.weight_decay)


def lr_at(update: int, base_lr: float, warmup: int, schedule: str = "constant", total: int = 0,
          min_ratio: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` updates (update 0 gets ``base/warmup``), then constant, or a
    cosine from ``base_lr`` (update ``warmup``) to ``min_ratio * base_lr`` (update ``total``)."""
    if update < warmup:
        return base_lr * (update + 1) / warmup
    if schedule == "constant":
        return base_lr
    if schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {schedule!r}; use constant or cosine")
    frac = min(1.0, (update - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac)))


# --------------------------------------------------------------------------- checkpoints


def latest_checkpoint(state_dir: str | os.PathLike) -> Path | None:
    d = Path(state_dir)
    if not d.is_dir():
        return None
    done = [p for p in d.glob("checkpoint-*") if p.is_dir() and (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


#: Settings that do not change a run's trajectory: a checkpoint written under other values of these
#: resumes (a longer run, other workers or checkpoint cadence, a latents store of the same images).
RESUME_FREE = ("max_updates", "checkpoint_every", "checkpoints_total_limit", "snapshot_every", "progress",
               "output_dir", "state_dir", "log_csv", "tensorboard_dir", "micro_batch_size", "grad_accum",
               "data.num_workers", "data.prefetch_factor", "data.latents")


def resume_settings(cfg: TrainConfig, n_proc: int) -> dict:
    """The run's settings that its trajectory depends on, as flat dotted keys (JSON values), recorded in
    each checkpoint: everything but :data:`RESUME_FREE`, plus the pairs per update (micro-batch x
    accumulation x processes may change at a constant product: the invariance tests show it)."""
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value

    walk("", dataclasses.asdict(cfg))
    out = {k: v for k, v in flat.items() if k not in RESUME_FREE}
    out["pairs_per_update"] = cfg.pairs_per_update(n_proc)
    return json.loads(json.dumps(out))


def changed_settings(ckpt: Path, settings: dict) -> list[str]:
    """The keys whose value differs between ``settings`` and those recorded in checkpoint ``ckpt``
    (``old -> new``); empty when they agree or the checkpoint records none (written before they were).
    A key the checkpoint does not record (a setting added to TrainConfig since) agrees when ``settings``
    holds its default: a run resumes across a code update that only adds settings."""
    saved = json.loads((ckpt / "trainer_state.json").read_text()).get("settings")
    if saved is None:
        return []
    defaults = resume_settings(TrainConfig(output_dir="", state_dir=""), 1)
    return [f"{k}: {saved.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(saved) | set(settings))
            if saved.get(k) != settings.get(k)
            and not (k not in saved and k in defaults and settings.get(k) == defaults[k])]


def save_checkpoint(accelerator, cfg: TrainConfig, update: int, state: dict) -> None:
    final = Path(cfg.state_dir) / f"checkpoint-{update}"
    tmp = Path(cfg.state_dir) / f".tmp-checkpoint-{update}"
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        ckpts = sorted((p for p in Path(cfg.state_dir).glob("checkpoint-*") if p.is_dir()),
                       key=lambda p: int(p.name.split("-")[1]))
        for old in ckpts[: max(0, len(ckpts) - cfg.checkpoints_total_limit)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


@contextmanager
def saved_weights(unet, ema):
    """``unet`` holding the weights a run saves: its own, or (``ema``) the moving average, put back after."""
    if ema is None:
        yield unet
        return
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    try:
        yield unet
    finally:
        ema.restore(unet.parameters())


def save_snapshot(accelerator, cfg: TrainConfig, update: int, policy, ema=None) -> None:
    """The policy UNet (or its moving average, ``ema``) after ``update`` updates as a diffusers ``unet``
    folder (safetensors), written under a temporary name and renamed."""
    if accelerator.is_main_process:
        final = snapshot_path(cfg.state_dir, update)
        tmp = final.with_name(f".tmp-{final.name}")
        if tmp.exists():
            shutil.rmtree(tmp)
        with saved_weights(accelerator.unwrap_model(policy), ema) as unet:
            unet.save_pretrained(str(tmp), safe_serialization=True)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    accelerator.wait_for_everyone()


# --------------------------------------------------------------------------- logging


class RunLog:
    """CSV (one row per update; rows past a resumed checkpoint are dropped) + tensorboard."""

    def __init__(self, cfg: TrainConfig, start_update: int, enabled: bool):
        self.enabled = enabled
        self.csv_path = Path(cfg.log_csv) if cfg.log_csv else None
        self.tb = None
        if not enabled:
            return
        if self.csv_path:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            kept = []
            if self.csv_path.exists() and start_update > 0:
                with open(self.csv_path) as fh:
                    kept = [r for r in csv.DictReader(fh) if int(r["update"]) <= start_update]
            with open(self.csv_path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
                w.writeheader()
                w.writerows(kept)
        if cfg.tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(cfg.tensorboard_dir, purge_step=start_update + 1)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        if self.csv_path:
            with open(self.csv_path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=LOG_COLUMNS).writerow(
                    {k: row.get(k, "") for k in LOG_COLUMNS})
        if self.tb:
            for k, v in row.items():
                if k != "update" and isinstance(v, float) and not math.isnan(v):
                    self.tb.add_scalar(f"train/{k}", v, row["update"])

    def close(self):
        if self.tb:
            self.tb.close()


# --------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, *, stop_after: int | None = None) -> dict:
    """Train ``cfg`` to ``cfg.max_updates`` (resuming from ``cfg.state_dir``), save the pipeline.

    ``stop_after`` stops (without saving the pipeline) after that many updates of this call,
    which tests use to simulate a kill. Returns a summary dict, with the update this call
    resumed from (``resumed_from``, 0 for a fresh start) and the updates it ran (``updates_run``).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    device, n_proc, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != n_proc:
        raise RuntimeError(
            f"WORLD_SIZE={world} but accelerate sees {n_proc} process(es): the workers would train "
            "independently. On a node without GPUs start them with ACCELERATE_USE_CPU=true "
            "(inpo.launch.trainer_command does).")
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
    torch.manual_seed(cfg.seed)

    models = Models(cfg, device, weight_dtype)
    dataset = build_latent_dataset(cfg, models.vae_sha256) if cfg.data.latents else build_dataset(cfg)
    stream = build_stream(cfg, dataset)
    base_lr = cfg.optim.learning_rate * (cfg.pairs_per_update(n_proc) if cfg.optim.scale_lr else 1)
    optimizer = make_optimizer(cfg, [p for p in models.policy.parameters() if p.requires_grad], base_lr, device)
    policy, optimizer = accelerator.prepare(models.policy, optimizer)
    ema = None
    if cfg.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(accelerator.unwrap_model(policy).parameters(), decay=cfg.ema_decay)
        accelerator.register_for_checkpointing(ema)  # saved and loaded with the checkpoints

    start, pairs_seen, wall = 0, 0, 0.0
    ckpt = latest_checkpoint(cfg.state_dir)
    changed = changed_settings(ckpt, resume_settings(cfg, n_proc)) if ckpt is not None else []
    accelerator.wait_for_everyone()  # every rank has read the checkpoint's settings
    if changed:  # a checkpoint of other settings (the run was edited): not this run's state; start afresh
        accelerator.print(f"[inpo] {cfg.state_dir} holds checkpoints of other settings ({', '.join(changed)}): "
                          "removed, training from the start")
        if accelerator.is_main_process:
            shutil.rmtree(cfg.state_dir)
        accelerator.wait_for_everyone()
        ckpt = None
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        st = json.loads((ckpt / "trainer_state.json").read_text())
        start, pairs_seen, wall = st["update"], st["pairs_seen"], st["wall_s"]
        accelerator.print(f"[inpo] resuming {cfg.output_dir} from {ckpt} (update {start})")

    def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
        return accelerator.reduce(x.detach().clone(), reduction="mean") if n_proc > 1 else x

    log = RunLog(cfg, start, accelerator.is_main_process)
    bar = tqdm(total=cfg.max_updates, initial=start, disable=not (cfg.progress and accelerator.is_main_process),
               desc=f"{cfg.method.name} {Path(cfg.output_dir).name}", unit="upd")
    A = cfg.grad_accum
    batches = iter(micro_batch_loader(dataset, stream, cfg, n_proc, rank, start, pin_memory=device.type == "cuda"))
    done_here = 0
    for update in range(start, cfg.max_updates):
        t0 = time.perf_counter()
        lr = lr_at(update, base_lr, cfg.optim.warmup_updates, cfg.optim.lr_schedule, cfg.max_updates,
                   cfg.optim.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sums: dict[str, float] = {}
        for micro in range(A):
            batch = next(batches)
            sync = micro == A - 1
            with accelerator.no_sync(policy) if not sync and n_proc > 1 else nullcontext():
                with accelerator.autocast():
                    loss, metrics = micro_step(cfg, models, policy, batch, device, all_reduce_mean)
                accelerator.backward(loss / A)
            sums["loss"] = sums.get("loss", 0.0) + loss.detach().float().item() / A
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) / A
        grad_norm = accelerator.clip_grad_norm_(policy.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(accelerator.unwrap_model(policy).parameters())
        pairs_seen += cfg.pairs_per_update(n_proc)
        wall += time.perf_counter() - t0
        reduced = {k: float(all_reduce_mean(torch.tensor(v, device=device))) for k, v in sums.items()}
        row = {"update": update + 1, "pairs_seen": pairs_seen, "lr": lr, "grad_norm": float(grad_norm),
               "wall_s": round(wall, 3), **reduced}
        log.write(row)
        bar.update(1)
        bar.set_postfix(loss=f"{reduced['loss']:.4f}", acc=f"{reduced.get('implicit_acc', float('nan')):.2f}")
        u = update + 1
        done_here += 1
        if cfg.snapshot_every and u % cfg.snapshot_every == 0 and u < cfg.max_updates:
            save_snapshot(accelerator, cfg, u, policy, ema)
        if cfg.checkpoint_every and (u % cfg.checkpoint_every == 0 or u == cfg.max_updates):
            save_checkpoint(accelerator, cfg, u, {"update": u, "pairs_seen": pairs_seen, "wall_s": wall,
                                                  "settings": resume_settings(cfg, n_proc)})
        if stop_after is not None and done_here >= stop_after:
            bar.close()
            log.close()
            return {"stopped_at": u, "pairs_seen": pairs_seen, "resumed_from": start, "updates_run": done_here}
    bar.close()
    log.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with saved_weights(accelerator.unwrap_model(policy), ema) as unet:
            save_result(cfg, models, unet)
    accelerator.wait_for_everyone()
    return {"updates": cfg.max_updates, "pairs_seen": pairs_seen, "wall_s": wall, "resumed_from": start,
            "updates_run": done_here}


def save_result(cfg: TrainConfig, models: Models, unet) -> None:
    """The trained policy as a diffusers pipeline folder at ``cfg.output_dir``."""
    from .models import export_pipeline, save_pipeline

    src = Path(cfg.model.pretrained)
    if (src / "model_index.json").is_file() and cfg.model.vae is None:
        export_pipeline(src, unet, cfg.output_dir)
    else:
        comps = dict(models.components)
        comps["unet"] = unet
        save_pipeline(comps, cfg.output_dir)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m inpo.trainer", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a TrainConfig YAML file")
    args = p.parse_args(argv)
    train(load_train_config(args.config))


if __name__ == "__main__":
    main()
