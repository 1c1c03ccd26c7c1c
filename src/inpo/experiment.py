"""Glue between the validated workflow config and the package (pure, tested; no Snakemake import).

An experiment (the paper) instantiates the workflow once per model family (:func:`experiment_configs`);
each family's config is a base file plus overlays, merged as JSON merge patches (:func:`merge_patch`).
Every path of an experiment lies in its ``results`` folder (:func:`results_path`).

The Snakemake rules only call these functions (through ``workflow/scripts``) and the functions of
the concept modules. Run composition:

- ``config["training"]`` holds the :class:`inpo.config.TrainConfig` fields shared by every run;
- ``config["runs"][name] = {"init": <model>, "feedback": <evaluator or null>, "overrides": {dotted.key: value}}``
  are the main runs (``feedback``: train on the pairs relabelled by that evaluator, paper 5.3);
- the ablation sheet (TSV) adds runs: ``run, sweep, setting, value, base_run, overrides, paper_row``
  where ``overrides`` is ``key=value;key=value`` (values parsed as YAML) applied on top of the
  ``base_run``'s own overrides. ``init=...`` / ``feedback=...`` in overrides change where the run
  starts from / which labels it trains on.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .config import FLOAT_TEXT, RENAMED_KEYS, check_renamed_keys, train_config_from_dict
from .efficiency import snapshot_every

ABLATION_COLUMNS = ["run", "sweep", "setting", "value", "base_run", "overrides", "paper_row"]


def results_path(config: dict, path: str = "") -> str:
    """``path`` inside the experiment's results folder (``config["results"]``, default ``results``)."""
    root = str(config.get("results", "results")).rstrip("/")
    return f"{root}/{path}" if path else root


RENAMED_CONFIG_KEYS = {"kind": "family", "toy.world": "toy.scene",
                       **{f"training.{old}": f"training.{new}" for old, new in RENAMED_KEYS.items()}}
"""Workflow-config keys that were renamed (old dotted key -> new); run overrides are checked against
:data:`inpo.config.RENAMED_KEYS`."""


def check_config_keys(config: dict) -> None:
    """Fail on a renamed key (:data:`RENAMED_CONFIG_KEYS`, and in each run's ``overrides``) with a
    one-line message naming the old key and its new name; run before the schema, which would only
    say the key is not allowed."""
    check_renamed_keys(config, RENAMED_CONFIG_KEYS)
    runs = config.get("runs")
    for name, run in (runs.items() if isinstance(runs, dict) else ()):  # a bad type: the schema says so
        overrides = run.get("overrides") if isinstance(run, dict) else None
        check_renamed_keys(overrides, where=f"runs.{name}.overrides")


# --------------------------------------------------------------------------- experiments


