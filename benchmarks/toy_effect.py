"""End-to-end check of the toy InPO effect (CPU): base samples -> pairs -> InPO / DPO / control.

1. Preference data from the BASE model's own samples (:func:`inpo.data.toy.make_preference_shards`:
   two seeds per prompt, labelled by the hidden reward, near-ties -> 0.5), filtered with
   :func:`inpo.data.pickapic.filter_pairs` (ties and undecodable rows dropped).
2. The same base, the same pairs and the same number of updates for each arm, with the SHARED
   trainer: ``inpo`` and ``dpo`` (beta, lr without scaling, AdamW, P pairs per update via
   micro_batch_size P / grad_accum 1), and ``shuffled`` = InPO on the same pairs with the
   winner label flipped at random (a control: it must not beat the base).
3. Evaluation at ``--eval-at`` checkpoints on ``--n-eval`` held-out prompts with shared initial
   noise (``inpo.generate.generate_images(..., seed_base=...)``), scored with
   ``inpo.evaluators.build("toy_reward")``: win-rate vs base (ties count 1/2) with a 95% Wilson
   interval, mean reward, gain in base-sd units, InPO vs DPO head-to-head, curves over updates
   and training CPU seconds.

    HF_HUB_OFFLINE=1 python benchmarks/toy_effect.py --base /tmp/toy_cal/pipeline --out /tmp/toy_effect
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from inpo.data.toy import ToyWorld, eval_prompts, make_preference_shards


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (c - h, c + h)


def win_stats(a: np.ndarray, b: np.ndarray, sd: float) -> dict:
    """a vs b, paired per prompt: win-rate (ties 1/2), Wilson 95% CI, mean gain in sd units."""
    wins = float((a > b).sum() + 0.5 * (a == b).sum())
    lo, hi = wilson(wins, len(a))
    return {"win_rate": wins / len(a), "ci95": [lo, hi], "gain_sd": float((a - b).mean() / sd)}


def train_arm(name, method, index, base, out, *, updates, ppu, lr, beta, seed, res, t_min=0, t_max=999,
              method_extra=None):
    """Train arm ``name`` to ``updates`` updates. The arm's state folder persists, so a later call
    with more updates resumes from the last checkpoint (bit-identical to one uninterrupted run:
    the LR is constant after warm-up) and a curve costs one run, not one run per point."""
    from inpo.config import train_config_from_dict
    from inpo.trainer import train

    cfg = {
        "output_dir": str(out / f"{name}_pipeline"),
        "state_dir": str(out / f"{name}_state"),
        "method": {"name": method, "beta": beta, "t_min": t_min, "t_max": t_max, **(method_extra or {})},
        "model": {"pretrained": str(base)},
        "data": {"kind": "pairs", "index": str(index), "resolution": res, "random_flip": True},
        "optim": {"learning_rate": lr, "scale_lr": False, "warmup_updates": 0, "weight_decay": 0.0},
        "micro_batch_size": ppu,
        "grad_accum": 1,
        "max_updates": updates,
        "checkpoint_every": updates,
        "checkpoints_total_limit": 1,
        "log_csv": str(out / f"{name}_log.csv"),
        "progress": False,
        "seed": seed,
    }
    return train(train_config_from_dict(cfg)), out / f"{name}_pipeline"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="pretrained toy pipeline folder (toy_calibrate's output)")
    ap.add_argument("--config", default="config/config.yaml", help="the workflow config whose toy.world the base was pretrained on")
    ap.add_argument("--world", default=None, help="JSON ToyWorld options (default: toy.world of --config)")
    ap.add_argument("--out", default="/tmp/toy_effect")
    ap.add_argument("--n-prompts", type=int, default=512, help="pair prompts")
    ap.add_argument("--images-per-prompt", type=int, default=2, help="samples per pair prompt; every two make a pair")
    ap.add_argument("--pair-steps", type=int, default=20)
    ap.add_argument("--pair-cfg", type=float, default=5.0)
    ap.add_argument("--scheduler", default="euler", help="sampler of the pairs and of the evaluation")
    ap.add_argument("--reuse-pairs", action="store_true", help="keep OUT/pairs.parquet if present")
    ap.add_argument("--t-min", type=int, default=0)
    ap.add_argument("--t-max", type=int, default=999)
    ap.add_argument("--method", default="{}", help='JSON MethodConfig options, e.g. {"inversion": {"model": "reference"}}')
    ap.add_argument("--tie-fraction", type=float, default=0.12)
    ap.add_argument("--eval-at", default="10,25,50", help="updates at which each arm is evaluated")
    ap.add_argument("--pairs-per-update", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--beta", type=float, default=2000.0)
    ap.add_argument("--arms", default="inpo,dpo,shuffled")
    ap.add_argument("--n-eval", type=int, default=400)
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--eval-cfg", type=float, default=5.0)
    ap.add_argument("--seed-base", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from inpo.data.pickapic import filter_pairs
    from inpo.evaluators import build
    from inpo.generate import generate_images

    if a.world is None:
        import yaml

        world = ToyWorld.from_dict(yaml.safe_load(Path(a.config).read_text())["toy"].get("world"))
    else:
        world = ToyWorld.from_dict(json.loads(a.world))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"args": vars(a), "times": {}}
    t0 = time.time()
    if a.reuse_pairs and (out / "pairs.parquet").is_file():
        man = json.loads((out / "shards" / "manifest.json").read_text())
        fm = json.loads((out / "pairs.json").read_text())
    else:
        man = make_preference_shards(a.base, world, out / "shards", n_prompts=a.n_prompts, steps=a.pair_steps,
                                     images_per_prompt=a.images_per_prompt,
                                     guidance_scale=a.pair_cfg, tie_fraction=a.tie_fraction, n_corrupt=0, seed=0,
                                     scheduler=a.scheduler)
        fm = filter_pairs(out / "shards", out / "pairs.parquet", out / "pairs.json", check_images=True)
    res["times"]["pairs_s"] = time.time() - t0
    res["pairs"] = {"rows": man["n_rows"], "kept": fm["pairs_kept"], "dropped": fm["dropped"],
                    "base_pair_reward": man["mean_reward"], "sample_s": round(man["sample_s"], 1)}
    idx = pd.read_parquet(out / "pairs.parquet")
    sh = idx.copy()
    sh["winner"] = np.random.default_rng(1).integers(0, 2, len(sh)).astype(sh["winner"].dtype)
    sh.to_parquet(out / "pairs_shuffled.parquet", index=False)
    print(json.dumps({"pairs": res["pairs"], "pairs_s": round(res["times"]["pairs_s"], 1)}), flush=True)

    prompts = pd.DataFrame({"index": range(a.n_eval), "prompt": eval_prompts(world, n=a.n_eval, seed=1)})
    scorer = build("toy_reward", world=world.to_dict())

    def evaluate(pipe, tag):
        t = time.time()
        paths = generate_images(str(pipe), prompts, out / "images" / tag, num_inference_steps=a.eval_steps,
                                guidance_scale=a.eval_cfg, seed_base=a.seed_base, batch_size=100,
                                scheduler=a.scheduler, progress=False)
        from PIL import Image

        imgs = [Image.open(p).convert("RGB") for p in paths]
        s = scorer.score(imgs, list(prompts["prompt"]))
        res["times"].setdefault("eval_s", 0.0)
        res["times"]["eval_s"] += time.time() - t
        return s

    shutil.rmtree(out / "images", ignore_errors=True)  # generate_images keeps existing files: never reuse stale ones
    base_s = evaluate(a.base, "base")
    sd = float(base_s.std()) or 1.0
    res["base_mean"] = float(base_s.mean())
    print(json.dumps({"base_mean_reward": res["base_mean"], "base_sd": sd}), flush=True)
    curves: dict = {}
    finals: dict = {}
    for arm in a.arms.split(","):
        shutil.rmtree(out / f"{arm}_state", ignore_errors=True)  # curves resume from this arm's own run
        method = "inpo" if arm == "shuffled" else arm
        index = out / ("pairs_shuffled.parquet" if arm == "shuffled" else "pairs.parquet")
        curves[arm] = []
        for k in [int(x) for x in a.eval_at.split(",")]:
            summ, pipe = train_arm(arm, method, index, a.base, out, updates=k, ppu=a.pairs_per_update, lr=a.lr,
                                   beta=a.beta, seed=0, res=world.image_size, t_min=a.t_min, t_max=a.t_max,
                                   method_extra=json.loads(a.method))
            s = evaluate(pipe, f"{arm}_{k}")
            row = {"arm": arm, "updates": k, "train_cpu_s": round(summ.get("wall_s", float("nan")), 1),
                   "mean_reward": float(s.mean()), **win_stats(s, base_s, sd)}
            curves[arm].append(row)
            finals[arm] = s
            print(json.dumps(row), flush=True)
    if "inpo" in finals and "dpo" in finals:
        res["inpo_vs_dpo"] = win_stats(finals["inpo"], finals["dpo"], sd)
        print(json.dumps({"inpo_vs_dpo": res["inpo_vs_dpo"]}), flush=True)
    res["curves"] = curves
    res["times"]["total_s"] = time.time() - t0
    (out / "effect.json").write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res["times"]), flush=True)


if __name__ == "__main__":
    main()
