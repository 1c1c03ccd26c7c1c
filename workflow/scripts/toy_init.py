from _log import to_log

to_log(snakemake)  # noqa: F821
from pathlib import Path  # noqa: E402

from inpo.experiment import toy_init  # noqa: E402

cfg = snakemake.config  # noqa: F821
toy_init(Path(snakemake.output[0]).parent, toy=cfg.get("toy", {}), seed=cfg.get("seed", 0))  # noqa: F821
