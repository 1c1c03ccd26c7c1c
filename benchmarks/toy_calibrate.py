"""Calibrate the toy base (CPU): pretraining cost against how well the base draws its world.

The DAG's first two stages with the workflow config's own recipe, stage by stage:

1. :func:`inpo.experiment.toy_init` (rule ``toy_init``): the random tiny SD with its VAE pretrained on
   toy images (``toy.model``, ``toy.vae``, the config's ``seed``);
2. the ``base`` run (rule ``train``: :func:`inpo.experiment.run_train_config` + :func:`inpo.trainer.train`,
   method ``sft`` on procedural images), stopped at each of ``--unet-steps`` (it resumes from its own
   checkpoints, so a curve costs one run);
3. at each point, ``--n-eval`` samples with the evaluation's sampler and steps
   (``evaluation.generation``) at each CFG of ``--cfg`` (default: the evaluation's), scored with the
   hidden reward, against the base's training images (:func:`inpo.data.toy.base_quality`, the
   table the DAG writes as ``tables/toy_base_quality.csv``). Target ratio >= 0.9.

Calibration prompts are the world's captions in turn with seeds 777 + i (not the evaluation set);
``--eval-prompts`` samples the evaluation's own prompts and noise instead (the DAG's reported ratio).
``--patch`` is a JSON merge patch on the config (e.g. ``'{"toy": {"model": {"unet_block_channels":
[64, 128]}}}'``); ``--set key=value`` changes a dotted TrainConfig key of the base run.

    HF_HUB_OFFLINE=1 python benchmarks/toy_calibrate.py --out /tmp/toy_cal --unet-steps 400,800
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inpo import experiment as P  # noqa: E402
from inpo.data.toy import ToyWorld, base_quality, sample_base_images  # noqa: E402


def eval_samples(config: dict, base: Path, out_dir: Path, n: int, guidance_scale: float):
    """(captions, images) of the base on the first ``n`` prompts of the evaluation's first prompt set, drawn as
    rule ``generate`` draws them (same function, noise seeds and sampler)."""
    import shutil

    from PIL import Image

    from inpo.generate import generate_images, image_path

    g = config["evaluation"]["generation"]
    prompts = P.load_prompts(config, next(iter(config["evaluation"]["prompt_sets"]))).head(n)
    shutil.rmtree(out_dir, ignore_errors=True)
    generate_images(base, prompts, out_dir, num_inference_steps=g["steps"], guidance_scale=guidance_scale,
                    seed_base=P.generation_seed_base(config), batch_size=g.get("batch_size", 4),
                    scheduler=g.get("scheduler"), progress=False)
    imgs = [np.asarray(Image.open(image_path(out_dir, i)).convert("RGB")) for i in prompts["index"]]
    return list(prompts["prompt"]), imgs


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", nargs="+", default=["config/config.yaml"],
                    help="the workflow config (later files: merge patches, e.g. config/smoke.yaml)")
    ap.add_argument("--patch", default="{}", help="JSON merge patch on the config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted TrainConfig key of the base run (repeatable), e.g. optim.learning_rate=2e-3")
    ap.add_argument("--seed", type=int, help="the experiment seed (default: the config's)")
    ap.add_argument("--out", default="/tmp/toy_calibrate")
    ap.add_argument("--unet-steps", default="400,800,1200", help="comma-separated evaluation points")
    ap.add_argument("--cfg", type=float, nargs="*", help="guidance scales (default: the evaluation's)")
    ap.add_argument("--n-eval", type=int, default=120)
    ap.add_argument("--eval-prompts", action="store_true",
                    help="sample the evaluation's own prompts and noise (the first --n-eval of its first prompt set, "
                         "inpo.generate.generate_images): the ratio the DAG's toy_base_quality table reports")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from inpo.config import train_config_from_dict
    from inpo.evaluators import build
    from inpo.trainer import train

    config = P.merge_patch(P.load_overlays(a.config, where="--config"), json.loads(a.patch))
    if a.seed is not None:
        config["seed"] = a.seed
    seed = int(config.get("seed", 0))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    world = ToyWorld.from_dict(config["toy"].get("scene"))
    g = config["evaluation"]["generation"]
    evaluator = config["report"].get("effect_evaluators", config["evaluation"]["evaluators"])[0]
    scorer = build(evaluator, **dict(config["evaluation"].get("evaluator_options", {}).get(evaluator) or {}))
    t0 = time.time()
    vae = P.toy_init(out / "toy_init", toy=config["toy"], seed=seed)
    res = {"config_patch": json.loads(a.patch), "set": a.set, "seed": seed, **vae, "checkpoints": []}
    print(json.dumps(vae), flush=True)
    runs = P.all_runs(config, None)
    d = P.run_train_config(config, "base", runs)
    for key, value in P.parse_overrides(";".join(a.set), where="--set").items():
        P.set_dotted(d, key, value)
    d["model"]["pretrained"] = str(out / "toy_init")
    d.update(output_dir=str(out / "base"), state_dir=str(out / "base_state"), log_csv=str(out / "base_log.csv"),
             tensorboard_dir=None, checkpoints_total_limit=1, progress=False)
    caps = [world.captions[i % len(world.captions)] for i in range(a.n_eval)]
    prev = 0
    for k in [int(x) for x in a.unet_steps.split(",")]:
        d.update(max_updates=k, checkpoint_every=k - prev)
        summ = train(train_config_from_dict(dict(d), where="base"))
        prev = k
        # the trainer's wall_s is the run's training time over all its resumes (it is kept in the checkpoint)
        ck = {"unet_steps": k, "unet_wall_s": round(summ.get("wall_s", float("nan")), 1)}
        for c in a.cfg or [g["guidance_scale"]]:
            t = time.time()
            if a.eval_prompts:
                caps, imgs = eval_samples(config, out / "base", out / f"eval_{k}_cfg{c:g}", a.n_eval, c)
            else:
                imgs = sample_base_images(out / "base", caps, [777 + i for i in range(a.n_eval)], steps=g["steps"],
                                          guidance_scale=c, scheduler=g.get("scheduler"))
            s = scorer.score(list(imgs), caps)
            prompt_set = "evaluation" if a.eval_prompts else "calibration"
            q = base_quality(pd.DataFrame({"prompt_set": prompt_set, "evaluator": scorer.name, "score": s}),
                             scorer, world, n_train=min(int(d["data"].get("toy_images", 1024)), 2048), seed=seed)
            terms = world.reward_terms(np.stack(imgs), caps)
            ck[f"cfg{c:g}"] = {"ratio": round(float(q["ratio"][0]), 4), "samples": round(float(q["samples_mean"][0]), 4),
                              "train": round(float(q["train_mean"][0]), 4), "sample_s": round(time.time() - t, 1),
                              "terms": {n: round(float(v.mean()), 3) for n, v in terms.items()}}
            from PIL import Image

            rows = [np.concatenate(imgs[r * 12:(r + 1) * 12], 1) for r in range(min(4, len(imgs) // 12))]
            Image.fromarray(np.concatenate(rows, 0)).save(out / f"samples_{k}_cfg{c:g}.png")
        res["checkpoints"].append(ck)
        print(json.dumps(ck), flush=True)
        (out / "calibration.json").write_text(json.dumps(res, indent=2, default=str))
    res["total_s"] = time.time() - t0
    (out / "calibration.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
