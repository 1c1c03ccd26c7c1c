# Validation and input functions only (no rules).
import re
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

from inpo import experiment as P
from inpo import report as R

P.check_config_keys(config)  # a renamed key names its new name (the schema would only reject it)
validate(config, schema="../schemas/config.schema.yaml")


def results(path=""):
    """``path`` inside this experiment's results folder (config key ``results``)."""
    return P.results_path(config, path)


ABLATIONS = P.read_ablations(config["ablations"], config["runs"]) if config.get("ablations") else None
RUNS = P.all_runs(config, ABLATIONS)
P.init_chain_ok(RUNS)
# every run's TrainConfig is built (and checked) now, so a bad key fails before any job starts
TRAIN_CONFIGS = {run: P.run_train_config(config, run, RUNS) for run in RUNS}
TOY = config["world"] == "toy"
PROMPT_SETS = list(config["evaluation"]["prompt_sets"])
EVALUATORS = list(config["evaluation"]["evaluators"])


def evaluator_options(name):
    return dict(config["evaluation"].get("evaluator_options", {}).get(name) or {})

MAIN_MODELS = list(config["evaluation"]["models"])
SWEEPS = [] if ABLATIONS is None else list(dict.fromkeys(ABLATIONS["sweep"]))
ABLATION_RUNS = [] if ABLATIONS is None else list(dict.fromkeys(ABLATIONS["run"]))
EVAL_MODELS = list(dict.fromkeys(MAIN_MODELS + ABLATION_RUNS))
N_SHARDS = int(config["evaluation"]["generation"]["shards"])
for _m in EVAL_MODELS:
    if _m != "base" and _m not in RUNS:
        raise ValueError(f"evaluation.models: {_m!r} is neither 'base' nor a run {sorted(RUNS)}")

def res(group):
    """Portable resources of a group of rules (config defaults updated by the group entries).
    `gpu: 0` requests none (a GPU request on a GPU-less node fails at once)."""
    r = {**config["resources"]["default"], **config["resources"].get(group, {})}
    r.pop("processes", None)
    r.pop("threads", None)  # a rule's `threads:`, not a resource (head_threads)
    if not r.get("gpu"):
        r.pop("gpu", None)
        r.pop("gpu_model", None)
        r.pop("cpus_per_gpu", None)
    return r


def head_threads(run=None):
    """Threads of a job on the toy DAG's serial head: toy_init, the pretraining of a run that starts
    from toy_init (the base), toy_pairs. Nothing else can run beside them, so they take
    `resources.head.threads` cores (Snakemake lowers it to --cores); every other job (and every
    other run) takes 1."""
    if run is not None and RUNS[run]["init"] != "toy_init":
        return 1
    return int(config["resources"].get("head", {}).get("threads", 1))


def head_resources(group, run_of=None):
    """`res(group)`, with cpus_per_task raised to the job's head_threads (SLURM allocates them)."""
    r = res(group)
    if head_threads() == 1:  # no head threads configured (the paper configs): res(group) as it is
        return r
    cpus = int(r.get("cpus_per_task", 1))
    r["cpus_per_task"] = lambda w: max(cpus, head_threads(run_of(w) if run_of else None))
    return r


def model_marker(model):
    """The file that proves a pipeline-made model exists ([] for a hub id / user folder)."""
    if P.is_local_product(config, model, RUNS):
        return results(f"models/{model}/model_index.json")
    return []


def model_path(model):
    return P.model_source(config, model, RUNS)


def model_vae(model):
    return P.model_vae(config, model, RUNS)


def run_inputs(wildcards):
    cfg = TRAIN_CONFIGS[wildcards.run]
    out = {"config": results(f"configs/{wildcards.run}.yaml"), "init": model_marker(RUNS[wildcards.run]["init"])}
    if cfg["data"].get("examples", "pairs") in ("pairs", "images"):  # images: per-image index (rule per_image)
        out["pairs"] = cfg["data"]["index"]
        out["images"] = results("data/pairs_images")  # the pack the index points into (filter_pairs)
    if cfg["data"].get("latents"):  # data.precompute_latents: the index's latents store (rule latents)
        out["latents"] = cfg["data"]["latents"]
    return out


def trainer_shell(wildcards, input):
    from inpo.launch import trainer_command

    r = config["resources"]["train"]
    return trainer_command(
        input.config, num_processes=int(r.get("processes", 1)), gpus=int(r.get("gpu", 0) or 0),
        mixed_precision=TRAIN_CONFIGS[wildcards.run].get("mixed_precision", "no"),
    )


def shard_flags(model, prompt_set):
    return [results(f"images/{model}/{prompt_set}/shard-{i}-of-{N_SHARDS}.done") for i in range(N_SHARDS)]


def scores_of(models):
    return [results(f"scores/{m}/{s}/{e}.parquet") for m in models for s in PROMPT_SETS for e in EVALUATORS]


def sweep_runs(sweep):
    return list(dict.fromkeys(ABLATIONS.loc[ABLATIONS["sweep"] == sweep, "run"]))


# --------------------------------------------------------------------------- efficiency (Figure 4)

from inpo import efficiency as E  # noqa: E402

EFFICIENCY = config["efficiency"]
E.check_config(config, RUNS, EVAL_MODELS)
EFF_RUNS = list(EFFICIENCY["runs"])
EFF_UPDATES = {r: E.snapshot_updates(TRAIN_CONFIGS[r]["max_updates"], E.snapshot_every(config, r)) for r in EFF_RUNS}
EFF_TABLES = ["fig4_curves", "fig4_efficiency"]


