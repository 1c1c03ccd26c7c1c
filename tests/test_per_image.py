"""Diffusion-KTO as its repository runs it: the per-image data set (groups by image uid, manifest
counts, one image's bytes per read), the weighted sampler (positive ratio, determinism, the
B x A / processes / resume invariants) and the recipe of config/paper_sd15.yaml."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from inpo.data.per_image import LabelledImages, WeightedImageStream, build_image_index
from inpo.data.pickapic import filter_pairs

ROOT = Path(__file__).resolve().parents[1]

# A, B, ... are image uids, each a solid JPEG of its own colour and size (so its bytes are its own)
COLORS = {u: (20 * i + 10, 255 - 25 * i, 60 + 15 * i) for i, u in enumerate("ABCDEFGH")}


def _img(jpeg, uid):
    i = "ABCDEFGH".index(uid)
    return jpeg(COLORS[uid], size=(24 + 8 * i, 16 + 4 * i), marker=None)


# (image_0, image_1, label_0): A beats B; C beats A (A did both); D beats E; F-G tie; D-H tie
PAIRS = [("A", "B", 1.0), ("A", "C", 0.0), ("D", "E", 1.0), ("F", "G", 0.5), ("H", "D", 0.5)]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory, jpeg, write_shard):
    root = tmp_path_factory.mktemp("per_image")
    rows = [dict(caption=f"prompt {i}", label_0=l0, jpg_0=_img(jpeg, a), jpg_1=_img(jpeg, b),
                 image_0_uid=a, image_1_uid=b) for i, (a, b, l0) in enumerate(PAIRS)]
    write_shard(root / "shards" / "train-00000-of-00001.parquet", rows)
    m = filter_pairs(root / "shards", root / "pairs.parquet", root / "pairs_manifest.json",
                     images_dir=root / "pack", check_images=True)
    assert m["pairs_kept"] == 3 and m["dropped"]["tie"] == 2
    return root


def test_manifest_counts_won_lost_both_and_ties(tiny_set):
    root = tiny_set
    m = build_image_index(root / "pairs.parquet", root / "pairs_manifest.json", root / "img.parquet",
                          root / "img.json", policy="gt_label_wi_l")
    # won only: C, D (D's tie with H counts for nothing); lost only: B, E; both: A; only in ties: F, G, H
    assert m["groups"] == {"won_only": 2, "lost_only": 2, "both": 1}
    assert m["tie_only"] == 3
    assert (m["images"], m["desirable"], m["undesirable"], m["dropped_by_policy"]) == (5, 3, 2, 0)
    assert json.loads((root / "img.json").read_text()) == m
    import pyarrow.parquet as pq

    t = pq.read_table(root / "img.parquet").to_pandas()
    assert t["uid"].tolist() == ["A", "B", "C", "D", "E"]  # first appearance, winner before loser
    assert t["group"].tolist() == ["both", "lost_only", "won_only", "won_only", "lost_only"]
    assert t["desirable"].tolist() == [True, False, True, True, False]
    assert t["caption"].tolist() == ["prompt 0", "prompt 0", "prompt 1", "prompt 2", "prompt 2"]


@pytest.mark.parametrize("policy, desirable, images", [("gt_label_w_il", 2, 5), ("gt_label_w_l", 2, 4)])
def test_other_policies_of_the_reference(tiny_set, tmp_path, policy, desirable, images):
    m = build_image_index(tiny_set / "pairs.parquet", tiny_set / "pairs_manifest.json", tmp_path / "i.parquet",
                          tmp_path / "i.json", policy=policy)
    assert (m["desirable"], m["images"]) == (desirable, images)  # A (both): undesirable / dropped


def test_each_item_is_its_own_image_and_reads_only_its_bytes(tiny_set, tmp_path, jpeg):
    build_image_index(tiny_set / "pairs.parquet", tiny_set / "pairs_manifest.json", tmp_path / "i.parquet",
                      tmp_path / "i.json")
    ds = LabelledImages(tmp_path / "i.parquet", 16, random_flip=False)
    for i, uid in enumerate("ABCDE"):
        assert ds.image_bytes(i) == _img(jpeg, uid)
        item = ds[i]
        rgb = ((item["pixel_w"][:, 8, 8] + 1) * 127.5).round().tolist()
        assert rgb == pytest.approx(list(COLORS[uid]), abs=4)
        assert item["desirable"] == (uid in "ACD")
    # bytes read for one image: its own column chunk (+ page header), not its pair's other image
    reads = []

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def read(self, n=-1):
            b = self.fh.read(n)
            reads.append(len(b))
            return b

    ds2 = LabelledImages(tmp_path / "i.parquet", 16, random_flip=False)
    opened = ds2._reader._open
    ds2._reader._open = lambda path: Counting(opened(path))
    ds2._reader._metadata(0)  # the footer is read once per file (not part of an image's cost)
    got = ds2.image_bytes(3)  # D: jpg_0 of its pair, whose jpg_1 (E) is larger
    assert got == _img(jpeg, "D")
    assert len(got) <= sum(reads) < len(got) + 100 < len(got) + len(_img(jpeg, "E"))  # E not read


def test_missing_uid_column_is_named(tmp_path, jpeg, write_shard):
    import pyarrow.parquet as pq

    write_shard(tmp_path / "s" / "train-0.parquet", [dict(caption="c", label_0=1.0, jpg_0=_img(jpeg, "A"),
                                                          jpg_1=_img(jpeg, "B"))])
    t = pq.read_table(tmp_path / "s" / "train-0.parquet").drop_columns(["image_1_uid"])
    pq.write_table(t, tmp_path / "s" / "train-0.parquet")
    filter_pairs(tmp_path / "s", tmp_path / "p.parquet", tmp_path / "p.json")
    with pytest.raises(ValueError, match=r"train-0\.parquet: missing column\(s\) image_1_uid"):
        build_image_index(tmp_path / "p.parquet", tmp_path / "p.json", tmp_path / "i.parquet", tmp_path / "i.json")


# --------------------------------------------------------------------------- the weighted sampler


def test_positive_ratio_within_binomial_bound():
    # 1 desirable image in 10: the reference's weights N / count_c x ratio make a draw desirable w.p. 0.8
    desirable = np.array([True] + [False] * 9)
    s = WeightedImageStream(desirable, 0.8, seed=0)
    n = 20_000
    drawn = np.array([i for _, i in s.at(range(n))])
    share = desirable[drawn].mean()
    assert abs(share - 0.8) < 4 * math.sqrt(0.8 * 0.2 / n)  # 4 sigma = 0.0113
    # within a class, uniform: each of the 9 undesirable images ~ 0.2 / 9 of the draws
    counts = np.bincount(drawn, minlength=10)[1:] / n
    assert np.all(np.abs(counts - 0.2 / 9) < 4 * math.sqrt((0.2 / 9) * (1 - 0.2 / 9) / n))


def test_sampler_is_deterministic_from_the_seed_and_keys_each_draw():
    d = np.array([True, False, True, False, False])
    a, b, c = (WeightedImageStream(d, 0.8, seed=s) for s in (0, 0, 1))
    pos = range(3, 40)
    assert a.at(pos) == b.at(pos)
    assert a.at(pos) != c.at(pos)
    assert [k for k, _ in a.at(pos)] == list(pos)  # each draw its own key (flip and noise)


def test_sampler_invariants_batch_processes_resume():
    """The images of every update, as (key, index), do not depend on B x A, the number of processes,
    or a resume at update 2."""
    from inpo.config import TrainConfig
    from inpo.trainer import MicroBatches

    stream = WeightedImageStream(np.arange(7) % 3 == 0, 0.8, seed=5)

    def updates(B, A, n_proc, start=0, max_updates=4):
        cfg = TrainConfig(output_dir="o", state_dir="s", micro_batch_size=B, grad_accum=A, max_updates=max_updates)
        per_rank = [list(MicroBatches(stream, cfg, n_proc, r, start)) for r in range(n_proc)]
        out = []
        for u in range(max_updates - start):
            items = [it for r in range(n_proc) for mb in per_rank[r][u * A:(u + 1) * A] for it in mb]
            out.append(sorted(items))
        return out

    ref = updates(4, 1, 1)
    assert updates(1, 4, 1) == ref == updates(2, 2, 1)  # B x A == 1 x (B * A)
    assert updates(2, 1, 2) == ref == updates(1, 2, 2)  # one process == two
    assert updates(4, 1, 1, start=2) == ref[2:]  # resume == uninterrupted
    assert len({i for u in ref for _, i in u}) > 1


def test_sampler_refuses_an_empty_class():
    with pytest.raises(ValueError, match="asks for undesirable images"):
        WeightedImageStream(np.array([True, True]), 0.8, seed=0)


# --------------------------------------------------------------------------- the trainer


def test_per_image_kto_resume_equals_uninterrupted(trainer_world, tmp_path):
    """Per-image KTO through the real trainer (8-bit AdamW falling back to AdamW on CPU): killed after
    update 1 and resumed == uninterrupted. (B x A == 1 x (B*A) holds for the draws, tested above, not
    for the KTO loss: its KL estimate is per micro-step, as in the reference.)"""
    from train_utils import RESOLUTION, make_run_cfg, max_unet_diff, read_log, unet_state

    from inpo.trainer import train

    build_image_index(trainer_world / "pairs.parquet", trainer_world / "manifest.json",
                      tmp_path / "img.parquet", tmp_path / "img.json")
    data = {"examples": "images", "index": str(tmp_path / "img.parquet"), "resolution": RESOLUTION,
            "positive_ratio": 0.8}
    kw = dict(method={"name": "kto", "beta": 1000.0}, data=data, micro_batch_size=3, grad_accum=1, max_updates=3,
              checkpoint_every=1, optim={"optimizer": "adamw8bit", "learning_rate": 1e-3, "scale_lr": False,
                                         "warmup_updates": 0})
    whole = make_run_cfg(trainer_world, "whole", tmp_path, **kw)
    train(whole)
    cut = make_run_cfg(trainer_world, "cut", tmp_path, **kw)
    assert train(cut, stop_after=1)["stopped_at"] == 1
    assert train(cut)["resumed_from"] == 1
    a, b = unet_state(whole.output_dir), unet_state(cut.output_dir)
    assert max_unet_diff(a, unet_state(trainer_world / "base")) > 1e-4
    assert max_unet_diff(a, b) < 1e-6
    assert [r["loss"] for r in read_log(whole.log_csv)] == [r["loss"] for r in read_log(cut.log_csv)]


def test_kto_needs_per_image_data(trainer_world, tmp_path):
    from train_utils import make_run_cfg

    with pytest.raises(ValueError, match="needs per-image labels"):
        make_run_cfg(trainer_world, "k", tmp_path, method={"name": "kto"})


# --------------------------------------------------------------------------- the recipe


def test_paper_recipe_is_the_reference_launcher():
    """config/paper_sd15.yaml's KTO run = exps/example.sh + train_kto_sd_v1.5.py defaults."""
    from inpo import experiment as P
    from inpo.config import train_config_from_dict

    cfg = yaml.safe_load((ROOT / "config" / "paper_sd15.yaml").read_text())
    runs = P.all_runs(cfg, None)
    t = train_config_from_dict(P.run_train_config(cfg, "kto", runs))
    gpus = cfg["resources"]["train"]["gpu"]
    assert t.pairs_per_update(gpus) == 4 * 2 * 1  # --num_processes 4 x --train_batch_size=2 x accumulation 1
    assert (t.method.name, t.method.beta, t.method.t_min, t.method.t_max, t.method.caption_dropout) == (
        "kto", 1000.0, 0, 999, 0.2)
    assert (t.data.examples, t.data.positive_ratio, t.data.resolution, t.data.random_flip) == ("images", 0.8, 512, True)
    assert t.data.index.endswith("data/per_image/pairs.parquet")
    o = t.optim
    assert (o.optimizer, o.learning_rate, o.scale_lr, o.warmup_updates, o.lr_schedule) == (
        "adamw8bit", 1e-7, False, 200, "constant")
    assert (o.weight_decay, o.adam_beta1, o.adam_beta2, o.adam_eps, o.max_grad_norm) == (1e-2, 0.9, 0.999, 1e-8, 1.0)
    assert (t.max_updates, t.mixed_precision, t.model.gradient_checkpointing, t.seed) == (20000, "fp16", True, 0)
    assert cfg["data"]["per_image_policy"] == "gt_label_wi_l"


def test_toy_keeps_the_recipe_scaled_down():
    from inpo import experiment as P
    from inpo.config import train_config_from_dict

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    runs = P.all_runs(cfg, None)
    kto = train_config_from_dict(P.run_train_config(cfg, "kto", runs))
    dpo = train_config_from_dict(P.run_train_config(cfg, "dpo", runs))
    assert (kto.data.examples, kto.data.positive_ratio, kto.optim.optimizer, kto.optim.scale_lr) == (
        "images", 0.8, "adamw8bit", False)
    # images per update x updates = the pair runs' images (2 per pair): the toy DAG's time does not grow
    assert kto.pairs_per_update() * kto.max_updates == 2 * dpo.pairs_per_update() * dpo.max_updates
