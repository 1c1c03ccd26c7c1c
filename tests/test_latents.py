"""Precomputed VAE latents (inpo.data.latents): a run that reads the stored posterior equals a run that
encodes on the fly; the store keeps the loader's order and flips; a store of other settings is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_utils import RESOLUTION, build_world, make_run_cfg, read_log

from inpo.config import train_config_from_dict
from inpo.data.latents import (
    MANIFEST_FILE,
    LatentImages,
    LatentPairs,
    LatentsMismatchError,
    encode_latents,
    load_vae,
    weights_sha256,
)
from inpo.data.pickapic import PreferencePairs
from inpo.trainer import PairStream, micro_batch_loader, sample_latents, train

# measured on this machine (tiny random VAE, fp32 on CPU): the stored fp32 posterior is the on-the-fly
# one up to float noise of the VAE's batched convolutions; fp16 storage rounds mean and log-variance
FP32_TOL = 1e-5
FP16_TOL = 2e-3


COLORS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (200, 200, 30), (30, 200, 200)]


@pytest.fixture(scope="module")
def world(tmp_path_factory, jpeg, write_shard):
    """The tiny random SD1.5 of train_utils; 6 pairs of swatches with a white left quarter (a flip
    shows) of several sizes, filtered into an image pack (``pairs.parquet``); the per-image set of
    those pairs (``img/images.parquet``); fp32 and fp16 stores of the pairs, an fp32 one of the images."""
    from inpo.data.per_image import build_image_index
    from inpo.data.pickapic import filter_pairs

    root = build_world(tmp_path_factory.mktemp("latents"), jpeg, write_shard, n_pairs=2)
    rows = [dict(caption=f"pair {i}", label_0=float(i % 2), jpg_0=jpeg(COLORS[i % 5], size=(24 + i, 16)),
                 jpg_1=jpeg(COLORS[(i + 2) % 5], size=(16, 20 + i))) for i in range(6)]
    write_shard(root / "m" / "train-0.parquet", rows, row_group_size=4)
    filter_pairs(root / "m", root / "pairs.parquet", root / "manifest.json", images_dir=root / "pack")
    build_image_index(root / "pairs.parquet", root / "manifest.json", root / "img" / "images.parquet",
                      root / "img" / "images.json")
    for dtype in ("float32", "float16"):
        encode_latents(root / "pairs.parquet", root / f"lat_{dtype}", pretrained=str(root / "base"),
                       resolution=RESOLUTION, dtype=dtype, batch_size=4)
    encode_latents(root / "img" / "images.parquet", root / "img_lat", pretrained=str(root / "base"),
                   resolution=RESOLUTION, dtype="float32")
    return root


def test_store_holds_both_flips_of_winner_and_loser(world):
    m = json.loads((world / "lat_float32" / MANIFEST_FILE).read_text())
    assert m["shape"] == [6, 2, 2, 8, 8, 8] and m["index_rows"] == 6 and m["resolution"] == RESOLUTION
    assert m["bytes"] == 6 * 2 * 2 * 8 * 8 * 8 * 4 + 128  # fp32 array behind numpy's 128-byte header
    assert not list(world.glob("*.tmp"))  # written under a temporary name, renamed
    vae = load_vae(str(world / "base")).eval()
    assert m["vae_sha256"] == weights_sha256(vae)
    px = PreferencePairs(world / "pairs.parquet", RESOLUTION, seed=3)
    lat = LatentPairs(world / "pairs.parquet", world / "lat_float32", RESOLUTION, seed=3)
    arr = lat.moments.array
    for epoch in (0, 1, 2):
        for ds in (px, lat):
            ds.set_epoch(epoch)
        for i in range(6):
            assert lat.flips(i) == px.flips(i)
            item, ref = lat[i], px[i]
            assert item["caption"] == ref["caption"] and item["index"] == i
            with torch.no_grad():
                enc = vae.encode(torch.stack([ref["pixel_w"], ref["pixel_l"]])).latent_dist.parameters
            got = torch.stack([item["moments_w"], item["moments_l"]])
            assert (got - enc).abs().max().item() < FP32_TOL
    flipped = [px.flips(i, e) for i in range(6) for e in (0, 1, 2)]
    assert {f for fl in flipped for f in fl} == {False, True}  # both flips were drawn and compared
    for i in range(6):  # the flip axis holds the mirrored image's posterior (the white quarter moves)
        assert np.abs(arr[i, :, 0] - arr[i, :, 1]).max() > 1e-2


def test_same_sample_function_and_training_parity(world, tmp_path):
    """Two DPO updates: loss, errors and gradient norm of the on-the-fly run, the fp32 store's run and the
    fp16 store's run (same flips, same noise generators, same sampling function)."""
    logs = {}
    for name, latents in (("off", ""), ("f32", str(world / "lat_float32")), ("f16", str(world / "lat_float16"))):
        c = make_run_cfg(world, name, tmp_path, method={"name": "dpo", "beta": 500.0},
                         data={"examples": "pairs", "index": str(world / "pairs.parquet"), "resolution": RESOLUTION,
                               "latents": latents})
        train(c)
        logs[name] = np.array([[float(r[k]) for k in ("loss", "model_err_w", "model_err_l", "grad_norm")]
                               for r in read_log(c.log_csv)])
    assert logs["off"].shape == (2, 4)
    rel32 = np.abs(logs["f32"] - logs["off"]) / np.abs(logs["off"])
    rel16 = np.abs(logs["f16"] - logs["off"]) / np.abs(logs["off"])
    # measured: update 1 (loss, errors, gradient norm) fp32 5.3e-6, fp16 5.3e-6; update 2's errors and
    # gradient norm fp32 8.5e-6, fp16 6.9e-5; update 2's loss (beta 500 times a difference of errors, so
    # the float noise is amplified) fp32 1.4e-4, fp16 7.8e-4
    assert rel32[0].max() < 2e-5 and rel16[0].max() < 2e-5
    assert rel32[1, 1:].max() < 3e-5 and rel16[1, 1:].max() < 3e-4
    assert rel32[1, 0] < 1e-3 and rel16[1, 0] < 3e-3
    # the latents themselves: the store's posterior sample against the on-the-fly one, same generators
    vae = load_vae(str(world / "base")).eval()
    px = PreferencePairs(world / "pairs.parquet", RESOLUTION, seed=3)
    lat = {d: LatentPairs(world / "pairs.parquet", world / f"lat_{d}", RESOLUTION, seed=3) for d in ("float32", "float16")}
    with torch.no_grad():
        moments = vae.encode(torch.stack([px[i]["pixel_w"] for i in range(6)])).latent_dist.parameters
    ref = sample_latents(moments, [torch.Generator().manual_seed(i) for i in range(6)], vae.config.scaling_factor)
    for d, tol in (("float32", 1e-6), ("float16", 2e-3)):  # measured 0.0 and 3.8e-4 (latents' std 1.03)
        got = sample_latents(torch.stack([lat[d][i]["moments_w"] for i in range(6)]).float(),
                             [torch.Generator().manual_seed(i) for i in range(6)], vae.config.scaling_factor)
        assert (got - ref).abs().max().item() < tol
    # sample_latents is the trainer's one sampler: the same moments and generators give the same latents
    m = torch.randn(2, 8, 4, 4)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    a = sample_latents(m, gens, 0.5)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    mean, logvar = m.chunk(2, dim=1)
    noise = torch.stack([torch.randn(4, 4, 4, generator=g) for g in gens])
    assert torch.allclose(a, 0.5 * (mean + torch.exp(0.5 * logvar) * noise), atol=1e-6)


