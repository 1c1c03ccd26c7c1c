"""Calibrate the toy world + tiny SD1.5 model on CPU (standalone; does not need inpo.trainer).

Pretrains the tiny AutoencoderKL (inpo.data.toy.pretrain_vae), then the UNet with a minimal
eps-MSE loop (AdamW, DDPM noise on the SD schedule, 10% caption dropout to "" for CFG), saves the
pipeline folder, samples with StableDiffusionPipeline (DDIM, CFG) and reports the mean hidden
reward of the samples vs the training images.

    HF_HUB_OFFLINE=1 python benchmarks/toy_calibrate.py --preset default --out /tmp/toy_cal
    HF_HUB_OFFLINE=1 python benchmarks/toy_calibrate.py --preset smoke --out /tmp/toy_smoke
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from inpo.data.toy import ToyImageDataset, ToyWorld, pretrain_vae, sample_base_images
from inpo.models import TinySDConfig, build_tiny_sd15, save_pipeline

PRESETS = {
    # calibrated defaults (see the report in the commit message / docs)
    "default": {"model": {"unet_cross_attn": (True, True)}, "vae_steps": 250, "unet_steps": 700, "batch": 64, "lr": 1e-3},
    "smoke": {
        "model": {"unet_block_channels": (32, 64), "unet_layers_per_block": 1, "unet_attention_head_dim": 8},
        "vae_steps": 60,
        "unet_steps": 200,
        "batch": 32,
        "lr": 2e-3,
    },
}


@torch.no_grad()
def encode_text(tokenizer, text_encoder, captions):
    ids = tokenizer(
        list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids)[0]


def pretrain_unet(comp, world, *, steps, batch, lr, seed=0, p_uncond=0.1, warmup=50, log_every=100, time_budget=None):
    unet, vae, te, tok, sch = comp["unet"], comp["vae"], comp["text_encoder"], comp["tokenizer"], comp["scheduler"]
    vae.requires_grad_(False)
    te.requires_grad_(False)
    sf = vae.config.scaling_factor
    caps = world.captions
    emb = encode_text(tok, te, caps + [""])  # text encoder frozen: embeddings per caption once
    abar = sch.alphas_cumprod.float()
    ds = ToyImageDataset(world, n=10**9, seed=seed)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    lr_at = lambda s: lr * min(1.0, (s + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * s / steps)) * 0.9 + 0.1)  # noqa: E731
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    unet.train()
    t0 = time.time()
    hist = []
    for s in range(steps):
        idx = rng.integers(0, 10**9, size=batch)
        items = [ds[int(i)] for i in idx]
        x = torch.stack([it["pixel_w"] for it in items])
        cidx = torch.tensor([caps.index(it["caption"]) for it in items])
        drop = torch.rand(batch, generator=g) < p_uncond
        cidx[drop] = len(caps)
        with torch.no_grad():
            z0 = vae.encode(x).latent_dist.sample(generator=g) * sf
        t = torch.randint(0, 1000, (batch,), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        pred = unet(zt, t, encoder_hidden_states=emb[cidx]).sample
        loss = (pred - noise).pow(2).mean()
        for gr in opt.param_groups:
            gr["lr"] = lr_at(s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        hist.append(loss.item())
        if log_every and (s % log_every == 0 or s == steps - 1):
            print(f"unet step {s} loss {np.mean(hist[-log_every:]):.4f} {time.time() - t0:.0f}s", flush=True)
        if time_budget and time.time() - t0 > time_budget:
            print(f"time budget hit at step {s}", flush=True)
            break
    unet.eval()
    return {"unet_steps_done": s + 1, "unet_final_loss": float(np.mean(hist[-50:])), "unet_wall_s": time.time() - t0}


def evaluate(pipe_dir, world, *, n=96, steps=20, cfg=5.0, seed=777):
    caps = [world.captions[i % len(world.captions)] for i in range(n)]
    t0 = time.time()
    imgs = sample_base_images(pipe_dir, caps, [seed + i for i in range(n)], steps=steps, guidance_scale=cfg)
    samp_s = time.time() - t0
    r = world.hidden_reward(np.stack(imgs), caps)
    train = ToyImageDataset(world, n=n, seed=seed)
    r_train = world.hidden_reward(train.images(), [train.caption(i) for i in range(n)])
    terms = world.reward_terms(np.stack(imgs), caps)
    return imgs, {
        "sample_steps": steps,
        "cfg": cfg,
        "sample_s": samp_s,
        "reward_samples": float(r.mean()),
        "reward_train": float(r_train.mean()),
        "ratio": float(r.mean() / r_train.mean()),
        "terms_samples": {k: float(v.mean()) for k, v in terms.items()},
    }


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--out", default="/tmp/toy_calibrate")
    ap.add_argument("--unet-steps", type=int)
    ap.add_argument("--vae-steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--model", default="{}", help="JSON overrides of TinySDConfig")
    ap.add_argument("--cfg", type=float, nargs="*", default=[5.0])
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--n-eval", type=int, default=96)
    ap.add_argument("--time-budget", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    p = dict(PRESETS[a.preset])
    for k in ("unet_steps", "vae_steps", "batch", "lr"):
        if getattr(a, k) is not None:
            p[k] = getattr(a, k)
    mcfg = TinySDConfig(**{**p["model"], **json.loads(a.model)})
    world = ToyWorld()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    comp = build_tiny_sd15(mcfg)
    n_unet = sum(x.numel() for x in comp["unet"].parameters())
    print(f"unet params {n_unet / 1e6:.2f}M", flush=True)
    vm = pretrain_vae(comp["vae"], world, steps=p["vae_steps"], seed=0, log_every=50)
    print(vm, flush=True)
    um = pretrain_unet(comp, world, steps=p["unet_steps"], batch=p["batch"], lr=p["lr"], time_budget=a.time_budget)
    pre_s = time.time() - t0
    save_pipeline(comp, out / "pipeline")
    res = {"preset": a.preset, "params": p, "model": asdict(mcfg), "unet_params": n_unet, **vm, **um, "pretrain_s": pre_s}
    for c in a.cfg:
        imgs, ev = evaluate(out / "pipeline", world, n=a.n_eval, steps=a.sample_steps, cfg=c)
        res[f"eval_cfg{c:g}"] = ev
        print(json.dumps(ev), flush=True)
        from PIL import Image

        grid = np.concatenate([np.concatenate(imgs[r * 12 : (r + 1) * 12], 1) for r in range(min(4, len(imgs) // 12))], 0)
        Image.fromarray(grid).save(out / f"samples_cfg{c:g}.png")
    (out / "calibration.json").write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps({k: v for k, v in res.items() if k not in ("model",)}, default=str))


if __name__ == "__main__":
    main()
