"""inpo.hub: hub id vs local path, cache-first loading, the one error, dtype/device."""

from __future__ import annotations

import os
import time

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

from inpo import hub


@pytest.mark.parametrize(
    "source, expected",
    [
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", True),
        ("yuvalkirstain/PickScore_v1", True),
        ("gpt2", True),  # a legacy one-part hub id
        ("./x", False),
        ("../x", False),
        ("/abs/x", False),
        ("~/x", False),
        ("a/b/c", False),
        ("C:\\models\\x", False),
        ("data/x", False),  # with a local data/ folder (created below): a missing path, not a hub repo
        ("org/name with space", False),
        ("", False),
    ],
)
def test_is_hub_id(source, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert hub.is_hub_id(source) is expected


def test_existing_local_folder_is_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not hub.is_hub_id("org/name")
    assert hub.local_path("org/name", "model", "model.base").resolve() == tmp_path / "org" / "name"
    with pytest.raises(hub.ModelUnavailableError, match="local path 'org/other' does not exist"):
        hub.local_path("org/other", "model", "model.base")  # org/ exists here: a missing path

def test_local_path_missing_is_one_error(tmp_path):
    with pytest.raises(hub.ModelUnavailableError, match=r"model: local path '\./nope' does not exist\. Fix `model\.base`"):
        hub.local_path("./nope", "model", "model.base")
    assert hub.local_path("org/repo", "model", "model.base") is None


def test_from_pretrained_cache_first_then_offline_error(monkeypatch):
    calls = []

    class Loader:
        @classmethod
        def from_pretrained(cls, source, **kw):
            calls.append(kw)
            if kw.get("local_files_only"):
                raise OSError("not in cache")
            return "downloaded"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(hub.ModelUnavailableError) as err:
        hub.from_pretrained(Loader, "org/repo", what="model", option="model.base", subfolder="unet")
    assert time.perf_counter() - t0 < 1
    assert calls == [{"subfolder": "unet", "local_files_only": True}]  # the cache only: no download tried
    msg = str(err.value)
    assert "'org/repo'" in msg and "HF_HUB_OFFLINE is set" in msg and "`model.base=" in msg and "OSError" in msg

    calls.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub.from_pretrained(Loader, "org/repo", what="model", option="model.base") == "downloaded"
    assert calls == [{"local_files_only": True}, {}]  # cache first, then the hub


def test_from_pretrained_cache_hit_never_downloads(monkeypatch):
    calls = []

    class Loader:
        @classmethod
        def from_pretrained(cls, source, **kw):
            calls.append(kw)
            return "cached"

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub.from_pretrained(Loader, "org/repo", what="model", option="model.base") == "cached"
    assert calls == [{"local_files_only": True}]


def test_resolve_dtype_and_device():
    assert hub.resolve_dtype("fp16") is torch.float16 and hub.resolve_dtype("torch.bfloat16") is torch.bfloat16
    assert hub.resolve_dtype(None) is torch.float32 and hub.resolve_dtype(None, torch.float16) is torch.float16
    assert hub.resolve_dtype(torch.float64) is torch.float64
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        hub.resolve_dtype("fp8")
    assert hub.resolve_device("cpu") == torch.device("cpu")
    assert hub.resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def empty_offline_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_hub_file_offline_not_cached(empty_offline_hub):
    with pytest.raises(hub.ModelUnavailableError) as err:
        hub.hub_file("zhwang/HPDv2", "benchmark/anime.json", what="HPDv2 prompts", option="source",
                     repo_type="dataset")
    assert "'zhwang/HPDv2/benchmark/anime.json'" in str(err.value) and "`source=" in str(err.value)


def test_hub_snapshot_offline_not_cached(empty_offline_hub):
    t0 = time.perf_counter()
    with pytest.raises(hub.ModelUnavailableError) as err:
        hub.hub_snapshot("yuvalkirstain/pickapic_v2", ["data/test_unique-*.parquet"], what="Pick-a-Pic",
                         option="data.source")
    assert time.perf_counter() - t0 < 5
    assert "'yuvalkirstain/pickapic_v2'" in str(err.value) and "HF_HUB_OFFLINE is set" in str(err.value)
