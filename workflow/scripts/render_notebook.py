from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.report import snakemake_notebook  # noqa: E402

snakemake_notebook(snakemake)  # noqa: F821
