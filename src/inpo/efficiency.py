"""Training efficiency (the paper's Figure 4): evaluator score against training updates and hours.

Each run of ``efficiency.runs`` saves its policy UNet every ``every`` updates
(:attr:`inpo.config.TrainConfig.snapshot_every`); every snapshot is generated and scored on a fixed
subset of one prompt set (:func:`prompt_subset`) with the same per-prompt seeds as the main
evaluation. A run's curve is then

- update 0: the model the run starts from (its ``init``; its main scores on the subset),
- the snapshots ``every, 2 * every, ...`` below ``max_updates``,
- ``max_updates``: the trained model (its main scores on the subset),

each point the **mean** score over the subset. Training hours at update ``k`` are the run's training
hours from its Snakemake benchmark file (:func:`training_hours`) times the share of the training
loop's own clock (column ``wall_s`` of the training log) spent by update ``k`` (:func:`hours_at`).

The level is ``base mean + X`` (``efficiency.level``: ``X`` in evaluator units, or in units of the
base's per-prompt standard deviation on the subset). A run reaches it at the first crossing of its
curve, interpolated linearly between the two points around it (:func:`first_crossing`). The speed-up
of the model (``report.model``) over a run is ``hours of the run to the level / hours of the model
to the level`` (:func:`speedup_table`); a run that never reaches the level gives a lower bound
(its total hours). The paper states its figures as the ratio of the full runs' GPU hours (InPO 57.6
H800 GPU hours for 400 updates, Diffusion-DPO 204.8 for 2000: 3.6x; Diffusion-KTO 18.4x), given
here as ``full_run_ratio`` beside ours.

Pure functions on frames; the only I/O is :func:`load_paper_speedups` (package data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

CURVE_COLUMNS = ["run", "point", "update", "hours", "evaluator", "evaluator_version", "n", "mean", "sd"]
UNITS = ("score", "base_sd")


# --------------------------------------------------------------------------- configuration


def snapshot_every(config: Mapping, run: str) -> int:
    """Updates between two snapshots of ``run`` (``efficiency.every``, or ``efficiency.every_by_run``);
    0 for a run that is not in ``efficiency.runs``."""
    eff = config["efficiency"]
    if run not in eff["runs"]:
        return 0
    return int(dict(eff.get("every_by_run") or {}).get(run, eff["every"]))


def snapshot_name(update: int) -> str:
    """The folder name of the snapshot at ``update`` (a diffusers ``unet`` folder), in the run's state
    folder (:func:`snapshot_path`) and in its declared copy ``snapshots/<run>/``."""
    return f"update-{int(update):06d}"


def snapshot_path(state_dir: str | Path, update: int) -> Path:
    """Where the trainer writes the snapshot at ``update``: ``state_dir/snapshots/update-<update>``."""
    return Path(state_dir) / "snapshots" / snapshot_name(update)


def snapshot_updates(max_updates: int, every: int) -> list[int]:
    """Updates with a snapshot: ``every, 2 * every, ...`` strictly below ``max_updates`` (update 0 is
    the initial model and ``max_updates`` the trained one, both evaluated already)."""
    if every <= 0:
        return []
    return list(range(every, max_updates, every))


def check_config(config: Mapping, runs: Mapping[str, Mapping], eval_models: Sequence[str]) -> None:
    """``efficiency`` names runs, their initial models, a prompt set and evaluators that exist."""
    eff = config["efficiency"]
    where = "efficiency"
    unknown = [r for r in eff["runs"] if r not in runs]
    if unknown:
        raise ValueError(f"{where}.runs: {unknown} are not runs {sorted(runs)}")
    extra = sorted(set(eff.get("every_by_run") or {}) - set(eff["runs"]))
    if extra:
        raise ValueError(f"{where}.every_by_run: {extra} are not in efficiency.runs {list(eff['runs'])}")
    model = config["report"]["model"]
    if model not in eff["runs"]:
        raise ValueError(f"{where}.runs must include report.model {model!r} (the model whose speed-up is stated)")
    for r in eff["runs"]:
        for m in (r, runs[r]["init"], "base"):
            if m not in eval_models:
                raise ValueError(f"{where}: the curve of {r!r} needs the main scores of {m!r}; "
                                 f"add it to evaluation.models {list(eval_models)}")
    if eff["prompt_set"] not in config["evaluation"]["prompt_sets"]:
        raise ValueError(f"{where}.prompt_set: {eff['prompt_set']!r} is not in evaluation.prompt_sets")
    missing = [e for e in [*eff["evaluators"], eff["level"]["evaluator"]] if e not in config["evaluation"]["evaluators"]]
    if missing:
        raise ValueError(f"{where}: evaluators {missing} are not in evaluation.evaluators")
    if eff["level"]["evaluator"] not in eff["evaluators"]:
        raise ValueError(f"{where}.level.evaluator {eff['level']['evaluator']!r} must be one of efficiency.evaluators")


# --------------------------------------------------------------------------- prompts, hours


def prompt_subset(prompts: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows of ``prompts`` evenly spaced over the whole set (row ``round(i * (N - 1) / (n - 1))``),
    so a set stored by category (HPDv2: anime, concept-art, paintings, photo) is covered evenly; the
    whole set when ``n >= N``. Keeps the prompt ``index`` (and with it each prompt's seed)."""
    if n < 1:
        raise ValueError(f"efficiency.n_prompts must be >= 1, got {n}")
    N = len(prompts)
    if n >= N:
        return prompts.reset_index(drop=True)
    rows = np.round(np.arange(n) * (N - 1) / max(1, n - 1)).astype(int) if n > 1 else np.array([0])
    return prompts.iloc[rows].reset_index(drop=True)


