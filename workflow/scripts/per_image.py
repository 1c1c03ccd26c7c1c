from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.data.per_image import build_image_index  # noqa: E402

smk = snakemake  # noqa: F821
m = build_image_index(smk.input.index, smk.input.manifest, smk.output.index, smk.output.manifest,
                      policy=smk.params.policy)
print({k: m[k] for k in ("policy", "pairs", "groups", "tie_only", "images", "desirable", "undesirable")})
