from _log import to_log

to_log(snakemake)  # noqa: F821
from pathlib import Path  # noqa: E402

from inpo.experiment import load_prompts  # noqa: E402

smk = snakemake  # noqa: F821
df = load_prompts(smk.config, smk.wildcards.prompt_set)
Path(smk.output[0]).parent.mkdir(parents=True, exist_ok=True)
df.to_parquet(smk.output[0], index=False)
print(f"{len(df)} prompts")
