from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.experiment import write_yaml  # noqa: E402

write_yaml(dict(snakemake.params.cfg), snakemake.output[0])  # noqa: F821