def training_hours(benchmark: pd.DataFrame, n_gpus: int) -> tuple[float, str]:
    """Hours of one training job from its Snakemake benchmark frame: with GPUs, GPU-hours
    ``mean(s) / 3600 * n_gpus`` (as Table 2); without, CPU-hours ``mean(cpu_time) / 3600`` (the CPU
    time of the job's processes). Returns ``(hours, unit)``."""
    if n_gpus > 0:
        return float(benchmark["s"].astype(float).mean()) / 3600.0 * n_gpus, "GPU-hours"
    if "cpu_time" not in benchmark.columns:
        raise ValueError("benchmark has no 'cpu_time' column: CPU-hours need Snakemake's benchmark cpu_time")
    return float(benchmark["cpu_time"].astype(float).mean()) / 3600.0, "CPU-hours"


def hours_at(updates: Sequence[int], log: pd.DataFrame, total_hours: float) -> list[float]:
    """Training hours spent by each update in ``updates``: ``total_hours * wall_s(k) / wall_s(last)``
    from the training log (columns ``update``, ``wall_s``: the loop's cumulative seconds); update 0
    is 0 hours."""
    wall = log.set_index(log["update"].astype(int))["wall_s"].astype(float)
    last = float(wall.loc[wall.index.max()])
    if not last > 0:
        raise ValueError("training log: wall_s of the last update must be > 0")
    out = []
    for k in updates:
        if k == 0:
            out.append(0.0)
        elif k not in wall.index:
            raise ValueError(f"training log has no row for update {k} (updates {wall.index.min()}..{wall.index.max()})")
        else:
            out.append(total_hours * float(wall.loc[k]) / last)
    return out


# --------------------------------------------------------------------------- curves


