from _log import to_log

to_log(snakemake)  # noqa: F821
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from inpo.evaluators import build  # noqa: E402
from inpo.experiment import score_images  # noqa: E402

smk = snakemake  # noqa: F821
w = smk.wildcards
evaluator = build(w.evaluator, **dict(smk.params.options))
prompts = pd.read_parquet(smk.input.prompts)
df = score_images(evaluator, w.model, w.prompt_set, prompts, Path(smk.input.shards[0]).parent,
                  batch_size=smk.params.batch_size)
df.to_parquet(smk.output[0], index=False)
print(df["score"].describe())
