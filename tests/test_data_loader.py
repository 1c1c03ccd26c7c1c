"""The training data path: the DataLoader of each process yields exactly the pairs the global
PairStream order assigns to it, with workers or without; an image pack reads what it uses."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from inpo.config import train_config_from_dict
from inpo.data.pickapic import PreferencePairs, _ShardReader, filter_pairs
from inpo.trainer import PairStream, micro_batch_loader

COLORS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (200, 200, 30), (30, 200, 200)]
N = 10


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, jpeg, write_shard):
    """10 pairs in two shards (row groups of 4 and 3), filtered into an image pack."""
    root = tmp_path_factory.mktemp("loader")
    rows = [dict(caption=f"pair {i}", label_0=float(i % 2), jpg_0=jpeg(COLORS[i % 5], size=(24 + i, 16)),
                 jpg_1=jpeg(COLORS[(i + 2) % 5], size=(16, 20 + i))) for i in range(N)]
    write_shard(root / "s" / "train-0.parquet", rows[:6], row_group_size=4)
    write_shard(root / "s" / "train-1.parquet", rows[6:], row_group_size=3)
    filter_pairs(root / "s", root / "src.parquet", root / "src.json")
    filter_pairs(root / "s", root / "pairs.parquet", root / "pairs.json", images_dir=root / "img", num_proc=2)
    return root


def cfg(B, A, updates=3, workers=0, prefetch=2):
    return train_config_from_dict({
        "output_dir": "unused", "state_dir": "unused",
        "data": {"examples": "pairs", "index": "unused", "resolution": 8, "num_workers": workers,
                 "prefetch_factor": prefetch},
        "micro_batch_size": B, "grad_accum": A, "max_updates": updates, "seed": 5,
    })


def batches(pairs, c, n_proc=1, rank=0, start=0):
    ds = PreferencePairs(pairs / "pairs.parquet", 8, seed=c.seed)
    return list(micro_batch_loader(ds, PairStream(len(ds), c.seed), c, n_proc, rank, start))


def flat(bs, key):
    return [x for b in bs for x in b[key]]


def test_workers_equal_in_process_and_cover_the_stream(pairs):
    a, b = batches(pairs, cfg(2, 2)), batches(pairs, cfg(2, 2, workers=2))
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert x["index"] == y["index"] and x["epoch"] == y["epoch"] and x["caption"] == y["caption"]
        assert torch.equal(x["pixel_w"], y["pixel_w"]) and torch.equal(x["pixel_l"], y["pixel_l"])
    # 3 updates of 4 pairs = 12 positions: all 10 pairs of epoch 0, then 2 of epoch 1
    assert flat(a, "epoch") == [0] * N + [1] * 2
    assert sorted(flat(a, "index")[:N]) == list(range(N))
    perm = PairStream(N, 5).permutation(0).tolist()
    assert flat(a, "index")[:N] == perm
    assert [c for b in a for c in b["caption"]][:3] == [f"pair {i}" for i in perm[:3]]


def test_prefetch_depth_is_configured_and_changes_nothing(pairs):
    c = cfg(2, 2, workers=2, prefetch=3)
    ds = PreferencePairs(pairs / "pairs.parquet", 8, seed=c.seed)
    assert micro_batch_loader(ds, PairStream(len(ds), c.seed), c, 1, 0).prefetch_factor == 3
    assert [b["index"] for b in batches(pairs, c)] == [b["index"] for b in batches(pairs, cfg(2, 2))]
    with pytest.raises(ValueError, match="prefetch_factor >= 1"):
        cfg(1, 1, workers=2, prefetch=0)


def test_batch_accumulation_processes_and_resume_see_the_same_pairs(pairs):
    ref = batches(pairs, cfg(4, 1))
    order = flat(ref, "index")
    assert flat(batches(pairs, cfg(2, 2)), "index") == order  # B x A == 1 x (B*A)
    assert flat(batches(pairs, cfg(1, 4)), "index") == order
    r0, r1 = (batches(pairs, cfg(1, 2), n_proc=2, rank=r) for r in (0, 1))  # two processes
    assert [b["index"][0] for pair in zip(r0, r1) for b in pair] == order
    tail = batches(pairs, cfg(4, 1), start=2)  # resume at update 2
    assert len(tail) == 1 and tail[0]["index"] == ref[2]["index"] and tail[0]["epoch"] == ref[2]["epoch"]
    assert torch.equal(tail[0]["pixel_w"], ref[2]["pixel_w"])


class _Counting(io.RawIOBase):
    """A file that counts the bytes read through it."""

    total = 0

    def __init__(self, path):
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, pos, whence=0):
        return self._f.seek(pos, whence)

    def tell(self):
        return self._f.tell()

    def readinto(self, b):
        n = self._f.readinto(b)
        _Counting.total += n
        return n

    def close(self):
        self._f.close()
        super().close()


@pytest.mark.parametrize(("index", "bound"), [("pairs.parquet", 1.2), ("src.parquet", 2.0)])
def test_random_order_reads_what_it_uses(pairs, monkeypatch, index, bound):
    """Bytes read through the open files over bytes used, one epoch in random order: ~1 on the pack,
    several times more on the source shards' row groups of 3-4 pairs."""
    monkeypatch.setattr(_ShardReader, "_open", lambda self, path: _Counting(path))
    _Counting.total = 0
    ds = PreferencePairs(pairs / index, 8)
    used = 0
    for i in np.random.default_rng(0).permutation(len(ds)):
        used += sum(len(b) for b in ds.image_bytes(int(i)))
    ratio = _Counting.total / used
    assert (ratio <= bound) if index == "pairs.parquet" else (ratio > bound), ratio


