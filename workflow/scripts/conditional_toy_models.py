from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.conditional import tiny_depth_model, toy_controlnet  # noqa: E402

smk = snakemake  # noqa: F821
if smk.params.what == "controlnet":
    print(toy_controlnet(smk.params.base, smk.output[0], seed=smk.params.seed))
else:
    print(tiny_depth_model(smk.output[0], seed=smk.params.seed))
