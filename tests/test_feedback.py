from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from inpo.data.feedback import relabel_pairs
from inpo.data.pickapic import PreferencePairs, filter_pairs

RED, BLUE, PINK = (230, 10, 10), (10, 10, 230), (200, 60, 120)


class Redness:
    """Fake evaluator: mean red minus mean blue (the images' colours decide)."""

    name, version = "redness", "test"

    def __init__(self):
        self.calls = []

    def score(self, images, prompts):
        assert len(images) == len(prompts)
        self.calls.append(len(images))
        return np.array(
            [np.asarray(im, dtype=np.float64)[..., 0].mean() - np.asarray(im)[..., 2].mean() for im in images]
        )


@pytest.fixture
def index(tmp_path, jpeg, write_shard):
    red, blue, pink = jpeg(RED, marker=None), jpeg(BLUE, marker=None), jpeg(PINK, marker=None)
    rows = [
        dict(caption="p0", label_0=1.0, jpg_0=red, jpg_1=blue),  # human agrees with redness
        dict(caption="p1", label_0=0.0, jpg_0=blue, jpg_1=red),  # agrees (winner 1)
        dict(caption="p2", label_0=1.0, jpg_0=blue, jpg_1=red),  # disagrees -> flipped to 1
        dict(caption="p3", label_0=0.0, jpg_0=red, jpg_1=pink),  # disagrees -> flipped to 0
        dict(caption="p4", label_0=1.0, jpg_0=pink, jpg_1=pink),  # exactly equal scores -> dropped
        dict(caption="p5", label_0=0.5, jpg_0=red, jpg_1=blue),  # tie, filtered out beforehand
        dict(caption="p6", label_0=1.0, jpg_0=pink, jpg_1=blue),  # agrees
        dict(caption="p7", label_0=0.0, jpg_0=red, jpg_1=b"broken"),  # undecodable -> dropped
        dict(caption="p8", label_0=0.0, jpg_0=blue, jpg_1=pink),  # agrees
    ]
    write_shard(tmp_path / "s" / "a.parquet", rows[:5], row_group_size=2)
    write_shard(tmp_path / "s" / "b.parquet", rows[5:], row_group_size=3)
    m = filter_pairs(tmp_path / "s", tmp_path / "pairs.parquet", tmp_path / "pairs.json")
    assert m["pairs_kept"] == 8
    return tmp_path / "pairs.parquet"


def test_relabel_with_fake_evaluator(index, tmp_path):
    ev = Redness()
    m = relabel_pairs(index, tmp_path / "ai.parquet", ev, batch_size=3)
    assert m["pairs_in"] == 8
    assert m["dropped"] == {"score_tie": 1, "undecodable_image": 1, "nonfinite_score": 0}
    assert m["pairs_kept"] == 6
    assert m["pairs_agreeing"] == 4 and m["pairs_flipped"] == 2
    assert m["agreement_with_human"] == pytest.approx(4 / 6)
    assert m["evaluator"] == {"name": "redness", "version": "test"}
    assert json.loads((tmp_path / "ai.json").read_text()) == m
    assert max(ev.calls) == 6 and sum(ev.calls) == 2 * 7  # batches of <= 3 pairs, undecodable never scored

    t = pq.read_table(tmp_path / "ai.parquet").to_pandas()
    assert t.columns.tolist()[:4] == ["shard", "row", "caption", "winner"]
    assert t["caption"].tolist() == ["p0", "p1", "p2", "p3", "p6", "p8"]
    assert t["winner"].tolist() == [0, 1, 1, 0, 0, 1]
    assert t["human_winner"].tolist() == [0, 1, 0, 1, 0, 1]
    assert (
        np.where(t["winner"] == 0, t["score_0"], t["score_1"])
        > np.where(t["winner"] == 0, t["score_1"], t["score_0"])
    ).all()

    # the relabelled index feeds the same dataset: the redder image comes first
    ds = PreferencePairs(tmp_path / "ai.parquet", 8, random_flip=False)
    for i in range(len(ds)):
        it = ds[i]
        rw = it["pixel_w"][0].mean() - it["pixel_w"][2].mean()
        rl = it["pixel_l"][0].mean() - it["pixel_l"][2].mean()
        assert rw > rl


def test_batch_size_does_not_change_result(index, tmp_path):
    a = relabel_pairs(index, tmp_path / "a.parquet", Redness(), batch_size=1)
    b = relabel_pairs(
        index, tmp_path / "b.parquet", Redness(), batch_size=100, out_manifest=tmp_path / "m.json"
    )
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert a["agreement_with_human"] == b["agreement_with_human"]
    assert (tmp_path / "m.json").exists()
    with pytest.raises(ValueError):
        relabel_pairs(index, tmp_path / "c.parquet", Redness(), batch_size=0)


def test_coin_relabels_at_random_the_shuffled_label_control(index, tmp_path):
    """``coin`` (the shuffled-label control): scores carry no information about the image, are
    deterministic, and relabelled pairs agree with a quality label about half the time."""
    from PIL import Image

    from inpo.data.toy import ToyWorld
    from inpo.evaluators import build

    coin = build("coin")
    world = ToyWorld()
    caps = [world.captions[i % len(world.captions)] for i in range(2000)]
    imgs = [Image.fromarray(a) for a in world.render_batch(caps, seed=3)]
    s = coin.score(imgs, caps)
    assert np.array_equal(s, build("coin").score(imgs, caps))  # deterministic
    assert not np.array_equal(s, build("coin", seed=1).score(imgs, caps))
    assert ((0 <= s) & (s < 1)).all() and abs(s.mean() - 0.5) < 0.03  # uniform: sd of the mean 0.0065
    r = world.hidden_reward(np.stack([np.asarray(im) for im in imgs]), caps)
    assert abs(np.corrcoef(s, r)[0, 1]) < 0.1  # independent of quality (sd of r ~0.022 at n=2000)
    # pairs (2i, 2i+1): the coin's winner agrees with the hidden reward's about half the time
    agree = ((s[0::2] > s[1::2]) == (r[0::2] > r[1::2])).mean()
    assert 0.43 < agree < 0.57  # binomial sd 0.016 at n=1000

    m = relabel_pairs(index, tmp_path / "coin.parquet", coin, batch_size=3)
    assert m["dropped"]["score_tie"] == 1  # the pink/pink pair: the same image, the same score
    assert m["evaluator"] == {"name": "coin", "version": "1"}
    relabel_pairs(index, tmp_path / "coin2.parquet", build("coin"), batch_size=8)
    assert pq.read_table(tmp_path / "coin.parquet").equals(pq.read_table(tmp_path / "coin2.parquet"))