def merge_patch(target: Any, patch: Any) -> Any:
    """``patch`` applied to ``target`` as a JSON merge patch (RFC 7396): mappings merge key by key,
    a ``null`` value deletes the key, anything else (lists, scalars) replaces. Returns a new object."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def load_overlays(items: list, where: str = "experiment") -> dict:
    """One family's config: the first item as written, each later one a merge patch on top
    (:func:`merge_patch`). Items are YAML file paths or inline mappings."""
    out: dict = {}
    for i, item in enumerate(items):
        if isinstance(item, dict):
            layer = item
        else:
            path = Path(str(item))
            if not path.is_file():
                raise FileNotFoundError(f"{where}: config file {str(item)!r} (item {i + 1}) does not exist")
            layer = yaml.safe_load(path.read_text()) or {}
            if not isinstance(layer, dict):
                raise ValueError(f"{where}: {path} is not a mapping of config keys")
        out = copy.deepcopy(layer) if i == 0 else merge_patch(out, layer)
    return out


def experiment_configs(config: dict) -> dict[str, dict]:
    """``config["experiments"]`` (family -> config files / inline overlays) -> family -> merged config.
    The families must write to different ``results`` folders."""
    families = {name: load_overlays(list(items), where=f"experiments.{name}")
                for name, items in config["experiments"].items()}
    roots: dict[str, str] = {}
    for name, cfg in families.items():
        root = results_path(cfg)
        if root in roots:
            raise ValueError(f"experiments: families {roots[root]!r} and {name!r} both write to {root!r}; "
                             f"give each its own `results` folder")
        roots[root] = name
    return families


# --------------------------------------------------------------------------- ablation sheet


def parse_overrides(text: str | float | None, where: str = "overrides") -> dict[str, Any]:
    """``"method.beta=1000; init=base"`` -> ``{"method.beta": 1000, "init": "base"}``."""
    if text is None or (isinstance(text, float) and pd.isna(text)) or not str(text).strip():
        return {}
    out: dict[str, Any] = {}
    for part in str(text).split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"{where}: {part!r} is not key=value")
        key, value = part.split("=", 1)
        v = yaml.safe_load(value.strip())
        # PyYAML reads YAML 1.1: "1e-4" (no dot) would stay a string, the learning rate a user means
        out[key.strip()] = float(v) if isinstance(v, str) and FLOAT_TEXT.match(v) else v
    return out


def read_ablations(path: str | Path, main_runs: dict[str, Any]) -> pd.DataFrame:
    """Read and check the ablation sheet; errors name the file, row and column."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"ablations: no such sheet {str(path)!r} (a TSV file; for none, set `ablations: null` "
                                f"in a config file: `--config ablations=null` passes the string 'null')")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    missing = [c for c in ABLATION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {ABLATION_COLUMNS}")
    seen: dict[str, int] = {}
    for i, row in df.iterrows():
        where = f"{path} row {i + 2}"
        run = row["run"].strip()
        if not run or any(c in run for c in "/ \t"):
            raise ValueError(f"{where}: column 'run' must be a non-empty name without '/' or spaces, got {run!r}")
        if run in main_runs or run == "base":  # a model that exists already: shown, not trained again
            if row["overrides"].strip() or (row["base_run"].strip() not in ("", run)):
                raise ValueError(f"{where}: run {run!r} is a main run or the base model; it cannot have overrides here")
        elif row["base_run"].strip() not in main_runs:
            raise ValueError(f"{where}: column 'base_run' must name a main run {sorted(main_runs)}, "
                             f"got {row['base_run']!r}")
        check_renamed_keys(parse_overrides(row["overrides"], where=f"{where} column 'overrides'"),
                           where=f"{where} column 'overrides'")
        if run in seen and run not in main_runs:
            raise ValueError(f"{where}: run {run!r} already defined at row {seen[run] + 2}")
        seen[run] = i
    return df


def all_runs(config: dict, ablations: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """Every trainable run: ``{name: {"init": model, "overrides": {...}}}``."""
    runs = {name: {"init": r.get("init", "base"), "feedback": r.get("feedback"),
                   "overrides": dict(r.get("overrides") or {})}
            for name, r in config["runs"].items()}
    if ablations is not None:
        for _, row in ablations.iterrows():
            name = row["run"].strip()
            if name in runs or name == "base":
                continue
            base = runs[row["base_run"].strip()]
            over = {**base["overrides"], **parse_overrides(row["overrides"])}
            init = over.pop("init", base["init"])
            feedback = over.pop("feedback", base.get("feedback"))
            runs[name] = {"init": init, "feedback": feedback, "overrides": over}
    return runs


def init_chain_ok(runs: dict[str, dict[str, Any]]) -> None:
    """Each run starts from ``base``, ``toy_init`` or another run, without cycles."""
    for name in runs:
        seen, cur = [name], runs[name]["init"]
        while cur in runs:
            if cur in seen:
                raise ValueError(f"runs: initialisation cycle {' -> '.join(seen + [cur])}")
            seen.append(cur)
            cur = runs[cur]["init"]
        if cur not in ("base", "toy_init"):
            raise ValueError(f"runs: {name!r} starts from {cur!r}, which is neither 'base', 'toy_init' nor a run")


# --------------------------------------------------------------------------- models and configs


def model_source(config: dict, model: str, runs: dict[str, Any]) -> str:
    """Path (or hub id) of a model's diffusers pipeline."""
    if model in runs or model == "toy_init":
        return results_path(config, f"models/{model}")
    if model == "base":
        return str(config["model"]["base"])
    raise KeyError(f"unknown model {model!r}; models are 'base', 'toy_init' and the runs {sorted(runs)}")


def model_vae(config: dict, model: str, runs: dict[str, Any]) -> str | None:
    """The separate VAE to decode ``model``'s samples with: ``model.vae`` for a base given by hub id or
    folder (SDXL: the fp16-fix VAE, so Base-SDXL decodes as the trained models do); ``None`` for a
    pipeline-made model, whose folder already holds the VAE it was trained with."""
    if model == "base" and not is_local_product(config, model, runs):
        return config["model"].get("vae")
    return None


def is_local_product(config: dict, model: str, runs: dict[str, Any]) -> bool:
    return model in runs or model == "toy_init"


def set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise KeyError(f"override {key!r}: {p!r} is not a section")
    cur[parts[-1]] = value


def run_train_config(config: dict, run: str, runs: dict[str, Any]) -> dict[str, Any]:
    """The full TrainConfig dict of ``run`` (validated by :func:`inpo.config.train_config_from_dict`)."""
    spec = runs[run]
    d = copy.deepcopy(config["training"])
    for key, value in spec["overrides"].items():
        set_dotted(d, key, value)
    d["output_dir"] = results_path(config, f"models/{run}")
    d["state_dir"] = results_path(config, f"state/{run}")
    d["log_csv"] = results_path(config, f"state/{run}/log.csv")
    d["tensorboard_dir"] = results_path(config, f"state/{run}/tensorboard")
    d.setdefault("model", {})
    d["model"]["pretrained"] = model_source(config, spec["init"], runs)
    d["model"].setdefault("family", config.get("family", "sd15"))
    if config["model"].get("vae") and spec["init"] == "base":
        d["model"].setdefault("vae", config["model"]["vae"])
    d.setdefault("data", {})
    examples = d["data"].get("examples", "pairs")
    if examples == "pairs":
        d["data"]["index"] = pairs_index(config, spec.get("feedback"))
    elif examples == "images":
        d["data"]["index"] = images_index(config, spec.get("feedback"))
    else:
        d["data"]["toy_scene"] = dict(config.get("toy", {}).get("scene", {}))
    if config["data"].get("precompute_latents") and d["data"].get("index"):
        d["data"]["latents"] = latents_store(config, d["data"]["index"])
    d.setdefault("seed", config.get("seed", 0))
    d["snapshot_every"] = snapshot_every(config, run)  # Figure 4: only the runs of `efficiency`
    train_config_from_dict(copy.deepcopy(d), where=f"run {run!r}")  # fail at parse time, naming the run
    return d


def pairs_index(config: dict, feedback: str | None = None) -> str:
    """The pair index a run trains on: human labels, or relabelled by an evaluator (paper 5.3)
    when the run (or ``data.train_on_feedback`` for every run) names one."""
    fb = feedback or config["data"].get("train_on_feedback")
    return results_path(config, f"data/pairs_{fb}.parquet" if fb else "data/pairs.parquet")


def images_index(config: dict, feedback: str | None = None) -> str:
    """The per-image labelled index (Diffusion-KTO, rule ``per_image``) derived from the human-labelled
    pairs: it needs the pairs' image uids, which an AI-feedback index (paper 5.3) does not carry."""
    fb = feedback or config["data"].get("train_on_feedback")
    if fb:
        raise ValueError(f"data.examples = images (per-image labels) with feedback {fb!r}: the per-image data set is "
                         "derived from the human-labelled pairs only")
    return results_path(config, "data/per_image/pairs.parquet")


def latents_store(config: dict, index: str) -> str:
    """The latents store (rule ``latents``, :mod:`inpo.data.latents`) of an index of the results'
    ``data`` folder: ``data/pairs.parquet`` -> ``data/latents/pairs``."""
    data = Path(results_path(config, "data"))
    return results_path(config, f"data/latents/{Path(index).relative_to(data).with_suffix('').as_posix()}")


def write_yaml(obj: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(obj, sort_keys=True))


# --------------------------------------------------------------------------- evaluation


def prompt_set_params(config: dict, prompt_set: str) -> Any:
    """What :func:`load_prompts` reads of the config for ``prompt_set``, as rule ``prompts`` params (so that a
    change redraws the prompts): the set's entry, and in the toy world the scene whose captions it draws. The
    paper's params are the entry alone, as before (a code update reruns none of its generation)."""
    spec = config["evaluation"]["prompt_sets"][prompt_set]
    if config["world"] != "toy":
        return spec
    return {**(spec or {}), "toy_scene": config.get("toy", {}).get("scene")}


def load_prompts(config: dict, prompt_set: str) -> pd.DataFrame:
    """The evaluation prompts of ``prompt_set`` (columns ``index, prompt`` and extras)."""
    spec = config["evaluation"]["prompt_sets"][prompt_set] or {}
    if config["world"] == "toy":
        from .data.toy import ToyWorld, eval_prompts

        world = ToyWorld.from_dict(config.get("toy", {}).get("scene"))
        prompts = eval_prompts(world, n=int(spec.get("n", 400)), seed=int(spec.get("seed", 1)))
        df = pd.DataFrame({"index": range(len(prompts)), "prompt": prompts})
    else:
        from .data.prompts import load_prompt_set

        df = load_prompt_set(spec.get("name", prompt_set), spec.get("source"))
    limit = spec.get("limit")
    return df.head(int(limit)) if limit else df


SEED_STRIDE = 10**6
"""Seeds of one experiment seed lie ``seed * SEED_STRIDE`` apart from the next seed's (more images than
this per prompt set would overlap)."""


def generation_seed_base(config: dict) -> int:
    """The generation noise of an experiment: image ``i`` of a prompt set draws from seed
    ``evaluation.generation.seed_base + seed * SEED_STRIDE + i`` (the same for every model: paired)."""
    return int(config["evaluation"]["generation"]["seed_base"]) + int(config.get("seed", 0)) * SEED_STRIDE


def score_images(evaluator, model: str, prompt_set: str, prompts: pd.DataFrame, images_dir: str | Path,
                 *, batch_size: int = 64) -> pd.DataFrame:
    """Tidy scores of one model on one prompt set with one evaluator."""
    import numpy as np
    from PIL import Image

    from .generate import image_path

    scores = []
    rows = list(prompts.itertuples(index=False))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        images = []
        for r in chunk:
            p = image_path(images_dir, int(r.index))
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        s = np.asarray(evaluator.score(images, [r.prompt for r in chunk]), dtype=np.float64)
        if s.shape != (len(chunk),):
            raise ValueError(f"evaluator {evaluator.name} returned shape {s.shape} for {len(chunk)} images")
        scores.append(s)
    return pd.DataFrame({
        "model": model, "prompt_set": prompt_set, "index": prompts["index"].astype(int).to_numpy(),
        "prompt": prompts["prompt"].to_numpy(), "evaluator": evaluator.name,
        "evaluator_version": evaluator.version, "score": np.concatenate(scores) if scores else [],
    })


def ablation_runs_table(ablations: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The ``runs`` table of :func:`inpo.tables.ablation_table` (benchmark paths per run)."""
    n_gpus = max(1, int(config["resources"]["train"].get("gpu", 0) or 0))
    prompt_set = config["report"].get("ablation_prompt_set") or next(iter(config["evaluation"]["prompt_sets"]))
    rows = []
    for _, r in ablations.iterrows():
        rows.append({
            "run": r["run"], "sweep": r["sweep"], "setting": r["setting"], "value": r["value"],
            "benchmark": "" if r["run"] == "base" else results_path(config, f"benchmarks/train/{r['run']}.tsv"),
            "n_gpus": n_gpus,
            "prompt_set": prompt_set, "paper_row": r["paper_row"],
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- toy world


def toy_init(out_dir: str | Path, *, toy: dict, seed: int = 0) -> dict:
    """A random tiny SD-shaped pipeline whose VAE is pretrained on toy images (UNet still random)."""
    from .data.toy import ToyWorld, pretrain_vae
    from .models import build_tiny_sd15, save_pipeline

    world = ToyWorld.from_dict(toy.get("scene"))
    comps = build_tiny_sd15(**{"seed": seed, **toy.get("model", {})})
    vae_cfg = toy.get("vae", {})
    metrics = pretrain_vae(comps["vae"], world, steps=vae_cfg.get("steps", 250),
                           batch_size=vae_cfg.get("batch_size", 32), lr=vae_cfg.get("lr", 2e-3), seed=seed)
    save_pipeline(comps, out_dir)
    print(f"toy_init: VAE pretrained {metrics}")
    return metrics


PAIRS_SAMPLER_KEYS = ("steps", "guidance_scale", "scheduler")
"""Keys of ``toy.pairs`` that default to ``evaluation.generation``'s: the pairs are the base's samples as
evaluated."""


def toy_pairs_settings(config: dict) -> dict:
    """``toy.pairs`` with its sampler (:data:`PAIRS_SAMPLER_KEYS`) taken from ``evaluation.generation``
    where ``toy.pairs`` does not set it: the keyword arguments of :func:`inpo.data.toy.make_preference_shards`."""
    gen = config.get("evaluation", {}).get("generation", {})
    pairs = dict(config.get("toy", {}).get("pairs") or {})
    return {**{k: gen[k] for k in PAIRS_SAMPLER_KEYS if k in gen}, **pairs}


def toy_settings(config: dict, stage: str) -> dict:
    """What a toy stage's output depends on in the config (``stage``: ``init`` or ``pairs``), passed to its
    rule as ``params`` so that Snakemake reruns the stage when any of it changes (a script's reads of
    ``snakemake.config`` are not tracked)."""
    toy = config.get("toy", {})
    if stage == "init":
        return {"toy": {k: toy.get(k) or {} for k in ("scene", "model", "vae")}, "seed": int(config.get("seed", 0))}
    if stage == "pairs":
        return {"scene": toy.get("scene") or {}, "pairs": toy_pairs_settings(config), "seed": int(config.get("seed", 0))}
    raise ValueError(f"toy_settings: stage must be 'init' or 'pairs', got {stage!r}")


def reset_images_if_settings_changed(out_dir: str | Path, settings: dict, shard: tuple[int, int],
                                     indices) -> int:
    """Generation resumes by skipping finished PNGs, so a change of model or sampler settings must
    drop the shard's old images (``indices``) first. Keeps a settings stamp per shard; returns the
    number of images removed."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / f".settings-{shard[0]}-of-{shard[1]}.json"
    text = json.dumps(settings, sort_keys=True, default=str)
    removed = 0
    if stamp.exists() and stamp.read_text() != text:
        from .generate import image_path

        for i in indices:
            png = image_path(out, int(i))
            if png.exists():
                png.unlink()
                removed += 1
    stamp.write_text(text)
    return removed
