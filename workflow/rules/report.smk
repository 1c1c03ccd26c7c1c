# Tables (CSV + LaTeX) and papermill notebooks rendered to HTML. Notebooks only display.


def paper_rows():
    if ABLATIONS is None:
        return {}
    rows = {}
    for _, r in ABLATIONS.iterrows():
        if str(r["paper_row"]).strip():
            rows.setdefault(r["run"], int(r["paper_row"]))
    return rows


REPORT = config["report"]
TABLE_PARAMS = dict(
    model=REPORT["model"],
    baselines=REPORT["baselines"],
    evaluators=EVALUATORS,
    prompt_sets=PROMPT_SETS,
    name_map=REPORT.get("name_map", {}),
    table1_prompt_sets=REPORT.get("prompt_set_map", {}),
    supp_prompt_sets=REPORT.get("supp_prompt_set_map", REPORT.get("prompt_set_map", {})),
    evaluator_map=REPORT.get("evaluator_map", {}),
    paper_rows=paper_rows(),
    effect_evaluators=REPORT.get("effect_evaluators", EVALUATORS[:1]),
    benchmark_root=".",
)


rule ablation_runs:
    """The ablation sheet with each run's training benchmark file (input of Table 2)."""
    input:
        sheet=config["ablations"] or [],
        benchmarks=expand("results/benchmarks/train/{run}.tsv", run=ABLATION_RUNS),
    output:
        "results/tables/ablation_runs.csv",
    log:
        "results/logs/ablation_runs.log",
    script:
        "../scripts/ablation_runs.py"


rule tables:
    input:
        scores="results/scores/all.parquet",
        runs="results/tables/ablation_runs.csv",
    output:
        expand("results/tables/{table}.{ext}", table=TABLES, ext=["csv", "tex"]),
    params:
        **TABLE_PARAMS,
    log:
        "results/logs/tables.log",
    script:
        "../scripts/tables.py"


def notebook_parameters(name):
    scores = ["results/scores/all.parquet"]
    common = dict(evaluators=EVALUATORS, evaluator_map=TABLE_PARAMS["evaluator_map"])
    if name == "table1_winrates":
        return dict(scores_paths=scores, model=REPORT["model"], baselines=REPORT["baselines"],
                    prompt_sets=PROMPT_SETS, name_map=TABLE_PARAMS["name_map"],
                    prompt_set_map=TABLE_PARAMS["table1_prompt_sets"], **common)
    if name == "table2_ablations":
        return dict(scores_paths=scores, runs_csv="results/tables/ablation_runs.csv", benchmark_root=".",
                    paper_rows=TABLE_PARAMS["paper_rows"], **common)
    if name == "supp_median_mean":
        return dict(scores_paths=scores, models=EVAL_MODELS, prompt_sets=PROMPT_SETS,
                    name_map=TABLE_PARAMS["name_map"], prompt_set_map=TABLE_PARAMS["supp_prompt_sets"], **common)
    if name == "training_curves":
        return dict(log_paths={r: f"results/logs/train/{r}.csv" for r in RUNS})
    if name == "image_grids":
        return dict(images_dir="results/images", models=EVAL_MODELS, prompt_set=PROMPT_SETS[0],
                    indices=REPORT.get("grid_indices", list(range(8))), scores_paths=scores)
    raise ValueError(name)


def notebook_inputs(wildcards):
    out = {"template": f"notebooks/{wildcards.notebook}.ipynb", "scores": "results/scores/all.parquet"}
    if wildcards.notebook == "training_curves":
        out["logs"] = [f"results/logs/train/{r}.csv" for r in RUNS]
    if wildcards.notebook == "table2_ablations":
        out["runs"] = "results/tables/ablation_runs.csv"
    return out


rule notebook:
    input:
        unpack(notebook_inputs),
    output:
        ipynb="results/notebooks/{notebook}.ipynb",
        html="results/notebooks/{notebook}.html",
    wildcard_constraints:
        notebook="|".join(NOTEBOOKS),
    params:
        parameters=lambda w: notebook_parameters(w.notebook),
    log:
        "results/logs/notebooks/{notebook}.log",
    script:
        "../scripts/render_notebook.py"
