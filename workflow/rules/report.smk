# Tables (CSV + LaTeX) and papermill notebooks rendered to HTML. Notebooks only display.
# Every table of inpo.report.TABLES comes from rule `tables`; every notebook of NOTEBOOKS (common.smk,
# from inpo.report.NOTEBOOKS) from rule `notebook`, its inputs and parameters from its needs.


if ABLATIONS is not None:  # no sheet (the paper's SDXL family): Table 2 is written empty, no notebook

    rule ablation_runs:
        """The ablation sheet with each run's training benchmark file (input of Table 2)."""
        localrule: True
        input:
            sheet=config["ablations"],
            benchmarks=expand(results("benchmarks/train/{run}.tsv"), run=[r for r in ABLATION_RUNS if r in RUNS]),
        output:
            results("tables/ablation_runs.csv"),
        conda:
            "../../envs/inpo.yaml"
        log:
            results("logs/ablation_runs.log"),
        script:
            "../scripts/ablation_runs.py"


rule tables:
    localrule: True
    input:
        scores=results("scores/all.parquet"),
        runs=results("tables/ablation_runs.csv") if ABLATIONS is not None else [],
    output:
        expand(results("tables/{table}.{ext}"), table=TABLES, ext=["csv", "tex"]),
    params:
        **TABLE_PARAMS,
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/tables.log"),
    script:
        "../scripts/tables.py"


rule notebook:
    localrule: True
    input:
        unpack(notebook_inputs),
    output:
        ipynb=results("notebooks/{notebook}.ipynb"),
        html=results("notebooks/{notebook}.html"),
    wildcard_constraints:
        notebook="|".join(NOTEBOOKS),
    params:
        parameters=lambda w: notebook_parameters(w.notebook),
    conda:
        "../../envs/inpo.yaml"
    log:
        results("logs/notebooks/{notebook}.log"),
    script:
        "../scripts/render_notebook.py"
