"""Paper 5.5: conditions (canny, depth, masks) and the trained UNet inside the ControlNet / inpainting
pipelines, on tiny random models of the real classes (UNet2DConditionModel, ControlNetModel.from_unet,
DPTForDepthEstimation), plus the Snakemake rules and the grids notebook.

``python tests/test_conditional.py`` rewrites the notebook's fixture folder tests/fixtures/conditional.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import cv2
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_generate import _components, _sdxl_components  # noqa: E402

from inpo import conditional as C  # noqa: E402
from inpo.models import export_pipeline, save_pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXC = ROOT / "tests" / "fixtures" / "conditional"
STEPS = 3
SIZE = 16  # the tiny pipelines' native size: UNet sample_size 8 x VAE scale factor 2


def _px(path_or_image) -> np.ndarray:
    im = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(im.convert("RGB"), dtype=np.int16)


def build_world(root: Path, family: str = "sdxl") -> dict[str, Path]:
    """Tiny random pipelines saved as diffusers folders: base; 'dpo' = base with another UNet; 'same' =
    base with a copy of its own UNet; a stand-in ControlNet from the base UNet; a tiny DPT; 2 sources."""
    from inpo.tokenizer import build_clip_tokenizer

    tok = build_clip_tokenizer(root / "tok")
    if family == "sdxl":
        tok2 = build_clip_tokenizer(root / "tok2", pad_token="!")
        comps, other = _sdxl_components(tok, tok2, 0), _sdxl_components(tok, tok2, 1)["unet"]
    else:
        comps, other = _components(tok, 0), _components(tok, 1)["unet"]
    w = {"base": save_pipeline(comps, root / "base")}
    w["dpo"] = export_pipeline(w["base"], other, root / "dpo")
    w["same"] = export_pipeline(w["base"], w["base"] / "unet", root / "same")
    w["controlnet"] = C.toy_controlnet(str(w["base"]), root / "controlnet", seed=3)
    w["depth"] = C.tiny_depth_model(root / "depth")
    w["sources"] = C.write_toy_sources(root / "sources", n=2, image_size=SIZE, seed=5)
    return w


def config(w: dict, **kw) -> C.ConditionalConfig:
    d = {"sources": str(w["sources"]), "controlnets": {"canny": str(w["controlnet"]), "depth": str(w["controlnet"])},
         "depth_model": str(w["depth"]), "steps": STEPS, **kw}
    return C.ConditionalConfig.from_dict(d)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions on a shared CPU: threads only contend."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("cond_xl"), "sdxl")


# ------------------------------------------------------------------------------------------ config
def test_config_defaults_are_the_papers_and_bad_keys_fail():
    cfg = C.ConditionalConfig.from_dict({"sources": "s", "controlnets": {"canny": "c", "depth": "d"}})
    assert (cfg.controlnet_conditioning_scale, cfg.guidance_scale, cfg.strength) == (0.5, 5.0, 0.85)  # paper 5.5
    assert (cfg.steps, cfg.canny_low, cfg.canny_high, cfg.tasks) == (50, 100, 200, ("depth", "canny", "inpaint"))
    assert C.ConditionalConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"conditional: unknown key\(s\) \['strenght'\]"):
        C.ConditionalConfig.from_dict({"sources": "s", "strenght": 0.8})
    with pytest.raises(ValueError, match=r"conditional.controlnets: no ControlNet for task\(s\) \['canny'\]"):
        C.ConditionalConfig.from_dict({"sources": "s", "tasks": ["canny", "inpaint"]})
    with pytest.raises(ValueError, match=r"conditional.tasks: unknown task\(s\) \['seg'\]"):
        C.ConditionalConfig.from_dict({"sources": "s", "tasks": ["seg"]})
    with pytest.raises(ValueError, match="conditional.strength"):
        C.ConditionalConfig.from_dict({"sources": "s", "tasks": ["inpaint"], "strength": 1.5})
    with pytest.raises(ValueError, match="conditional.sources: required"):
        C.ConditionalConfig.from_dict({"tasks": ["inpaint"]})


# ----------------------------------------------------------------------------------------- sources
def test_read_sources_and_errors(tmp_path):
    Image.new("RGB", (20, 16), (9, 9, 9)).save(tmp_path / "a.png")
    Image.new("L", (20, 16), 0).save(tmp_path / "m.png")
    (tmp_path / "sources.csv").write_text("image,prompt,mask\na.png,a cat,m.png\na.png,a dog,\n")
    s = C.read_sources(tmp_path)
    assert list(s["index"]) == [0, 1] and list(s["prompt"]) == ["a cat", "a dog"]
    assert s.loc[0, "mask"] == str((tmp_path / "m.png").resolve()) and s.loc[1, "mask"] is None
    (tmp_path / "sources.csv").write_text("image,prompt\na.png,x\nb.png,y\n")
    with pytest.raises(FileNotFoundError, match=r"sources.csv: row 1, column 'image': .*b.png does not exist"):
        C.read_sources(tmp_path)
    (tmp_path / "sources.csv").write_text("image,caption\na.png,x\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['prompt'\]"):
        C.read_sources(tmp_path)
    with pytest.raises(FileNotFoundError, match="conditional.sources: .*sources.csv does not exist"):
        C.read_sources(tmp_path / "nowhere")


def test_load_source_crops_the_centre_square(tmp_path):
    a = np.zeros((16, 20, 3), np.uint8)
    a[:, :, 0] = np.arange(20, dtype=np.uint8)[None, :] * 10  # column c has red 10 c
    Image.fromarray(a).save(tmp_path / "wide.png")
    im = C.load_source(tmp_path / "wide.png", 16)
    assert im.size == (16, 16)
    assert np.array_equal(np.asarray(im)[0, :, 0], np.arange(2, 18) * 10)  # columns 2..17: (20 - 16) // 2 = 2
    assert C.load_source(tmp_path / "wide.png", 8).size == (8, 8)


# -------------------------------------------------------------------------------------- conditions
@pytest.mark.parametrize(("step", "edge"), [(30, False), (50, False), (51, True), (120, True)])
def test_canny_single_step_edge_by_hand(step, edge):
    """OpenCV's Canny: 3x3 Sobel, L1 magnitude |dx| + |dy|; a vertical step of height h gives |dx| = 4h on
    both sides of the step, non-maximum suppression keeps the left column (7); strong iff 4h > high=200,
    and a weak-only line (100 < 4h <= 200) touches no strong pixel, so it is dropped."""
    a = np.full((16, 16, 3), 40, np.uint8)
    a[:, 8:] += step
    out = np.asarray(C.canny_condition(Image.fromarray(a), 100, 200))
    expected = np.zeros((16, 16), np.uint8)
    if edge:
        expected[:, 7] = 255
    assert out.shape == (16, 16, 3)
    for ch in range(3):
        assert np.array_equal(out[:, :, ch], expected)


def test_canny_condition_is_cv2_canny_on_the_rgb_source(world):
    toy = C.load_source(C.read_sources(world["sources"]).loc[0, "image"], 64)
    noisy = Image.fromarray((100 + np.random.default_rng(0).integers(0, 48, (32, 32, 3))).astype(np.uint8))
    for src in (toy, noisy):
        out = np.asarray(C.canny_condition(src, 50, 120))
        ref = cv2.Canny(np.asarray(src), 50, 120)
        assert ref.any() and np.array_equal(out[:, :, 0], ref) and np.array_equal(out[:, :, 2], ref)
    # the thresholds are really passed: on noise they change the edge map
    assert not np.array_equal(np.asarray(C.canny_condition(noisy, 100, 200))[:, :, 0], ref)


def test_depth_condition_from_the_config_path(world):
    from transformers import AutoImageProcessor, DPTForDepthEstimation

    cfg = config(world)
    src = C.read_sources(world["sources"])
    images = [C.load_source(p, SIZE) for p in src["image"]]
    conds = C.TASKS["depth"].condition(images, [None] * len(images), cfg, "cpu")
    model = DPTForDepthEstimation.from_pretrained(str(world["depth"])).eval()
    proc = AutoImageProcessor.from_pretrained(str(world["depth"]))
    for im, cond in zip(images, conds):
        a = np.asarray(cond)
        assert cond.size == (SIZE, SIZE) and cond.mode == "RGB"
        assert a.min() == 0 and a.max() == 255  # min-max normalised per image
        assert np.array_equal(a[:, :, 0], a[:, :, 1]) and np.array_equal(a[:, :, 0], a[:, :, 2])
        with torch.no_grad():
            d = model(**proc(images=im, return_tensors="pt")).predicted_depth
        assert d.shape == (1, 64, 64)  # the processor makes 32 px; the DPT head upsamples x2
        d = torch.nn.functional.interpolate(d[:, None], size=(SIZE, SIZE), mode="bicubic", align_corners=False)[0, 0]
        ref = ((d - d.min()) / (d.max() - d.min()) * 255).round().numpy().astype(np.uint8)
        assert np.abs(a[:, :, 0].astype(int) - ref).max() <= 1
    assert not np.array_equal(np.asarray(conds[0]), np.asarray(conds[1]))


def test_masks_centre_rule_and_given_masks(tmp_path):
    m = np.asarray(C.centre_mask(16, 0.5))
    expected = np.zeros((16, 16), np.uint8)
    expected[4:12, 4:12] = 255  # side round(0.5 * 16) = 8 at (16 - 8) // 2 = 4
    assert np.array_equal(m, expected)
    m = np.asarray(C.centre_mask(10, 0.3))
    assert m.sum() == 9 * 255 and m[3:6, 3:6].all()  # side 3 at 3
    # a mask given beside the image: cropped like the image, binarised at 128
    Image.new("RGB", (20, 16), (50, 60, 70)).save(tmp_path / "a.png")
    g = np.zeros((16, 20), np.uint8)
    g[:, 12:] = 200
    g[0, :] = 127
    Image.fromarray(g).save(tmp_path / "m.png")
    (tmp_path / "sources.csv").write_text("image,prompt,mask\na.png,x,m.png\na.png,y,\n")
    cfg = C.ConditionalConfig.from_dict({"sources": str(tmp_path), "tasks": ["inpaint"], "mask_fraction": 0.25})
    paths = C.compute_conditions("inpaint", C.read_sources(tmp_path), cfg, 16, tmp_path / "out")
    given, centred = np.asarray(Image.open(paths[0])), np.asarray(Image.open(paths[1]))
    expected = np.zeros((16, 16), np.uint8)
    expected[1:, 10:] = 255  # columns 12.. of the 20-wide mask are columns 10.. after the crop; row 0 is 127 -> 0
    assert np.array_equal(given, expected)
    assert centred.sum() == 16 * 255 and centred[6:10, 6:10].all()


# -------------------------------------------------------------------------------------- generation
def _generate(world, model, task, out, cfg, conds_dir, n=None):
    """Images of the first ``n`` sources (all: None) with ``model``'s UNet."""
    pipe = C.load_pipeline(task, "sdxl", str(world["base"]), str(world[model]),
                           controlnet=cfg.controlnets.get(task))
    src = C.read_sources(cfg.sources).iloc[:n]
    return C.generate_conditional(pipe, task, src, [conds_dir / f"{i:05d}.png" for i in src["index"]], out, cfg, SIZE)


