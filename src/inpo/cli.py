"""The inpo command: the stages a user runs by hand on a GPU box, outside Snakemake.

Each subcommand calls the same library functions as the workflow's rule scripts
(workflow/scripts/*.py), so a stage run by hand writes the files the workflow would:

  inpo train CONFIG   the trainer (rule train): in this process, or accelerate launch over
                      several GPUs / CPU workers, as inpo.launch builds the command
  inpo generate       images of one model for a prompt set (rule generate)
  inpo score          tidy scores of a folder of images with one evaluator (rule score)
  inpo filter         Pick-a-Pic shards -> filtered pair index + manifest (rule filter_pairs)
  inpo report         tidy scores -> the report tables, CSV + LaTeX (rule tables)

Heavy libraries are imported inside each subcommand, so ``inpo --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

EPILOG = "Run 'inpo <command> --help' for the options of each command."


# --------------------------------------------------------------------------- helpers


def _desc(*paragraphs: str) -> str:
    """Help text: each paragraph wrapped on its own (argparse would join them)."""
    return "\n\n".join(textwrap.fill(p, 88) for p in paragraphs)


def _json_object(text: str) -> dict:
    """A JSON object given inline or as ``@file.json``."""
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {raw!r}")
    return value


def _shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard must be i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


def _read_prompts(spec: str, *, source: str | None, limit: int | None):
    """Prompts from a ``.parquet`` / ``.csv`` file (columns ``index, prompt``), or a named prompt
    set of :func:`inpo.data.prompts.load_prompt_set`."""
    import pandas as pd

    path = Path(spec)
    if path.suffix in (".parquet", ".csv"):
        if not path.is_file():
            raise FileNotFoundError(f"prompts file not found: {path}")
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    else:
        from .data.prompts import load_prompt_set

        df = load_prompt_set(spec, source)
    return df.head(limit) if limit else df


# --------------------------------------------------------------------------- subcommands


def cmd_train(a: argparse.Namespace) -> int:
    from .config import load_train_config
    from .launch import trainer_command

    cfg = load_train_config(a.config)  # validate before anything starts
    if a.gpus >= 1 or a.processes > 1 or a.print_command:
        cmd = trainer_command(a.config, num_processes=a.processes, gpus=a.gpus,
                              mixed_precision=cfg.mixed_precision)
        if a.print_command:
            print(cmd)
            return 0
        print(f"[inpo] {cmd}", file=sys.stderr)
        return subprocess.run(cmd, shell=True).returncode
    from .trainer import train

    print(json.dumps(train(cfg)))
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from .experiment import reset_images_if_settings_changed
    from .generate import generate_images, shard_rows

    prompts = _read_prompts(a.prompts, source=a.prompt_source, limit=a.limit)
    gen = {"steps": a.steps, "guidance_scale": a.guidance_scale, "seed_base": a.seed_base,
           "batch_size": a.batch_size, "scheduler": a.scheduler, "resolution": a.resolution, "dtype": a.dtype}
    removed = reset_images_if_settings_changed(
        a.out_dir, {"model": a.model, "family": a.family, **gen}, a.shard, shard_rows(prompts, a.shard)["index"])
    if removed:
        print(f"generation settings changed: removed {removed} old images", file=sys.stderr)
    written = generate_images(
        a.model, prompts, a.out_dir, family=a.family, num_inference_steps=a.steps, guidance_scale=a.guidance_scale,
        seed_base=a.seed_base, batch_size=a.batch_size, scheduler=a.scheduler, shard=a.shard,
        height=a.resolution, width=a.resolution, dtype=a.dtype, device=a.device,
    )
    print(f"{len(written)} images in {a.out_dir}")
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from .evaluators import build
    from .experiment import score_images

    images = Path(a.images)
    if not images.is_dir():
        raise FileNotFoundError(f"images folder not found: {images}")
    prompts = _read_prompts(a.prompts, source=a.prompt_source, limit=a.limit)
    evaluator = build(a.evaluator, **a.options)
    df = score_images(evaluator, a.model or images.parent.name, a.prompt_set or images.name, prompts, images,
                      batch_size=a.batch_size)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(a.out, index=False)
    print(df["score"].describe().to_string())
    return 0


def cmd_filter(a: argparse.Namespace) -> int:
    from .data.pickapic import check_schema, filter_pairs

    check_schema(a.source, split=a.split)
    manifest = filter_pairs(a.source, a.out_index, a.out_manifest, split=a.split, check_images=a.check_images,
                            max_rows=a.max_rows, images_dir=a.images_dir, num_proc=a.num_proc,
                            pack_resolution=a.pack_resolution)
    print(json.dumps(manifest, indent=2, default=str))
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from .report import write_tables

    written = write_tables(a.scores, a.out_dir, runs=a.runs, benchmark_root=a.benchmark_root, **a.options)
    for name in sorted(written):
        print(written[name])
    return 0


def cmd_seeds(a: argparse.Namespace) -> int:
    from .tables import seeds

    spread, quality = seeds.seed_spread(a.roots), seeds.base_quality_spread(a.roots)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spread.to_csv(out / "seed_spread.csv", index=False)
    if len(quality):
        quality.to_csv(out / "base_quality_seeds.csv", index=False)
    cols = ["model", "baseline", "evaluator", "win_rate_min", "win_rate_max", "seeds_above_50", "seeds_below_50",
            "effect_sd_min", "effect_sd_max"]
    print(spread[cols].to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if len(quality):
        print(quality[["root", "evaluator", "samples_mean", "train_mean", "ratio"]].to_string(index=False))
    print(f"written: {out / 'seed_spread.csv'}" + (f", {out / 'base_quality_seeds.csv'}" if len(quality) else ""))
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="inpo", formatter_class=fmt, epilog=EPILOG,
                                 description=__doc__.split("\n\nHeavy")[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train", formatter_class=fmt, help="train one run from a TrainConfig YAML",
        description=_desc(
            "Train one run (InPO, Diffusion-DPO, SFT, KTO, ...) from a TrainConfig YAML file (the files "
            "the workflow writes to results/configs/<run>.yaml; keys: inpo.config). Resumes from the "
            "latest checkpoint in the config's state_dir; writes the trained diffusers pipeline to its "
            "output_dir.",
            "Without --gpus/--processes the trainer runs in this process (on the visible GPU if any). "
            "--gpus N starts N processes with accelerate launch, one per GPU (it wins over --processes); "
            "--processes N starts N CPU workers (gloo). Pairs per update = micro_batch_size x "
            "grad_accum x processes; for a fixed number of pairs per update, the sample order, the random "
            "draws and the result do not depend on the split."))
    t.add_argument("config", help="TrainConfig YAML file")
    t.add_argument("--gpus", type=int, default=0, help="one process per GPU through accelerate launch (default 0)")
    t.add_argument("--processes", type=int, default=1, help="CPU worker processes when --gpus is 0 (default 1)")
    t.add_argument("--print-command", action="store_true",
                   help="print the launch command (as the workflow's rule 'train' runs it) and exit")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser(
        "generate", formatter_class=fmt, help="generate one image per prompt with a model",
        description=_desc(
            "Generate OUT_DIR/<index:05d>.png for every prompt (seed = seed_base + index, so images of "
            "different models are paired by index).",
            "Resumable: finished images are kept unless the settings changed since the last call (then "
            "this shard's images are redone)."))
    g.add_argument("model", help="diffusers pipeline folder or hub id (e.g. results/models/inpo)")
    g.add_argument("prompts", help="a .parquet/.csv file with columns index, prompt, or a prompt set name "
                                   "(hpdv2, parti, pickapic_test)")
    g.add_argument("out_dir", help="folder of the PNG images")
    g.add_argument("--prompt-source", help="local file/folder of a named prompt set (default: the hub cache)")
    g.add_argument("--limit", type=int, help="only the first N prompts")
    g.add_argument("--family", choices=["sd15", "sdxl"], default="sd15", help="model family (default sd15)")
    g.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    g.add_argument("--guidance-scale", type=float, help="CFG scale (default 7.5 for sd15, 5.0 for sdxl)")
    g.add_argument("--seed-base", type=int, default=0, help="image i uses seed seed_base + i (default 0)")
    g.add_argument("--batch-size", type=int, default=4, help="prompts per pipeline call (default 4)")
    g.add_argument("--scheduler", help="sampler name of inpo.generate.SCHEDULERS (default: the model's own)")
    g.add_argument("--resolution", type=int, help="height = width in pixels (default: the model's native)")
    g.add_argument("--dtype", help="fp16, bf16 or fp32 (default fp16 on GPU, fp32 on CPU)")
    g.add_argument("--device", help="cuda, cuda:1, cpu (default cuda if available)")
    g.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: only prompt rows i::n (default 0/1)")
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser(
        "score", formatter_class=fmt, help="score a folder of generated images with one evaluator",
        description=_desc(
            "Score IMAGES/<index:05d>.png against its prompt with one evaluator and write the tidy scores "
            "(model, prompt_set, index, prompt, evaluator, evaluator_version, score) as parquet; "
            "'inpo report' reads them."))
    s.add_argument("images", help="folder written by 'inpo generate' (results/images/<model>/<prompt_set>)")
    s.add_argument("prompts", help="the prompts given to 'inpo generate' (file or prompt set name)")
    s.add_argument("--evaluator", required=True, help="aesthetic, pickscore, hps, clip, toy_reward, ...")
    s.add_argument("--options", type=_json_object, default={},
                   help="JSON object (or @file.json) of evaluator options, e.g. '{\"version\": \"v2.1\"}'")
    s.add_argument("--out", required=True, help="output parquet file")
    s.add_argument("--model", help="model label (default: the name of IMAGES' parent folder)")
    s.add_argument("--prompt-set", help="prompt set label (default: the name of IMAGES)")
    s.add_argument("--prompt-source", help="local file/folder of a named prompt set")
    s.add_argument("--limit", type=int, help="only the first N prompts (as given to 'inpo generate')")
    s.add_argument("--batch-size", type=int, default=16, help="images per evaluator call (default 16)")
    s.set_defaults(func=cmd_score)

    f = sub.add_parser(
        "filter", formatter_class=fmt, help="Pick-a-Pic v2 shards -> filtered preference pairs",
        description=_desc(
            "Check the schema of the Pick-a-Pic v2 parquet shards, then stream them: drop ties and "
            "unlabelled (optionally undecodable) pairs, put the winner first, and write the pair index "
            "(parquet; data.index of a TrainConfig) and a manifest of counts (JSON)."))
    f.add_argument("source", help="folder of Pick-a-Pic v2 parquet shards (or a hub dataset id)")
    f.add_argument("out_index", help="output pair index (.parquet)")
    f.add_argument("out_manifest", help="output manifest (.json)")
    f.add_argument("--split", default="train", help="split whose shards are read (default train)")
    f.add_argument("--check-images", action="store_true", help="check both images of every pair (JPEG: "
                   "structure and headers; else a decode)")
    f.add_argument("--max-rows", type=int, help="stop after N source rows (a quick look)")
    f.add_argument("--images-dir", help="copy the kept pairs' images into this random-access pack (one pair per "
                   "row group; the index then points into it): training reads each pair's bytes once")
    f.add_argument("--num-proc", type=int, default=1, help="shards filtered at once, one process each")
    f.add_argument("--pack-resolution", type=int, help="store the pack's images resized and centre-cropped to "
                   "this size (PPM, raw RGB; training's own transform, so the same pixels): needs --images-dir")
    f.set_defaults(func=cmd_filter)

    r = sub.add_parser(
        "report", formatter_class=fmt, help="tidy scores -> report tables (CSV + LaTeX)",
        description=_desc(
            "Write the report tables (Table 1 win-rates, Table 2 ablations, supplementary medians and "
            "means, toy effect) into OUT_DIR, each as .csv (long form, ours beside the paper's) and .tex."))
    r.add_argument("--scores", nargs="+", required=True, help="tidy score files (.parquet/.csv)")
    r.add_argument("--out-dir", required=True, help="output folder (e.g. results/tables)")
    r.add_argument("--runs", help="ablation runs CSV (results/tables/ablation_runs.csv); none: empty Table 2")
    r.add_argument("--benchmark-root", help="folder the runs' benchmark paths are relative to")
    r.add_argument("--options", type=_json_object, default={},
                   help="JSON object (or @file.json) of further inpo.report.write_tables keywords, "
                        "e.g. '{\"model\": \"inpo\", \"baselines\": [\"base\", \"dpo\"]}'")
    r.set_defaults(func=cmd_report)

    sd = sub.add_parser(
        "seeds", formatter_class=fmt, help="the spread of Table 1 over whole runs with different seeds",
        description=_desc(
            "Put the tables of several runs of the workflow with different `seed` side by side (e.g. "
            "results, results/seed1, results/seed2): for each Table 1 comparison the win-rate's range over "
            "seeds, how many seeds' 95 % intervals lie above / below 50 %, the range of the mean gain in "
            "baseline sd, and the toy base's quality ratio per seed. Writes OUT_DIR/seed_spread.csv (and "
            "base_quality_seeds.csv)."))
    sd.add_argument("roots", nargs="+", help="result folders (each with tables/table1_winrates.csv)")
    sd.add_argument("--out-dir", default="results/seeds", help="output folder (default results/seeds)")
    sd.set_defaults(func=cmd_seeds)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
