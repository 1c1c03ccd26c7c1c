"""Score (image, prompt) pairs with the official ``hpsv2`` package (v1.2.0), for the parity test.

Run as ``python hpsv2_score.py job.json out.json`` with ``hpsv2`` on ``PYTHONPATH`` (a scratch
``pip install --no-deps --target``). job: ``{"checkpoint", "model_config", "hps_version",
"images": [...], "prompts": [...]}``. The model is built by hpsv2's own
``create_model_and_transforms`` with the arguments of ``hpsv2.img_score.initialize_model``, except
the architecture (the tiny config, registered in hpsv2's open_clip) and ``pretrained=None`` (the
laion weights are replaced by the checkpoint anyway); scoring is ``hpsv2.img_score.score`` itself
with ``cp=<checkpoint>``. Writes ``{"scores": [float | null], "errors": [str | null]}`` (hpsv2
returns the cosine; null + the error where hpsv2 raises).
"""

import json
import sys
from pathlib import Path

from hpsv2 import img_score
from hpsv2.src.open_clip import add_model_config, create_model_and_transforms

job = json.loads(Path(sys.argv[1]).read_text())
add_model_config(job["model_config"])
model, _, preprocess_val = create_model_and_transforms(
    Path(job["model_config"]).stem,
    None,
    precision="amp",
    device=img_score.device,
    jit=False,
    force_quick_gelu=False,
    force_custom_text=False,
    force_patch_dropout=False,
    force_image_size=None,
    pretrained_image=False,
    image_mean=None,
    image_std=None,
    light_augmentation=True,
    aug_cfg={},
    output_dict=True,
    with_score_predictor=False,
    with_region_predictor=False,
)
img_score.model_dict["model"] = model
img_score.model_dict["preprocess_val"] = preprocess_val

scores, errors = [], []
for image, prompt in zip(job["images"], job["prompts"], strict=True):
    try:
        scores.append(float(img_score.score(image, prompt, cp=job["checkpoint"], hps_version=job["hps_version"])[0]))
        errors.append(None)
    except Exception as e:  # noqa: BLE001 - reported to the test, which asserts where hpsv2 fails
        scores.append(None)
        errors.append(f"{type(e).__name__}: {e}")
Path(sys.argv[2]).write_text(json.dumps({"scores": scores, "errors": errors}))
