from _log import to_log

to_log(snakemake)  # noqa: F821
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from inpo.efficiency import evaluate_snapshot, prompt_subset, snapshot_name  # noqa: E402

smk = snakemake  # noqa: F821
run, update = smk.wildcards.run, int(smk.wildcards.snapshot)
prompts = prompt_subset(pd.read_parquet(smk.input.prompts), smk.params.n_prompts)
df = evaluate_snapshot(str(Path(smk.input.model).parent), str(Path(smk.input.snapshots) / snapshot_name(update)),
                       prompts, smk.output.images, family=smk.params.family, generation=smk.params.gen,
                       evaluators=smk.params.evaluators, label=f"{run}@{update}", prompt_set=smk.params.prompt_set,
                       score_batch_size=smk.params.batch_size)
df.to_parquet(smk.output.scores, index=False)
print(df.groupby("evaluator")["score"].describe())
