# Config and input functions of conditional.smk (paper 5.5); no rules. Needs common.smk's
# results(), model_marker() and EVAL_MODELS.

import re

from inpo import report as R  # the one list of notebooks (conditional_grids is rendered by conditional.smk)
from inpo.conditional import TASKS as COND_TASKS
from inpo.conditional import ConditionalConfig



def _in_results(value):
    """A `{results}/...` config value as a path in this experiment's results folder (others unchanged)."""
    if isinstance(value, dict):
        return {k: _in_results(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{results}/"):
        return results(value[len("{results}/"):])
    return value


COND = ConditionalConfig.from_dict(_in_results(dict(config["conditional"]))) if config.get("conditional") else None
COND_ROOT = results("conditional")
COND_BUILT = {  # stand-ins the workflow builds when the config names these paths
    "sources": f"{COND_ROOT}/sources",
    "depth_model": f"{COND_ROOT}/depth_model",
    "controlnet": f"{COND_ROOT}/controlnets/{{task}}",
}


def conditional_targets():
    """The grids notebook (nothing without a `conditional:` block)."""
    return [] if COND is None else [results("notebooks/conditional_grids.html")]


if COND is not None:
    for _m in COND.models:
        if _m not in set(EVAL_MODELS) | {"base"}:
            raise ValueError(f"conditional.models: {_m!r} is not an evaluated model {sorted(set(EVAL_MODELS) | {'base'})}")


def _cond_built(path):
    """``path`` when the workflow builds it (a directory() output in the results folder), else [] (hub
    id or user folder)."""
    return str(path) if str(path).startswith(f"{COND_ROOT}/") else []


def conditional_condition_inputs(wildcards):
    out = {"sources": _cond_built(COND.sources), "base": model_marker("base")}
    if wildcards.task == "depth":
        out["depth_model"] = _cond_built(COND.depth_model)
    return out


def conditional_generate_inputs(wildcards):
    out = {
        "sources": _cond_built(COND.sources),
        "conditions": f"{COND_ROOT}/conditions/{wildcards.task}",
        "base": model_marker("base"),
        "model": model_marker(wildcards.model),
    }
    if COND_TASKS[wildcards.task].pipeline == "controlnet":
        out["controlnet"] = _cond_built(COND.controlnets[wildcards.task])
    return out

