from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.conditional import ConditionalConfig, compute_conditions, native_resolution, read_sources  # noqa: E402

smk = snakemake  # noqa: F821
cfg = ConditionalConfig.from_dict(smk.params.cfg)
size = cfg.resolution or native_resolution(smk.params.base, smk.params.vae)
paths = compute_conditions(smk.wildcards.task, read_sources(cfg.sources), cfg, size, smk.output[0])
print(f"{len(paths)} {smk.wildcards.task} conditions at {size} px")
