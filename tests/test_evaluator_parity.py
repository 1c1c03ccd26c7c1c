"""Reference parity: each real evaluator against its OFFICIAL implementation, |difference| <= 1e-4.

Both sides read the same tiny random weights, written in the real on-disk formats by
:mod:`inpo.evaluators.testing`, and the same PNG images (square, non-square, upscaled and
downscaled, grayscale, RGBA):

- ``hps``: the ``hpsv2`` package's own transform and scorer (``hpsv2.img_score.score``);
- ``aesthetic``: the improved-aesthetic-predictor inference steps with the OpenAI ``clip`` package;
- ``pickscore``: the PickScore model-card code (transformers ``AutoProcessor`` / ``AutoModel``);
- ``clip``: open_clip's README recipe.

``hpsv2`` and ``clip`` cannot be dependencies of the project (hpsv2 pins pytest 7.2 and protobuf<4;
the ``clip`` package needs ``pkg_resources``, gone from current setuptools). The session fixture
installs them with ``pip install --no-deps --target`` into a scratch folder (pytest's cache,
reused while the pins are unchanged) and runs them in subprocesses with that folder on
``PYTHONPATH``; the project's environment stays clean. The install needs PyPI; if it fails the
tests FAIL (never skip). Nothing touches the Hugging Face hub (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from PIL import Image

from inpo import evaluators
from inpo.evaluators import testing as tiny

REPO = Path(__file__).resolve().parents[1]
REFERENCE_SCRIPTS = Path(__file__).resolve().parent / "reference"
TOL = 1e-4  # the bound on |ours - reference|

#: the reference packages and the two they import that are not in our environment
REFERENCE_PACKAGES = (
    "hpsv2==1.2.0",
    "openai-clip==1.0.1",
    "clint==0.5.1",  # hpsv2 imports clint.textui.progress
    "args==0.1.0",  # clint's own import
    "setuptools==69.5.1",  # clip imports pkg_resources.packaging (removed in setuptools 70)
)
#: hpsv2 1.2.0's wheel omits its tokenizer's BPE vocabulary; OpenAI CLIP's file (this digest, the
#: same in the ``clip`` package, open_clip and the Diffusion-DPO ``utils/open_clip``) is copied in.
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

SHARED = Path(os.environ.get("INPO_SHARED_DATA", REPO.parent / "shared" / "data"))

PROMPTS = {
    "square_up": "a red cube on a wooden table",
    "square_down": "a photo of a cat sleeping on a sofa",
    "wide": "an oil painting of mountains at dusk, " + "highly detailed, " * 30,  # > 77 tokens
    "tall_gray": "a black and white portrait",
    "rgba": "x",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def reference_site(request) -> Path:
    """Folder with the reference packages (``pip install --no-deps --target``), cached by pins."""
    key = hashlib.sha256(" ".join(REFERENCE_PACKAGES).encode()).hexdigest()[:12]
    target = Path(request.config.cache.mkdir(f"reference-packages-{key}"))
    done = target / ".installed"
    if not done.is_file():
        shutil.rmtree(target)
        target.mkdir()
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check",
               "--target", str(target), *REFERENCE_PACKAGES]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"cannot install the reference packages (PyPI needed): {' '.join(cmd)}\n"
                        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        bpe = target / "clip" / BPE_FILE
        assert _sha256(bpe) == BPE_SHA256, f"{bpe}: unexpected BPE vocabulary"
        shutil.copyfile(bpe, target / "hpsv2" / "src" / "open_clip" / BPE_FILE)
        done.touch()
    return target


def _run_reference(site: Path, script: str, job: dict, tmp: Path) -> dict:
    job_path, out_path = tmp / f"{script}.job.json", tmp / f"{script}.out.json"
    job_path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HPS_ROOT": str(tmp / "hps_root"),
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(REFERENCE_SCRIPTS / script), str(job_path), str(out_path)],
                          capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert proc.returncode == 0, f"reference {script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"
    return json.loads(out_path.read_text())


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, Path]:
    """PNG files: 64x64 RGB (upscaled to 224), 512x512 RGB (downscaled, as SD1.5 output),
    300x180 RGB, 90x150 grayscale, 200x120 RGBA with random alpha; plus the RGBA one as RGB."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("images")

    def smooth(h, w, c):  # low-frequency content + noise, like a decoded image rather than pure noise
        base = rng.random((h // 8 + 2, w // 8 + 2, c))
        up = np.kron(base, np.ones((8, 8, 1)))[:h, :w]
        return np.clip(255 * (0.8 * up + 0.2 * rng.random((h, w, c))), 0, 255).astype(np.uint8)

    images = {
        "square_up": Image.fromarray(smooth(64, 64, 3)),
        "square_down": Image.fromarray(smooth(512, 512, 3)),
        "wide": Image.fromarray(smooth(180, 300, 3)),
        "tall_gray": Image.fromarray(smooth(150, 90, 1)[..., 0], mode="L"),
        "rgba": Image.fromarray(smooth(120, 200, 4), mode="RGBA"),
    }
    paths = {}
    for name, im in images.items():
        paths[name] = folder / f"{name}.png"
        im.save(paths[name])
    paths["rgba_as_rgb"] = folder / "rgba_as_rgb.png"
    Image.open(paths["rgba"]).convert("RGB").save(paths["rgba_as_rgb"])
    return paths


def _open(paths: list[Path]) -> list[Image.Image]:
    return [Image.open(p) for p in paths]


NAMES = list(PROMPTS)


# -------------------------------------------------------------------------------------------- hps


def test_hps_matches_hpsv2(reference_site, image_files, tmp_path):
    ckpt, cfg = tiny.write_tiny_hps_checkpoint(tmp_path / "hps", "v2.0")
    ev = evaluators.build("hps", checkpoint=str(ckpt), model_name=str(cfg), device="cpu", batch_size=2)
    assert ev.version == "hpsv2.0" and ev.precision == "amp" and ev.image_transform == "pad_square"
    ours = ev.score(_open([image_files[n] for n in NAMES]), [PROMPTS[n] for n in NAMES])

    names = NAMES + ["rgba_as_rgb"]
    ref = _run_reference(reference_site, "hpsv2_score.py", {
        "checkpoint": str(ckpt), "model_config": str(cfg), "hps_version": "v2.0",
        "images": [str(image_files[n]) for n in names], "prompts": [PROMPTS[n] for n in NAMES] + [PROMPTS["rgba"]],
    }, tmp_path)
    by_name = dict(zip(names, ref["scores"], strict=True))
    # hpsv2 keeps RGBA as 4 channels and fails in the 3-channel patch embedding; ours drops alpha,
    # which is hpsv2's score of the RGB conversion
    assert by_name["rgba"] is None and "channels" in ref["errors"][names.index("rgba")]
    expected = np.array([by_name[n] if n != "rgba" else by_name["rgba_as_rgb"] for n in NAMES]) * 100
    diff = np.abs(ours - expected)
    assert diff.max() <= TOL, dict(zip(NAMES, diff))
    assert np.ptp(expected) > 1.0  # the pairs really differ: the comparison is not of constants

    # the test sees the preprocessing: open_clip's centre crop (the old transform) is far off
    crop = evaluators.build("hps", checkpoint=str(ckpt), model_name=str(cfg), device="cpu",
                            image_transform="center_crop")
    off = np.abs(crop.score(_open([image_files["wide"]]), [PROMPTS["wide"]]) - expected[NAMES.index("wide")])
    assert off.max() > 100 * TOL


# -------------------------------------------------------------------------------------- aesthetic


def _mlp_weights(tmp: Path) -> Path:
    """The real MLP weights from the shared data when present, else a random MLP in their format."""
    from inpo.evaluators.aesthetic import WEIGHTS_FILE

    real = SHARED / "aesthetic" / WEIGHTS_FILE
    return real if real.is_file() else tiny.write_tiny_aesthetic_mlp(tmp)


def test_aesthetic_matches_improved_aesthetic_predictor(reference_site, image_files, tmp_path):
    from open_clip.transformer import QuickGELU

    clip_ckpt = tiny.write_tiny_openai_clip(tmp_path / "clip")
    weights = _mlp_weights(tmp_path)
    ev = evaluators.build("aesthetic", weights=str(weights), clip_model=str(clip_ckpt), device="cpu", batch_size=2)
    assert ev.backend == "clip" and ev.precision == "amp"
    # a local copy of the OpenAI weights is built as OpenAI CLIP: QuickGELU (the old open_clip backend
    # built GELU for pretrained=<file>)
    acts = {type(m) for m in ev.vision_model.modules() if "GELU" in type(m).__name__}
    assert acts == {QuickGELU}
    ours = ev.score(_open([image_files[n] for n in NAMES]), [PROMPTS[n] for n in NAMES])

    ref = _run_reference(reference_site, "aesthetic_clip.py", {
        "clip_model": str(clip_ckpt), "weights": str(weights), "images": [str(image_files[n]) for n in NAMES],
    }, tmp_path)
    expected = np.array(ref["scores"])
    diff = np.abs(ours - expected)
    assert diff.max() <= TOL, dict(zip(NAMES, diff))
    assert np.ptp(expected) > 1e-3

    # the test sees the activation: the same weights built with GELU give other scores
    # (open_clip's "ViT-L-14" config has no quick_gelu: what the old backend built for a local file)
    gelu_cfg = tiny.write_open_clip_config(tmp_path, "tiny-L14-gelu", {**tiny.TINY_OPENAI_CLIP_CONFIG, "quick_gelu": False})
    gelu = tiny.build_tiny_open_clip(gelu_cfg)
    gelu.load_state_dict(ev.vision_model.state_dict())
    assert not any(isinstance(m, QuickGELU) for m in gelu.modules())
    wrong = evaluators.build("aesthetic", weights=str(weights), vision_model=gelu, device="cpu")
    assert np.abs(wrong.score(_open([image_files["wide"]]), ["x"]) - expected[NAMES.index("wide")]).max() > TOL


# -------------------------------------------------------------------------------------- pickscore


def _pickscore_model_card(model_dir: Path, processor_dir: Path, images, prompt) -> np.ndarray:
    """The PickScore_v1 model card's ``calc_probs`` up to the softmax: ``logit_scale.exp() * cos``."""
    from transformers import AutoModel, AutoProcessor

    device = "cpu"
    processor = AutoProcessor.from_pretrained(str(processor_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval().to(device)
    image_inputs = processor(images=images, padding=True, truncation=True, max_length=77,
                             return_tensors="pt").to(device)
    text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77, return_tensors="pt").to(device)
    with torch.no_grad():
        image_embs = model.get_image_features(**image_inputs)
        image_embs = getattr(image_embs, "pooler_output", image_embs)  # transformers 5 returns an output object
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        text_embs = model.get_text_features(**text_inputs)
        text_embs = getattr(text_embs, "pooler_output", text_embs)
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
        scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
    return scores.numpy()


def test_pickscore_matches_model_card(image_files, tmp_path):
    model_dir, proc_dir = tiny.write_tiny_pickscore(tmp_path)
    ev = evaluators.build("pickscore", model=str(model_dir), processor=str(proc_dir), device="cpu", batch_size=3)
    assert ev.precision == "fp32"  # the model card runs float32
    ours = ev.score(_open([image_files[n] for n in NAMES]), [PROMPTS[n] for n in NAMES])
    expected = np.array([_pickscore_model_card(model_dir, proc_dir, _open([image_files[n]]), PROMPTS[n])[0]
                         for n in NAMES])
    diff = np.abs(ours - expected)
    assert diff.max() <= TOL, dict(zip(NAMES, diff))
    assert np.ptp(expected) > 1e-2


def test_pickscore_local_processor_folder_without_config_json(image_files, tmp_path):
    """A local copy of only the processor files: AutoProcessor gives a bare tokenizer there (the old
    loader then failed with AttributeError); the evaluator loads the CLIPProcessor and scores alike."""
    from transformers import AutoProcessor, CLIPProcessor

    model_dir, proc_dir = tiny.write_tiny_pickscore(tmp_path)
    bare = tmp_path / "processor-files-only"
    shutil.copytree(proc_dir, bare, ignore=shutil.ignore_patterns("config.json"))
    assert not isinstance(AutoProcessor.from_pretrained(str(bare)), CLIPProcessor)
    ims, prompts = _open([image_files[n] for n in NAMES]), [PROMPTS[n] for n in NAMES]
    ev = evaluators.build("pickscore", model=str(model_dir), processor=str(bare), device="cpu")
    assert isinstance(ev.processor, CLIPProcessor)
    full = evaluators.build("pickscore", model=str(model_dir), processor=str(proc_dir), device="cpu")
    np.testing.assert_allclose(ev.score(ims, prompts), full.score(ims, prompts), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------- clip


def _open_clip_recipe(arch: str, checkpoint: Path, images, prompts) -> np.ndarray:
    """open_clip's README recipe, scoring each image against its own prompt."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(checkpoint))
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    out = []
    for im, prompt in zip(images, prompts, strict=True):
        image = preprocess(im).unsqueeze(0)
        text = tokenizer([prompt])
        with torch.no_grad(), torch.autocast("cuda", enabled=torch.cuda.is_available()):
            image_features = model.encode_image(image)
            text_features = model.encode_text(text)
            image_features /= image_features.norm(dim=-1, keepdim=True)
            text_features /= text_features.norm(dim=-1, keepdim=True)
            out.append((100.0 * image_features @ text_features.T)[0, 0].item())
    return np.array(out)


def test_clip_matches_open_clip_recipe(image_files, tmp_path):
    ckpt, cfg = tiny.write_tiny_open_clip_checkpoint(tmp_path)
    ev = evaluators.build("clip", pretrained=str(ckpt), model_name=str(cfg), device="cpu", batch_size=2)
    assert ev.image_transform == "center_crop" and ev.precision == "amp"
    ims, prompts = _open([image_files[n] for n in NAMES]), [PROMPTS[n] for n in NAMES]
    ours = ev.score(ims, prompts)
    expected = _open_clip_recipe(cfg.stem, ckpt, ims, prompts)
    diff = np.abs(ours - expected)
    assert diff.max() <= TOL, dict(zip(NAMES, diff))
    assert np.ptp(expected) > 1.0
