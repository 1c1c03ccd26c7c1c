# Paper 5.5, conditional generation: each model's UNet, unchanged, inside the diffusers ControlNet
# (depth, canny) and inpainting pipelines, paired seeds, and a notebook of grids (inpo.conditional).
# Needs common.smk (config, res, model_marker, model_path, EVAL_MODELS). Without a `conditional:`
# block in the config no rule is defined and conditional_targets() is empty.
#
# Paths below are inside the experiment's results folder (config `results`); in the `conditional:`
# block, a value starting with `{results}/` names a path there (the stand-ins the workflow builds):
#   {results}/conditional/sources/                   toy-drawn sources (when conditional.sources names it)
#   {results}/conditional/controlnets/{task}/        untrained stand-in ControlNets (when named in config)
#   {results}/conditional/depth_model/               tiny random depth model (when named in config)
#   {results}/conditional/conditions/{task}/{i:05d}.png
#   {results}/conditional/images/{model}/{task}/{i:05d}.png
#   {results}/notebooks/conditional_grids.{ipynb,html}

import re

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
        return str(path) if str(path).startswith(COND_ROOT + "/") else []

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

    rule conditional_sources:
        """Source images drawn by the toy renderer (stand-in for photographs; conditional.toy_sources)."""
        output:
            directory(COND_BUILT["sources"]),
        params:
            toy_sources=COND.toy_sources,
            world=config.get("toy", {}).get("world", {}),
            seed=config.get("seed", 0),
        conda:
            "../../envs/inpo.yaml"
        log:
            results("logs/conditional/sources.log"),
        resources:
            **res("conditional"),
        script:
            "../scripts/conditional_sources.py"

    rule conditional_toy_controlnet:
        """An UNTRAINED ControlNet from the base UNet (zero convs re-drawn): plumbing, not the paper's effect."""
        input:
            base=model_marker("base"),
        output:
            directory(COND_BUILT["controlnet"]),
        wildcard_constraints:
            task="|".join(t for t, v in COND_TASKS.items() if v.pipeline == "controlnet"),
        params:
            what="controlnet",
            base=model_path("base"),
            seed=config.get("seed", 0),
        conda:
            "../../envs/inpo.yaml"
        log:
            results("logs/conditional/controlnet_{task}.log"),
        resources:
            **res("conditional"),
        script:
            "../scripts/conditional_toy_models.py"

    rule conditional_toy_depth_model:
        """A tiny random DPT depth model (stand-in where Intel/dpt-hybrid-midas is out of reach)."""
        output:
            directory(COND_BUILT["depth_model"]),
        params:
            what="depth",
            seed=config.get("seed", 0),
        conda:
            "../../envs/inpo.yaml"
        log:
            results("logs/conditional/depth_model.log"),
        resources:
            **res("conditional"),
        script:
            "../scripts/conditional_toy_models.py"

    rule conditional_conditions:
        """The condition of every source for one task: canny edges, depth map or inpainting mask."""
        input:
            unpack(conditional_condition_inputs),
        output:
            directory(f"{COND_ROOT}/conditions/{{task}}"),
        wildcard_constraints:
            task="|".join(COND.tasks),
        params:
            cfg=COND.to_dict(),
            base=model_path("base"),
            vae=config["model"].get("vae"),
        conda:
            "../../envs/inpo.yaml"
        log:
            results("logs/conditional/conditions/{task}.log"),
        benchmark:
            results("benchmarks/conditional/conditions/{task}.tsv")
        resources:
            **res("conditional"),
        script:
            "../scripts/conditional_conditions.py"

    rule conditional_generate:
        """One model's UNet in the task's pipeline (base components, paired seeds): one image per source."""
        input:
            unpack(conditional_generate_inputs),
        output:
            directory(f"{COND_ROOT}/images/{{model}}/{{task}}"),
        wildcard_constraints:
            task="|".join(COND.tasks),
            model="|".join(map(re.escape, COND.models)),
        params:
            cfg=COND.to_dict(),
            kind=config["kind"],
            base=model_path("base"),
            unet=lambda w: model_path(w.model),
            vae=config["model"].get("vae"),
        conda:
            "../../envs/inpo.yaml"
        log:
            results("logs/conditional/generate/{model}/{task}.log"),
        benchmark:
            results("benchmarks/conditional/generate/{model}/{task}.tsv")
        resources:
            **res("generate"),
        script:
            "../scripts/conditional_generate.py"

    rule conditional_notebook:
        """Grids per task: source, condition, then every model (same seed per column)."""
        localrule: True
        input:
            template="notebooks/conditional_grids.ipynb",
            sources=_cond_built(COND.sources),
            conditions=expand(f"{COND_ROOT}/conditions/{{task}}", task=COND.tasks),
            images=expand(f"{COND_ROOT}/images/{{model}}/{{task}}", model=COND.models, task=COND.tasks),
        output:
            ipynb=results("notebooks/conditional_grids.ipynb"),
            html=results("notebooks/conditional_grids.html"),
        params:
            parameters=dict(
                sources_dir=COND.sources,
                conditions_dir=f"{COND_ROOT}/conditions",
                images_dir=f"{COND_ROOT}/images",
                tasks=list(COND.tasks),
                models=list(COND.models),
                name_map=config.get("report", {}).get("name_map", {}),
                settings={k: v for k, v in COND.to_dict().items() if k not in ("models", "tasks", "toy_sources")},
            ),
        conda:
            "../../envs/inpo.yaml"
        log:
            results("logs/notebooks/conditional_grids.log"),
        script:
            "../scripts/render_notebook.py"