@pytest.mark.parametrize("task", ["canny", "inpaint"])
def test_generation_deterministic_paired_and_the_unet_swap_is_real(world, task, tmp_path):
    from diffusers import UNet2DConditionModel

    cfg = config(world)
    conds = tmp_path / "cond"
    C.compute_conditions(task, C.read_sources(cfg.sources), cfg, SIZE, conds)
    pipe = C.load_pipeline(task, "sdxl", str(world["base"]), str(world["dpo"]), controlnet=cfg.controlnets.get(task))
    ref = UNet2DConditionModel.from_pretrained(str(world["dpo"]), subfolder="unet").state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in pipe.unet.state_dict().items())
    assert type(pipe).__name__ == {"canny": "StableDiffusionXLControlNetPipeline",
                                   "inpaint": "StableDiffusionXLInpaintPipeline"}[task]

    a = _generate(world, "base", task, tmp_path / "base", cfg, conds)
    assert [p.name for p in a] == ["00000.png", "00001.png"]
    assert Image.open(a[0]).size == (SIZE, SIZE)
    assert not np.array_equal(_px(a[0]), _px(a[1]))
    b = _generate(world, "base", task, tmp_path / "base2", cfg, conds, n=1)
    assert np.array_equal(_px(a[0]), _px(b[0]))  # deterministic per seed
    same = _generate(world, "same", task, tmp_path / "same", cfg, conds, n=1)
    assert np.array_equal(_px(a[0]), _px(same[0]))  # the same UNet weights from another folder: identical
    dpo = _generate(world, "dpo", task, tmp_path / "dpo", cfg, conds, n=1)
    assert np.abs(_px(a[0]) - _px(dpo[0])).max() > 10  # other UNet weights: another image
    shifted = _generate(world, "base", task, tmp_path / "shift", config(world, seed_base=1), conds, n=1)
    assert not np.array_equal(_px(shifted[0]), _px(a[0]))  # another seed_base: other noise