def efficiency_snapshot_scores(run):
    return {k: results(f"efficiency/scores/{run}/update-{k}.parquet") for k in EFF_UPDATES[run]}


def efficiency_main_scores(model):
    ps = EFFICIENCY["prompt_set"]
    return [results(f"scores/{model}/{ps}/{e}.parquet") for e in EFFICIENCY["evaluators"]]


def efficiency_inputs(wildcards):
    out = {"prompts": results(f"data/prompts/{EFFICIENCY['prompt_set']}.parquet"),
           "base": efficiency_main_scores("base")}
    for r in EFF_RUNS:
        out[f"{r}_init"] = efficiency_main_scores(RUNS[r]["init"])
        out[f"{r}_final"] = efficiency_main_scores(r)
        out[f"{r}_log"] = results(f"logs/train/{r}.csv")
        out[f"{r}_benchmark"] = results(f"benchmarks/train/{r}.tsv")
        out[f"{r}_snapshots"] = list(efficiency_snapshot_scores(r).values())
    return out


def efficiency_runs_param():
    """The per-run files of inpo.efficiency.curves_from_files (the same paths as efficiency_inputs)."""
    return {r: {"init_scores": efficiency_main_scores(RUNS[r]["init"]), "final_scores": efficiency_main_scores(r),
                "snapshot_scores": efficiency_snapshot_scores(r), "log": results(f"logs/train/{r}.csv"),
                "benchmark": results(f"benchmarks/train/{r}.tsv"), "max_updates": TRAIN_CONFIGS[r]["max_updates"]}
            for r in EFF_RUNS}


def snapshot_path(run, update):
    """Where the trainer writes the snapshot of ``run`` at ``update``."""
    return str(E.snapshot_path(TRAIN_CONFIGS[run]["state_dir"], update))


def efficiency_targets():
    """Figure 4's tables (its notebook is one of inpo.report.NOTEBOOKS: report_targets)."""
    return [results(f"tables/{t}.{ext}") for t in EFF_TABLES for ext in ("csv", "tex")]


# --------------------------------------------------------------------------- report
# The one list of tables is inpo.report.TABLES, the one list of notebooks inpo.report.NOTEBOOKS.

REPORT = config["report"]
TABLES = list(R.TABLES)
# the keywords of inpo.report.ReportOptions, assembled here once (rule `tables` is their only user)
TABLE_PARAMS = dict(
    model=REPORT["model"],
    baselines=REPORT["baselines"],
    evaluators=EVALUATORS,
    prompt_sets=PROMPT_SETS,
    name_map=REPORT.get("name_map", {}),
    table1_prompt_sets=REPORT.get("prompt_set_map", {}),
    supp_prompt_sets=REPORT.get("supp_prompt_set_map", REPORT.get("prompt_set_map", {})),
    evaluator_map=REPORT.get("evaluator_map"),  # None: the paper's evaluator names (a {} would drop every paper column)
    paper_rows={},  # each ablation row names its paper row in the sheet (ablation_runs.csv carries it)
    effect_evaluators=REPORT.get("effect_evaluators", EVALUATORS[:1]),
    benchmark_root=".",
)
R.ReportOptions(**TABLE_PARAMS)  # a bad key fails now
_LOGS = {r: results(f"logs/train/{r}.csv") for r in RUNS}
_SCORES = results("scores/all.parquet")
# the toy's base quality (rule toy_base_quality, toy.smk), shown by Table 1's notebook
_TOY_BASE_QUALITY = [results("tables/toy_base_quality.csv")] if TOY and "base" in RUNS else []
# what each need of a notebook (inpo.report.NEEDS) is in this config: input files and papermill
# parameters; None where the config has none. `conditional`: the grids' own rule (conditional.smk).
NOTEBOOK_NEEDS = {
    "tables": dict(inputs=[results(f"tables/{t}.csv") for t in TABLES] + _TOY_BASE_QUALITY,
                   parameters=dict(tables_dir=results("tables"))),
    "ablations": None if ABLATIONS is None else dict(inputs=[], parameters={}),  # Table 2: only with a sheet
    "train_logs": dict(inputs=list(_LOGS.values()), parameters=dict(log_paths=_LOGS)),
    "images": dict(inputs=[_SCORES], parameters=dict(
        images_dir=results("images"), models=EVAL_MODELS, prompt_set=PROMPT_SETS[0],
        indices=REPORT.get("grid_indices", list(range(8))), scores_paths=[_SCORES])),
    "efficiency": dict(inputs=[results(f"tables/{t}.csv") for t in EFF_TABLES], parameters=dict(
        tables_dir=results("tables"), model=REPORT["model"], name_map=REPORT.get("name_map", {}))),
}
NOTEBOOKS = R.notebooks_for(NOTEBOOK_NEEDS)


def report_targets():
    out = [results(f"tables/{t}.{ext}") for t in TABLES for ext in ("csv", "tex")]
    out += [results(f"notebooks/{n}.html") for n in NOTEBOOKS]
    out += [results(f"data/pairs_{fb}.parquet") for fb in config["data"].get("ai_feedback", [])]
    return out


def notebook_parameters(name):
    return {k: v for need in R.NOTEBOOKS[name].needs for k, v in NOTEBOOK_NEEDS[need]["parameters"].items()}


def notebook_inputs(wildcards):
    nb = R.NOTEBOOKS[wildcards.notebook]
    return {"template": str(nb.source), **{need: NOTEBOOK_NEEDS[need]["inputs"] for need in nb.needs}}
