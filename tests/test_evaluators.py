"""Real evaluators (aesthetic, pickscore, hps, clip) with tiny random models of the real classes.

No weights are downloaded: every model is a tiny randomly initialised instance of the class the real
evaluator loads (open_clip CLIP from a custom config, transformers CLIPModel /
CLIPVisionModelWithProjection), injected with ``from_models`` or loaded from a local checkpoint
through the real loading path. Only the aesthetic MLP uses its real weights (shared data). Parity
with the official implementations is tests/test_evaluator_parity.py.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from PIL import Image

from inpo import evaluators
from inpo.evaluators import testing as tiny
from inpo.evaluators.aesthetic import (
    WEIGHTS_FILE,
    WEIGHTS_URL,
    AestheticEvaluator,
    AestheticMLP,
    load_aesthetic_mlp,
)
from inpo.evaluators.clip import ClipEvaluator
from inpo.evaluators.hps import HpsEvaluator
from inpo.evaluators.pickscore import PickScoreEvaluator
from inpo.hub import ModelUnavailableError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INPO_SHARED_DATA", REPO.parent / "shared" / "data"))
AESTHETIC_WEIGHTS = SHARED / "aesthetic" / WEIGHTS_FILE
needs_aesthetic = pytest.mark.skipif(
    not AESTHETIC_WEIGHTS.is_file(), reason=f"real aesthetic MLP weights absent: {AESTHETIC_WEIGHTS}"
)

PROMPTS = ["a red cube on a table", "a photo of a cat", "an oil painting of mountains at dusk",
           "a very long prompt " + "with many words " * 30, "x"]


def _images(n: int = 5, size=(40, 48)) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def images():
    return _images()


def _register_tiny_open_clip(tmp: Path, embed_dim: int) -> str:
    import open_clip

    name = f"inpo-tiny-clip-{embed_dim}"
    cfg = {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return name


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """(name, model, preprocess, tokenizer) of a tiny random open_clip CLIP (embed_dim 16)."""
    import open_clip

    torch.manual_seed(0)
    name = _register_tiny_open_clip(tmp_path_factory.mktemp("oc"), 16)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    return name, model.eval(), preprocess, open_clip.get_tokenizer(name)


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    from inpo.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tiny_hf_clip(clip_tokenizer):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         vocab_size=49408, max_position_embeddings=77, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
        logit_scale_init_value=math.log(1 / 0.07),
    )
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(21.5))  # not 1: the formula must use exp(logit_scale)
    improc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model, CLIPProcessor(image_processor=improc, tokenizer=clip_tokenizer)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------------------- registry


def test_registry_builds_real_names_with_injected_models(tiny_open_clip):
    _, model, _, tok = tiny_open_clip
    ev = evaluators.build("clip", model=model, tokenizer=tok, device="cpu")
    assert isinstance(ev, ClipEvaluator) and isinstance(ev, evaluators.Evaluator)
    assert ev.name == "clip" and ev.version.startswith("open_clip-ViT-H-14-laion2b_s32b_b79k")
    for name in ("aesthetic", "pickscore", "hps", "clip"):
        assert name in evaluators.available()


def test_registry_one_entry_per_evaluator_name_from_the_key():
    """Each name is registered once (name -> "module:factory"); the built object's name is the key."""
    import importlib

    assert evaluators.available() == sorted(evaluators.REGISTRY)
    for target in evaluators.REGISTRY.values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target
    for name in ("toy_reward", "toy_hps"):
        assert evaluators.build(name).name == name
    assert not hasattr(evaluators, "register")
    with pytest.raises(KeyError, match="unknown evaluator 'nope'.*toy_reward"):
        evaluators.build("nope")


# ------------------------------------------------------------------------------------------- clip