def test_per_image_kto_run_from_the_store_equals_on_the_fly(world, tmp_path):
    """Diffusion-KTO on the per-image set (weighted draws, one image per draw) from the fp32 store."""
    logs = {}
    for name, latents in (("off", ""), ("on", str(world / "img_lat"))):
        c = make_run_cfg(world, f"kto-{name}", tmp_path, method={"name": "kto", "beta": 100.0},
                         optim={"learning_rate": 1e-5, "scale_lr": False, "warmup_updates": 0},
                         data={"examples": "images", "index": str(world / "img" / "images.parquet"),
                               "resolution": RESOLUTION, "positive_ratio": 0.8, "latents": latents},
                         micro_batch_size=3)
        train(c)
        logs[name] = np.array([[float(r[k]) for k in ("loss", "model_err_w", "grad_norm")] for r in read_log(c.log_csv)])
    assert logs["off"].shape == (2, 3)
    assert logs["on"][1, 2] > 1.0  # the second update still learns (no saturated loss)
    np.testing.assert_allclose(logs["on"], logs["off"], rtol=2e-5)  # measured 1.3e-6


def test_a_failed_encode_leaves_no_store(world, tmp_path, monkeypatch):
    from inpo.data import pickapic

    def broken(self, i):
        if i == 3:
            raise pickapic.ImageDecodeError("row 3 unreadable")
        return orig(self, i)

    orig = pickapic.PreferencePairs.load_images
    monkeypatch.setattr(pickapic.PreferencePairs, "load_images", broken)
    with pytest.raises(pickapic.ImageDecodeError, match="row 3"):
        encode_latents(world / "pairs.parquet", tmp_path / "store", pretrained=str(world / "base"),
                       resolution=RESOLUTION, batch_size=2)
    assert list(tmp_path.iterdir()) == []


