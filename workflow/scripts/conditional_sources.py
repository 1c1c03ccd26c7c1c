from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.conditional import write_toy_sources  # noqa: E402

smk = snakemake  # noqa: F821
p = smk.params
print(write_toy_sources(smk.output[0], n=p.toy_sources["n"], image_size=p.toy_sources["image_size"],
                        scene=p.scene, seed=p.seed))
