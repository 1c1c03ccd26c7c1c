"""Per-image labelled data for Diffusion-KTO, derived from the filtered Pick-a-Pic pairs by image uid,
and its weighted sampler.

Reference: the Diffusion-KTO repository (jacklishufan/diffusion-kto), ``train_kto_sd_v1.5.py``.
It reads ``train_processed_v3.csv``: one row per unique Pick-a-Pic train image with a ``split`` of
``exclusive_win`` (the image only ever won), ``exclusive_lose`` (only ever lost) or ``intersections``
(won at least once and lost at least once), and labels it by ``--policy`` (lines 1045-1056):

- ``gt_label_wi_l`` (the launcher's, ``exps/example.sh``): won-only and both -> desirable,
  lost-only -> undesirable;
- ``gt_label_w_il``: won-only -> desirable, both and lost-only -> undesirable;
- ``gt_label_w_l``: images that did both are dropped.

Ties: the script that wrote that CSV is not public, and the three splits have no tie group, so a tie
carries no win or loss. We read it so: the pair filter (:mod:`inpo.data.pickapic`) drops tie pairs
(as Diffusion-DPO does), an image's group comes from its decisive pairs only, and an image that
appears only in ties is in no group: counted in the manifest (``tie_only``), never trained on.

:func:`build_image_index` writes the per-image index (one row per image uid: where its bytes are in
the image pack, its caption, its group and label) and a JSON manifest with the group counts.
:class:`LabelledImages` reads one image per item (only that image's column chunk of the pack's
one-pair row group). :class:`WeightedImageStream` is the sampler: ``torch``'s
``WeightedRandomSampler`` with the reference's class weights (``make_weights_for_balanced_classes``,
lines 724-753: class weight ``N / count_c`` times ``positive_ratio`` or ``1 - positive_ratio``), so a
draw is desirable with probability ``positive_ratio``; drawn with replacement in blocks of ``N``
(the reference's epoch), each block seeded from ``(seed, block)``, and addressed by global position
like :class:`inpo.trainer.PairStream`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .pickapic import SchemaError, _decode, _ShardReader, _write_json_atomic, label_reasons, preprocess

#: ``--policy`` of the reference: which groups are desirable (True), undesirable (False) or dropped (absent).
POLICIES: dict[str, dict[str, bool]] = {
    "gt_label_wi_l": {"won_only": True, "both": True, "lost_only": False},
    "gt_label_w_il": {"won_only": True, "both": False, "lost_only": False},
    "gt_label_w_l": {"won_only": True, "lost_only": False},
}
GROUPS: tuple[str, ...] = ("won_only", "lost_only", "both")
UID_COLUMNS: tuple[str, ...] = ("image_0_uid", "image_1_uid")


def _source_uids(path: str, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``image_0_uid``, ``image_1_uid`` and the tie mask of the first ``rows`` rows of a source shard."""
    names = pq.read_schema(path).names
    missing = [c for c in (*UID_COLUMNS, "label_0", "label_1") if c not in names]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {', '.join(missing)} (the per-image data set needs "
                          "the image uids of every pair)")
    cols = [*UID_COLUMNS, "label_0", "label_1"] + (["has_label"] if "has_label" in names else [])
    t = pq.read_table(path, columns=cols).slice(0, rows)

    def floats(c):
        return np.asarray(pc.fill_null(pc.cast(t[c], pa.float64()), np.nan).to_numpy(zero_copy_only=False))

    hl = None
    if "has_label" in t.column_names:
        hl = np.asarray(pc.fill_null(pc.cast(t["has_label"], pa.bool_()), True).to_numpy(zero_copy_only=False))
    tie = label_reasons(floats("label_0"), floats("label_1"), hl)["tie"]
    u0, u1 = (np.asarray(t[c].to_pylist(), dtype=object) for c in UID_COLUMNS)
    for c, u in zip(UID_COLUMNS, (u0, u1)):
        bad = np.flatnonzero(pd.isna(u) | (u == ""))
        if bad.size:
            raise SchemaError(f"{path}: row {int(bad[0])}: empty {c} ({bad.size} such rows)")
    return u0, u1, tie


