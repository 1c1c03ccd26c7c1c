from _log import to_log

to_log(snakemake)  # noqa: F821
import pandas as pd  # noqa: E402

from inpo.pipeline import ablation_runs_table, read_ablations  # noqa: E402
from inpo.tables import RUN_COLUMNS  # noqa: E402

smk = snakemake  # noqa: F821
if smk.input.sheet:
    sheet = read_ablations(smk.input.sheet, smk.config["runs"])
    ablation_runs_table(sheet, smk.config).to_csv(smk.output[0], index=False)
else:  # `ablations: null` (SDXL): no ablation runs, an empty Table 2
    pd.DataFrame(columns=[*RUN_COLUMNS, "paper_row"]).to_csv(smk.output[0], index=False)
