from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from inpo.data.pickapic import (
    REQUIRED_COLUMNS,
    ImageDecodeError,
    PreferencePairs,
    SchemaError,
    ShardReadError,
    _decode,
    check_schema,
    filter_pairs,
    resolve_shards,
)
from inpo.hub import ModelUnavailableError

RED, BLUE = (220, 20, 20), (20, 20, 220)
CORRUPT = b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 4


@pytest.fixture
def shards(tmp_path, jpeg, write_shard):
    """Two shards (the first with 3 row groups) with winners, swapped winners, ties, no-label rows,
    an invalid label and a corrupt image. Winner images are red, loser images blue."""
    red, blue = jpeg(RED), jpeg(BLUE)
    a = [
        dict(caption="a cat", label_0=1.0, jpg_0=red, jpg_1=blue),  # kept, winner 0
        dict(caption="a dog", label_0=0.0, jpg_0=blue, jpg_1=red),  # kept, swapped: winner 1
        dict(caption="a cat", label_0=0.5, jpg_0=red, jpg_1=blue),  # tie
        dict(caption="a fox", label_0=None, has_label=False, jpg_0=red, jpg_1=blue),  # no_label
        dict(caption="an owl", label_0=0.0, jpg_0=blue, jpg_1=CORRUPT),  # corrupt winner image
        dict(caption="a cow", label_0=0.3, jpg_0=red, jpg_1=blue),  # invalid label
        dict(caption="a dog", label_0=1.0, jpg_0=red, jpg_1=blue),  # kept
    ]
    b = [
        dict(caption="a hen", label_0=0.0, jpg_0=blue, jpg_1=red),  # kept, winner 1
        dict(caption="a bee", label_0=0.5, jpg_0=blue, jpg_1=red),  # tie
        dict(caption="a ram", label_0=1.0, jpg_0=CORRUPT, jpg_1=blue),  # corrupt winner
        dict(caption="a pig", label_0=1.0, label_1=1.0, jpg_0=red, jpg_1=blue),  # inconsistent -> invalid
        dict(caption="an elk", label_0=1.0, jpg_0=red, jpg_1=b""),  # empty loser bytes -> undecodable
    ]
    root = tmp_path / "pickapic"
    write_shard(root / "data" / "train-00000-of-00002.parquet", a, row_group_size=3)
    write_shard(root / "data" / "train-00001-of-00002.parquet", b, row_group_size=2)
    write_shard(root / "data" / "test_unique-00000-of-00001.parquet", b[:1])
    return root


def test_filter_counts_and_manifest(shards, tmp_path):
    m = filter_pairs(shards, tmp_path / "idx.parquet", tmp_path / "idx.json")
    assert m["rows_in"] == 12
    assert m["dropped"] == {"no_label": 1, "tie": 2, "invalid_label": 2, "undecodable_image": 0}
    assert m["pairs_kept"] == 7  # corrupt images are not checked
    assert m["n_shards"] == 2
    assert [s["rows_in"] for s in m["shards"]] == [7, 5]
    assert json.loads((tmp_path / "idx.json").read_text()) == m

    m2 = filter_pairs(shards, tmp_path / "idx2.parquet", tmp_path / "idx2.json", check_images=True)
    assert m2["dropped"] == {"no_label": 1, "tie": 2, "invalid_label": 2, "undecodable_image": 3}
    assert m2["pairs_kept"] == 4
    assert m2["unique_prompts"] == 3  # "a cat", "a dog" (twice), "a hen"
    assert m2["winner_counts"] == {"0": 2, "1": 2}
    t = pq.read_table(tmp_path / "idx2.parquet").to_pandas()
    assert list(t.columns) == ["shard", "row", "caption", "winner", "ranking_id", "source_shard", "source_row"]
    assert t["source_row"].tolist() == t["row"].tolist() and t["source_shard"].tolist() == t["shard"].tolist()
    assert t["caption"].tolist() == ["a cat", "a dog", "a dog", "a hen"]
    assert t["row"].tolist() == [0, 1, 6, 0]  # row index within the shard, across row groups
    assert t["winner"].tolist() == [0, 1, 0, 1]
    assert t["shard"].str.endswith("train-00000-of-00002.parquet").tolist() == [True, True, True, False]
    assert t["ranking_id"].tolist() == [1000, 1001, 1006, 1000]


