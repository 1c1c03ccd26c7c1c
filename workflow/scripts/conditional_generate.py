from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.conditional import ConditionalConfig, run_generation  # noqa: E402

smk = snakemake  # noqa: F821
p = smk.params
cfg = ConditionalConfig.from_dict(p.cfg)
paths = run_generation(smk.wildcards.task, p.family, p.base, p.unet, cfg.sources, smk.input.conditions,
                       smk.output[0], cfg, vae=p.vae)
print(f"{len(paths)} images of {smk.wildcards.model} / {smk.wildcards.task}")