def _cfg(B, A, workers=0):
    return train_config_from_dict({
        "output_dir": "unused", "state_dir": "unused",
        "data": {"examples": "pairs", "index": "unused", "resolution": RESOLUTION, "num_workers": workers},
        "micro_batch_size": B, "grad_accum": A, "max_updates": 3, "seed": 5,
    })


def _batches(world, c, start=0, n_proc=1, rank=0, winners_only=False):
    ds = LatentPairs(world / "pairs.parquet", world / "lat_float16", RESOLUTION, seed=c.seed,
                     winners_only=winners_only)
    return list(micro_batch_loader(ds, PairStream(len(ds), c.seed), c, n_proc, rank, start))


def _flat(bs, key):
    return [x for b in bs for x in b[key]]


def test_loader_invariants_hold_for_latents(world):
    ref = _batches(world, _cfg(4, 1))
    order, moments = _flat(ref, "index"), torch.cat([b["moments_w"] for b in ref])
    for c in (_cfg(2, 2), _cfg(1, 4), _cfg(2, 2, workers=2)):  # B x A == 1 x (B*A); workers == in-process
        bs = _batches(world, c)
        assert _flat(bs, "index") == order and _flat(bs, "epoch") == _flat(ref, "epoch")
        assert torch.equal(torch.cat([b["moments_w"] for b in bs]), moments)
        assert torch.equal(torch.cat([b["moments_l"] for b in bs]), torch.cat([b["moments_l"] for b in ref]))
    r0, r1 = (_batches(world, _cfg(1, 2), n_proc=2, rank=r) for r in (0, 1))  # two processes
    assert [b["index"][0] for pair in zip(r0, r1) for b in pair] == order
    tail = _batches(world, _cfg(4, 1), start=2)  # resume at update 2
    assert tail[0]["index"] == ref[2]["index"] and torch.equal(tail[0]["moments_w"], ref[2]["moments_w"])
    assert ref[0]["moments_w"].dtype == torch.float16 and ref[0]["moments_w"].shape == (4, 8, 8, 8)
    sft = _batches(world, _cfg(4, 1), winners_only=True)
    assert "moments_l" not in sft[0] and torch.equal(sft[0]["moments_w"], ref[0]["moments_w"])


def test_per_image_store_draws_the_labelled_images_flips(world):
    from inpo.data.per_image import LabelledImages

    px = LabelledImages(world / "img" / "images.parquet", RESOLUTION, seed=2)
    lat = LatentImages(world / "img" / "images.parquet", world / "img_lat", RESOLUTION, seed=2)
    assert len(lat) == len(px) == 12 and np.array_equal(lat.desirable, px.desirable)
    vae = load_vae(str(world / "base")).eval()
    for key in (0, 17):  # the stream's key (a draw's global position) seeds the flip
        px.set_epoch(key)
        lat.set_epoch(key)
        with torch.no_grad():
            enc = vae.encode(torch.stack([px[i]["pixel_w"] for i in range(12)])).latent_dist.parameters
        got = torch.stack([lat[i]["moments_w"] for i in range(12)])
        assert (got - enc).abs().max().item() < FP32_TOL
        assert [lat[i]["desirable"] for i in range(12)] == [px[i]["desirable"] for i in range(12)]


