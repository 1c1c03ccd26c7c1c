from _log import to_log

to_log(snakemake)  # noqa: F821
from pathlib import Path  # noqa: E402

from inpo.experiment import toy_init  # noqa: E402

p = snakemake.params.settings  # noqa: F821  (inpo.experiment.toy_settings(config, "init"))
toy_init(Path(snakemake.output[0]).parent, toy=p["toy"], seed=p["seed"])  # noqa: F821
