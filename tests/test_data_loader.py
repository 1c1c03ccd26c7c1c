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
        "data": {"kind": "pairs", "index": "unused", "resolution": 8, "num_workers": workers,
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
