from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.data.toy import ToyWorld, base_quality  # noqa: E402
from inpo.evaluators import build  # noqa: E402
from inpo.tables import read_scores, write_csv  # noqa: E402

smk = snakemake  # noqa: F821
p = smk.params
table = base_quality(read_scores(list(smk.input.scores)), build(p.evaluator, **p.options), ToyWorld.from_dict(p.scene),
                     n_train=p.n_train, seed=p.seed)
print(table.to_string(index=False))
write_csv(table, smk.output[0])