def test_controlnet_condition_reaches_the_unet(world, tmp_path):
    cfg = config(world)
    src = C.read_sources(cfg.sources)
    conds = tmp_path / "cond"
    C.compute_conditions("canny", src, cfg, SIZE, conds)
    blank = tmp_path / "blank"
    blank.mkdir()
    Image.new("RGB", (SIZE, SIZE)).save(blank / "00000.png")
    a = _generate(world, "base", "canny", tmp_path / "a", cfg, conds, n=1)
    b = _generate(world, "base", "canny", tmp_path / "b", cfg, blank, n=1)
    assert np.abs(_px(a[0]) - _px(b[0])).max() > 0
    zero = C.ConditionalConfig.from_dict({**cfg.to_dict(), "controlnet_conditioning_scale": 0.0})
    c = _generate(world, "base", "canny", tmp_path / "c", zero, conds, n=1)
    d = _generate(world, "base", "canny", tmp_path / "d", zero, blank, n=1)
    assert np.array_equal(_px(c[0]), _px(d[0]))  # scale 0: the condition has no effect


def test_sd15_pipelines_and_run_generation(tmp_path):
    w = build_world(tmp_path / "w", "sd15")
    cfg = config(w, tasks=["canny", "inpaint"])
    src = C.read_sources(cfg.sources)
    assert C.native_resolution(str(w["base"])) == SIZE
    for task in cfg.tasks:
        C.compute_conditions(task, src, cfg, SIZE, tmp_path / "cond" / task)
        a = C.run_generation(task, "sd15", str(w["base"]), str(w["base"]), cfg.sources, tmp_path / "cond" / task,
                             tmp_path / "base" / task, cfg, device="cpu")
        b = C.run_generation(task, "sd15", str(w["base"]), str(w["dpo"]), cfg.sources, tmp_path / "cond" / task,
                             tmp_path / "dpo" / task, cfg, device="cpu")
        assert len(a) == 2 and Image.open(a[0]).size == (SIZE, SIZE)
        assert np.abs(_px(a[0]) - _px(b[0])).max() > 10
    pipe = C.load_pipeline("inpaint", "sd15", str(w["base"]), str(w["dpo"]))
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline" and pipe.unet.config.in_channels == 4
    with pytest.raises(FileNotFoundError, match="conditions of task 'canny' missing"):
        C.run_generation("canny", "sd15", str(w["base"]), str(w["base"]), cfg.sources, tmp_path / "none",
                         tmp_path / "x", cfg, device="cpu")


