"""The embedded toy world: rendering, hidden reward, datasets, toy Pick-a-Pic shards, toy evaluators."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from test_models import SMALL

from inpo.data.toy import PICKAPIC_COLUMNS, ToyImageDataset, ToyWorld


@pytest.fixture(scope="module")
def world():
    return ToyWorld()


def test_captions_and_render_determinism(world):
    caps = world.captions
    assert len(caps) == len(set(caps)) == 12
    assert "a red circle on a dark background" in caps
    a = world.render(caps[0], np.random.default_rng(5))
    b = world.render(caps[0], np.random.default_rng(5))
    c = world.render(caps[0], np.random.default_rng(6))
    assert a.dtype == np.uint8 and a.shape == (16, 16, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    ds = ToyImageDataset(world, 10, seed=3)
    assert torch.equal(ds[4]["pixel_w"], ToyImageDataset(world, 10, seed=3)[4]["pixel_w"])
    # the drawn object has (roughly) the caption's colour; the background its brightness
    f = world.features(world.render("a blue square on a light background", np.random.default_rng(0))[None])
    assert f["colour"][0].argmax() == 2 and f["bg"][0].mean() > 0.6


def test_dataset_items(world):
    ds = ToyImageDataset(world, 25, seed=0)
    assert len(ds) == 25
    it = ds[13]
    assert set(it) == {"pixel_w", "caption", "index"} and it["index"] == 13
    x = it["pixel_w"]
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16)
    assert -1.0 <= float(x.min()) < float(x.max()) <= 1.0
    assert it["caption"] == world.captions[13 % 12]
    with pytest.raises(IndexError):
        ds[25]


def test_reward_range_and_headroom(world):
    ds = ToyImageDataset(world, 240, seed=1)
    imgs = ds.images()
    caps = [ds.caption(i) for i in range(240)]
    r = world.hidden_reward(imgs, caps)
    assert r.dtype == np.float64 and r.shape == (240,)
    assert ((r >= 0) & (r <= 1)).all()
    # training images score decently but not at the maximum: preference optimisation has headroom
    assert 0.55 < r.mean() < 0.85 and r.max() < 0.99
    # the same images in every input layout give the same reward
    r_f = world.hidden_reward(imgs.astype(np.float32) / 255.0, caps)
    r_t = world.hidden_reward(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0, caps)
    np.testing.assert_allclose(r, r_f, atol=1e-6)
    np.testing.assert_allclose(r, r_t, atol=1e-6)
    # wrong colour in the caption -> much lower reward
    wrong = [c.replace("red", "TMP").replace("blue", "red").replace("TMP", "blue") for c in caps]
    sel = [i for i, c in enumerate(caps) if "green" not in c]
    assert world.hidden_reward(imgs[sel], [wrong[i] for i in sel]).mean() < r[sel].mean() - 0.2


def _ideal(world, caption, colour=None, size=None, offset=0.0):
    w = ToyWorld(**{**world.to_dict(), "colour_jitter": 0.0, "background_jitter": 0.0, "position_jitter": 0.0})
    c0 = world.ideal_colour(caption)
    if colour is not None:
        w.colour_table = {**w.colour_table, world.parse(caption)[0]: tuple(colour)}
    r = np.sqrt(world.target_area / np.pi) if size is None else size
    w.size_range = (r, r)
    img = w.render(caption, np.random.default_rng(0))
    if offset:
        img = np.roll(img, int(offset * world.image_size), axis=1)
    return img, c0


def test_reward_prefers_intended_properties_and_is_smooth(world):
    cap = "a red circle on a dark background"
    best, c0 = _ideal(world, cap)
    r_best = world.hidden_reward(best[None], [cap])[0]
    assert r_best > 0.9
    # colour moving away from the ideal lowers the reward monotonically and smoothly
    prev = r_best
    rs = []
    for d in np.linspace(0.0, 0.5, 11)[1:]:
        img, _ = _ideal(world, cap, colour=np.clip(c0 + np.array([-d, d, 0.0]), 0, 1))
        r = world.hidden_reward(img[None], [cap])[0]
        rs.append(r)
        assert r < prev + 1e-9
        assert prev - r < 0.12  # no jumps: a broad kernel
        prev = r
    assert rs[-1] < r_best - 0.3
    # off-centre and too small/large objects are dispreferred
    off, _ = _ideal(world, cap, offset=0.2)
    small, _ = _ideal(world, cap, size=0.1)
    large, _ = _ideal(world, cap, size=0.4)
    for img in (off, small, large):
        assert world.hidden_reward(img[None], [cap])[0] < r_best - 0.05
    # a tiny pixel perturbation changes the reward only a little (smooth in pixels)
    noise = np.random.default_rng(0).normal(0, 2.0, best.shape)
    pert = np.clip(best + noise, 0, 255).astype(np.uint8)
    assert abs(world.hidden_reward(pert[None], [cap])[0] - r_best) < 0.02
    # an empty image scores low
    empty = np.full_like(best, 40)
    assert world.hidden_reward(empty[None], [cap])[0] < 0.3


def test_eval_prompts(world, tmp_path):
    from inpo.data.toy import eval_prompts

    p = eval_prompts(world, n=480)
    assert len(p) == 480 and set(p) == set(world.captions)
    assert p == eval_prompts(world, n=480)
    assert all(p.count(c) == 40 for c in world.captions)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    from inpo.models import build_tiny_sd15, save_pipeline

    root = tmp_path_factory.mktemp("toy_pipe")
    comps = build_tiny_sd15(**SMALL)  # the small test model of test_models
    save_pipeline(comps, root / "base")
    return root / "base"


def test_preference_shards_schema_ties_corrupt(tiny_pipeline, tmp_path):
    import pyarrow.parquet as pq

    from inpo.data.toy import make_preference_shards, pickapic_schema

    world = ToyWorld(image_size=16)
    man = make_preference_shards(
        tiny_pipeline, world, tmp_path / "shards", n_prompts=50, images_per_prompt=2, steps=2,
        guidance_scale=3.0, tie_fraction=0.12, n_corrupt=3, shard_size=20, seed=0,
    )
    files = sorted((tmp_path / "shards").glob("train-*.parquet"))
    assert len(files) == 3 and man["n_rows"] == 50
    for f in files:
        sch = pq.read_schema(f)
        assert sch.names == PICKAPIC_COLUMNS
        assert sch.equals(pickapic_schema(), check_metadata=False)
    df = pq.read_table(files).to_pandas() if False else __import__("pandas").concat(
        [pq.read_table(f).to_pandas() for f in files], ignore_index=True
    )
    assert set(df["label_0"].unique()) <= {0.0, 0.5, 1.0}
    assert (df["label_0"] + df["label_1"] == 1.0).all()
    n_ties = int((df["label_0"] == 0.5).sum())
    assert n_ties == man["n_ties"] and 4 <= n_ties <= 8  # ~12% of 50
    assert set(df["caption"]) <= set(world.captions)
    assert df["has_label"].all() and df["are_different"].all()

    def ok(b):
        try:
            Image.open(io.BytesIO(b)).convert("RGB").load()
            return True
        except Exception:
            return False

    bad = [i for i in range(len(df)) if not (ok(df["jpg_0"][i]) and ok(df["jpg_1"][i]))]
    assert bad == man["corrupt_rows"] and len(bad) == 3
    good = Image.open(io.BytesIO(df["jpg_0"][[i for i in range(len(df)) if i not in bad][0]]))
    assert good.size == (16, 16)
    # labels agree with the hidden reward on decided, intact rows
    for i in range(len(df)):
        if i in bad or df["label_0"][i] == 0.5:
            continue
        a = np.asarray(Image.open(io.BytesIO(df["jpg_0"][i])).convert("RGB"))
        b = np.asarray(Image.open(io.BytesIO(df["jpg_1"][i])).convert("RGB"))
        r = world.hidden_reward(np.stack([a, b]), [df["caption"][i]] * 2)
        assert (r[0] > r[1]) == (df["label_0"][i] == 1.0)

    # the shared filter accepts the shards and counts ties and corrupt pairs
    from inpo.data.pickapic import filter_pairs

    fm = filter_pairs(tmp_path / "shards", tmp_path / "pairs.parquet", tmp_path / "m.json", check_images=True)
    assert fm["dropped"]["tie"] == n_ties
    assert fm["dropped"]["undecodable_image"] == 3


def test_pretrain_vae_sets_scaling_factor(world):
    from inpo.data.toy import pretrain_vae
    from inpo.models import build_tiny_sd15

    w = ToyWorld(image_size=16)
    vae = build_tiny_sd15(sample_size=16, vae_block_channels=(16, 32), vae_norm_groups=8)["vae"]
    m = pretrain_vae(vae, w, steps=30, batch_size=8, lr=2e-3, seed=0)
    assert m["vae_val_mse"] < 0.3
    assert vae.config.scaling_factor == pytest.approx(m["scaling_factor"])
    x = ToyImageDataset(w, 32, seed=9)
    with torch.no_grad():
        z = vae.encode(torch.stack([x[i]["pixel_w"] for i in range(32)])).latent_dist.sample()
    assert 0.5 < float(z.std() * vae.config.scaling_factor) < 2.0


def test_toy_evaluators(world):
    from inpo.evaluators import build

    ds = ToyImageDataset(world, 36, seed=2)
    ims = [Image.fromarray(ds.image(i)) for i in range(36)]
    caps = [ds.caption(i) for i in range(36)]
    other = {"red": "blue", "blue": "green", "green": "red"}
    wrong = [" ".join(other.get(w, w) for w in c.split()) for c in caps]
    res = {}
    for name in ("toy_reward", "toy_pickscore", "toy_hps", "toy_aesthetic", "toy_clip"):
        ev = build(name)
        assert ev.name == name and isinstance(ev.version, str) and ev.version
        s = ev.score(ims, caps)
        assert s.dtype == np.float64 and s.shape == (36,) and np.isfinite(s).all()
        assert np.array_equal(s, ev.score(ims, caps))  # deterministic
        res[name] = (s, ev.score(ims, wrong))
        assert ev.score([], []).shape == (0,)
        with pytest.raises(ValueError):
            ev.score(ims[:2], caps[:1])
    np.testing.assert_allclose(res["toy_reward"][0], world.hidden_reward(ds.images(), caps))
    for name in ("toy_reward", "toy_pickscore", "toy_hps", "toy_clip"):
        assert res[name][1].mean() < res[name][0].mean()  # caption-dependent
    np.testing.assert_array_equal(res["toy_aesthetic"][0], res["toy_aesthetic"][1])  # caption-independent
    # preference stand-ins correlate with the hidden reward but are not identical to it
    r = res["toy_reward"][0]
    for name in ("toy_pickscore", "toy_hps"):
        c = np.corrcoef(r, res[name][0])[0, 1]
        assert 0.7 < c < 0.9999
    # aesthetic prefers clean images over noisy ones
    rng = np.random.default_rng(0)
    noisy = [Image.fromarray(np.clip(np.asarray(im) + rng.normal(0, 25, (16, 16, 3)), 0, 255).astype(np.uint8))
             for im in ims]
    assert build("toy_aesthetic").score(noisy, caps).mean() < res["toy_aesthetic"][0].mean() - 0.5
    # world options pass through kwargs
    small = build("toy_reward", image_size=16)
    assert small.world.image_size == 16


def test_base_quality_ratio_by_hand(world):
    """The base-quality table: the samples' mean score over the training images' (recomputed here)."""
    import pandas as pd

    from inpo.data.toy import base_quality
    from inpo.evaluators import build

    scorer = build("toy_reward")
    scores = pd.DataFrame({"model": "base", "prompt_set": ["toy"] * 3 + ["other"] * 2, "index": [0, 1, 2, 0, 1],
                           "evaluator": "toy_reward", "score": [0.2, 0.4, 0.6, 0.5, 0.7]})
    t = base_quality(scores, scorer, world, n_train=24, seed=5).set_index("prompt_set")
    ds = ToyImageDataset(world, 24, seed=5)
    train = world.hidden_reward(ds.images(), [ds.caption(i) for i in range(24)])
    assert list(t.index) == ["toy", "other"] and t.loc["toy", "n_samples"] == 3 and t.loc["toy", "n_train"] == 24
    assert t.loc["toy", "samples_mean"] == pytest.approx(0.4) and t.loc["toy", "samples_sd"] == pytest.approx(0.2)
    assert t.loc["toy", "train_mean"] == pytest.approx(train.mean())
    assert t.loc["toy", "ratio"] == pytest.approx(0.4 / train.mean())
    assert t.loc["other", "ratio"] == pytest.approx(0.6 / train.mean())
    # another seed draws other training images
    assert base_quality(scores, scorer, world, n_train=24, seed=6)["train_mean"][0] != t.loc["toy", "train_mean"]
    with pytest.raises(ValueError, match="toy_hps"):
        base_quality(scores.assign(evaluator="toy_hps"), scorer, world, n_train=4, seed=0)


def test_seed_moves_generation_noise_and_is_validated():
    from inpo.config import train_config_from_dict
    from inpo.experiment import SEED_STRIDE, generation_seed_base

    cfg = {"seed": 2, "evaluation": {"generation": {"seed_base": 100000}}}
    assert generation_seed_base(cfg) == 100000 + 2 * SEED_STRIDE == 2_100_000
    assert generation_seed_base({"evaluation": {"generation": {"seed_base": 7}}}) == 7  # seed 0 by default
    base = {"output_dir": "o", "state_dir": "s", "data": {"examples": "toy_images"}, "method": {"name": "sft"}}
    assert train_config_from_dict({**base, "seed": 3}).seed == 3
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        train_config_from_dict({**base, "seed": -1})