def test_clip_score_is_100_cos_and_batch_invariant(tiny_open_clip, images):
    _, model, preprocess, tok = tiny_open_clip
    ev3 = ClipEvaluator.from_models(model, tok, device="cpu", batch_size=3)
    ev1 = ClipEvaluator.from_models(model, tok, device="cpu", batch_size=1)
    assert ev3.image_transform == "center_crop"  # open_clip's own preprocessing
    px = torch.stack([preprocess(im) for im in images])
    assert torch.equal(torch.stack([ev3.preprocess(im) for im in images]), px)
    s3, s1 = ev3.score(images, PROMPTS), ev1.score(images, PROMPTS)
    assert s3.shape == (5,) and s3.dtype == np.float64 and np.isfinite(s3).all()
    np.testing.assert_allclose(s1, s3, rtol=0, atol=1e-4)
    with torch.no_grad():
        img = _unit(model.encode_image(torch.stack([preprocess(im) for im in images])))
        txt = _unit(model.encode_text(tok(PROMPTS)))
    np.testing.assert_allclose(s3, 100 * (img * txt).sum(-1).double().numpy(), rtol=0, atol=1e-4)
    assert np.all(np.abs(s3) <= 100 + 1e-6)
    assert len(set(np.round(s3, 6))) == 5  # the pairs really differ
    with pytest.raises(ValueError, match="5 images but 4 prompts"):
        ev3.score(images, PROMPTS[:4])


def test_clip_loads_local_checkpoint_through_open_clip(tiny_open_clip, tmp_path, images):
    name, model, preprocess, tok = tiny_open_clip
    ckpt = tmp_path / "tiny.bin"
    torch.save(model.state_dict(), ckpt)
    ev = evaluators.build("clip", model_name=name, pretrained=str(ckpt), device="cpu")
    ref = ClipEvaluator.from_models(model, tok, device="cpu")
    assert ev.version == f"open_clip-{name}-tiny.bin"
    np.testing.assert_allclose(ev.score(images, PROMPTS), ref.score(images, PROMPTS), atol=1e-5)


# -------------------------------------------------------------------------------------------- hps


@pytest.mark.parametrize("hps_version", ["v2.0", "v2.1"])
def test_hps_loads_checkpoint_state_dict_and_names_version(tiny_open_clip, tmp_path, images, hps_version):
    name, model, _, tok = tiny_open_clip
    ckpt = tmp_path / "HPS_tiny.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    ev = evaluators.build("hps", hps_version=hps_version, checkpoint=str(ckpt), model_name=name,
                          device="cpu", batch_size=2)
    assert isinstance(ev, HpsEvaluator) and ev.name == "hps"
    assert ev.version == "hps" + hps_version  # "hpsv2.0" / "hpsv2.1"
    s = ev.score(images, PROMPTS)
    with torch.no_grad():
        img = _unit(model.encode_image(torch.stack([ev.preprocess(im) for im in images])))
        txt = _unit(model.encode_text(tok(PROMPTS)))
    np.testing.assert_allclose(s, 100 * (img * txt).sum(-1).double().numpy(), rtol=0, atol=1e-4)


def test_reference_defaults():
    """Defaults are the references': HPS v2.0 (hpsv2.score, Diffusion-DPO) with hpsv2's transform,
    amp; CLIP open_clip's transform, amp; PickScore fp32 (model card); aesthetic via OpenAI CLIP, amp."""
    import inspect

    def default(cls, option):
        return inspect.signature(cls.__init__).parameters[option].default

    assert default(HpsEvaluator, "hps_version") == "v2.0" and HpsEvaluator.default_transform == "pad_square"
    assert ClipEvaluator.default_transform == "center_crop" and default(ClipEvaluator, "precision") == "amp"
    assert default(PickScoreEvaluator, "precision") == "fp32"
    assert default(AestheticEvaluator, "precision") == "amp" and default(AestheticEvaluator, "backend") == "clip"
    assert default(AestheticEvaluator, "weights") == WEIGHTS_URL


