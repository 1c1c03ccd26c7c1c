# One rule trains every method and every ablation run: the run's full TrainConfig is written by
# `run_config` (whose params change only when that run's settings change), then the shared trainer
# runs in every worker. Checkpoints live in <results>/state/<run>/ (not declared), so a killed or
# preempted job resumes from its last checkpoint when Snakemake resubmits it. The policy snapshots of the
# efficiency figure (runs of `efficiency`) are written there too, then hard-linked (copied across file
# systems) into the declared snapshots/<run>/ (empty for the other runs).


rule run_config:
    localrule: True
    output:
        results("configs/{run}.yaml"),
    params:
        cfg=lambda w: TRAIN_CONFIGS[w.run],
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/configs/{run}.log"),
    script:
        "../scripts/write_config.py"


rule train:
    input:
        unpack(run_inputs),
    output:
        model=results("models/{run}/model_index.json"),
        log_csv=results("logs/train/{run}.csv"),
        snapshots=directory(results("snapshots/{run}")),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/train/{run}.log"),
    benchmark:
        results("benchmarks/train/{run}.tsv")
    params:
        cmd=trainer_shell,
        state_log=lambda w: TRAIN_CONFIGS[w.run]["log_csv"],
        snapshots=lambda w: [snapshot_path(w.run, k) for k in EFF_UPDATES.get(w.run, [])],
    threads: lambda w: head_threads(w.run)
    resources:
        **head_resources("train", run_of=lambda w: w.run),
    shell:
        "({params.cmd} && cp {params.state_log} {output.log_csv} && mkdir -p {output.snapshots}"
        " && for d in {params.snapshots}; do if [ ! -d $d ]; then echo \"no snapshot $d: the run resumed from a"
        " checkpoint of other settings; remove its state folder to retrain\"; exit 1; fi;"
        " cp -rl $d {output.snapshots}/ 2>/dev/null || cp -r $d {output.snapshots}/; done) > {log} 2>&1"