@pytest.mark.parametrize("size", [(37, 23), (23, 37), (64, 64), (16, 16), (15, 41), (100, 9)])
@pytest.mark.parametrize("center", [True, False])
def test_fit_square_is_torchvisions_resize_and_crop(size, center):
    """One transform for the pre-resized pack and training: torchvision's Resize + CenterCrop (the
    reference code's), pixel for pixel; applied twice it changes nothing (so a fitted pack is exact)."""
    import torchvision.transforms.functional as TF
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    from inpo.data.pickapic import fit_square

    rgb = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    ref = TF.resize(img, 16, interpolation=InterpolationMode.BILINEAR, antialias=True)
    ref = TF.center_crop(ref, [16, 16]) if center else TF.crop(ref, 0, 0, 16, 16)
    got = fit_square(img, 16, center_crop=center)
    assert got.size == (16, 16) and np.array_equal(np.asarray(got), np.asarray(ref))
    assert np.array_equal(np.asarray(fit_square(got, 16, center_crop=center)), np.asarray(got))


def test_pre_resized_pack_gives_training_the_same_pixels_and_losses(tmp_path, jpeg, write_shard):
    """filter_pairs(pack_resolution=R): PPMs of R x R in the pack, the same tensors (flips included)
    and the same training losses as resizing at training time; another resolution is refused."""
    from PIL import Image
    from train_utils import RESOLUTION, build_world, make_run_cfg, read_log

    from inpo.data.pickapic import PACK_RESOLUTION_KEY
    from inpo.trainer import train

    world = build_world(tmp_path / "w", jpeg, write_shard)
    m = filter_pairs(world / "shards", world / "fit.parquet", world / "fit.json", images_dir=world / "fit_img",
                     pack_resolution=RESOLUTION)
    assert m["pack_resolution"] == RESOLUTION and m["pairs_kept"] == 4
    assert pq_metadata(world / "fit.parquet")[PACK_RESOLUTION_KEY] == str(RESOLUTION).encode()
    a, b = PreferencePairs(world / "pairs.parquet", RESOLUTION, seed=3), PreferencePairs(world / "fit.parquet",
                                                                                         RESOLUTION, seed=3)
    raw = b.image_bytes(0)[0]
    assert raw[:2] == b"P6" and len(raw) == 3 * RESOLUTION**2 + len(b"P6\n16 16\n255\n") and Image.open(io.BytesIO(raw)).size == (RESOLUTION, RESOLUTION)
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in range(len(a)):
            assert torch.equal(a[i]["pixel_w"], b[i]["pixel_w"]) and torch.equal(a[i]["pixel_l"], b[i]["pixel_l"])
    with pytest.raises(ValueError, match=r"fit\.parquet: its image pack holds images fitted to 16 px"):
        PreferencePairs(world / "fit.parquet", 8)
    logs = []
    for name, index in (("off", "pairs.parquet"), ("on", "fit.parquet")):
        c = make_run_cfg(world, name, tmp_path, data={"examples": "pairs", "index": str(world / index),
                                                       "resolution": RESOLUTION},
                         method={"name": "dpo", "beta": 500.0})  # DPO: both images, no inversion (fast)
        train(c)
        logs.append([(r["loss"], r["model_err_w"], r["model_err_l"]) for r in read_log(c.log_csv)])
    assert len(logs[0]) == 2 and logs[0] == logs[1]


def pq_metadata(path):
    import pyarrow.parquet as pq

    return pq.read_schema(path).metadata