def test_grid_paths_layout(world, tmp_path):
    (tmp_path / "cond" / "canny").mkdir(parents=True)
    (tmp_path / "img" / "inpo" / "canny").mkdir(parents=True)
    for p in (tmp_path / "cond" / "canny" / "00000.png", tmp_path / "img" / "inpo" / "canny" / "00001.png"):
        Image.new("RGB", (4, 4)).save(p)
    g = C.grid_paths(tmp_path / "cond", tmp_path / "img", world["sources"], "canny", ["base", "inpo"])
    assert list(g.index) == ["source", "condition", "base", "inpo"] and list(g.columns) == [0, 1]
    assert g.loc["condition", 0].endswith("cond/canny/00000.png") and g.loc["condition", 1] is None
    assert g.loc["inpo", 1].endswith("img/inpo/canny/00001.png") and g.loc["inpo", 0] is None
    assert g.loc["base"].isna().all()
    assert g.loc["source"].notna().all()


# ------------------------------------------------------------------------------------ notebook + DAG
def write_notebook_fixture(dest: Path = FIXC) -> None:
    """The notebook's default inputs: tiny random SDXL images (stand-ins for base/dpo/inpo)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        w = build_world(Path(tmp), "sdxl")
        w["inpo"] = export_pipeline(w["base"], _sdxl_components(None, None, 2)["unet"], Path(tmp) / "inpo")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(w["sources"], dest / "sources")
        cfg = config(w, sources=str(dest / "sources"))
        src = C.read_sources(cfg.sources)
        for task in cfg.tasks:
            C.compute_conditions(task, src, cfg, SIZE, dest / "conditions" / task)
            for m in ("base", "dpo", "inpo"):
                C.run_generation(task, "sdxl", str(w["base"]), str(w[m]), cfg.sources, dest / "conditions" / task,
                                 dest / "images" / m / task, cfg, device="cpu")


@pytest.mark.slow
def test_notebook_renders_on_the_fixture(tmp_path):
    from inpo import report

    # the fixture's defaults plus a model without images: its row is blank and counted
    out = report.render_notebook(ROOT / "notebooks" / "conditional_grids.py", tmp_path / "c.ipynb",
                                 tmp_path / "c.html", {"models": ["base", "dpo", "inpo", "kto"]})
    nb = nbformat.read(out["ipynb"], as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    html = out["html"].read_text()
    assert html.count('src="data:image/png;base64') == 3  # one grid per task
    assert html.count("<strong>2 image(s) missing</strong>") == 3  # kto: 2 sources x 1 row, per task; nothing else missing


TEST_SNAKEFILE = """\
# conditional.smk alone, with the few names of common.smk it uses
import re

