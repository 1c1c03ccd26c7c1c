from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.data.feedback import relabel_pairs  # noqa: E402
from inpo.evaluators import build  # noqa: E402

smk = snakemake  # noqa: F821
relabel_pairs(smk.input.index, smk.output.index, build(smk.wildcards.feedback, **dict(smk.params.options)),
              batch_size=smk.params.batch_size, out_manifest=smk.output.manifest)