def build_image_index(
    pairs_index: str | os.PathLike,
    pairs_manifest: str | os.PathLike,
    out_index: str | os.PathLike,
    out_manifest: str | os.PathLike,
    *,
    policy: str = "gt_label_wi_l",
) -> dict:
    """Per-image index of the pairs in ``pairs_index`` (a filtered-pairs index with ``source_shard`` /
    ``source_row``), grouped by image uid (read from the source shards that ``pairs_manifest`` lists).

    Output parquet, one row per kept image, in order of first appearance in the pair index: ``uid``,
    ``shard`` / ``row`` / ``column`` (where its bytes are: the first pair it appears in; a relative
    ``shard`` is relative to the output's folder), ``caption``,
    ``group`` (``won_only`` / ``lost_only`` / ``both``) and ``desirable`` (per ``policy``, see
    :data:`POLICIES`). The manifest counts each group, the images that appear only in tie pairs
    (``tie_only``, excluded) and the labels. Returns the manifest (also written to ``out_manifest``).
    """
    if policy not in POLICIES:
        raise ValueError(f"per-image policy {policy!r}: not one of {sorted(POLICIES)}")
    pairs_index, out_index, out_manifest = Path(pairs_index), Path(out_index), Path(out_manifest)
    t = pq.read_table(pairs_index, columns=["shard", "row", "caption", "winner", "source_shard", "source_row"])
    pairs = t.to_pandas()
    shards = json.loads(Path(pairs_manifest).read_text())["shards"]

    uid_w = np.empty(len(pairs), dtype=object)
    uid_l = np.empty(len(pairs), dtype=object)
    tie_uids: set[str] = set()
    for s in shards:
        u0, u1, tie = _source_uids(s["path"], int(s["rows_in"]))
        tie_uids.update(u0[tie])
        tie_uids.update(u1[tie])
        sel = np.flatnonzero(pairs["source_shard"].to_numpy() == s["path"])
        if not sel.size:
            continue
        src = pairs["source_row"].to_numpy()[sel]
        if src.max() >= len(u0):
            raise ValueError(f"{pairs_index}: source_row {int(src.max())} beyond the {len(u0)} rows of {s['path']}")
        w = pairs["winner"].to_numpy()[sel]
        uid_w[sel] = np.where(w == 0, u0[src], u1[src])
        uid_l[sel] = np.where(w == 0, u1[src], u0[src])
    unknown = pd.isna(uid_w)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise ValueError(f"{pairs_index}: row {i}: source_shard {pairs['source_shard'].iloc[i]!r} is not "
                         f"among the shards of {pairs_manifest}")

    n = len(pairs)
    winner = pairs["winner"].to_numpy().astype(np.int64)
    # the pair index's relative shard paths are relative to its folder; ours to the per-image index's
    rebased = {p: p if os.path.isabs(p) else os.path.relpath(pairs_index.parent / p, out_index.parent)
               for p in pairs["shard"].unique()}
    pairs["shard"] = pairs["shard"].map(rebased)
    long = pd.DataFrame({
        "uid": np.concatenate([uid_w, uid_l]),
        "shard": np.concatenate([pairs["shard"].to_numpy()] * 2),
        "row": np.concatenate([pairs["row"].to_numpy()] * 2),
        "column": np.concatenate([np.where(winner == 0, "jpg_0", "jpg_1"), np.where(winner == 0, "jpg_1", "jpg_0")]),
        "caption": np.concatenate([pairs["caption"].to_numpy()] * 2),
        "won": np.r_[np.ones(n, bool), np.zeros(n, bool)],
        "order": np.r_[np.arange(n) * 2, np.arange(n) * 2 + 1],  # pair order, winner before loser
    })
    g = long.groupby("uid", sort=False)
    won, lost = g["won"].any(), ~g["won"].all()
    first = long.sort_values("order", kind="stable").drop_duplicates("uid").set_index("uid")
    group = np.where(won & lost, "both", np.where(won, "won_only", "lost_only"))
    images = first.loc[won.index, ["shard", "row", "column", "caption", "order"]].assign(group=group)
    counts = {k: int((images["group"] == k).sum()) for k in GROUPS}
    labels = POLICIES[policy]
    images = images[images["group"].isin(list(labels))].sort_values("order", kind="stable")
    images["desirable"] = images["group"].map(labels).astype(bool)
    out = pa.Table.from_pandas(
        images.reset_index()[["uid", "shard", "row", "column", "caption", "group", "desirable"]], preserve_index=False)
    out_index.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_index.with_name(out_index.name + ".tmp")
    pq.write_table(out, tmp, compression="zstd")
    os.replace(tmp, out_index)
    n_des = int(images["desirable"].sum())
    manifest = {
        "policy": policy,
        "pairs_index": str(pairs_index),
        "pairs": n,
        "groups": counts,
        "tie_only": len(tie_uids - set(won.index)),
        "images": len(images),
        "desirable": n_des,
        "undesirable": len(images) - n_des,
        "dropped_by_policy": int(sum(counts.values()) - len(images)),
        "index": str(out_index),
    }
    _write_json_atomic(out_manifest, manifest)
    return manifest


# --------------------------------------------------------------------------- dataset and sampler


