"""The embedded toy world: procedural captioned drawings, a hidden smooth reward, toy Pick-a-Pic.

The toy world stands in for the real data so that the whole pipeline (pretraining, preference data,
filtering, InPO / Diffusion-DPO / SFT / KTO training, generation, evaluation, tables) runs on CPUs
in minutes with the real code paths (diffusers pipelines, AutoencoderKL latents, CLIP tokenizer).

- :class:`ToyWorld`: captions "a {colour} {shape} on a {background} background"; ``render`` draws
  one shape (anti-aliased) whose colour, size and position vary randomly around the caption;
  ``hidden_reward`` is a smooth function of pixels and caption that defines "preferred": a broad
  Gaussian kernel on the drawn object's colour vs the caption's ideal colour, plus size and
  centering terms. Training images score about 0.6-0.7 (not the maximum 1): there is headroom
  for preference optimisation.
- :class:`ToyImageDataset`: pretraining data (SFT loss) in the trainer's batch format.
- :func:`pretrain_vae`: fits the tiny AutoencoderKL to toy images and sets its scaling factor.
- :func:`make_preference_shards`: pairs of the BASE model's own samples labelled by the hidden
  reward, written as Pick-a-Pic v2 parquet shards (near-ties -> 0.5 labels, a few corrupt images).
- :func:`eval_prompts`: held-out evaluation prompts.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

COLOURS = {
    "red": (0.85, 0.15, 0.15),
    "green": (0.15, 0.75, 0.20),
    "blue": (0.15, 0.25, 0.90),
    "yellow": (0.90, 0.85, 0.15),
    "purple": (0.60, 0.20, 0.75),
    "orange": (0.95, 0.55, 0.10),
}
BACKGROUNDS = {"dark": 0.15, "light": 0.85}


@dataclass
class ToyWorld:
    """Configuration of the toy world (all randomness flows from explicit seeds / rngs).

    Rendering: ``image_size`` pixels; object colour = ideal colour + N(0, ``colour_jitter``) per
    channel, plus a per-image offset; radius (half side for squares) uniform in
    ``size_range`` x image_size; centre offset uniform in +-``position_jitter`` x image_size;
    background grey level from ``backgrounds`` + N(0, ``background_jitter``).

    Reward (each term in [0, 1]):
    ``w_colour * exp(-|c - ideal|^2 / (2 colour_sigma^2))``
    ``+ w_size * exp(-(area - target_area)^2 / (2 size_sigma^2))``
    ``+ w_center * exp(-d^2 / (2 center_sigma^2))``, where ``c`` is the soft-mask-weighted mean
    colour of the pixels that differ from the (border-estimated) background, ``area`` the soft mask
    fraction and ``d`` the distance of its centroid from the image centre (in image-size units).
    """

    image_size: int = 16
    shapes: tuple[str, ...] = ("circle", "square")
    colours: tuple[str, ...] = ("red", "green", "blue")
    backgrounds: tuple[str, ...] = ("dark", "light")
    colour_jitter: float = 0.12
    background_jitter: float = 0.04
    size_range: tuple[float, float] = (0.16, 0.32)
    position_jitter: float = 0.16
    # reward
    w_colour: float = 0.6
    w_size: float = 0.2
    w_center: float = 0.2
    colour_sigma: float = 0.25
    target_area: float = 0.16
    size_sigma: float = 0.08
    center_sigma: float = 0.12
    mask_threshold: float = 0.25
    mask_temperature: float = 0.05
    seed: int = 0
    colour_table: dict[str, tuple[float, float, float]] = field(default_factory=lambda: dict(COLOURS))
    background_table: dict[str, float] = field(default_factory=lambda: dict(BACKGROUNDS))

    # ------------------------------------------------------------------ captions
    @property
    def captions(self) -> list[str]:
        """The fixed caption list (colour-major order).

        "a {colour} {shape} on a {background} background"; with a single background the background
        phrase is left out ("a {colour} {shape}"): fewer, shorter captions are easier to condition on.
        """
        if len(self.backgrounds) == 1:
            return [f"a {c} {s}" for c in self.colours for s in self.shapes]
        return [
            f"a {c} {s} on a {b} background" for c in self.colours for s in self.shapes for b in self.backgrounds
        ]

    def parse(self, caption: str) -> tuple[str, str, str]:
        """caption -> (colour, shape, background); unknown words fall back to the first entry."""
        words = caption.lower().replace(",", " ").split()
        colour = next((w for w in words if w in self.colour_table), self.colours[0])
        shape = next((w for w in words if w in self.shapes), self.shapes[0])
        bg = next((w for w in words if w in self.background_table), self.backgrounds[0])
        return colour, shape, bg

    def ideal_colour(self, caption: str) -> np.ndarray:
        return np.asarray(self.colour_table[self.parse(caption)[0]], dtype=np.float64)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> ToyWorld:
        d = dict(d or {})
        for k in ("shapes", "colours", "backgrounds", "size_range"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        if "colour_table" in d:
            d["colour_table"] = {k: tuple(v) for k, v in d["colour_table"].items()}
        return cls(**d)

    # ------------------------------------------------------------------ rendering
    def render(self, caption: str, rng: np.random.Generator) -> np.ndarray:
        """Draw ``caption`` -> uint8 array [H, W, 3]. Deterministic given the rng state."""
        colour, shape, bg = self.parse(caption)
        n = self.image_size
        bg_level = self.background_table[bg] + rng.normal(0.0, self.background_jitter)
        bg_rgb = np.clip(bg_level + rng.normal(0.0, 0.02, size=3), 0.0, 1.0)
        obj = np.clip(np.asarray(self.colour_table[colour]) + rng.normal(0.0, self.colour_jitter, size=3), 0.0, 1.0)
        r = rng.uniform(*self.size_range) * n
        cx = (0.5 + rng.uniform(-self.position_jitter, self.position_jitter)) * n
        cy = (0.5 + rng.uniform(-self.position_jitter, self.position_jitter)) * n
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
        if shape == "circle":
            alpha = np.clip(r - np.hypot(xx - cx, yy - cy) + 0.5, 0.0, 1.0)
        elif shape == "square":
            half = r * math.sqrt(math.pi) / 2.0  # same area as the circle of radius r
            alpha = np.clip(half - np.maximum(np.abs(xx - cx), np.abs(yy - cy)) + 0.5, 0.0, 1.0)
        else:  # triangle (pointing up), same bounding size as the circle
            up = np.clip((yy - (cy - r)) - 1.0 * np.abs(xx - cx) * 2.0 + 0.5, 0.0, 1.0)
            alpha = np.minimum(up, np.clip((cy + r) - yy + 0.5, 0.0, 1.0))
        img = bg_rgb[None, None, :] * (1.0 - alpha[..., None]) + obj[None, None, :] * alpha[..., None]
        return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)

    def render_batch(self, captions: Sequence[str], seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.stack([self.render(c, rng) for c in captions])

    # ------------------------------------------------------------------ reward
    def features(self, images) -> dict[str, np.ndarray]:
        """Soft object mask statistics per image: colour [B,3], area [B], centroid [B,2], bg [B,3]."""
        x = to_unit_float_bhwc(images)
        b, h, w, _ = x.shape
        border = np.concatenate(
            [x[:, 0, :, :], x[:, -1, :, :], x[:, 1:-1, 0, :], x[:, 1:-1, -1, :]], axis=1
        )  # [B, P, 3]
        bg = np.median(border, axis=1)  # robust to an object touching the border
        dist = np.sqrt(((x - bg[:, None, None, :]) ** 2).sum(-1) + 1e-12)  # [B,H,W]
        m = 1.0 / (1.0 + np.exp(-(dist - self.mask_threshold) / self.mask_temperature))
        mass = m.sum(axis=(1, 2)) + 1e-6
        colour = (m[..., None] * x).sum(axis=(1, 2)) / mass[:, None]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        cy = ((m * (yy + 0.5)).sum(axis=(1, 2)) / mass) / h
        cx = ((m * (xx + 0.5)).sum(axis=(1, 2)) / mass) / w
        return {
            "colour": colour,
            "area": mass / (h * w),
            "centroid": np.stack([cx, cy], axis=1),
            "bg": bg,
            "mask": m,
        }

    def reward_terms(self, images, captions: Sequence[str]) -> dict[str, np.ndarray]:
        f = self.features(images)
        if len(captions) != f["colour"].shape[0]:
            raise ValueError(f"{f['colour'].shape[0]} images but {len(captions)} captions")
        ideal = np.stack([self.ideal_colour(c) for c in captions])
        d2 = ((f["colour"] - ideal) ** 2).sum(-1)
        colour = np.exp(-d2 / (2 * self.colour_sigma**2))
        size = np.exp(-((f["area"] - self.target_area) ** 2) / (2 * self.size_sigma**2))
        dc2 = ((f["centroid"] - 0.5) ** 2).sum(-1)
        center = np.exp(-dc2 / (2 * self.center_sigma**2))
        # an empty drawing has no object: its colour term is meaningless, fade it with the area
        presence = 1.0 - np.exp(-f["area"] / 0.01)
        return {"colour": colour * presence, "size": size, "center": center * presence}

    def hidden_reward(self, images, captions: Sequence[str]) -> np.ndarray:
        """Smooth reward in [0, 1] per image (float64). images: [B,H,W,3] or [B,3,H,W], uint8 or [0,1]."""
        t = self.reward_terms(images, captions)
        tot = self.w_colour + self.w_size + self.w_center
        return (self.w_colour * t["colour"] + self.w_size * t["size"] + self.w_center * t["center"]) / tot


def to_unit_float_bhwc(images) -> np.ndarray:
    """uint8 / [0,1] float / [-1,1]-free tensors, PIL lists, BHWC or BCHW -> float64 [B,H,W,3] in [0,1]."""
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], Image.Image):
        images = np.stack([np.asarray(im.convert("RGB")) for im in images])
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().float().numpy() if images.dtype != torch.uint8 else images.cpu().numpy()
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.shape[-1] != 3 and x.shape[1] == 3:
        x = np.transpose(x, (0, 2, 3, 1))
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    return np.clip(x, 0.0, 1.0)


# ---------------------------------------------------------------------- datasets
class ToyImageDataset(torch.utils.data.Dataset):
    """``n`` toy images (captions cycle through ``world.captions``), rendered lazily and
    deterministically from (seed, index). Items: {"pixel_w": [3,H,W] in [-1,1], "caption", "index"}."""

    def __init__(self, world: ToyWorld, n: int, seed: int = 0):
        self.world, self.n, self.seed = world, int(n), int(seed)
        self.captions = world.captions

    def __len__(self) -> int:
        return self.n

    def caption(self, i: int) -> str:
        return self.captions[i % len(self.captions)]

    def image(self, i: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, i])
        return self.world.render(self.caption(i), rng)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(i)
        img = torch.from_numpy(self.image(i)).permute(2, 0, 1).float() / 127.5 - 1.0
        return {"pixel_w": img, "caption": self.caption(i), "index": i}

    def images(self, idx: Sequence[int] | None = None) -> np.ndarray:
        idx = range(self.n) if idx is None else idx
        return np.stack([self.image(i) for i in idx])


def _batch(world: ToyWorld, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, list[str]]:
    caps = [world.captions[j] for j in rng.integers(0, len(world.captions), size=batch_size)]
    imgs = np.stack([world.render(c, rng) for c in caps])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, caps


# ---------------------------------------------------------------------- VAE
@torch.no_grad()
def set_vae_scaling_factor(vae, world: ToyWorld, n: int = 256, seed: int = 12345) -> float:
    """Set ``vae.config.scaling_factor = 1 / std(latents)`` over ``n`` toy images; return it."""
    x, _ = _batch(world, np.random.default_rng(seed), n)
    z = vae.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(seed))
    sf = float(1.0 / z.std())
    vae.register_to_config(scaling_factor=sf)
    return sf


def pretrain_vae(
    vae,
    world: ToyWorld,
    steps: int = 400,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    kl_weight: float = 1e-4,
    log_every: int = 0,
    logvar_init: float | None = -10.0,
) -> dict:
    """Train the tiny AutoencoderKL to reconstruct toy images (L1+L2 + small KL); set scaling factor.

    ``logvar_init``: start the posterior log-variance at this value (the logvar half of
    ``quant_conv`` gets zero weights and this bias), so that the latents are nearly deterministic.
    A short pretraining otherwise leaves a posterior std comparable to the latent signal, and the
    diffusion model then learns (and samples) a noisy, colour-washed latent distribution.

    Returns metrics: final reconstruction MSE (in [-1,1] units, on held-out images), the
    scaling factor, wall seconds.
    """
    t0 = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 7])
    qc = getattr(vae, "quant_conv", None)
    if logvar_init is not None and qc is not None:
        with torch.no_grad():
            half = qc.out_channels // 2
            qc.weight[half:].zero_()
            qc.bias[half:].fill_(float(logvar_init))
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    last = float("nan")
    for step in range(steps):
        x, _ = _batch(world, rng, batch_size)
        post = vae.encode(x).latent_dist
        z = post.sample()
        rec = vae.decode(z).sample
        rec_loss = (rec - x).pow(2).mean() + 0.5 * (rec - x).abs().mean()
        kl = post.kl().mean() / x[0].numel()
        loss = rec_loss + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        last = rec_loss.item()
        if log_every and step % log_every == 0:
            print(f"vae step {step} rec {last:.4f} kl {kl.item():.3f}", flush=True)
    vae.eval()
    with torch.no_grad():
        x, caps = _batch(world, np.random.default_rng([seed, 99]), 64)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        mse = float((rec - x).pow(2).mean())
        r_in = world.hidden_reward((x + 1) / 2, caps)
        r_out = world.hidden_reward((rec + 1) / 2, caps)
    sf = set_vae_scaling_factor(vae, world, seed=seed + 12345)
    return {
        "vae_steps": steps,
        "vae_train_loss": last,
        "vae_val_mse": mse,
        "vae_reward_in": float(r_in.mean()),
        "vae_reward_recon": float(r_out.mean()),
        "scaling_factor": sf,
        "vae_wall_s": time.time() - t0,
    }


# ---------------------------------------------------------------------- prompt sets
def eval_prompts(world: ToyWorld, n: int = 480, seed: int = 1) -> list[str]:
    """Held-out evaluation prompts: ``n`` captions (repeats allowed, balanced over captions, shuffled).

    Image ``i`` of a prompt set is generated from prompt ``i`` with seed ``seed_base + i``, so
    repeated captions still give different (but paired across models) images.
    """
    caps = world.captions
    reps = -(-n // len(caps))
    lst = (caps * reps)[:n]
    order = np.random.default_rng(seed).permutation(n)
    return [lst[j] for j in order]


# ---------------------------------------------------------------------- base quality
def base_quality(base_scores, scorer, world: ToyWorld, *, n_train: int, seed: int):
    """How well the toy base draws its world: its samples' mean score against its training images'.

    ``base_scores``: tidy scores of the base (columns ``model, prompt_set, evaluator, score``; one
    evaluator, e.g. ``toy_reward``, the hidden reward) on the evaluation prompts as evaluated (same
    sampler, CFG, prompts). ``scorer``: that evaluator (:func:`inpo.evaluators.build`), applied to the
    base's training set ``ToyImageDataset(world, n_train, seed)`` (the images the base was pretrained
    on). Returns one row per prompt set: ``prompt_set, evaluator, n_samples, samples_mean, samples_sd,
    n_train, train_mean, train_sd, ratio`` (``ratio = samples_mean / train_mean``; issue 12 asks >= 0.9).
    """
    import pandas as pd

    evaluators = set(base_scores["evaluator"])
    if evaluators != {scorer.name}:
        raise ValueError(f"base_quality: scores of {sorted(evaluators)} but the scorer is {scorer.name!r}")
    data = ToyImageDataset(world, n_train, seed=seed)
    train = np.asarray(scorer.score(list(data.images()), [data.caption(i) for i in range(n_train)]), np.float64)
    rows = []
    for ps, g in base_scores.groupby("prompt_set", sort=False):
        s = g["score"].to_numpy(np.float64)
        rows.append({"prompt_set": ps, "evaluator": scorer.name, "n_samples": len(s), "samples_mean": s.mean(),
                     "samples_sd": s.std(ddof=1), "n_train": n_train, "train_mean": train.mean(),
                     "train_sd": train.std(ddof=1), "ratio": s.mean() / train.mean()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- preference shards
def pickapic_schema():
    """The Pick-a-Pic v2 parquet schema (one definition: :data:`inpo.data.pickapic.PICKAPIC_V2_SCHEMA`)."""
    from .pickapic import PICKAPIC_V2_SCHEMA

    return PICKAPIC_V2_SCHEMA


PICKAPIC_COLUMNS = list(pickapic_schema().names)


def png_bytes(img: np.ndarray | Image.Image) -> bytes:
    im = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img, dtype=np.uint8))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _uid(rng: np.random.Generator) -> str:
    b = rng.integers(0, 256, size=16, dtype=np.uint8).tobytes()
    import uuid

    return str(uuid.UUID(bytes=b, version=4))


@torch.no_grad()
def sample_base_images(
    pipeline_dir: str | Path,
    captions: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int = 20,
    guidance_scale: float = 5.0,
    batch_size: int = 64,
    height: int | None = None,
    scheduler: str | None = "euler",
) -> list[np.ndarray]:
    """Images (uint8 HxWx3) of the pipeline at ``pipeline_dir``, one per (caption, seed).

    ``scheduler`` is a name of :data:`inpo.generate.SCHEDULERS` (``None``: the pipeline's own). Use
    the sampler the evaluation uses, so that the pairs are the model's own samples as evaluated
    (on the toy base, DDIM-20 draws at about 0.33 hidden reward and Euler-20 at about 0.51). Noise and
    pipeline call are the evaluation's (:func:`inpo.generate.sample_images`): seed ``s`` gives the image
    that :func:`inpo.generate.generate_images` draws for prompt index ``s`` with ``seed_base=0``.
    """
    from ..generate import load_pipeline, sample_images, set_scheduler

    pipe = load_pipeline(str(pipeline_dir), "sd15")
    set_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    size = height or pipe.unet.config.sample_size * pipe.vae_scale_factor
    out: list[np.ndarray] = []
    for s in range(0, len(captions), batch_size):
        out.extend(np.asarray(im.convert("RGB")) for im in sample_images(
            pipe, captions[s : s + batch_size], seeds[s : s + batch_size], num_inference_steps=steps,
            guidance_scale=guidance_scale, height=size, width=size))
    return out


def make_preference_shards(
    pipeline_dir: str | Path,
    world: ToyWorld,
    out_dir: str | Path,
    *,
    n_prompts: int = 1536,
    images_per_prompt: int = 2,
    steps: int = 20,
    guidance_scale: float = 5.0,
    tie_fraction: float = 0.12,
    n_corrupt: int = 8,
    shard_size: int = 512,
    seed: int = 0,
    batch_size: int = 64,
    scheduler: str | None = "euler",
) -> dict:
    """Toy Pick-a-Pic v2: pairs of the base model's own samples labelled by the hidden reward.

    Prompt ``p`` (captions cycle through the world's, shuffled) gets ``images_per_prompt`` samples
    with seeds ``seed * 10**6 + p * images_per_prompt + k``; every pair of them is one row. The
    near-tie margin is the ``tie_fraction`` quantile of |reward_0 - reward_1|, so that fraction of
    rows get labels (0.5, 0.5); otherwise the higher-reward image gets label 1. ``n_corrupt`` rows
    (spread over shards) get truncated image bytes in jpg_0 or jpg_1. Writes
    ``{out_dir}/train-{k:05d}-of-{n:05d}.parquet`` and ``manifest.json``; returns the manifest.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2024])
    base_caps = world.captions
    order = np.concatenate([rng.permutation(len(base_caps)) for _ in range(-(-n_prompts // len(base_caps)))])
    prompts = [base_caps[j] for j in order[:n_prompts]]
    caps_flat = [p for p in prompts for _ in range(images_per_prompt)]
    seeds = [seed * 10**6 + i for i in range(len(caps_flat))]
    images = sample_base_images(
        pipeline_dir, caps_flat, seeds, steps=steps, guidance_scale=guidance_scale, batch_size=batch_size,
        scheduler=scheduler,
    )
    rewards = world.hidden_reward(np.stack(images), caps_flat)
    sample_s = time.time() - t0

    pairs = []  # (prompt idx, image a, image b)
    for p in range(n_prompts):
        for a in range(images_per_prompt):
            for b in range(a + 1, images_per_prompt):
                pairs.append((p, p * images_per_prompt + a, p * images_per_prompt + b))
    gaps = np.array([abs(rewards[a] - rewards[b]) for _, a, b in pairs])
    margin = float(np.quantile(gaps, tie_fraction)) if len(gaps) and tie_fraction > 0 else 0.0
    # corrupt rows are drawn among the decided (non-tie) rows, so a filter counts each of them
    # under "undecodable image" (a tie would be dropped first for being a tie)
    decided = np.flatnonzero(gaps > margin)
    corrupt_rows = set(rng.choice(decided, size=min(n_corrupt, len(decided)), replace=False).tolist())

    uids = [_uid(rng) for _ in images]
    png = [png_bytes(im) for im in images]
    base_time = np.datetime64("2023-06-01T00:00:00", "ns")
    rows = []
    for r, (p, a, b) in enumerate(pairs):
        if rng.random() < 0.5:  # random order of the two images in the row
            a, b = b, a
        tie = gaps[r] <= margin
        l0 = 0.5 if tie else float(rewards[a] > rewards[b])
        jpg0, jpg1 = png[a], png[b]
        if r in corrupt_rows:
            if rng.random() < 0.5:
                jpg0 = jpg0[: len(jpg0) // 3]
            else:
                jpg1 = b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 64, dtype=np.uint8))
        best = uids[a] if l0 == 1.0 else (uids[b] if l0 == 0.0 else "")
        rows.append(
            {
                "are_different": True,
                "best_image_uid": best,
                "caption": prompts[p],
                "created_at": base_time + np.timedelta64(int(r) * 7_000_000_000, "ns"),
                "has_label": True,
                "image_0_uid": uids[a],
                "image_0_url": f"https://toy.invalid/images/{uids[a]}.png",
                "image_1_uid": uids[b],
                "image_1_url": f"https://toy.invalid/images/{uids[b]}.png",
                "jpg_0": jpg0,
                "jpg_1": jpg1,
                "label_0": l0,
                "label_1": 1.0 - l0,
                "model_0": "toy-base",
                "model_1": "toy-base",
                "ranking_id": int(100000 + r),
                "user_id": int(1 + (r * 7919) % 97),
                "num_example_per_prompt": int(images_per_prompt * (images_per_prompt - 1) // 2),
                "__index_level_0__": int(r),
            }
        )
    schema = pickapic_schema()
    n_shards = max(1, -(-len(rows) // shard_size))
    files = []
    for k in range(n_shards):
        chunk = rows[k * shard_size : (k + 1) * shard_size]
        df = pd.DataFrame(chunk, columns=PICKAPIC_COLUMNS)
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
        path = out / f"train-{k:05d}-of-{n_shards:05d}.parquet"
        pq.write_table(table, path)
        files.append(path.name)
    labels0 = np.array([r["label_0"] for r in rows])
    manifest = {
        "pipeline_dir": str(pipeline_dir),
        "world": world.to_dict(),
        "n_prompts": n_prompts,
        "images_per_prompt": images_per_prompt,
        "n_rows": len(rows),
        "n_ties": int((labels0 == 0.5).sum()),
        "tie_margin": margin,
        "n_corrupt": len(corrupt_rows),
        "corrupt_rows": sorted(int(x) for x in corrupt_rows),
        "steps": steps,
        "guidance_scale": guidance_scale,
        "scheduler": scheduler,
        "seed": seed,
        "mean_reward": float(rewards.mean()),
        "shards": files,
        "sample_s": sample_s,
        "wall_s": time.time() - t0,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return manifest


__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "PICKAPIC_COLUMNS",
    "ToyImageDataset",
    "ToyWorld",
    "base_quality",
    "eval_prompts",
    "make_preference_shards",
    "pickapic_schema",
    "pretrain_vae",
    "sample_base_images",
    "set_vae_scaling_factor",
    "to_unit_float_bhwc",
]
