"""Tiny SD1.5 / SDXL models: real classes, real CLIP tokenizer, save / reload / export, fail-fast loading."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

SMALL = dict(
    sample_size=16,
    unet_block_channels=(32, 64),
    unet_layers_per_block=1,
    unet_attention_head_dim=8,
    unet_norm_groups=8,
    vae_block_channels=(16, 32),
    vae_norm_groups=8,
    text_hidden_size=32,
    text_intermediate_size=37,
    seed=0,
)


@pytest.fixture(scope="module")
def clip_tok(tmp_path_factory):
    from inpo.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(tmp_path_factory.mktemp("tok"))


def test_clip_tokenizer_matches_open_clip(clip_tok):
    import open_clip

    assert len(clip_tok) == 49408
    assert clip_tok.bos_token_id == 49406 and clip_tok.eos_token_id == 49407
    assert clip_tok.model_max_length == 77
    ref = open_clip.get_tokenizer("ViT-L-14")
    for s in [
        "a red circle on a dark background",
        "Hello, World!! It's 2024: 3.14159 and $1,000...",
            "café naïve Zürich 東京 😀 ñ",  # (curly quotes differ: open_clip applies ftfy)
        "   multiple   spaces\tand\nnewlines   ",
        "",
    ]:
        ours = clip_tok(s).input_ids
        theirs = [int(x) for x in ref([s])[0] if int(x) != 0]
        assert ours == theirs, s
    # well-known ids of the real CLIP vocabulary
    assert clip_tok("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    padded = clip_tok("hi", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[-1] == 49407



def _build_tokenizer_in(folder, pad_token, rounds):
    from inpo.tokenizer import build_clip_tokenizer

    for _ in range(rounds):
        tok = build_clip_tokenizer(folder, pad_token=pad_token)
        assert len(tok) == 49408 and tok.pad_token == pad_token


def test_clip_tokenizer_folder_built_by_parallel_processes(tmp_path):
    """Parallel jobs build the shared tokenizer cache folder at the same time (two toy seeds' toy_init
    jobs did, and one failed with "Token `stopbrex` out of vocabulary": it read a half-written
    merges.txt). Every process must load a complete tokenizer, its own pad token included."""
    import multiprocessing as mp

    from inpo.tokenizer import EOS

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_build_tokenizer_in, args=(tmp_path / "tok", EOS, 3)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    assert sorted(x.name for x in (tmp_path / "tok").iterdir()) == [
        "merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]  # no temporary left

def test_sd_scheduler_config():
    from inpo.models import default_scheduler, sd_scheduler_config

    cfg = sd_scheduler_config()
    assert cfg["beta_schedule"] == "scaled_linear" and cfg["num_train_timesteps"] == 1000
    assert cfg["beta_start"] == 0.00085 and cfg["beta_end"] == 0.012
    assert cfg["steps_offset"] == 1 and cfg["clip_sample"] is False and cfg["set_alpha_to_one"] is False
    s = default_scheduler("sd15")
    # SD1.5 alphas_cumprod: abar_999 ~ 0.0047 (scaled_linear 0.00085 -> 0.012)
    assert abs(float(s.alphas_cumprod[-1]) - 0.004660) < 2e-4
    assert abs(float(s.alphas_cumprod[0]) - (1 - 0.00085)) < 1e-7


def _gen(pipe, **kw):
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        ["a red circle on a dark background", "a blue square"],
        num_inference_steps=2,
        height=16,
        width=16,
        guidance_scale=5.0,
        generator=[torch.Generator().manual_seed(i) for i in range(2)],
        output_type="np",
        **kw,
    ).images
    return out


def test_tiny_sd15_build_save_reload_generate(tmp_path):
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from inpo.models import build_tiny_sd15, load_components, save_pipeline

    comps = build_tiny_sd15(**SMALL)
    assert isinstance(comps["unet"], UNet2DConditionModel)
    assert isinstance(comps["vae"], AutoencoderKL) and comps["vae"].config.latent_channels == 4
    assert isinstance(comps["text_encoder"], CLIPTextModel)
    assert isinstance(comps["tokenizer"], CLIPTokenizer) and len(comps["tokenizer"]) == 49408
    assert comps["unet"].config.cross_attention_dim == 32
    save_pipeline(comps, tmp_path / "p")
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tmp_path / "p" / sub).is_dir()
    assert (tmp_path / "p" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "p")
    assert pipe.safety_checker is None
    assert pipe.vae_scale_factor == 2
    img = _gen(pipe)
    assert img.shape == (2, 16, 16, 3) and np.isfinite(img).all()

    loaded = load_components(tmp_path / "p")
    assert set(loaded) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    for k, v in comps["unet"].state_dict().items():
        assert torch.equal(v, loaded["unet"].state_dict()[k])
    assert type(loaded["scheduler"]).__name__ == "PNDMScheduler"
    # separate VAE from a local folder (pipeline folder or bare vae folder)
    loaded2 = load_components(tmp_path / "p", vae=tmp_path / "p" / "vae")
    assert torch.equal(loaded2["vae"].encoder.conv_in.weight, comps["vae"].encoder.conv_in.weight)
    # an unresolvable separate VAE id fails fast and names the VAE
    from inpo.models import ModelUnavailableError

    t0 = time.time()
    with pytest.raises(ModelUnavailableError, match="madebyollin-fake/vae"):
        load_components(tmp_path / "p", vae="madebyollin-fake/vae")
    assert time.time() - t0 < 5


def test_tiny_sdxl_build_save_reload_generate(tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModelWithProjection

    from inpo.models import build_tiny_sdxl, load_components, save_pipeline

    comps = build_tiny_sdxl(**SMALL)
    assert isinstance(comps["text_encoder_2"], CLIPTextModelWithProjection)
    ucfg = comps["unet"].config
    assert ucfg.addition_embed_type == "text_time"
    assert ucfg.cross_attention_dim == 64  # both encoders' hidden states concatenated
    assert ucfg.projection_class_embeddings_input_dim == 6 * ucfg.addition_time_embed_dim + 32
    assert comps["tokenizer_2"].pad_token == "!"
    save_pipeline(comps, tmp_path / "xl")
    pipe = StableDiffusionXLPipeline.from_pretrained(tmp_path / "xl")
    img = _gen(pipe)
    assert img.shape == (2, 16, 16, 3) and np.isfinite(img).all()
    loaded = load_components(tmp_path / "xl", family="sdxl")
    assert {"text_encoder_2", "tokenizer_2"} <= set(loaded)


def test_export_pipeline_roundtrip(tmp_path):
    from diffusers import StableDiffusionPipeline

    from inpo.models import build_tiny_sd15, export_pipeline, save_pipeline

    comps = build_tiny_sd15(**SMALL)
    save_pipeline(comps, tmp_path / "base")
    unet = comps["unet"]
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.01)
    export_pipeline(tmp_path / "base", unet, tmp_path / "trained")
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "trained")
    for k, v in unet.state_dict().items():
        assert torch.equal(v, pipe.unet.state_dict()[k]), k
    base = StableDiffusionPipeline.from_pretrained(tmp_path / "base")
    assert not torch.equal(base.unet.conv_in.weight, pipe.unet.conv_in.weight)
    for k, v in base.vae.state_dict().items():
        assert torch.equal(v, pipe.vae.state_dict()[k])
    # exporting again over an existing folder replaces it
    export_pipeline(tmp_path / "base", tmp_path / "base" / "unet", tmp_path / "trained")
    again = StableDiffusionPipeline.from_pretrained(tmp_path / "trained")
    assert torch.equal(again.unet.conv_in.weight, base.unet.conv_in.weight)


def test_unknown_hub_id_fails_fast_offline(monkeypatch):
    from inpo.models import ModelUnavailableError, load_components

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(ModelUnavailableError) as ei:
        load_components("nobody-xyz/definitely-not-a-model-123")
    assert time.time() - t0 < 5
    msg = str(ei.value)
    assert "nobody-xyz/definitely-not-a-model-123" in msg and "`model.base=" in msg and "HF_HUB_OFFLINE" in msg
    assert "model.path" not in msg
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("source", ["./no-such-model", "/no/such/model", "tests/no-such-model", "a/b/c"])
def test_missing_local_path_is_reported_as_a_path_not_a_hub_id(source):
    """A local-looking source that does not exist is a missing path (naming model.base), not a hub id."""
    from inpo.hub import is_hub_id
    from inpo.models import ModelUnavailableError, load_components

    assert not is_hub_id(source)
    with pytest.raises(ModelUnavailableError) as ei:
        load_components(source)
    msg = str(ei.value)
    assert f"local path {source!r} does not exist" in msg and "`model.base`" in msg
    assert "hf download" not in msg and "HF_HUB_OFFLINE" not in msg
