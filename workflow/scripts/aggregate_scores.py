from _log import to_log

to_log(snakemake)  # noqa: F821
import pandas as pd  # noqa: E402

smk = snakemake  # noqa: F821
pd.concat([pd.read_parquet(p) for p in smk.input], ignore_index=True).to_parquet(smk.output[0], index=False)
