# A jupytext percent-format notebook (notebooks/<name>.py) -> .ipynb template -> papermill + HTML
# (inpo.report.render_notebook). Used by the efficiency notebook until the report renders every
# notebook from its .py source.
from _log import to_log

to_log(snakemake)  # noqa: F821
from pathlib import Path  # noqa: E402

import jupytext  # noqa: E402

from inpo.report import render_notebook  # noqa: E402

smk = snakemake  # noqa: F821
source = Path(smk.input.template)
template = Path(smk.output.ipynb).with_suffix(".template.ipynb")
jupytext.write(jupytext.read(source), template)
try:  # the kernel runs in notebooks/, as for the other notebooks
    render_notebook(template, smk.output.ipynb, smk.output.html, dict(smk.params.parameters),
                    cwd=source.parent, exclude_input=True)
finally:
    template.unlink()