configfile: "cond_config.yaml"

EVAL_MODELS = ["base", "inpo"]


def res(group):
    return {"mem_mb": 1000}


def model_marker(model):
    return []


def model_path(model):
    return config["paths"][model]


def results(path=""):
    return f"results/{path}" if path else "results"


include: "workflow/rules/conditional.smk"


rule all:
    input:
        conditional_targets(),
"""


@pytest.mark.slow
def test_rules_through_snakemake(tmp_path, monkeypatch):
    import yaml
    from workflow_utils import copy_workflow, run_snakemake

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models on a shared CPU: threads only contend
    w = build_world(tmp_path / "models", "sdxl")
    work = copy_workflow(tmp_path / "wf")
    (work / "Snakefile.cond").write_text(TEST_SNAKEFILE)
    # depth (not canny): it also runs the tiny-depth-model rule; canny's rules are the same ControlNet rules
    cond = {"sources": "{results}/conditional/sources", "models": ["base", "inpo"], "tasks": ["depth", "inpaint"],
            "controlnets": {"depth": "{results}/conditional/controlnets/depth"},
            "depth_model": "{results}/conditional/depth_model", "steps": 2, "toy_sources": {"n": 2, "image_size": 24}}
    cfg = {"family": "sdxl", "seed": 0, "model": {"base": str(w["base"]), "vae": None},
           "paths": {"base": str(w["base"]), "inpo": str(w["dpo"])}, "conditional": cond,
           "report": {"name_map": {"base": "Base-SDXL", "inpo": "InPO-SDXL"}}}
    (work / "cond_config.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake(work, "-s", "Snakefile.cond", "--cores", "2", "all", timeout=900)

    res = work / "results"
    html = (res / "notebooks" / "conditional_grids.html").read_text()
    assert html.count('src="data:image/png;base64') == 2 and "InPO-SDXL" in html and "image(s) missing</strong>" not in html
    for m in ("base", "inpo"):
        for t in ("depth", "inpaint"):
            assert sorted(p.name for p in (res / "conditional" / "images" / m / t).glob("*.png")) == ["00000.png", "00001.png"]
            assert (res / "logs" / "conditional" / "generate" / m / f"{t}.log").is_file()
            assert (res / "benchmarks" / "conditional" / "generate" / m / f"{t}.tsv").is_file()
    # the rule's image is the package function's image
    c = C.ConditionalConfig.from_dict({**cond, "sources": str(res / "conditional" / "sources"),
                                       "controlnets": {"depth": str(res / "conditional" / "controlnets" / "depth")}})
    again = C.run_generation("depth", "sdxl", str(w["base"]), str(w["dpo"]), c.sources,
                             res / "conditional" / "conditions" / "depth", tmp_path / "again", c, device="cpu")
    assert np.array_equal(_px(again[0]), _px(res / "conditional" / "images" / "inpo" / "depth" / "00000.png"))
    assert Image.open(again[0]).size == (SIZE, SIZE)  # resolution null: the base's native size
    # nothing left to do
    dry = run_snakemake(work, "-s", "Snakefile.cond", "-n", "all")
    assert "Nothing to be done" in dry.stdout + dry.stderr


if __name__ == "__main__":
    torch.set_num_threads(1)
    write_notebook_fixture()
    print(f"wrote {FIXC}: {pd.Series([p.suffix for p in FIXC.rglob('*.*')]).value_counts().to_dict()}")
