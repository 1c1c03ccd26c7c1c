"""Calibrate the toy world + tiny SD1.5 model: pretraining cost vs sample quality (CPU).

Pretrains the tiny AutoencoderKL (:func:`inpo.data.toy.pretrain_vae`), saves the pipeline, then
pretrains the UNet with the SHARED trainer (``inpo.trainer.train``, method ``sft``, data kind
``toy_images``, caption dropout 0.1 for classifier-free guidance, t in 0..999). At each checkpoint
(``--unet-steps 300,600,900``: the run resumes from the trainer's own checkpoints) it samples
``--n-eval`` images with DDIM + CFG and reports the mean hidden reward of the samples as a
fraction of the training images' (target >= 0.9), with the wall seconds of every stage.

    HF_HUB_OFFLINE=1 python benchmarks/toy_calibrate.py --preset toy --out /tmp/toy_cal
    HF_HUB_OFFLINE=1 python benchmarks/toy_calibrate.py --preset smoke --out /tmp/toy_smoke
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from inpo.data.toy import ToyImageDataset, ToyWorld, pretrain_vae, sample_base_images
from inpo.models import TinySDConfig, build_tiny_sd15, save_pipeline

# toy: the calibrated defaults (ToyWorld() / TinySDConfig() defaults); smoke: pretrains in < 1 min
PRESETS: dict[str, dict] = {
    "toy": {
        "world": {},
        "model": {},
        "vae_steps": 250, "vae_batch": 32, "vae_lr": 2e-3,
        "unet_steps": [300, 600, 900], "batch": 32, "lr": 2e-3, "warmup": 20,
    },
    "smoke": {
        "world": {},
        "model": {},
        "vae_steps": 40, "vae_batch": 16, "vae_lr": 2e-3,
        "unet_steps": [60], "batch": 16, "lr": 2e-3, "warmup": 5,
    },
}


def sft_config(out: Path, base: Path, world: ToyWorld, *, steps: int, batch: int, lr: float, warmup: int,
               checkpoint_every: int, seed: int = 0) -> dict:
    """The shared trainer's config for toy UNet pretraining (method sft on procedural images)."""
    return {
        "output_dir": str(out / "pipeline"),
        "state_dir": str(out / "sft_state"),
        "method": {"name": "sft", "caption_dropout": 0.1, "t_min": 0, "t_max": 999},
        "model": {"pretrained": str(base)},
        "data": {"kind": "toy_images", "toy_images": 10**7, "toy_world": world.to_dict(),
                 "resolution": world.image_size, "random_flip": False},
        "optim": {"learning_rate": lr, "scale_lr": False, "warmup_updates": warmup, "weight_decay": 1e-2},
        "micro_batch_size": batch,
        "grad_accum": 1,
        "max_updates": steps,
        "checkpoint_every": checkpoint_every,
        "checkpoints_total_limit": 1,
        "log_csv": str(out / "sft_log.csv"),
        "progress": False,
        "seed": seed,
    }


def evaluate(pipe_dir, world: ToyWorld, *, n=96, steps=20, cfg=5.0, seed=777):
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
        "sample_s": round(samp_s, 2),
        "reward_samples": float(r.mean()),
        "reward_train": float(r_train.mean()),
        "ratio": float(r.mean() / r_train.mean()),
        "terms_samples": {k: round(float(v.mean()), 4) for k, v in terms.items()},
    }


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="toy", choices=sorted(PRESETS))
    ap.add_argument("--out", default="/tmp/toy_calibrate")
    ap.add_argument("--unet-steps", help="comma-separated checkpoints, e.g. 300,600,900")
    ap.add_argument("--vae-steps", type=int)
    ap.add_argument("--vae-batch", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--world", default="{}", help="JSON overrides of ToyWorld")
    ap.add_argument("--model", default="{}", help="JSON overrides of TinySDConfig")
    ap.add_argument("--cfg", type=float, nargs="*", default=[3.0, 5.0])
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--n-eval", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    p = dict(PRESETS[a.preset])
    if a.unet_steps:
        p["unet_steps"] = [int(x) for x in a.unet_steps.split(",")]
    for k in ("vae_steps", "vae_batch", "batch", "lr"):
        if getattr(a, k) is not None:
            p[k] = getattr(a, k)
    world = ToyWorld.from_dict({**p["world"], **json.loads(a.world)})
    mcfg = TinySDConfig(**{**p["model"], **json.loads(a.model)})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    comp = build_tiny_sd15(mcfg)
    n_unet = sum(x.numel() for x in comp["unet"].parameters())
    print(f"unet params {n_unet / 1e6:.2f}M captions {len(world.captions)}", flush=True)
    vm = pretrain_vae(comp["vae"], world, steps=p["vae_steps"], batch_size=p["vae_batch"], lr=p["vae_lr"], seed=0)
    print(json.dumps(vm), flush=True)
    save_pipeline(comp, out / "base0")
    res = {"preset": a.preset, "params": p, "world": world.to_dict(), "model": asdict(mcfg), "unet_params": n_unet,
           **vm, "checkpoints": []}

    from inpo.config import train_config_from_dict
    from inpo.trainer import train

    prev = 0
    for k in p["unet_steps"]:
        cfg = sft_config(out, out / "base0", world, steps=k, batch=p["batch"], lr=p["lr"], warmup=p["warmup"],
                         checkpoint_every=k - prev)
        summ = train(train_config_from_dict(cfg))
        prev = k
        ck = {"unet_steps": k, "unet_wall_s": round(summ.get("wall_s", float("nan")), 1),
              "pretrain_s": round(vm["vae_wall_s"] + summ.get("wall_s", 0.0), 1)}
        for c in a.cfg:
            imgs, ev = evaluate(out / "pipeline", world, n=a.n_eval, steps=a.sample_steps, cfg=c)
            ck[f"cfg{c:g}"] = ev
            from PIL import Image

            rows = [np.concatenate(imgs[r * 12 : (r + 1) * 12], 1) for r in range(min(4, len(imgs) // 12))]
            Image.fromarray(np.concatenate(rows, 0)).save(out / f"samples_{k}_cfg{c:g}.png")
        res["checkpoints"].append(ck)
        print(json.dumps({"unet_steps": k, "unet_wall_s": ck["unet_wall_s"], "pretrain_s": ck["pretrain_s"],
                          **{f"ratio_cfg{c:g}": round(ck[f"cfg{c:g}"]["ratio"], 3) for c in a.cfg},
                          **{f"terms_cfg{c:g}": ck[f"cfg{c:g}"]["terms_samples"] for c in a.cfg}}), flush=True)
        (out / "calibration.json").write_text(json.dumps(res, indent=2, default=str))
    res["total_s"] = time.time() - t0
    (out / "calibration.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
