"""Evaluation prompt sets: HPDv2 benchmark, Parti-Prompts, Pick-a-Pic v2 test_unique.

:func:`load_prompt_set` returns a DataFrame with one row per image to generate, columns ``index``
(global image index: image ``{index:05d}.png``, seed ``seed_base + index``) and ``prompt``, plus

- ``hpdv2``: ``style`` and ``style_index`` (4 styles x 800 in style-major order
  anime, concept-art, paintings, photo; ``index = 800 * style_pos + style_index``; prompt
  ``style_index`` of a style is entry ``style_index`` of its JSON list; duplicates kept),
- ``parti``: ``category`` and ``challenge`` (1,632 rows in file order; TSV read with quoting off),
- ``pickapic_test``: the 500 captions of the Pick-a-Pic v2 ``test_unique`` split (file order).

``source`` may be a local path (folder with the 4 JSONs / the TSV file or its folder / a parquet
file or folder), a hub dataset id, or ``None`` for the default hub id. Hub files are looked up in
the local cache first; offline (``HF_HUB_OFFLINE=1``) and not cached -> a clear error at once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import urllib.request
from pathlib import Path

import pandas as pd

from .. import hub

HPDV2_STYLES: tuple[str, ...] = ("anime", "concept-art", "paintings", "photo")
HPDV2_HUB_ID = "zhwang/HPDv2"
PARTI_HUB_ID = "nateraw/parti-prompts"
PARTI_TSV_URL = "https://raw.githubusercontent.com/google-research/parti/main/PartiPrompts.tsv"
PICKAPIC_HUB_ID = "yuvalkirstain/pickapic_v2"
PROMPT_SETS: tuple[str, ...] = ("hpdv2", "parti", "pickapic_test")


def _hub_file(repo_id: str, filename: str, option: str) -> Path:
    return hub.hub_file(repo_id, filename, what="prompt file", option=option, repo_type="dataset")


def _hub_snapshot(repo_id: str, patterns: list[str], option: str) -> Path:
    return hub.hub_snapshot(repo_id, patterns, what="prompt set", option=option)


# ------------------------------------------------------------------------------------------ HPDv2


def _hpdv2_files(source) -> dict[str, Path]:
    if source is None:
        source = HPDV2_HUB_ID
    p = Path(source)
    if p.is_dir():
        files = {}
        for style in HPDV2_STYLES:
            cands = [p / f"{style}.json", p / f"benchmark_{style}.json", p / "benchmark" / f"{style}.json"]
            hit = next((c for c in cands if c.is_file()), None)
            if hit is None:
                raise FileNotFoundError(f"HPDv2 prompts: no {style}.json (or benchmark_{style}.json) in {p}")
            files[style] = hit
        return files
    if hub.is_hub_id(str(source)):
        return {s: _hub_file(str(source), f"benchmark/{s}.json", "evaluation.prompt_sets.hpdv2.source")
                for s in HPDV2_STYLES}
    raise FileNotFoundError(
        f"HPDv2 prompts: {source!r} is neither a folder with the 4 JSONs nor a hub dataset id"
    )


def _load_hpdv2(source) -> pd.DataFrame:
    parts = []
    offset = 0
    for style, f in _hpdv2_files(source).items():
        prompts = json.loads(Path(f).read_text(encoding="utf-8"))
        if not isinstance(prompts, list) or not all(isinstance(x, str) for x in prompts):
            raise ValueError(f"HPDv2 prompts: {f} is not a JSON list of strings")
        n = len(prompts)
        parts.append(
            pd.DataFrame(
                {
                    "index": range(offset, offset + n),
                    "prompt": prompts,
                    "style": style,
                    "style_index": range(n),
                }
            )
        )
        offset += n
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------ Parti


def _read_parti_tsv(text_or_path) -> pd.DataFrame:
    df = pd.read_csv(
        text_or_path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, encoding="utf-8"
    )
    return df


def _load_parti(source) -> pd.DataFrame:
    if source is None:
        source = PARTI_HUB_ID
    s = str(source)
    p = Path(source) if "://" not in s else None
    if p is not None and p.is_dir():
        tsv = sorted(p.rglob("*.tsv"))
        if tsv:
            p = tsv[0]
        else:
            pq_files = sorted(p.rglob("*.parquet"))
            if not pq_files:
                raise FileNotFoundError(f"Parti prompts: no .tsv or .parquet file in {p}")
            raw = pd.concat([pd.read_parquet(f) for f in pq_files], ignore_index=True)
            return _parti_frame(raw, str(p))
    if p is not None and p.is_file():
        if p.suffix == ".parquet":
            return _parti_frame(pd.read_parquet(p), str(p))
        return _parti_frame(_read_parti_tsv(p), str(p))
    if s.startswith(("http://", "https://")):
        with urllib.request.urlopen(s, timeout=60) as r:  # noqa: S310 - explicit user-given URL
            return _parti_frame(_read_parti_tsv(io.StringIO(r.read().decode("utf-8"))), s)
    if hub.is_hub_id(s):
        root = _hub_snapshot(s, ["*.tsv", "*.parquet"], "evaluation.prompt_sets.parti.source")
        return _load_parti(root)
    raise FileNotFoundError(
        f"Parti prompts: {s!r} is neither a TSV/parquet file or folder, a URL, nor a hub id"
    )


def _parti_frame(raw: pd.DataFrame, where: str) -> pd.DataFrame:
    cols = {c.lower(): c for c in raw.columns}
    missing = [c for c in ("prompt", "category", "challenge") if c not in cols]
    if missing:
        raise ValueError(f"Parti prompts: {where} lacks column(s) {missing} (has {list(raw.columns)})")
    return pd.DataFrame(
        {
            "index": range(len(raw)),
            "prompt": raw[cols["prompt"]].astype(str).to_numpy(),
            "category": raw[cols["category"]].astype(str).to_numpy(),
            "challenge": raw[cols["challenge"]].astype(str).to_numpy(),
        }
    )


# ------------------------------------------------------------------------------------- Pick-a-Pic


def _load_pickapic_test(source) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from inpo.data.pickapic import resolve_shards

    if source is None:
        source = PICKAPIC_HUB_ID
    files = resolve_shards(source, "test_unique", option="evaluation.prompt_sets.pickapic_test.source")
    caps = pa.concat_arrays(
        [pq.read_table(f, columns=["caption"])["caption"].combine_chunks() for f in files]
    )
    s = pd.Series(caps.to_pylist(), dtype=object)
    s = s[~s.duplicated()].reset_index(drop=True)  # test_unique: one row per caption
    return pd.DataFrame({"index": range(len(s)), "prompt": s.astype(str).to_numpy()})


# ------------------------------------------------------------------------------------------- API


def load_prompt_set(name: str, source: str | os.PathLike | None = None) -> pd.DataFrame:
    """Prompt set ``name`` (``hpdv2``, ``parti``, ``pickapic_test``) as a DataFrame with ``index, prompt``
    (+ ``style, style_index`` for HPDv2, ``category, challenge`` for Parti), sorted by ``index``."""
    loaders = {"hpdv2": _load_hpdv2, "parti": _load_parti, "pickapic_test": _load_pickapic_test}
    if name not in loaders:
        raise KeyError(
            f"unknown prompt set {name!r}; available: {', '.join(PROMPT_SETS)} (toy sets live elsewhere)"
        )
    df = loaders[name](source)
    df["index"] = df["index"].astype("int64")
    return df.reset_index(drop=True)