class LabelledImages:
    """Map-style dataset over a per-image index (:func:`build_image_index`).

    ``ds[i] -> {"pixel_w": FloatTensor[3,R,R] in [-1,1], "caption": str, "index": i, "desirable": bool}``
    (the image under the key ``pixel_w``, as a winners-only pair, so the trainer's collation is
    shared). Only the image's own column of its pack row group is read. The horizontal flip is drawn
    from ``(seed, epoch, index)`` like :class:`inpo.data.pickapic.PreferencePairs`; call
    :meth:`set_epoch` with the draw's key.
    """

    def __init__(self, index_path: str | os.PathLike, resolution: int, *, random_flip: bool = True, seed: int = 0,
                 center_crop: bool = True, max_open_files: int = 64):
        self.index_path = Path(index_path)
        self.resolution, self.random_flip, self.seed = int(resolution), bool(random_flip), int(seed)
        self.center_crop = bool(center_crop)
        self.epoch = 0
        t = pq.read_table(self.index_path, columns=["shard", "row", "column", "caption", "desirable"])
        shard = pc.dictionary_encode(t["shard"]).combine_chunks()
        base = self.index_path.parent
        self.shards = [p if os.path.isabs(p) else str(base / p) for p in shard.dictionary.to_pylist()]
        self._shard_id = shard.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        self._row = t["row"].to_numpy().astype(np.int64)
        self._column = np.asarray(t["column"].to_pylist(), dtype=object)
        bad = ~np.isin(self._column, ("jpg_0", "jpg_1"))
        if bad.any():
            raise ValueError(f"{self.index_path}: row {int(np.flatnonzero(bad)[0])}: column must be jpg_0 or jpg_1")
        self._caption = t["caption"].combine_chunks()
        self.desirable = t["desirable"].to_numpy(zero_copy_only=False).astype(bool)
        # one image per read: its own column of its row group, nothing cached beyond it
        self._reader = _ShardReader(self.shards, max_open_files=max_open_files, cache_row_groups=1)

    def __len__(self) -> int:
        return len(self._row)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def flip(self, index: int, epoch: int | None = None) -> bool:
        if not self.random_flip:
            return False
        key = [self.seed, self.epoch if epoch is None else int(epoch), int(index)]
        return bool(np.random.default_rng(key).random() < 0.5)

    def image_bytes(self, index: int) -> bytes | None:
        col = str(self._column[index])
        return self._reader.read(int(self._shard_id[index]), int(self._row[index]), (col,))[0]

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        sid, row = int(self._shard_id[index]), int(self._row[index])
        img = _decode(self.image_bytes(index), self.shards[sid], row, str(self._column[index]))
        return {
            "pixel_w": preprocess(img, self.resolution, flip=self.flip(index), center_crop=self.center_crop),
            "caption": self._caption[index].as_py(),
            "index": index,
            "desirable": bool(self.desirable[index]),
        }


class WeightedImageStream:
    """Deterministic global order of weighted draws (with replacement) over labelled images.

    ``at(positions)`` returns ``(key, index)`` per global position, like
    :meth:`inpo.trainer.PairStream.at`; the key is the position itself, so two draws of one image
    get independent flips and noise (the reference draws them afresh per draw) and the draws of
    an update do not depend on micro-batch size, process count or resume.
    """

    def __init__(self, desirable: np.ndarray, positive_ratio: float, seed: int):
        desirable = np.asarray(desirable, dtype=bool)
        n = len(desirable)
        if n == 0:
            raise ValueError("the per-image training set is empty")
        if not 0.0 <= positive_ratio <= 1.0:
            raise ValueError(f"data.positive_ratio must be in [0, 1], got {positive_ratio}")
        n_pos = int(desirable.sum())
        for name, count, share in (("desirable", n_pos, positive_ratio), ("undesirable", n - n_pos, 1 - positive_ratio)):
            if count == 0 and share > 0:
                raise ValueError(f"data.positive_ratio = {positive_ratio} asks for {name} images, but the set has none")
        import torch

        # the reference's class weights: N / count_c, times positive_ratio (desirable) or 1 - positive_ratio
        w_pos = positive_ratio * n / n_pos if n_pos else 0.0
        w_neg = (1 - positive_ratio) * n / (n - n_pos) if n - n_pos else 0.0
        self.weights = torch.tensor(np.where(desirable, w_pos, w_neg), dtype=torch.float64)
        self.n, self.seed = n, int(seed)
        self._cache: dict[int, object] = {}

    def block(self, b: int):
        """The ``n`` dataset indices drawn in block ``b`` (positions ``b * n .. (b + 1) * n - 1``)."""
        import torch

        from ..methods import derive_seed

        if b not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            g = torch.Generator().manual_seed(derive_seed(self.seed, b, 104729))
            self._cache[b] = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        return self._cache[b]

    def at(self, positions: range) -> list[tuple[int, int]]:
        out = []
        for pos in positions:
            b, k = divmod(pos, self.n)
            out.append((int(pos), int(self.block(b)[k])))
        return out
