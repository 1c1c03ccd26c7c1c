# Preference pairs and evaluation prompts.
import sys


rule filter_pairs:
    """Filter the Pick-a-Pic shards in parallel: drop ties, invalid labels and undecodable pairs; copy the kept
    pairs' images into a random-access pack (one pair per row group); manifest of counts."""
    input:
        toy_shards=results("data/pickapic/manifest.json") if TOY else [],
    output:
        index=results("data/pairs.parquet"),
        manifest=results("data/pairs_manifest.json"),
        images=directory(results("data/pairs_images")),
    threads: 8  # shards filtered at once, one process each; Snakemake lowers it to the cores it has
    params:
        source=lambda w, input: str(Path(input.toy_shards).parent) if TOY else config["data"]["pickapic"],
        split=config["data"].get("split", "train"),
        check_images="--check-images" if config["data"].get("check_images", False) else "",
        pack_resolution=(f"--pack-resolution {config['data']['pack_resolution']}"
                         if config["data"].get("pack_resolution") else ""),
        python=sys.executable,
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/filter_pairs.log"),
    shell:
        # the `inpo filter` command (inpo.cli): its worker processes start from an importable module
        "{params.python:q} -m inpo.cli filter {params.source:q} {output.index:q} {output.manifest:q} --split {params.split:q} "
        "{params.check_images} {params.pack_resolution} --images-dir {output.images:q} --num-proc {threads} > {log:q} 2>&1"


rule per_image:
    """Diffusion-KTO's per-image data set: the images of the pairs grouped by uid (won only, lost only,
    both), labelled by `data.per_image_policy`; manifest of the group counts (inpo.data.per_image)."""
    input:
        index=results("data/pairs.parquet"),
        manifest=results("data/pairs_manifest.json"),  # the source shards (uids, ties) of the filter
    output:
        index=results("data/per_image/pairs.parquet"),
        manifest=results("data/per_image/pairs.json"),
    params:
        policy=config["data"].get("per_image_policy", "gt_label_wi_l"),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/per_image.log"),
    script:
        "../scripts/per_image.py"


rule latents:
    """Optional (data.precompute_latents): the VAE posterior of every image of an index (pairs, a relabelled
    pair set or the per-image set), both flips, encoded once with the family's VAE (inpo.data.latents); the
    runs on that index read it (training.data.latents) instead of encoding their images at every step."""
    input:
        index=results("data/{index}.parquet"),
        images=results("data/pairs_images"),  # the pack the index points into
        base=model_marker("base"),  # toy: the base pipeline (its VAE) is made by the workflow
    output:
        directory(results("data/latents/{index}")),
    params:
        pretrained=lambda w: model_path("base"),  # a function: --lint flags a hard-coded path
        vae=config["model"].get("vae"),
        resolution=config["training"]["data"]["resolution"],
        dtype=config["data"].get("latents_dtype", "float16"),
        batch_size=config["data"].get("latents_batch_size", 8),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/latents/{index}.log"),
    benchmark:
        results("benchmarks/latents/{index}.tsv")
    resources:
        **res("generate"),
    script:
        "../scripts/latents.py"


rule ai_feedback:
    """Relabel the pairs with an evaluator (paper 5.3)."""
    input:
        index=results("data/pairs.parquet"),
        images=results("data/pairs_images"),
    output:
        index=results("data/pairs_{feedback}.parquet"),
        manifest=results("data/pairs_{feedback}.json"),
    params:
        options=lambda w: evaluator_options(w.feedback),
        batch_size=config["evaluation"].get("score_batch_size", 16),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/ai_feedback_{feedback}.log"),
    benchmark:
        results("benchmarks/ai_feedback_{feedback}.tsv")
    resources:
        **res("score"),
    script:
        "../scripts/ai_feedback.py"


rule prompts:
    """An evaluation prompt set as a table (index, prompt, ...)."""
    localrule: True
    output:
        results("data/prompts/{prompt_set}.parquet"),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/prompts_{prompt_set}.log"),
    params:
        spec=lambda w: P.prompt_set_params(config, w.prompt_set),
    script:
        "../scripts/prompts.py"
