"""DDIM-InPO: inversion preference optimization for text-to-image diffusion models.

Modules map to the paper's concepts:

- :mod:`inpo.inversion`   DDIM inversion on the reference grid and the reparametrized target (pure).
- :mod:`inpo.losses`      DPO-form, SFT and KTO losses (pure).
- :mod:`inpo.methods`     how InPO / Diffusion-DPO / SFT / KTO build ``(x_t, target)`` from a batch.
- :mod:`inpo.trainer`     the one accelerate training loop shared by every method.
- :mod:`inpo.models`      load / build / save diffusers pipelines (real and tiny toy models).
- :mod:`inpo.data`        Pick-a-Pic filtering and datasets, prompt sets, the embedded toy world.
- :mod:`inpo.evaluators`  one registry, one call signature ``score(images, prompts) -> array``.
- :mod:`inpo.generate`    sharded, resumable image generation with paired seeds.
- :mod:`inpo.tables`      tidy scores -> win-rates, medians, means, GPU-hours (one module per concept).
"""

__version__ = "0.1.0"
