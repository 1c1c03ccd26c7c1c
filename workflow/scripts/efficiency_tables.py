from _log import to_log

to_log(snakemake)  # noqa: F821
from pathlib import Path  # noqa: E402

from inpo.efficiency import write_tables  # noqa: E402

smk = snakemake  # noqa: F821
written = write_tables(dict(smk.params.runs), smk.input.prompts, list(smk.input.base), dict(smk.params.efficiency),
                       smk.params.model, smk.params.n_gpus, dict(smk.params.name_map), Path(smk.output[0]).parent)
print(sorted(written))
