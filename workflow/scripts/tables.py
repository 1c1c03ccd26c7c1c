from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.report import snakemake_tables  # noqa: E402

snakemake_tables(snakemake)  # noqa: F821