def curve(
    point_scores: Mapping[int, pd.DataFrame], hours: Mapping[int, float], run: str, evaluators: Sequence[str],
    indices: Sequence[int], point_names: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """One run's curve (columns :data:`CURVE_COLUMNS`): ``point_scores[update]`` are tidy scores
    (columns ``index, evaluator, evaluator_version, score``) of the model at that update, restricted here
    to the subset ``indices`` (every index must be present)."""
    rows = []
    idx = pd.Index([int(i) for i in indices])
    for k in sorted(point_scores):
        s = point_scores[k]
        for ev in evaluators:
            sel = s[s["evaluator"] == ev].set_index("index")
            missing = idx.difference(sel.index)
            if len(missing):
                raise ValueError(f"run {run!r} update {k}: no {ev} score for prompt indices {list(missing[:5])}")
            v = sel.loc[idx, "score"].astype(float).to_numpy()
            rows.append({"run": run, "point": (point_names or {}).get(k, "snapshot"), "update": int(k),
                         "hours": float(hours[k]), "evaluator": ev,
                         "evaluator_version": str(sel["evaluator_version"].iloc[0]), "n": len(v),
                         "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan")})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def first_crossing(x: Sequence[float], y: Sequence[float], level: float) -> float:
    """The first ``x`` at which the piecewise-linear curve ``(x, y)`` reaches ``level`` (``y >= level``);
    ``x[0]`` when it starts there; NaN when it never does. ``x`` must increase."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("first_crossing: x and y must be non-empty and of equal length")
    if np.any(np.diff(x) <= 0):
        raise ValueError("first_crossing: x must increase")
    if y[0] >= level:
        return float(x[0])
    for i in range(1, len(x)):
        if y[i] >= level:
            return float(x[i - 1] + (level - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
    return float("nan")


def level_value(base: pd.Series, offset: float, unit: str) -> float:
    """``mean(base) + offset`` (``unit="score"``) or ``mean(base) + offset * sd(base)`` (``"base_sd"``)."""
    b = base.astype(float)
    if unit == "score":
        return float(b.mean()) + offset
    if unit == "base_sd":
        return float(b.mean()) + offset * float(b.std(ddof=1))
    raise ValueError(f"efficiency.level.unit must be one of {UNITS}, got {unit!r}")


def speedup_table(curves: pd.DataFrame, model: str, evaluator: str, level: float,
                  hours_unit: str = "GPU-hours", paper: pd.DataFrame | None = None,
                  name_map: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per run: updates and hours to reach ``level`` on ``evaluator`` (first crossing), the model's
    speed-up over the run (``hours_run / hours_model``; a lower bound ``total hours_run / hours_model``
    when the run never reaches it, NaN when the model does not), the full runs' hours ratio (the paper's
    way), and the paper's stated speed-up where ``paper`` has one (matched by ``name_map`` names)."""
    c = curves[(curves["evaluator"] == evaluator) & (curves["run"] != "base")]
    if c.empty:
        raise ValueError(f"no curve points for evaluator {evaluator!r}")
    if model not in set(c["run"]):
        raise ValueError(f"no curve for the model {model!r}; runs {sorted(set(c['run']))}")
    names = dict(name_map or {})
    rows = {}
    for run, g in c.groupby("run", sort=False):
        g = g.sort_values("update")
        last = g.iloc[-1]
        rows[run] = {
            "run": run, "evaluator": evaluator, "level": level, "hours_unit": hours_unit,
            "updates_to_level": first_crossing(g["update"], g["mean"], level),
            "hours_to_level": first_crossing(g["hours"], g["mean"], level),
            "reached": bool((g["mean"] >= level).any()),
            "total_updates": int(last["update"]), "total_hours": float(last["hours"]),
            "final_mean": float(last["mean"]),
        }
    m = rows[model]
    for r in rows.values():
        lower = not r["reached"] and m["reached"]
        num = r["total_hours"] if lower else r["hours_to_level"]
        r["speedup"] = num / m["hours_to_level"] if m["reached"] and m["hours_to_level"] > 0 else float("nan")
        r["speedup_is_lower_bound"] = lower
        r["full_run_ratio"] = r["total_hours"] / m["total_hours"] if m["total_hours"] > 0 else float("nan")
        r["paper_speedup"] = float("nan")
        if paper is not None:
            hit = paper[(paper["model"] == names.get(model, model)) & (paper["baseline"] == names.get(r["run"], r["run"]))]
            if len(hit):
                r["paper_speedup"] = float(hit["speedup"].iloc[0])
    order = [model] + [r for r in rows if r != model]
    return pd.DataFrame([rows[r] for r in order])


def load_paper_speedups() -> pd.DataFrame:
    """The paper's stated speed-ups (package data ``inpo/data/paper/fig4_efficiency.csv``)."""
    ref = resources.files("inpo").joinpath("data", "paper", "fig4_efficiency.csv")
    with ref.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def describe(table: pd.DataFrame, model: str) -> str:
    """One sentence per baseline, as the paper states its figures ("3.6x faster than ...")."""
    out = []
    for r in table.itertuples():
        if r.run == model:
            out.append(f"{model} reaches the level after {r.updates_to_level:.4g} updates ({r.hours_to_level:.3g} "
                       f"{r.hours_unit})." if r.reached else
                       f"{model} does not reach the level in its {r.total_updates} updates (final mean {r.final_mean:.4g}).")
            continue
        if math.isnan(r.speedup):
            out.append(f"{model} does not reach the level; {r.run} {'does' if r.reached else 'does not either'}.")
        else:
            bound = "at least " if r.speedup_is_lower_bound else ""
            out.append(f"{model} reaches the level {bound}{r.speedup:.1f}x faster than {r.run} "
                       f"({r.hours_unit}; full runs: {r.full_run_ratio:.1f}x).")
    return " ".join(out)


# --------------------------------------------------------------------------- I/O: the rules' steps


