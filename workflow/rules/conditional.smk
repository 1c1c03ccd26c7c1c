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


include: "conditional_common.smk"


if COND is not None:

    rule conditional_sources:
        """Source images drawn by the toy renderer (stand-in for photographs; conditional.toy_sources)."""
        output:
            directory(COND_BUILT["sources"]),
        params:
            toy_sources=COND.toy_sources,
            scene=config.get("toy", {}).get("scene", {}),
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
            family=config["family"],
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
            template=str(R.NOTEBOOKS["conditional_grids"].source),
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
