# DDIM-InPO reproduction pipeline: a table of contents.
#   snakemake --cores 2 all                                  # the embedded toy world (default)
#   snakemake --profile slurm --configfile config/paper_sd15.yaml all   # paper runs on SLURM
# Sweeps: snakemake --cores 2 sweep_beta  (see `snakemake --list-target-rules`)

from snakemake.utils import min_version

min_version("9.0")


# the toy world unless a full config is given: --configfile config/paper_sd15.yaml
if "world" not in config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


localrules:
    all,
    main_comparison,
    run_config,
    prompts,
    aggregate_scores,
    ablation_runs,
    tables,
    notebook,


wildcard_constraints:
    run="|".join(map(re.escape, RUNS)) if RUNS else "NONE",
    model="|".join(map(re.escape, set(EVAL_MODELS) | {"base"})),
    prompt_set="|".join(map(re.escape, PROMPT_SETS)),
    evaluator="|".join(map(re.escape, EVALUATORS)),
    feedback="[A-Za-z0-9_]+",
    shard=r"\d+",


include: "workflow/rules/toy.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        report_targets(),


rule main_comparison:
    """Train and evaluate the main models (base, SFT, InPO, DPO, KTO) and write Table 1."""
    input:
        scores_of(MAIN_MODELS),
        "results/tables/table1_winrates.csv",


for _sweep in SWEEPS:

    rule:
        name:
            f"sweep_{_sweep}"
        input:
            scores_of(sweep_runs(_sweep)),
        default_target: False
