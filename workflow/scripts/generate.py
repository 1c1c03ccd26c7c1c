from _log import to_log

to_log(snakemake)  # noqa: F821
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from inpo.experiment import reset_images_if_settings_changed  # noqa: E402
from inpo.generate import generate_images, resolve_device_dtype, shard_rows  # noqa: E402
from inpo.models import load_components  # noqa: E402

smk = snakemake  # noqa: F821
g = dict(smk.params.gen)
res = g.pop("resolution", None)
shard = (int(smk.wildcards.shard), smk.params.n_shards)
prompts = pd.read_parquet(smk.input.prompts)
settings = {"model": smk.params.model, "family": smk.params.family, **smk.params.gen, "seed_base": smk.params.seed_base}
if smk.params.vae:  # a separate VAE (base SDXL: the fp16-fix VAE every trained SDXL model decodes with)
    settings["vae"] = smk.params.vae
removed = reset_images_if_settings_changed(
    Path(smk.output[0]).parent, settings, shard,
    shard_rows(prompts, shard)["index"],
)
print(f"generation settings changed: removed {removed} old images" if removed else "generation settings unchanged")
source = smk.params.model
if smk.params.vae:
    source = load_components(source, family=smk.params.family, vae=smk.params.vae,
                             dtype=resolve_device_dtype(None, g.get("dtype"))[1])
written = generate_images(
    source, prompts, Path(smk.output[0]).parent,
    family=smk.params.family, num_inference_steps=g["steps"], guidance_scale=g["guidance_scale"],
    seed_base=smk.params.seed_base, batch_size=g.get("batch_size", 4), scheduler=g.get("scheduler"),
    shard=shard, height=res, width=res, dtype=g.get("dtype"),
)
Path(smk.output[0]).write_text("\n".join(str(p) for p in written) + "\n")
