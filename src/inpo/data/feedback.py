"""AI feedback (paper section 5.3): relabel filtered Pick-a-Pic pairs with an evaluator.

:func:`relabel_pairs` scores both images of every pair of a filtered-pairs index with an evaluator
(``inpo.evaluators`` interface: ``score(list_of_PIL, prompts) -> np.ndarray``) and writes a new index
of the same format whose ``winner`` is the image the evaluator scores higher. Pairs with exactly
equal scores are dropped (``score_tie``), as are pairs with an undecodable image
(``undecodable_image``); the manifest records the agreement rate with the human labels.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from inpo.data.pickapic import _ShardReader, _write_json_atomic


def _open(b: bytes | None) -> Image.Image | None:
    if not b:
        return None
    try:
        with Image.open(io.BytesIO(b)) as im:
            im.load()
            return im.convert("RGB")
    except Exception:  # noqa: BLE001 - undecodable
        return None


def relabel_pairs(
    index_path: str | os.PathLike,
    out_index: str | os.PathLike,
    evaluator,
    *,
    batch_size: int = 16,
    out_manifest: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict:
    """Relabel the pairs of ``index_path`` with ``evaluator``; write ``out_index`` (+ manifest JSON,
    default ``out_index`` with suffix ``.json``) and return the manifest.

    Output columns: ``shard, row, caption, winner`` (evaluator's choice: 0 if score_0 > score_1 else 1)
    [``, ranking_id``], ``human_winner``, ``score_0``, ``score_1``. ``batch_size`` pairs are scored
    per evaluator call (2 * batch_size images). Pairs are read grouped by shard and row group so that
    each row group of image bytes is read once.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    index_path, out_index = Path(index_path), Path(out_index)
    out_manifest = Path(out_manifest) if out_manifest is not None else out_index.with_suffix(".json")
    t = pq.read_table(index_path)
    n = t.num_rows
    shard_enc = pc.dictionary_encode(t["shard"]).combine_chunks()
    base = index_path.parent
    shards = [p if os.path.isabs(p) else str(base / p) for p in shard_enc.dictionary.to_pylist()]
    sid = shard_enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    rows = t["row"].to_numpy().astype(np.int64)
    human = t["winner"].to_numpy().astype(np.int8)
    captions = t["caption"].to_pylist()
    reader = _ShardReader(shards, cache_row_groups=1)

    s0 = np.full(n, np.nan)
    s1 = np.full(n, np.nan)
    undecodable = np.zeros(n, dtype=bool)
    order = np.lexsort((rows, sid))  # shard-major, row order: each row group read once
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"relabel ({getattr(evaluator, 'name', 'evaluator')})", unit="pair")
    pos = 0
    while pos < n:
        idx_batch, im0, im1, caps = [], [], [], []
        while pos < n and len(idx_batch) < batch_size:
            i = int(order[pos])
            pos += 1
            a = _open(reader.get(int(sid[i]), int(rows[i]), "jpg_0"))
            b = _open(reader.get(int(sid[i]), int(rows[i]), "jpg_1"))
            if a is None or b is None:
                undecodable[i] = True
                continue
            idx_batch.append(i)
            im0.append(a)
            im1.append(b)
            caps.append(captions[i])
        if idx_batch:
            scores = np.asarray(evaluator.score(im0 + im1, caps + caps), dtype=np.float64).reshape(-1)
            k = len(idx_batch)
            if scores.shape != (2 * k,):
                raise ValueError(f"evaluator returned {scores.shape} scores for {2 * k} images")
            s0[idx_batch] = scores[:k]
            s1[idx_batch] = scores[k:]
        if bar is not None:
            bar.update(len(idx_batch))
    if bar is not None:
        bar.close()

    scored = ~undecodable
    tie = scored & (s0 == s1)
    keep = scored & ~tie & np.isfinite(s0) & np.isfinite(s1)
    nonfinite = scored & ~tie & ~keep
    new_winner = np.where(s0 > s1, 0, 1).astype(np.int8)
    agree = int((new_winner[keep] == human[keep]).sum())
    kept = int(keep.sum())

    sel = pa.array(np.flatnonzero(keep))
    cols = {
        "shard": pc.cast(t["shard"], pa.string()).take(sel),
        "row": t["row"].take(sel),
        "caption": pc.cast(t["caption"], pa.string()).take(sel),
        "winner": pa.array(new_winner[keep]),
    }
    if "ranking_id" in t.column_names:
        cols["ranking_id"] = t["ranking_id"].take(sel)
    cols["human_winner"] = pa.array(human[keep])
    cols["score_0"] = pa.array(s0[keep])
    cols["score_1"] = pa.array(s1[keep])
    out_index.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_index.with_name(out_index.name + ".tmp")
    pq.write_table(pa.table(cols), tmp, compression="zstd")
    os.replace(tmp, out_index)

    manifest = {
        "source_index": str(index_path),
        "index": str(out_index),
        "evaluator": {
            "name": getattr(evaluator, "name", type(evaluator).__name__),
            "version": getattr(evaluator, "version", None),
        },
        "pairs_in": int(n),
        "pairs_kept": kept,
        "dropped": {
            "score_tie": int(tie.sum()),
            "undecodable_image": int(undecodable.sum()),
            "nonfinite_score": int(nonfinite.sum()),
        },
        "agreement_with_human": (agree / kept) if kept else None,
        "pairs_agreeing": agree,
        "pairs_flipped": kept - agree,
        "winner_counts": {"0": int((new_winner[keep] == 0).sum()), "1": int((new_winner[keep] == 1).sum())},
        "unique_prompts": int(len(set(cols["caption"].to_pylist()))),
        "batch_size": int(batch_size),
    }
    _write_json_atomic(out_manifest, manifest)
    return manifest