def test_pad_square_transform_by_hand():
    """Resize the longest side to the target with torch bicubic on the float tensor, zero-pad to a
    centred square (before normalising: padded pixels are -mean/std), no crop."""
    from inpo.evaluators.common import OPENAI_MEAN, OPENAI_STD, pad_square_transform

    im = Image.fromarray(np.full((10, 40, 3), 255, dtype=np.uint8))  # 40 wide, 10 high
    x = pad_square_transform(20)(im)
    assert x.shape == (3, 20, 20)
    pad_value = torch.tensor([-m / s for m, s in zip(OPENAI_MEAN, OPENAI_STD)])
    white = torch.tensor([(1 - m) / s for m, s in zip(OPENAI_MEAN, OPENAI_STD)])
    # 10x40 -> 5x20, padded 7 rows above and 8 below
    torch.testing.assert_close(x[:, :7], pad_value[:, None, None].expand(3, 7, 20))
    torch.testing.assert_close(x[:, 12:], pad_value[:, None, None].expand(3, 8, 20))
    torch.testing.assert_close(x[:, 7:12], white[:, None, None].expand(3, 5, 20), atol=1e-5, rtol=0)
    # grayscale and RGBA become RGB; a square image at the target size is only normalised
    assert pad_square_transform(20)(im.convert("L")).shape == (3, 20, 20)
    assert pad_square_transform(20)(im.convert("RGBA")).shape == (3, 20, 20)
    sq = Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8))
    torch.testing.assert_close(pad_square_transform(20)(sq), pad_value[:, None, None].expand(3, 20, 20))


def test_hps_version_option():
    with pytest.raises(ValueError, match="hps_version"):
        evaluators.build("hps", hps_version="v3")


def test_precision_option(tiny_open_clip, images):
    _, model, _, tok = tiny_open_clip
    with pytest.raises(ValueError, match="precision must be one of"):
        ClipEvaluator.from_models(model, tok, device="cpu", precision="fp16")
    # on CPU, amp is float32: both give the same numbers
    amp = ClipEvaluator.from_models(model, tok, device="cpu", precision="amp").score(images, PROMPTS)
    fp32 = ClipEvaluator.from_models(model, tok, device="cpu", precision="fp32").score(images, PROMPTS)
    np.testing.assert_array_equal(amp, fp32)


# -------------------------------------------------------------------------------------- pickscore


