# The embedded toy world (world: toy): a random tiny SD with a pretrained VAE, then (rule train,
# run "base") its UNet pretrained on procedural images; preference shards in the Pick-a-Pic schema.


rule toy_init:
    """Random tiny SD-shaped pipeline (real classes) with its VAE pretrained on toy images."""
    output:
        results("models/toy_init/model_index.json"),
    params:
        settings=P.toy_settings(config, "init"),  # tracked: a change of toy.scene / model / vae or seed reruns it
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/toy_init.log"),
    benchmark:
        results("benchmarks/toy_init.tsv")
    threads: head_threads()
    resources:
        **head_resources("train"),
    script:
        "../scripts/toy_init.py"


rule toy_pairs:
    """The base model's own samples, two per prompt, labelled by the hidden reward (Pick-a-Pic v2 schema)."""
    input:
        base=model_marker("base"),
    output:
        manifest=results("data/pickapic/manifest.json"),
    params:
        base=lambda w, input: str(Path(input.base).parent),  # the base's diffusers folder
        settings=P.toy_settings(config, "pairs"),  # toy.pairs, its sampler defaulting to evaluation.generation's
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/toy_pairs.log"),
    benchmark:
        results("benchmarks/toy_pairs.tsv")
    threads: head_threads()
    resources:
        **head_resources("generate"),
    script:
        "../scripts/toy_pairs.py"


rule toy_base_quality:
    """How well the base draws its world: its evaluation samples' hidden reward against its training images'."""
    localrule: True
    input:
        scores=expand(results("scores/base/{prompt_set}/{evaluator}.parquet"), prompt_set=PROMPT_SETS,
                      evaluator=TABLE_PARAMS["effect_evaluators"][0]),
    output:
        results("tables/toy_base_quality.csv"),
    params:
        evaluator=TABLE_PARAMS["effect_evaluators"][0],  # the hidden reward (toy_reward)
        options=evaluator_options(TABLE_PARAMS["effect_evaluators"][0]),
        scene=config.get("toy", {}).get("scene", {}),
        n_train=TRAIN_CONFIGS["base"]["data"].get("toy_images", 0) if "base" in TRAIN_CONFIGS else 0,
        seed=TRAIN_CONFIGS["base"]["seed"] if "base" in TRAIN_CONFIGS else 0,
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/toy_base_quality.log"),
    script:
        "../scripts/toy_base_quality.py"