def test_a_store_of_other_settings_is_refused(world, tmp_path):
    with pytest.raises(LatentsMismatchError, match=r"lat_float16/manifest\.json: key 'resolution' is 16, the run needs 8"):
        LatentPairs(world / "pairs.parquet", world / "lat_float16", 8)
    with pytest.raises(LatentsMismatchError, match=r"manifest\.json: key 'vae_sha256'"):
        LatentPairs(world / "pairs.parquet", world / "lat_float16", RESOLUTION, vae_sha256="0" * 64)
    with pytest.raises(LatentsMismatchError, match=r"key 'layout' is 'pairs'"):
        LatentImages(world / "img" / "images.parquet", world / "lat_float16", RESOLUTION)
    # a run whose VAE is another one (another random tiny pipeline) fails before its first update
    from inpo.models import build_tiny_sd15, save_pipeline

    comps = build_tiny_sd15(sample_size=RESOLUTION, unet_block_channels=(32, 64), unet_norm_groups=8,
                            vae_block_channels=(16, 32), vae_norm_groups=8, seed=1)
    save_pipeline(comps, tmp_path / "other")
    c = make_run_cfg(world, "other", tmp_path, model={"pretrained": str(tmp_path / "other")},
                     data={"examples": "pairs", "index": str(world / "pairs.parquet"), "resolution": RESOLUTION,
                           "latents": str(world / "lat_float16")})
    with pytest.raises(LatentsMismatchError, match=r"key 'vae_sha256' is '[0-9a-f]{64}', the run needs"):
        train(c)
    with pytest.raises(ValueError, match="data.latents: a latents store is read with the index"):
        make_run_cfg(world, "x", tmp_path, method={"name": "sft"}, data={"examples": "toy_images", "latents": "somewhere"})


def _job_blocks(dry_run_output: str) -> list[dict[str, str]]:
    """rule, input and output of every job a dry run lists."""
    jobs: list[dict[str, str]] = []
    for line in dry_run_output.splitlines():
        s = line.strip()
        if (s.startswith("rule ") or s.startswith("localrule ")) and s.endswith(":"):
            jobs.append({"rule": s.split(" ", 1)[1][:-1], "input": "", "output": ""})
        elif jobs and s.split(":", 1)[0] in ("input", "output"):
            jobs[-1][s.split(":", 1)[0]] = s.split(":", 1)[1]
    return jobs


def test_precompute_latents_adds_the_rule_before_the_runs_that_read_it(tmp_path):
    """The toy DAG at smoke size with data.precompute_latents: one `latents` job per index the runs train
    on (pairs, the AI-feedback and the coin-relabelled pairs, the per-image set), each after the job that writes its index, and
    every pair or per-image run reads its index's store (the toy base, procedural images, none)."""
    from workflow_utils import SMOKE, copy_workflow, run_snakemake

    work = copy_workflow(tmp_path)
    (work / "config" / "latents.yaml").write_text("data: {precompute_latents: true, latents_dtype: float32}\n")
    jobs = _job_blocks(run_snakemake(work, "-n", "all", *SMOKE, "config/latents.yaml").stdout)
    stores = {j["output"].strip(): j for j in jobs if j["rule"] == "latents"}
    assert sorted(stores) == [f"results/data/latents/{i}"
                              for i in ("pairs", "pairs_coin", "pairs_toy_pickscore", "per_image/pairs")]
    writers = {o.strip(): j["rule"] for j in jobs for o in j["output"].split(",")}
    assert {s: writers[j["input"].split(",")[0].strip()] for s, j in stores.items()} == {
        "results/data/latents/pairs": "filter_pairs", "results/data/latents/pairs_coin": "ai_feedback",
        "results/data/latents/pairs_toy_pickscore": "ai_feedback", "results/data/latents/per_image/pairs": "per_image"}
    reads = {}
    for j in jobs:
        if j["rule"] == "train":
            run = j["output"].split("results/models/")[1].split("/")[0]
            reads[run] = [s for s in stores if s in j["input"].split(", ")]
    assert reads == {"base": [], "sft": ["results/data/latents/pairs"], "inpo": ["results/data/latents/pairs"],
                     "dpo": ["results/data/latents/pairs"], "beta-500": ["results/data/latents/pairs"],
                     "init-sft": ["results/data/latents/pairs"],
                     "inpo-aif": ["results/data/latents/pairs_toy_pickscore"],
                     "inpo-shuffled": ["results/data/latents/pairs_coin"],
                     "kto": ["results/data/latents/per_image/pairs"]}
    # and the default (the reference code's on-the-fly encode): no latents job
    jobs = _job_blocks(run_snakemake(work, "-n", "all", *SMOKE).stdout)
    assert not [j for j in jobs if j["rule"] == "latents"]
