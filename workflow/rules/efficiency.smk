# Training efficiency, the paper's Figure 4 (inpo.efficiency): each run of `efficiency.runs` keeps its
# UNet every `every` updates (declared output snapshots/<run> of rule train); each snapshot is generated
# on the efficiency prompts (an evenly spaced subset of one prompt set, the main evaluation's settings
# and seeds) and scored. The curves add the run's initial and trained models (their main scores on the
# same prompts); hours come from the train rule's benchmark file.


rule snapshot_eval:
    """One snapshot: the run's pipeline with the snapshot's UNet, generated and scored on the subset."""
    input:
        snapshots=results("snapshots/{run}"),
        model=results("models/{run}/model_index.json"),
        prompts=results(f"data/prompts/{EFFICIENCY['prompt_set']}.parquet"),
    output:
        images=directory(results("efficiency/images/{run}/update-{snapshot}")),
        scores=results("efficiency/scores/{run}/update-{snapshot}.parquet"),
    wildcard_constraints:
        run="|".join(map(re.escape, EFF_RUNS)),
        snapshot=r"\d+",
    params:
        gen=config["evaluation"]["generation"],
        family=config["family"],
        n_prompts=EFFICIENCY["n_prompts"],
        prompt_set=EFFICIENCY["prompt_set"],
        evaluators={e: evaluator_options(e) for e in EFFICIENCY["evaluators"]},
        batch_size=config["evaluation"].get("score_batch_size", 16),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/efficiency/{run}/update-{snapshot}.log"),
    benchmark:
        results("benchmarks/efficiency/{run}/update-{snapshot}.tsv")
    resources:
        **res("generate"),
    script:
        "../scripts/snapshot_eval.py"


rule efficiency_tables:
    """The curves (score against updates and training hours) and the speed-ups to the level base + X."""
    localrule: True
    input:
        unpack(efficiency_inputs),
    output:
        expand(results("tables/{table}.{ext}"), table=EFF_TABLES, ext=["csv", "tex"]),
    params:
        runs=efficiency_runs_param(),
        efficiency=EFFICIENCY,
        model=REPORT["model"],
        n_gpus=int(config["resources"]["train"].get("gpu", 0) or 0),
        name_map=REPORT.get("name_map", {}),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/efficiency_tables.log"),
    script:
        "../scripts/efficiency_tables.py"
