"""SDXL conditioning values: the text conditioner equals diffusers' own SDXL prompt encoding
(penultimate hidden states of both encoders, pooled embedding of the second) and the
micro-conditioning ``time_ids = [res, res, 0, 0, res, res]`` at the training resolution."""

from __future__ import annotations

import pytest
import torch

from inpo.conditioning import TextConditioner
from inpo.models import build_tiny_sdxl, make_pipeline

CAPTIONS = ["a red cube", "", "an oil painting of mountains at dusk"]


@pytest.fixture(scope="module")
def sdxl():
    return build_tiny_sdxl(sample_size=16, unet_block_channels=(32, 64), unet_norm_groups=8,
                           vae_block_channels=(16, 32), vae_norm_groups=8)


@pytest.mark.parametrize("resolution", [16, 24])
def test_text_conditioner_equals_diffusers_sdxl_encoding(sdxl, resolution):
    tc = TextConditioner([sdxl["tokenizer"], sdxl["tokenizer_2"]], [sdxl["text_encoder"], sdxl["text_encoder_2"]],
                         family="sdxl", resolution=resolution)
    cond = tc(CAPTIONS, "cpu")
    pipe = make_pipeline(sdxl)
    with torch.no_grad():
        emb, _, pooled, _ = pipe.encode_prompt(CAPTIONS, device="cpu", num_images_per_prompt=1,
                                               do_classifier_free_guidance=False)
    torch.testing.assert_close(cond.hidden, emb, rtol=0, atol=0)
    torch.testing.assert_close(cond.added["text_embeds"], pooled, rtol=0, atol=0)
    r = resolution
    assert cond.added["time_ids"].tolist() == [[r, r, 0, 0, r, r]] * len(CAPTIONS)
    want = pipe._get_add_time_ids((r, r), (0, 0), (r, r), dtype=emb.dtype,
                                  text_encoder_projection_dim=sdxl["text_encoder_2"].config.projection_dim)
    torch.testing.assert_close(cond.added["time_ids"], want.repeat(len(CAPTIONS), 1), rtol=0, atol=0)
    # the UNet really takes them: its add-embedding input width matches
    unet = sdxl["unet"]
    width = unet.config.addition_time_embed_dim * 6 + pooled.shape[-1]
    assert unet.add_embedding.linear_1.in_features == width