def test_max_rows_and_split(shards, tmp_path):
    m = filter_pairs(shards, tmp_path / "i.parquet", tmp_path / "i.json", max_rows=4)
    assert m["rows_in"] == 4 and m["pairs_kept"] == 2 and m["dropped"]["tie"] == 1
    m = filter_pairs(shards, tmp_path / "t.parquet", tmp_path / "t.json", split="test_unique")
    assert m["rows_in"] == 1 and m["pairs_kept"] == 1
    assert len(resolve_shards(shards, "train")) == 2
    with pytest.raises(FileNotFoundError, match="validation"):
        resolve_shards(shards, "validation")


def test_winner_first_by_pixels(shards, tmp_path):
    filter_pairs(shards, tmp_path / "idx.parquet", tmp_path / "idx.json", check_images=True)
    ds = PreferencePairs(tmp_path / "idx.parquet", 16, random_flip=False)
    assert len(ds) == 4
    for i in range(len(ds)):
        item = ds[i]
        assert item["index"] == i
        for k in ("pixel_w", "pixel_l"):
            x = item[k]
            assert x.dtype == torch.float32 and x.shape == (3, 16, 16)
            assert x.min() >= -1.0 and x.max() <= 1.0
        # right half (away from the white marker): winner red, loser blue
        w, lo = item["pixel_w"][:, :, 10:].mean((1, 2)), item["pixel_l"][:, :, 10:].mean((1, 2))
        assert w[0] > 0.5 and w[2] < -0.5, (i, w)
        assert lo[2] > 0.5 and lo[0] < -0.5, (i, lo)
    assert [ds[i]["caption"] for i in range(4)] == ["a cat", "a dog", "a dog", "a hen"]


def test_resize_and_center_crop(tmp_path, jpeg, write_shard):
    # 64x32 image: left quarter (16 px) white; shorter side -> 16 gives 32x16, center crop drops 8 px
    # on each side, so the white marker (8 px after resize) disappears entirely.
    img = jpeg(RED, size=(64, 32))
    write_shard(tmp_path / "s" / "x.parquet", [dict(caption="c", label_0=1.0, jpg_0=img, jpg_1=img)])
    filter_pairs(tmp_path / "s", tmp_path / "i.parquet", tmp_path / "i.json")
    x = PreferencePairs(tmp_path / "i.parquet", 16, random_flip=False)[0]["pixel_w"]
    assert x.shape == (3, 16, 16)
    assert x[1].max() < -0.5  # no white (green channel high) left after the center crop
    y = PreferencePairs(tmp_path / "i.parquet", 16, random_flip=False, center_crop=False)[0]["pixel_w"]
    assert y[1, :, :4].mean() > 0.5  # top-left crop keeps the marker