def evaluate_snapshot(model_dir: str, snapshot_dir: str, prompts: pd.DataFrame, images_dir: str, *,
                      family: str, generation: Mapping, evaluators: Mapping[str, Mapping], label: str,
                      prompt_set: str, score_batch_size: int = 16) -> pd.DataFrame:
    """Generate ``prompts`` with the run's pipeline ``model_dir`` whose UNet is replaced by the snapshot
    ``snapshot_dir`` (:func:`inpo.generate.generate_images`, the main evaluation's settings and seeds),
    then score them with each evaluator (``name -> options``; :func:`inpo.experiment.score_images`).
    Returns the tidy scores, ``model = label``."""
    from diffusers import UNet2DConditionModel

    from .evaluators import build
    from .experiment import score_images
    from .generate import generate_images, resolve_device_dtype
    from .models import load_components

    g = dict(generation)
    dtype = resolve_device_dtype(None, g.get("dtype"))[1]
    comps = load_components(model_dir, family=family, dtype=dtype)
    comps["unet"] = UNet2DConditionModel.from_pretrained(snapshot_dir, torch_dtype=dtype)
    res = g.get("resolution")
    generate_images(comps, prompts, images_dir, family=family, num_inference_steps=g["steps"],
                    guidance_scale=g["guidance_scale"], seed_base=g["seed_base"], batch_size=g.get("batch_size", 4),
                    scheduler=g.get("scheduler"), height=res, width=res, dtype=g.get("dtype"), progress=False)
    del comps
    frames = [score_images(build(name, **dict(opts or {})), label, prompt_set, prompts, images_dir,
                           batch_size=score_batch_size) for name, opts in evaluators.items()]
    return pd.concat(frames, ignore_index=True)


def curves_from_files(runs: Mapping[str, Mapping], prompts: pd.DataFrame, n_prompts: int,
                      evaluators: Sequence[str], n_gpus: int) -> tuple[pd.DataFrame, str]:
    """Every run's curve from its files: ``runs[run]`` = ``{"init_scores": [...], "final_scores": [...],
    "snapshot_scores": {update: path}, "log": csv, "benchmark": tsv, "max_updates": int}`` (score
    paths are tidy parquet files). Returns ``(curves, hours unit)``."""
    indices = prompt_subset(prompts, n_prompts)["index"].astype(int).tolist()
    out, unit = [], None
    for run, f in runs.items():
        hours_total, unit = training_hours(pd.read_csv(f["benchmark"], sep="\t", na_values=["-", "NA"]), n_gpus)
        points = {0: _read(f["init_scores"]), int(f["max_updates"]): _read(f["final_scores"])}
        points |= {int(k): _read([p]) for k, p in f["snapshot_scores"].items()}
        names = {0: "init", int(f["max_updates"]): "final"}
        ups = sorted(points)
        hrs = dict(zip(ups, hours_at(ups, pd.read_csv(f["log"]), hours_total)))
        out.append(curve(points, hrs, run, evaluators, indices, names))
    return pd.concat(out, ignore_index=True), unit


def _read(paths: Sequence[str]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def write_tables(runs: Mapping[str, Mapping], prompts_path: str, base_scores: Sequence[str], efficiency: Mapping,
                 model: str, n_gpus: int, name_map: Mapping[str, str], out_dir: str | Path) -> dict[str, Path]:
    """``fig4_curves`` (every run's curve, and the base as ``run = point = "base"``) and ``fig4_efficiency``
    (:func:`speedup_table`), each as ``.csv`` and ``.tex``, in ``out_dir``. ``efficiency``: the config
    section; ``runs``: as :func:`curves_from_files`; ``base_scores``: the base's tidy score files."""
    from . import tables as T

    prompts = pd.read_parquet(prompts_path)
    evaluators = list(efficiency["evaluators"])
    curves, unit = curves_from_files(runs, prompts, int(efficiency["n_prompts"]), evaluators, n_gpus)
    indices = prompt_subset(prompts, int(efficiency["n_prompts"]))["index"].astype(int).tolist()
    base = curve({0: _read(base_scores)}, {0: 0.0}, "base", evaluators, indices, {0: "base"})
    lv = efficiency["level"]
    b = _read(base_scores)
    b = b[b["evaluator"] == lv["evaluator"]].set_index("index").loc[indices, "score"]
    level = level_value(b, float(lv["offset"]), lv["unit"])
    table = speedup_table(curves, model, lv["evaluator"], level, unit, load_paper_speedups(), name_map)
    table.insert(3, "base_mean", float(b.mean()))
    table.insert(4, "offset", f"{lv['offset']} {lv['unit']}")
    curves = pd.concat([base, curves], ignore_index=True)
    curves.insert(4, "hours_unit", unit)
    out = Path(out_dir)
    written = {}
    for name, df, cap in [
        ("fig4_curves", curves, f"Mean score on {len(indices)} prompts against training updates and {unit} "
                                "(init: the model each run starts from; final: the trained model)."),
        ("fig4_efficiency", table, f"Training {unit} to reach the base mean + {lv['offset']} ({lv['unit']}) on "
                                   f"{lv['evaluator']}, and the speed-up of {model} over each run, ours and the paper's."),
    ]:
        written[f"{name}.csv"] = T.write_csv(df, out / f"{name}.csv")
        T.to_latex(df, out / f"{name}.tex", caption=cap, label=f"tab:{name}", float_format="%.4g")
        written[f"{name}.tex"] = out / f"{name}.tex"
    return written
