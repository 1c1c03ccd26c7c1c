# DDIM-InPO reproduction pipeline: a table of contents.
#   snakemake --cores 2 all                # the embedded toy world (config/config.yaml, the default)
#   snakemake --profile slurm all          # the paper on SLURM: SD1.5 and SDXL, every table and notebook
#                                          # (the profile selects config/paper.yaml)
#   snakemake --profile slurm sdxl_all     # one family of the paper (sd15_all, sdxl_all)
#   snakemake --profile slurm sweep_beta   # a named target of the paper's SD1.5 family
# Targets: `snakemake --list-target-rules` (add --profile slurm for the paper's).
#
# One experiment = workflow/Snakefile with one validated config. A config with `experiments`
# (config/paper.yaml) instantiates it once per model family as a Snakemake module: the family's
# rules are named <family>_<rule> and write to the family's `results` folder
# (results/paper/sd15, results/paper/sdxl). See config/README.md.

from snakemake.utils import min_version, validate

min_version("9.0")


# the toy world unless a config is given (by --configfile, or a profile's `configfile:`)
if not {"world", "experiments"} & config.keys():

    configfile: "config/config.yaml"


if "experiments" in config:
    from inpo.experiment import experiment_configs

    validate(config, schema="workflow/schemas/experiments.schema.yaml")
    FAMILIES = experiment_configs(config)  # family -> merged config (validated in its module)

    for family, family_config in FAMILIES.items():
        _prefix = f"{family}_"

        module:
            name:
                family
            snakefile:
                "workflow/Snakefile"
            config:
                family_config

        use rule * from family as _prefix*

    rule all:
        """Every family's tables and rendered notebooks."""
        localrule: True
        default_target: True
        input:
            [getattr(rules, f"{family}_all").input for family in FAMILIES],

    # the named targets of one family (main_comparison, sweep_*) without the <family>_ prefix
    _named = config.get("named_targets")
    if _named is not None and _named not in FAMILIES:
        raise ValueError(f"named_targets: {_named!r} is not a family of experiments {sorted(FAMILIES)}")
    for _rule in [r for r in workflow.rules if _named and r.name.startswith(f"{_named}_") and not r.output]:
        if _rule.name != f"{_named}_all":

            rule:
                name:
                    _rule.name.removeprefix(f"{_named}_")
                localrule: True
                default_target: False
                input:
                    _rule.input,

else:

    include: "workflow/Snakefile"
