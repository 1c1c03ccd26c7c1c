from _log import to_log

to_log(snakemake)  # noqa: F821
from inpo.experiment import ablation_runs_table, read_ablations  # noqa: E402

smk = snakemake  # noqa: F821
sheet = read_ablations(smk.input.sheet, smk.config["runs"])
ablation_runs_table(sheet, smk.config).to_csv(smk.output[0], index=False)
