"""Generation with a tiny random Stable Diffusion pipeline built from the real diffusers classes."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from inpo.generate import generate_images, image_path, initial_latents, is_valid_png, shard_rows

STEPS = 3


def _components(tokenizer, seed: int, scheduler: str = "pndm"):
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=4, attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, norm_num_groups=4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    sd_sched = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                    steps_offset=1, set_alpha_to_one=False)
    sched = PNDMScheduler(skip_prk_steps=True, **sd_sched) if scheduler == "pndm" else DDIMScheduler(
        clip_sample=False, **sd_sched)
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder.eval(),
            "tokenizer": tokenizer, "scheduler": sched}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from inpo.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def components(tokenizer):
    return _components(tokenizer, seed=0)


@pytest.fixture(scope="module")
def prompts():
    # indices need not be contiguous or start at 0
    return pd.DataFrame({"index": [0, 1, 2, 3, 4, 7, 9],
                         "prompt": ["a cat", "a dog", "a red cube", "the sea", "a tree", "a cat", "ice"]})


def _run(components, prompts, out_dir, **kw):
    kw = {"num_inference_steps": STEPS, "device": "cpu", "progress": False, **kw}
    return generate_images(components, prompts, out_dir, **kw)


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def reference(components, prompts, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    paths = _run(components, prompts, out, batch_size=1)
    return out, paths


def test_writes_one_png_per_prompt(reference, prompts):
    out, paths = reference
    assert paths == [out / f"{i:05d}.png" for i in prompts["index"]]
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in sorted(prompts["index"])]
    for p in paths:
        assert is_valid_png(p)
        with Image.open(p) as im:
            assert im.size == (16, 16) and im.mode == "RGB"
    # different prompt indices get different noise -> different images
    assert not np.array_equal(_pixels(paths[0]), _pixels(paths[1]))
    # same prompt text, different index ("a cat" at 0 and 7) -> different noise -> different image
    assert not np.array_equal(_pixels(out / "00000.png"), _pixels(out / "00007.png"))


def test_same_image_regardless_of_batch_size_and_shards(components, prompts, reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "sharded"
    written = []
    for i in range(3):
        written += _run(components, prompts, out, batch_size=3, shard=(i, 3))
    assert sorted(written) == sorted(out / f"{i:05d}.png" for i in prompts["index"])
    for idx in prompts["index"]:
        a, b = _pixels(ref_dir / f"{idx:05d}.png"), _pixels(out / f"{idx:05d}.png")
        # float32 CPU kernels may differ in the last bit between batch shapes: allow 1/255
        assert np.abs(a - b).max() <= 1, idx
    assert [len(shard_rows(prompts, (i, 3))) for i in range(3)] == [3, 2, 2]
    assert list(shard_rows(prompts, (0, 3))["index"]) == [0, 3, 9]  # rows i::n


def test_resume_skips_valid_images_and_redoes_broken(components, prompts, tmp_path, monkeypatch):
    out = tmp_path / "resume"
    _run(components, prompts.iloc[:3], out, batch_size=2)
    p0, p1 = image_path(out, 0), image_path(out, 1)
    os.utime(p0, (1_000_000, 1_000_000))
    p1.write_bytes(p1.read_bytes()[:40])  # truncated: must be regenerated
    assert not is_valid_png(p1)
    calls = []
    from diffusers import StableDiffusionPipeline

    orig = StableDiffusionPipeline.__call__

    def spy(self, *a, **kw):
        calls.append(list(kw["prompt"]))
        return orig(self, *a, **kw)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", spy)
    paths = _run(components, prompts, out, batch_size=8)
    assert len(paths) == len(prompts)
    assert os.stat(p0).st_mtime == 1_000_000  # untouched
    assert is_valid_png(p1)
    assert calls == [["a dog", "the sea", "a tree", "a cat", "ice"]]  # indices 1, 3, 4, 7, 9
    assert not list(out.glob(".*tmp"))
    # everything present: nothing is generated, not even the pipeline is built
    calls.clear()
    _run({"broken": "not a pipeline"}, prompts, out)
    assert calls == []


def test_two_models_share_initial_noise(tokenizer, prompts, tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    seen: list[tuple[int, torch.Tensor]] = []
    orig = StableDiffusionPipeline.__call__

    def spy(self, *a, **kw):
        seen.append((id(self.unet), kw["latents"].clone()))
        return orig(self, *a, **kw)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", spy)
    rows = prompts.iloc[:4]
    model_a = _components(tokenizer, seed=1)
    model_b = _components(tokenizer, seed=2, scheduler="ddim")
    _run(model_a, rows, tmp_path / "a", batch_size=4, seed_base=100)
    _run(model_b, rows, tmp_path / "b", batch_size=2, seed_base=100)
    lat_a = torch.cat([lat for _, lat in seen[:1]])
    lat_b = torch.cat([lat for _, lat in seen[1:]])
    assert seen[0][0] != seen[1][0]
    assert lat_a.shape == (4, 4, 8, 8)
    torch.testing.assert_close(lat_a, lat_b, rtol=0, atol=0)
    expected = torch.stack([initial_latents(i, (4, 8, 8), 100)[0] for i in rows["index"]])
    torch.testing.assert_close(lat_a, expected, rtol=0, atol=0)
    expected0 = torch.randn((4, 8, 8), generator=torch.Generator("cpu").manual_seed(100 + 0))
    torch.testing.assert_close(lat_a[0], expected0, rtol=0, atol=0)
    # different weights, same noise: images differ
    assert not np.array_equal(_pixels(tmp_path / "a" / "00000.png"), _pixels(tmp_path / "b" / "00000.png"))


def test_saved_folder_and_scheduler_name(components, prompts, reference, tmp_path):
    from diffusers import StableDiffusionPipeline

    folder = tmp_path / "pipe"
    StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)
    rows = prompts.iloc[:2]
    paths = _run(folder, rows, tmp_path / "from_folder", batch_size=2)
    ref_dir, _ = reference
    for p in paths:
        assert np.abs(_pixels(p) - _pixels(ref_dir / p.name)).max() <= 1
    ddim = _run(folder, rows, tmp_path / "ddim", scheduler="ddim")
    assert not np.array_equal(_pixels(ddim[0]), _pixels(paths[0]))  # another sampler, same noise
    with pytest.raises(ValueError, match="unknown scheduler"):
        _run(folder, rows, tmp_path / "bad", scheduler="nope")


def test_toy_pairs_sample_as_the_evaluation(components, prompts, tmp_path):
    """One sampler: the toy's preference pairs (``sample_base_images``, seed s) are the images the evaluation
    draws for prompt index s at ``seed_base=0``, pixel for pixel (same batches: batching moves a pixel by 1 at most)."""
    from diffusers import StableDiffusionPipeline

    from inpo.data.toy import sample_base_images

    folder = tmp_path / "pipe"
    StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)
    rows = prompts.iloc[:4]
    paths = _run(folder, rows, tmp_path / "eval", batch_size=4, scheduler="euler")
    pairs = sample_base_images(folder, list(rows["prompt"]), list(rows["index"]), steps=STEPS, guidance_scale=7.5,
                               batch_size=4, scheduler="euler")
    assert len(pairs) == 4 and pairs[0].dtype == np.uint8 and pairs[0].shape == (16, 16, 3)
    for img, path in zip(pairs, paths):
        np.testing.assert_array_equal(img, _pixels(path).astype(np.uint8))
    shifted = sample_base_images(folder, list(rows["prompt"][:1]), [int(rows["index"].iloc[0]) + 1], steps=STEPS,
                                 guidance_scale=7.5, scheduler="euler")
    assert not np.array_equal(shifted[0], pairs[0])  # the seed is the noise


def test_bad_arguments(components, prompts, tmp_path):
    with pytest.raises(ValueError, match="shard"):
        _run(components, prompts, tmp_path, shard=(3, 3))
    with pytest.raises(ValueError, match="duplicates"):
        _run(components, pd.concat([prompts, prompts]), tmp_path)
    with pytest.raises(ValueError, match="family"):
        _run(components, prompts, tmp_path / "k", family="sd3")


def _sdxl_components(tokenizer, tokenizer_2, seed: int = 0):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, norm_num_groups=4,
        sample_size=16,
    )
    te_cfg = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                  vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                  pad_token_id=49407, hidden_act="gelu", projection_dim=32)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": CLIPTextModel(CLIPTextConfig(**te_cfg)).eval(),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**te_cfg)).eval(),
            "tokenizer": tokenizer, "tokenizer_2": tokenizer_2, "scheduler": sched}


def test_sdxl_batch_and_shard_invariant(tokenizer, prompts, tmp_path_factory):
    from inpo.tokenizer import build_clip_tokenizer

    tok2 = build_clip_tokenizer(tmp_path_factory.mktemp("tok2"), pad_token="!")
    comps = _sdxl_components(tokenizer, tok2)
    rows = prompts.iloc[:3]
    a = _run(comps, rows, tmp_path_factory.mktemp("xl_a"), family="sdxl", batch_size=3)
    out_b, b = tmp_path_factory.mktemp("xl_b"), []
    for i in range(2):
        b += _run(comps, rows, out_b, family="sdxl", batch_size=1, shard=(i, 2))
    by_name = {p.name: p for p in b}
    for p in a:
        with Image.open(p) as im:
            assert im.size == (16, 16)
        assert np.abs(_pixels(p) - _pixels(by_name[p.name])).max() <= 1
