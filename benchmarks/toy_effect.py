"""The toy effect along updates (CPU): InPO / Diffusion-DPO / a shuffled-label InPO control from one base.

A thin caller of the functions the workflow's rules call, with the workflow config's recipe:

1. pairs: :func:`inpo.data.toy.make_preference_shards` with ``toy.pairs`` (rule ``toy_pairs``) and
   :func:`inpo.data.pickapic.filter_pairs` (rule ``filter_pairs``); the ``shuffled`` arm trains on
   the same pairs with the winner flipped at random (a control: it must not beat the base);
2. training: each arm's TrainConfig is :func:`inpo.experiment.run_train_config` of the config's run
   (``inpo`` / ``dpo``; ``--set key=value`` changes a dotted key of every arm, ``--set arm:key=value``
   of one arm: e.g. whether a recipe change helps InPO more than DPO), trained with
   :func:`inpo.trainer.train` (rule ``train``) along ``--eval-at`` (the arm's state folder persists:
   each point resumes from the previous one);
3. evaluation: :func:`inpo.generate.generate_images` on the config's first prompt set with the
   config's sampler and shared noise (:func:`inpo.experiment.generation_seed_base`),
   :func:`inpo.experiment.score_images` with the first of ``report.effect_evaluators`` (rule
   ``score``), then :func:`inpo.tables.win_rate` (Wilson 95% interval) and
   :func:`inpo.tables.reward_effect_stats` (mean gain in the baseline's sd), as Table 1 and the
   toy-effect table do.

    HF_HUB_OFFLINE=1 python benchmarks/toy_effect.py --base results/models/base --out /tmp/toy_effect
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inpo import experiment as P  # noqa: E402
from inpo.data.toy import ToyWorld, make_preference_shards  # noqa: E402
from inpo.tables import reward_effect_stats, win_rate  # noqa: E402


def arm_config(config: dict, arm: str, base: str, index: Path, out: Path, updates: int, sets: dict) -> dict:
    """The TrainConfig dict of ``arm`` (``shuffled``: the ``inpo`` run on ``index``) as the workflow
    builds it, started from ``base``, with outputs under ``out`` and ``updates`` updates."""
    runs = P.all_runs(config, None)
    d = P.run_train_config(config, "inpo" if arm == "shuffled" else arm, runs)
    d["model"]["pretrained"] = base
    d["data"]["index"] = str(index)
    for key, value in sets.items():
        P.set_dotted(d, key, value)
    d.update(output_dir=str(out / f"{arm}_pipeline"), state_dir=str(out / f"{arm}_state"),
             log_csv=str(out / f"{arm}_log.csv"), tensorboard_dir=None, max_updates=updates,
             checkpoint_every=updates, checkpoints_total_limit=1, progress=False)
    return d


def arm_overrides(sets: list[str], arms: list[str]) -> dict[str, dict]:
    """``--set`` values -> each arm's dotted overrides: ``key=value`` for every arm, ``arm:key=value`` for
    one (applied after the shared ones)."""
    shared, own = [], {arm: [] for arm in arms}
    for item in sets:
        head = item.split("=", 1)[0]
        if ":" in head:
            arm, rest = item.split(":", 1)
            if arm not in own:
                raise ValueError(f"--set {item!r}: no arm {arm!r} (--arms: {','.join(arms)})")
            own[arm].append(rest)
        else:
            shared.append(item)
    return {arm: {**P.parse_overrides(";".join(shared), where="--set"),
                  **P.parse_overrides(";".join(own[arm]), where=f"--set {arm}:")} for arm in arms}


def effect_rows(scores: pd.DataFrame, model: str, baseline: str, evaluator: str, prompt_set: str) -> dict:
    w = win_rate(scores, model, baseline, evaluator, prompt_set)
    e = reward_effect_stats(scores, model, baseline, evaluator, prompt_set)
    return {"model": model, "baseline": baseline, "win_rate": w["win_rate"], "ci_low": w["ci_low"],
            "ci_high": w["ci_high"], "n": w["n"], "effect_sd": e["effect_sd"], "mean_gain": e["mean_gain"]}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the toy base pipeline folder (results/models/base)")
    ap.add_argument("--config", nargs="+", default=["config/config.yaml"],
                    help="the workflow config the base was made with (later files: merge patches, e.g. config/smoke.yaml)")
    ap.add_argument("--seed", type=int, help="the experiment seed (default: the config's)")
    ap.add_argument("--out", default="/tmp/toy_effect")
    ap.add_argument("--arms", default="inpo,dpo,shuffled")
    ap.add_argument("--eval-at", default="10,30", help="updates at which each arm is evaluated")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted TrainConfig key of every arm, e.g. optim.learning_rate=1e-4, or of one arm, "
                         "e.g. inpo:method.t_min=500 (repeatable)")
    ap.add_argument("--reuse-pairs", action="store_true", help="keep OUT/pairs.parquet if present")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from inpo.config import train_config_from_dict
    from inpo.data.pickapic import filter_pairs
    from inpo.evaluators import build
    from inpo.generate import generate_images
    from inpo.trainer import train

    config = P.load_overlays(a.config, where="--config")
    if a.seed is not None:
        config["seed"] = a.seed
    arms = a.arms.split(",")
    sets = arm_overrides(a.set, arms)
    world = ToyWorld.from_dict(config["toy"].get("scene"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"args": vars(a), "seed": config.get("seed", 0), "times": {}}
    t0 = time.time()
    if not (a.reuse_pairs and (out / "pairs.parquet").is_file()):
        make_preference_shards(a.base, world, out / "shards", seed=config.get("seed", 0), **P.toy_pairs_settings(config))
        filter_pairs(out / "shards", out / "pairs.parquet", out / "pairs.json",
                     check_images=bool(config["data"].get("check_images", False)))
    idx = pd.read_parquet(out / "pairs.parquet")
    sh = idx.copy()
    sh["winner"] = np.random.default_rng([config.get("seed", 0), 1]).integers(0, 2, len(sh)).astype(sh["winner"].dtype)
    sh.to_parquet(out / "pairs_shuffled.parquet", index=False)
    res["times"]["pairs_s"] = time.time() - t0
    res["pairs"] = len(idx)

    prompt_set = next(iter(config["evaluation"]["prompt_sets"]))
    prompts = P.load_prompts(config, prompt_set)
    evaluator = config["report"].get("effect_evaluators", config["evaluation"]["evaluators"])[0]
    scorer = build(evaluator, **dict(config["evaluation"].get("evaluator_options", {}).get(evaluator) or {}))
    g = config["evaluation"]["generation"]
    frames = []

    def evaluate(pipe, model):
        t = time.time()
        images = out / "images" / model
        shutil.rmtree(images, ignore_errors=True)  # generate_images keeps existing files: never reuse stale ones
        generate_images(str(pipe), prompts, images, num_inference_steps=g["steps"], guidance_scale=g["guidance_scale"],
                        seed_base=P.generation_seed_base(config), batch_size=g.get("batch_size", 4),
                        scheduler=g.get("scheduler"), progress=False)
        frames.append(P.score_images(scorer, model, prompt_set, prompts, images))
        res["times"]["eval_s"] = res["times"].get("eval_s", 0.0) + time.time() - t
        return pd.concat(frames, ignore_index=True)

    scores = evaluate(a.base, "base")
    res["base_mean"] = float(scores["score"].mean())
    print(json.dumps({"pairs": len(idx), "base_mean": res["base_mean"]}), flush=True)
    res["curves"], last = [], {}
    for arm in arms:
        shutil.rmtree(out / f"{arm}_state", ignore_errors=True)  # curves resume from this arm's own run
        index = out / ("pairs_shuffled.parquet" if arm == "shuffled" else "pairs.parquet")
        for k in [int(x) for x in a.eval_at.split(",")]:
            d = arm_config(copy.deepcopy(config), arm, a.base, index, out, k, sets[arm])
            summ = train(train_config_from_dict(d, where=f"arm {arm}"))
            scores = evaluate(out / f"{arm}_pipeline", f"{arm}@{k}")
            row = {"arm": arm, "updates": k, "train_wall_s": round(summ.get("wall_s", float("nan")), 1),
                   "mean": float(scores.loc[scores["model"] == f"{arm}@{k}", "score"].mean()),
                   **effect_rows(scores, f"{arm}@{k}", "base", evaluator, prompt_set)}
            res["curves"].append(row)
            last[arm] = f"{arm}@{k}"
            print(json.dumps(row), flush=True)
    if "inpo" in last and "dpo" in last:
        res["inpo_vs_dpo"] = effect_rows(scores, last["inpo"], last["dpo"], evaluator, prompt_set)
        print(json.dumps({"inpo_vs_dpo": res["inpo_vs_dpo"]}), flush=True)
    scores.to_parquet(out / "scores.parquet", index=False)
    res["times"]["total_s"] = time.time() - t0
    (out / "effect.json").write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res["times"]), flush=True)


if __name__ == "__main__":
    main()