def test_flips_independent_and_reproducible(tmp_path, jpeg, write_shard):
    red, blue = jpeg(RED), jpeg(BLUE)
    rows = [
        dict(
            caption=f"p{i}", label_0=float(i % 2), jpg_0=red if i % 2 else blue, jpg_1=blue if i % 2 else red
        )
        for i in range(40)
    ]
    write_shard(tmp_path / "s" / "x.parquet", rows, row_group_size=16)
    filter_pairs(tmp_path / "s", tmp_path / "i.parquet", tmp_path / "i.json")
    ds = PreferencePairs(tmp_path / "i.parquet", 16, seed=3)

    def observed(item, key):  # white marker on the right half means flipped
        g = item[key][1]
        return bool(g[:, 12:].mean() > g[:, :4].mean())

    e0 = [ds.flips(i) for i in range(len(ds))]
    for i in range(0, 40, 7):
        it = ds[i]
        assert (observed(it, "pixel_w"), observed(it, "pixel_l")) == e0[i]
    fw = np.array([f[0] for f in e0])
    fl = np.array([f[1] for f in e0])
    assert 5 < fw.sum() < 35 and 5 < fl.sum() < 35
    assert (fw != fl).any() and (fw == fl).any()  # drawn independently
    # reproducible: fresh dataset, same seed; different epoch -> different flips; resumable by epoch
    ds2 = PreferencePairs(tmp_path / "i.parquet", 16, seed=3)
    assert [ds2.flips(i) for i in range(40)] == e0
    assert torch.equal(ds2[5]["pixel_w"], ds[5]["pixel_w"])
    ds2.set_epoch(1)
    e1 = [ds2.flips(i) for i in range(40)]
    assert e1 != e0
    ds.set_epoch(1)
    assert [ds.flips(i) for i in range(40)] == e1
    assert [PreferencePairs(tmp_path / "i.parquet", 16, seed=4).flips(i) for i in range(40)] != e0
    assert all(
        f == (False, False)
        for f in (PreferencePairs(tmp_path / "i.parquet", 16, random_flip=False).flips(i) for i in range(40))
    )


def test_decode_error_names_shard_and_row(shards, tmp_path):
    filter_pairs(shards, tmp_path / "idx.parquet", tmp_path / "idx.json")  # no image check
    ds = PreferencePairs(tmp_path / "idx.parquet", 16)
    t = pq.read_table(tmp_path / "idx.parquet").to_pandas()
    bad = int(np.flatnonzero(t["caption"].eq("an owl"))[0])
    with pytest.raises(ImageDecodeError, match=r"jpg_1 of shard .*train-00000-of-00002\.parquet row 4"):
        ds[bad]


def test_winners_only_and_pickle(shards, tmp_path):
    filter_pairs(shards, tmp_path / "idx.parquet", tmp_path / "idx.json", check_images=True)
    ds = PreferencePairs(tmp_path / "idx.parquet", 8, random_flip=False, winners_only=True)
    item = ds[1]
    assert set(item) == {"pixel_w", "caption", "index"}
    assert item["pixel_w"][0, :, 5:].mean() > 0.5
    ds2 = pickle.loads(pickle.dumps(ds))  # DataLoader workers
    assert torch.equal(ds2[1]["pixel_w"], item["pixel_w"])


def test_schema_error_names_column_and_file(shards, tmp_path):
    check_schema(shards)  # the exact v2 schema passes
    bad = tmp_path / "bad" / "train-00000-of-00001.parquet"
    bad.parent.mkdir()
    t = pq.read_table(shards / "data" / "train-00001-of-00002.parquet").drop_columns(["label_0", "jpg_1"])
    pq.write_table(t, bad)
    with pytest.raises(SchemaError) as e:
        check_schema(bad.parent)
    msg = str(e.value)
    assert "label_0" in msg and "jpg_1" in msg and str(bad) in msg
    assert "caption" not in msg.split("missing column(s)")[1].split("\n")[0]
    with pytest.raises(SchemaError, match="label_0"):
        filter_pairs([bad], tmp_path / "x.parquet", tmp_path / "x.json")
    assert not (tmp_path / "x.parquet").exists()
    assert set(REQUIRED_COLUMNS) >= {"caption", "jpg_0", "jpg_1", "label_0"}


def test_hub_id_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        check_schema("yuvalkirstain/pickapic_v2")
    with pytest.raises(FileNotFoundError):
        resolve_shards(tmp_path / "does-not-exist")


