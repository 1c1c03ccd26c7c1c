from __future__ import annotations

import json

import pytest

from inpo.data.prompts import HPDV2_STYLES, load_prompt_set
from inpo.hub import ModelUnavailableError

GIGGLE = '"G I G G L E" painted in thick colorful lettering as graffiti on a faded red brick wall'


def test_hpdv2_real(shared_data):
    df = load_prompt_set("hpdv2", shared_data / "hpdv2")
    assert list(df.columns) == ["index", "prompt", "style", "style_index"]
    assert len(df) == 3200
    assert df["prompt"].nunique() == 3172  # duplicates kept
    assert df["index"].tolist() == list(range(3200))
    assert df.groupby("style", sort=False).size().to_dict() == dict.fromkeys(HPDV2_STYLES, 800)
    assert df["style"].tolist() == [s for s in HPDV2_STYLES for _ in range(800)]  # style-major
    assert (
        df["index"] == df["style"].map({s: 800 * i for i, s in enumerate(HPDV2_STYLES)}) + df["style_index"]
    ).all()
    for style in HPDV2_STYLES:  # prompt i of a style is entry i of its JSON list
        raw = json.loads((shared_data / "hpdv2" / f"{style}.json").read_text())
        assert df.loc[df["style"] == style, "prompt"].tolist() == raw
    assert df.groupby("style")["prompt"].nunique().to_dict() == {
        "anime": 781,
        "concept-art": 795,
        "paintings": 798,
        "photo": 800,
    }


def test_parti_real(shared_data):
    df = load_prompt_set("parti", shared_data / "parti" / "PartiPrompts.tsv")
    assert list(df.columns) == ["index", "prompt", "category", "challenge"]
    assert len(df) == 1632 and df["prompt"].nunique() == 1632
    assert df["index"].tolist() == list(range(1632))
    assert df["category"].nunique() == 12 and df["challenge"].nunique() == 11
    assert df["category"].value_counts()["Animals"] == 314
    assert df["challenge"].value_counts()["Fine-grained Detail"] == 312
    row = df.iloc[1560]  # 1-based data row 1561
    assert row["prompt"].startswith(GIGGLE)
    assert row["category"] == "Illustrations" and row["challenge"] == "Writing & Symbols"
    assert df["prompt"].iloc[0] == "bond"
    # a folder holding the TSV works too
    assert load_prompt_set("parti", shared_data / "parti").equals(df)


def test_pickapic_test_from_local_parquet(tmp_path, jpeg, write_shard):
    rows = [dict(caption=f"prompt {i}", label_0=1.0, jpg_0=b"", jpg_1=b"") for i in range(7)]
    rows.append(dict(caption="prompt 3", label_0=0.0, jpg_0=b"", jpg_1=b""))
    write_shard(tmp_path / "pap" / "data" / "test_unique-00000-of-00001.parquet", rows)
    write_shard(tmp_path / "pap" / "data" / "train-00000-of-00001.parquet", rows[:2])
    df = load_prompt_set("pickapic_test", tmp_path / "pap")
    assert df.columns.tolist() == ["index", "prompt"]
    assert df["prompt"].tolist() == [f"prompt {i}" for i in range(7)]
    assert df["index"].tolist() == list(range(7))


def test_offline_without_local_path_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("hpdv2", "parti", "pickapic_test"):
        with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
            load_prompt_set(name)
    with pytest.raises(KeyError, match="unknown prompt set"):
        load_prompt_set("nope")
    with pytest.raises(FileNotFoundError):
        load_prompt_set("hpdv2", tmp_path)