def test_pickscore_formula_shapes_batching(tiny_hf_clip, images):
    model, processor = tiny_hf_clip
    ev = PickScoreEvaluator.from_models(model, processor, device="cpu", batch_size=3)
    ev1 = PickScoreEvaluator.from_models(model, processor, device="cpu", batch_size=1)
    assert ev.version == "PickScore_v1"
    s = ev.score(images, PROMPTS)
    assert s.shape == (5,) and s.dtype == np.float64 and np.isfinite(s).all()
    np.testing.assert_allclose(ev1.score(images, PROMPTS), s, rtol=0, atol=1e-4)
    # by hand, from the towers and projections (not through get_*_features)
    with torch.no_grad():
        px = processor(images=images, return_tensors="pt")["pixel_values"]
        assert px.shape == (5, 3, 32, 32)
        img = model.visual_projection(model.vision_model(pixel_values=px).pooler_output)
        toks = processor(text=PROMPTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
        assert toks["input_ids"].shape[1] == 77  # the long prompt is truncated at 77
        txt = model.text_projection(
            model.text_model(input_ids=toks["input_ids"], attention_mask=toks["attention_mask"]).pooler_output
        )
        expected = 21.5 * (_unit(txt) * _unit(img)).sum(-1)
    np.testing.assert_allclose(s, expected.double().numpy(), rtol=1e-5, atol=1e-4)
    assert np.all(np.abs(s) <= 21.5 + 1e-4)


# -------------------------------------------------------------------------------------- aesthetic


@needs_aesthetic
def test_real_aesthetic_mlp_weights_load_weights_only():
    sd = torch.load(AESTHETIC_WEIGHTS, map_location="cpu", weights_only=True)
    assert sorted(sd) == sorted(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias"))
    mlp = load_aesthetic_mlp(AESTHETIC_WEIGHTS)
    assert isinstance(mlp, AestheticMLP)
    emb = torch.linspace(-1, 1, 768).unsqueeze(0)
    emb = _unit(emb)
    with torch.no_grad():
        y = mlp(emb).item()
        # no activations: the MLP is one affine map, so it is linear in the embedding
        w = sd["layers.0.weight"]
        b = sd["layers.0.bias"]
        x = emb @ w.T + b
        for i in (2, 4, 6, 7):
            x = x @ sd[f"layers.{i}.weight"].T + sd[f"layers.{i}.bias"]
    assert math.isfinite(y) and y == pytest.approx(x.item(), abs=1e-5)
    assert -20 < y < 20


def test_aesthetic_default_weights_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """The default is the pinned URL through the cache: a ../shared/data beside the current directory
    is not looked at; offline with an empty cache it fails at once, naming the option."""
    (tmp_path / "shared" / "data" / "aesthetic").mkdir(parents=True)
    torch.save(AestheticMLP().state_dict(), tmp_path / "shared" / "data" / "aesthetic" / WEIGHTS_FILE)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("INPO_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelUnavailableError) as err:
        load_aesthetic_mlp()
    assert WEIGHTS_URL in str(err.value) and "`weights=" in str(err.value)
    # a cached copy of the URL is used, wherever the command runs
    cached = tmp_path / "empty-cache" / WEIGHTS_FILE
    cached.parent.mkdir()
    torch.save(AestheticMLP().state_dict(), cached)
    with pytest.warns(UserWarning, match="sha256"):  # random weights, not the published file
        assert isinstance(load_aesthetic_mlp(), AestheticMLP)
    with pytest.raises(ModelUnavailableError, match=r"local path 'data/x.pth' does not exist.*`weights`"):
        load_aesthetic_mlp("data/x.pth")


def _aesthetic_mlp() -> AestheticMLP:
    if AESTHETIC_WEIGHTS.is_file():
        return load_aesthetic_mlp(AESTHETIC_WEIGHTS)
    torch.manual_seed(0)
    return AestheticMLP().eval()


def test_aesthetic_transformers_backend_formula(images):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        image_size=32, patch_size=8, projection_dim=768)).eval()
    improc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    mlp = _aesthetic_mlp()
    ev = AestheticEvaluator.from_models(vision, improc, mlp=mlp, backend="transformers", device="cpu", batch_size=3)
    ev1 = AestheticEvaluator.from_models(vision, improc, mlp=mlp, backend="transformers", device="cpu", batch_size=1)
    assert "sac+logos+ava1-l14-linearMSE" in ev.version
    s = ev.score(images, PROMPTS)
    assert s.shape == (5,) and s.dtype == np.float64 and np.isfinite(s).all()
    np.testing.assert_allclose(ev1.score(images, PROMPTS), s, rtol=0, atol=1e-5)
    with torch.no_grad():
        px = improc(images=images, return_tensors="pt")["pixel_values"]
        expected = mlp(_unit(vision(pixel_values=px).image_embeds)).squeeze(-1)
    np.testing.assert_allclose(s, expected.double().numpy(), rtol=0, atol=1e-5)


def test_aesthetic_clip_backend_local_openai_file(tmp_path, images):
    """A local OpenAI-format ViT-L/14 file is built as OpenAI CLIP (QuickGELU, sizes from the file);
    the embedding is encode_image of the clip package's preprocessing, L2-normalised."""
    from open_clip.transformer import QuickGELU

    from inpo.evaluators.common import openai_clip_transform

    ckpt = tiny.write_tiny_openai_clip(tmp_path)
    mlp = _aesthetic_mlp()
    ev = AestheticEvaluator(clip_model=str(ckpt), mlp=mlp, device="cpu", batch_size=2)
    assert any(isinstance(m, QuickGELU) for m in ev.vision_model.modules())
    assert tuple(ev.vision_model.visual.image_size) == (224, 224)
    s = ev.score(images, PROMPTS)
    with torch.no_grad():
        px = torch.stack([openai_clip_transform(224)(im) for im in images])
        expected = mlp(_unit(ev.vision_model.encode_image(px))).squeeze(-1)
    np.testing.assert_allclose(s, expected.double().numpy(), rtol=0, atol=1e-5)
    with pytest.raises(ModelUnavailableError, match=r"local path '\./no-such/ViT-L-14\.pt' does not exist"):
        AestheticEvaluator(clip_model="./no-such/ViT-L-14.pt", mlp=mlp, device="cpu")


# ------------------------------------------------------------------------------- offline failures


@pytest.fixture
def empty_offline_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("INPO_CACHE", str(tmp_path / "inpo-cache"))
    monkeypatch.setenv("OPENCLIP_CACHE_DIR", str(tmp_path / "open_clip"))


@pytest.mark.parametrize(
    "name, opts, must_name, option",
    [
        ("pickscore", {}, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "processor="),
        ("pickscore", {"processor": "inpo-test/missing-proc"}, "inpo-test/missing-proc", "processor="),
        ("aesthetic", {"weights": "<local mlp>"}, "timm/vit_large_patch14_clip_224.openai", "clip_model="),
        ("aesthetic", {"weights": "<local mlp>", "backend": "transformers"}, "openai/clip-vit-large-patch14",
         "clip_model="),
        ("aesthetic", {"weights": "<local mlp>", "backend": "transformers", "clip_model": "inpo-test/missing-l14"},
         "inpo-test/missing-l14", "clip_model="),
        ("aesthetic", {}, WEIGHTS_URL, "weights="),
        ("hps", {}, "xswu/HPSv2/HPS_v2_compressed.pt", "checkpoint="),
        ("hps", {"hps_version": "v2.1"}, "xswu/HPSv2/HPS_v2.1_compressed.pt", "checkpoint="),
        ("clip", {}, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "pretrained="),
    ],
)
def test_missing_hub_model_offline_fails_fast(empty_offline_hub, tmp_path, name, opts, must_name, option):
    if opts.get("weights") == "<local mlp>":  # MLP weights present locally: the CLIP model is what's missing
        torch.save(AestheticMLP().state_dict(), tmp_path / "mlp.pth")
        opts = {**opts, "weights": str(tmp_path / "mlp.pth")}
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as err:
        evaluators.build(name, device="cpu", **opts)
    assert time.perf_counter() - t0 < 30
    msg = str(err.value)
    assert must_name in msg and option in msg and "local path" in msg and "HF_HUB_OFFLINE" in msg


@pytest.mark.parametrize(
    "name, opts, path, option",
    [
        ("aesthetic", {"weights": "/nonexistent/aesthetic.pth"}, "/nonexistent/aesthetic.pth", "weights"),
        ("hps", {"checkpoint": "data/HPS_v2_compressed.pt"}, "data/HPS_v2_compressed.pt", "checkpoint"),
        ("pickscore", {"processor": "./PickScore-processor"}, "./PickScore-processor", "processor"),
        ("clip", {"pretrained": "/no/such/open_clip.bin"}, "/no/such/open_clip.bin", "pretrained"),
        ("hps", {"checkpoint": "x.pt", "model_name": "cfg/tiny.json"}, "cfg/tiny.json", "model_name"),
    ],
)
def test_missing_local_path_is_a_missing_path(empty_offline_hub, tmp_path, monkeypatch, name, opts, path, option):
    """A local-looking path that does not exist is reported as such (not as an unreachable hub id)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    if opts.get("checkpoint") == "x.pt":
        torch.save({"state_dict": {}}, tmp_path / "x.pt")
    with pytest.raises(ModelUnavailableError) as err:
        evaluators.build(name, device="cpu", **opts)
    msg = str(err.value)
    assert f"local path {path!r} does not exist" in msg and f"`{option}`" in msg and "HF_HUB_OFFLINE" not in msg


def test_pickscore_missing_model_named(empty_offline_hub, tiny_hf_clip):
    _, processor = tiny_hf_clip
    with pytest.raises(ModelUnavailableError, match=r"inpo-test/missing-pickscore.*model="):
        PickScoreEvaluator(model="inpo-test/missing-pickscore", clip_processor=processor, device="cpu")


def test_tiny_real_format_files_build_every_evaluator(tmp_path, images):
    """write_tiny_evaluators: the options it returns build all four through their real loaders;
    the same seed writes the same weights."""
    opts = tiny.write_tiny_evaluators(tmp_path / "a")
    assert sorted(opts) == ["aesthetic", "clip", "hps", "pickscore"]
    assert Path(opts["hps"]["checkpoint"]).name == "HPS_v2_compressed.pt"
    scores = {}
    for name, o in opts.items():
        ev = evaluators.build(name, **o)
        assert ev.name == name
        scores[name] = ev.score(images, PROMPTS)
        assert scores[name].shape == (5,) and np.isfinite(scores[name]).all()
        assert np.ptp(scores[name]) > 0
    again = tiny.write_tiny_evaluators(tmp_path / "b")
    np.testing.assert_array_equal(evaluators.build("hps", **again["hps"]).score(images, PROMPTS), scores["hps"])