def test_image_check_streams_in_small_batches(shards, tmp_path, monkeypatch):
    seen = []
    iter_batches = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        for batch in iter_batches(self, *args, **kwargs):
            seen.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    m = filter_pairs(shards, tmp_path / "i.parquet", tmp_path / "i.json", check_images=True, image_batch_rows=1)
    assert m["pairs_kept"] == 4 and m["dropped"]["undecodable_image"] == 3
    assert pq.read_table(tmp_path / "i.parquet")["row"].to_pylist() == [0, 1, 6, 0]
    assert seen and max(seen) == 1  # row groups hold up to 3 rows: images are read one row at a time


def test_pack_parallel_equals_source_serial(shards, tmp_path):
    src = filter_pairs(shards, tmp_path / "s.parquet", tmp_path / "s.json", check_images=True)
    out = tmp_path / "out"
    m = filter_pairs(shards, out / "pairs.parquet", out / "pairs.json", check_images=True,
                     images_dir=out / "pairs_images", num_proc=2, image_batch_rows=2)
    assert m["dropped"] == src["dropped"] and m["pairs_kept"] == 4 and m["winner_counts"] == src["winner_counts"]
    assert sorted(p.name for p in out.iterdir()) == ["pairs.json", "pairs.parquet", "pairs_images"]  # no .tmp
    t = pq.read_table(out / "pairs.parquet").to_pandas()
    s = pq.read_table(tmp_path / "s.parquet").to_pandas()
    assert t["shard"].tolist() == ["pairs_images/00000.parquet"] * 3 + ["pairs_images/00001.parquet"]
    assert t["row"].tolist() == [0, 1, 2, 0]  # row within the pack
    assert t["source_shard"].tolist() == s["shard"].tolist() and t["source_row"].tolist() == s["row"].tolist()
    pack = pq.ParquetFile(out / "pairs_images" / "00000.parquet")
    assert pack.metadata.num_row_groups == 3 and pack.schema_arrow.names == ["jpg_0", "jpg_1"]
    assert pack.metadata.row_group(0).column(0).compression == "UNCOMPRESSED"
    src_rows = pq.read_table(s["shard"][2], columns=["jpg_0", "jpg_1"]).slice(int(s["row"][2]), 1)
    assert pack.read_row_group(2).equals(src_rows)  # the bytes, copied as they are
    a = PreferencePairs(out / "pairs.parquet", 16, seed=2)
    b = PreferencePairs(tmp_path / "s.parquet", 16, seed=2)
    for i in range(4):
        x, y = a[i], b[i]
        assert torch.equal(x["pixel_w"], y["pixel_w"]) and torch.equal(x["pixel_l"], y["pixel_l"])
        assert x["caption"] == y["caption"]


def test_label_1_must_complement_label_0(tmp_path, jpeg, write_shard):
    red = jpeg(RED)
    rows = [
        dict(caption="ok", label_0=1.0, jpg_0=red, jpg_1=red),
        dict(caption="nan label_1", label_0=1.0, label_1=float("nan"), jpg_0=red, jpg_1=red),
        dict(caption="null label_1", label_0=0.0, label_1=None, jpg_0=red, jpg_1=red),
        dict(caption="out of range", label_0=0.0, label_1=2.0, jpg_0=red, jpg_1=red),
    ]
    write_shard(tmp_path / "s" / "x.parquet", rows)
    m = filter_pairs(tmp_path / "s", tmp_path / "i.parquet", tmp_path / "i.json")
    assert m["pairs_kept"] == 1 and m["dropped"]["invalid_label"] == 3 and m["dropped_total"] == 3


def _corrupt_row_group(path, rg, column="jpg_0"):
    """Overwrite the first page header of ``column`` in row group ``rg`` (the footer stays intact)."""
    md = pq.read_metadata(path)
    col = md.row_group(rg).column(md.schema.names.index(column))
    start = min(o for o in (col.dictionary_page_offset, col.data_page_offset) if o is not None)
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(b"\xff" * 64)


