# Generation (sharded over prompts, paired seeds across models) and scoring.


rule generate:
    input:
        model=lambda w: model_marker(w.model),
        prompts=results("data/prompts/{prompt_set}.parquet"),
    output:
        results("images/{model}/{prompt_set}/shard-{shard}-of-%d.done" % N_SHARDS),
    params:
        model=lambda w: model_path(w.model),
        vae=lambda w: model_vae(w.model),
        gen=config["evaluation"]["generation"],
        seed_base=P.generation_seed_base(config),  # moves with the experiment's seed
        family=config["family"],
        n_shards=N_SHARDS,
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/generate/{model}/{prompt_set}/{shard}.log"),
    benchmark:
        results("benchmarks/generate/{model}/{prompt_set}/{shard}.tsv")
    resources:
        **res("generate"),
    script:
        "../scripts/generate.py"


rule score:
    input:
        shards=lambda w: shard_flags(w.model, w.prompt_set),
        prompts=results("data/prompts/{prompt_set}.parquet"),
    output:
        results("scores/{model}/{prompt_set}/{evaluator}.parquet"),
    params:
        options=lambda w: evaluator_options(w.evaluator),
        batch_size=config["evaluation"].get("score_batch_size", 16),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/score/{model}/{prompt_set}/{evaluator}.log"),
    benchmark:
        results("benchmarks/score/{model}/{prompt_set}/{evaluator}.tsv")
    resources:
        **res("score"),
    script:
        "../scripts/score.py"


rule aggregate_scores:
    """All tidy scores in one file."""
    localrule: True
    input:
        scores_of(EVAL_MODELS),
    output:
        results("scores/all.parquet"),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/aggregate_scores.log"),
    script:
        "../scripts/aggregate_scores.py"