def test_unreadable_page_names_shard_and_row_group(tmp_path, jpeg, write_shard):
    rows = [dict(caption=f"p{i}", label_0=1.0, jpg_0=jpeg(RED), jpg_1=jpeg(BLUE)) for i in range(6)]
    shard = tmp_path / "s" / "x.parquet"
    write_shard(shard, rows, row_group_size=2)
    _corrupt_row_group(shard, 1)
    out = tmp_path / "out"
    with pytest.raises(ShardReadError, match=r"x\.parquet: row group 1: unreadable page in column\(s\) jpg_0"):
        filter_pairs(shard.parent, out / "p.parquet", out / "p.json", check_images=True, images_dir=out / "img")
    assert list(out.iterdir()) == []  # no index, no manifest, no pack, no .tmp
    filter_pairs(shard.parent, out / "p.parquet", out / "p.json")  # labels readable: images not read
    ds = PreferencePairs(out / "p.parquet", 8)
    ds[1]
    with pytest.raises(ShardReadError, match=r"x\.parquet: row group 1: unreadable page"):
        ds[2]


def test_import_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, inpo.data.pickapic; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_missing_relative_local_folder_is_a_missing_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match=r"'data/pickapic_v2' \(`data.pickapic`\): no such file or folder"):
        resolve_shards("data/pickapic_v2")
    with pytest.raises(ModelUnavailableError, match="no local folder .*other/pickapic_v2 either"):
        resolve_shards("other/pickapic_v2")


def test_image_check_parses_the_whole_jpeg(jpeg):
    from inpo.data.pickapic import _decodable

    b = jpeg(RED, size=(256, 192))
    assert _decodable(b) and not _decodable(b[: len(b) * 6 // 10]) and not _decodable(CORRUPT)


def _training_decodes(b: bytes) -> bool:
    try:
        _decode(b, "shard", 0, "jpg_0")
        return True
    except ImageDecodeError:
        return False


def test_image_check_catches_what_training_cannot_decode():
    """The structural JPEG check (no scan decode) against the training's full decode on corrupted
    files: never passes a file training fails on. It also drops files whose scan data holds a marker
    (libjpeg only warns and greys the rest), so "dropped" may exceed "undecodable"."""
    from inpo.data.pickapic import _decodable, jpeg_probe

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    b = buf.getvalue()
    n, headers_end = len(b), len(jpeg_probe(np.frombuffer(b, np.uint8))) - 2
    assert b[headers_end - 14 : headers_end - 12] == b"\xff\xda"  # SOS of 3 components: 12-byte segment
    assert _decodable(b) and _decodable(b + b"bytes after EOI")
    cases = [b[:k] for k in (3, 20, headers_end - 1, headers_end, headers_end + 1, n // 2, n - 2, n - 1)]
    for lo, hi in ((2, headers_end), (headers_end, n - 2)):  # one byte changed in the headers / in the scan
        for p, v in zip(rng.integers(lo, hi, 60), rng.integers(0, 256, 60)):
            c = bytearray(b)
            c[p] = v
            cases.append(bytes(c))
    for p, v in zip(rng.integers(headers_end, n - 3, 20), rng.integers(1, 256, 20)):  # a marker in the scan
        c = bytearray(b)
        c[p : p + 2] = bytes([0xFF, v])
        cases.append(bytes(c))
    truth = [_training_decodes(c) for c in cases]
    check = [_decodable(c) for c in cases]
    assert not any(c and not t for c, t in zip(check, truth))  # no undecodable file passes
    assert not any(check[:8]) and not any(truth[:8])  # every cut file fails both
    assert sum(not t for t in truth[8:]) >= 10  # the corpus does hold undecodable files
    assert sum(t and c for c, t in zip(check, truth)) >= 80  # and most decodable ones pass
    png = io.BytesIO()
    im.save(png, format="PNG")
    assert jpeg_probe(np.frombuffer(png.getvalue(), np.uint8)) is None  # decoded instead
    assert _decodable(png.getvalue()) and not _decodable(png.getvalue()[:-30])
