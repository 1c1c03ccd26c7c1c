"""Pick-a-Pic v2: schema check, parallel pair filter with a random-access image pack, and the
preference-pair dataset.

The real train split is 959,040 rows in ~645 parquet shards (~335 GB, image bytes inline) written
in row groups of hundreds of rows, so reading one pair from a source shard reads its whole row group.
:func:`filter_pairs` therefore streams the shards (in parallel, one process per shard) and, given
``images_dir``, copies the image bytes of every kept pair into a *pack*: one parquet file per source
shard with one pair per row group, uncompressed, no statistics. Reading a pair from the pack then
reads that pair's two column chunks and nothing else (read amplification ~1.0x in any order, see
benchmarks/data_throughput.py), and the pack is an ordinary shard of columns ``jpg_0`` / ``jpg_1``.
With ``pack_resolution`` the pack holds the images already resized and centre-cropped for training
(raw RGB as PPM, the same pixels as resizing at training time); by default the original bytes, as the paper's
reference code resizes at training time.

Filtered-pairs index (see docs/CONVENTIONS.md): parquet with one row per kept pair,
``shard`` (path of the file holding the pair's image bytes: the pack file, or the source shard
without a pack; relative paths are relative to the index's folder), ``row`` (row in that file),
``caption``, ``winner`` (0 or 1: which of ``jpg_0`` / ``jpg_1`` is preferred), ``ranking_id`` when
the source has it, and ``source_shard`` / ``source_row`` (where the pair comes from); plus a JSON
manifest with the counts per drop reason.

Importing this module does not import torch (the filter's workers never need it).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from .. import hub

PICKAPIC_HUB_ID = "yuvalkirstain/pickapic_v2"

#: Columns the filter and the datasets need, with the arrow type family each must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")
#: Columns used when present (``has_label`` false -> dropped as ``no_label``; ``ranking_id`` copied).
OPTIONAL_COLUMNS: tuple[str, ...] = ("has_label", "ranking_id")

DROP_REASONS: tuple[str, ...] = ("no_label", "tie", "invalid_label", "undecodable_image")

#: Columns of an image pack file (one pair per row group; see :func:`filter_pairs`).
PACK_COLUMNS: tuple[str, ...] = ("jpg_0", "jpg_1")
#: Index schema metadata key: the size the pack's images were fitted to (absent: original images).
PACK_RESOLUTION_KEY = b"inpo.pack_resolution"

#: Arrow schema of the public ``yuvalkirstain/pickapic_v2`` parquet shards (for synthetic / toy shards).
PICKAPIC_V2_SCHEMA = pa.schema(
    [
        ("are_different", pa.bool_()),
        ("best_image_uid", pa.string()),
        ("caption", pa.string()),
        ("created_at", pa.timestamp("ns")),
        ("has_label", pa.bool_()),
        ("image_0_uid", pa.string()),
        ("image_0_url", pa.string()),
        ("image_1_uid", pa.string()),
        ("image_1_url", pa.string()),
        ("jpg_0", pa.binary()),
        ("jpg_1", pa.binary()),
        ("label_0", pa.float64()),
        ("label_1", pa.float64()),
        ("model_0", pa.string()),
        ("model_1", pa.string()),
        ("ranking_id", pa.int64()),
        ("user_id", pa.int64()),
        ("num_example_per_prompt", pa.int64()),
        ("__index_level_0__", pa.int64()),
    ]
)

_KNOWN_SPLITS = ("train", "validation", "test", "validation_unique", "test_unique")

class SchemaError(ValueError):
    """A shard lacks a required column or has one of the wrong type."""


class ImageDecodeError(RuntimeError):
    """An image of a pair cannot be decoded; names the shard and row."""


class ShardReadError(RuntimeError):
    """A page of a shard cannot be read (corrupt data behind an intact footer); names the shard,
    row group and columns."""


# --------------------------------------------------------------------------------------------
# Resolving a source to a list of shard files
# --------------------------------------------------------------------------------------------


def _select_split(files: list[Path], split: str | None, where: str) -> list[Path]:
    if split is None:
        return files

    def split_of(p: Path) -> str | None:
        for part in reversed(p.parts[:-1]):
            if part in _KNOWN_SPLITS:
                return part
        m = re.match(r"^(train|validation_unique|test_unique|validation|test)[-_.]", p.name)
        return m.group(1) if m else None

    tagged = [(p, split_of(p)) for p in files]
    if not any(s is not None for _, s in tagged):
        return files  # a folder of shards of one split, named freely
    chosen = [p for p, s in tagged if s == split]
    if not chosen:
        found = sorted({s for _, s in tagged if s})
        raise FileNotFoundError(f"no parquet shards of split {split!r} in {where} (splits found: {found})")
    return chosen


def _hub_shards(repo_id: str, split: str | None, option: str) -> list[Path]:
    pats = (
        ["*.parquet"]
        if split is None
        else [
            f"data/{split}-*.parquet",
            f"{split}-*.parquet",
            f"{split}/*.parquet",
            f"data/{split}/*.parquet",
            f"*/{split}/*.parquet",
        ]
    )
    what = f"Pick-a-Pic shards (read as a hub dataset id: no local folder {Path(repo_id).absolute()} either)"
    files = sorted(hub.hub_snapshot(repo_id, pats, what=what, option=option).rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"hub dataset {repo_id!r} has no parquet shards matching {pats} (`{option}`)")
    return _select_split(files, split, repo_id)


def resolve_shards(
    source: str | os.PathLike | Sequence[str | os.PathLike], split: str | None = "train",
    option: str = "data.pickapic",
) -> list[Path]:
    """Shard files of ``source``: a parquet file, a folder (searched recursively for ``*.parquet``;
    files named ``{split}-*.parquet`` or under a ``{split}/`` folder are selected when splits are
    tagged), a list of files, or a hub dataset id (cache first; fails fast when offline)."""
    if isinstance(source, (list, tuple)):
        files = [Path(s) for s in source]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"shard files not found: {missing}")
        if not files:
            raise FileNotFoundError("empty list of shard files")
        return files
    p = Path(source)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(p.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no *.parquet files under {p}")
        return _select_split(files, split, str(p))
    s = str(source)
    if hub.is_hub_id(s):
        return _hub_shards(s, split, option)
    raise FileNotFoundError(
        f"Pick-a-Pic source {s!r} (`{option}`): no such file or folder ({p.absolute()}); a hub dataset id "
        "'owner/name' is taken for one only when no local folder 'owner' exists"
    )


# --------------------------------------------------------------------------------------------
# Schema check
# --------------------------------------------------------------------------------------------


def _type_ok(name: str, t: pa.DataType) -> bool:
    if name in ("jpg_0", "jpg_1"):
        return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)
    if name == "caption":
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if name in ("label_0", "label_1"):
        return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)
    if name == "has_label":
        return pa.types.is_boolean(t) or pa.types.is_integer(t)
    return True


def check_schema(source, *, split: str | None = "train", columns: Iterable[str] = REQUIRED_COLUMNS) -> None:
    """Raise :class:`SchemaError` naming every missing / mistyped column and its shard file.

    Reads only parquet footers, so it is cheap enough to run before any GPU job starts.
    """
    files = resolve_shards(source, split)
    columns = tuple(columns)
    problems: list[str] = []
    for f in files:
        try:
            schema = pq.read_schema(f)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{f}: unreadable parquet footer ({type(e).__name__}: {e})")
            continue
        names = set(schema.names)
        missing = [c for c in columns if c not in names]
        if missing:
            problems.append(f"{f}: missing column(s) {', '.join(missing)}")
        bad = [
            f"{c} ({schema.field(c).type})"
            for c in (*columns, *OPTIONAL_COLUMNS)
            if c in names and not _type_ok(c, schema.field(c).type)
        ]
        if bad:
            problems.append(f"{f}: column(s) of unexpected type: {', '.join(bad)}")
    if problems:
        head = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more shard(s)" if len(problems) > 50 else ""
        raise SchemaError(
            f"Pick-a-Pic schema check failed for {len(problems)} of {len(files)} shard(s) "
            f"(required columns: {', '.join(columns)}):\n  {head}{more}"
        )


# --------------------------------------------------------------------------------------------
# Parallel filter (one process per shard) writing the index and, optionally, the image pack
# --------------------------------------------------------------------------------------------


#: Frame markers of sequential Huffman JPEGs (baseline, extended): the structural check's domain.
_SEQUENTIAL_SOF = frozenset((0xC0, 0xC1))
#: Every frame (SOFn) marker; DHT (C4), JPG (C8) and DAC (CC) share the range but are not frames.
_ANY_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_EOI = b"\xff\xd9"


def jpeg_probe(a: np.ndarray) -> bytes | None:
    """Walk the markers of a JPEG (``a``: its bytes as uint8) the way libjpeg reads them; return its
    headers as a JPEG of its own for libjpeg to check.

    Returns ``None`` when ``a`` is not a sequential Huffman JPEG (no SOI; progressive, lossless or
    arithmetic-coded: decode it instead), ``b""`` when it is broken, else the *probe*: every byte up
    to the first scan's entropy-coded data, then EOI, with the frame's size set to 8x8 px (so that
    decoding it costs one block; a zero width or height is broken: libjpeg rejects it). Intact means:
    SOI, then segments whose lengths fit in the file, exactly one SOF0/SOF1 before the first SOS,
    every scan's entropy-coded data holding no marker but byte stuffing (``FF 00``), fill bytes
    (``FF FF``) and ``RSTn``, and an EOI after the last scan (bytes after EOI are ignored, as libjpeg
    does). A file cut anywhere has no EOI after its last scan; a marker inside the scan data (what a
    corrupt byte ``FF`` makes) ends the scan early, where libjpeg greys the rest of the image."""
    n = a.size
    if n < 4 or a[0] != 0xFF or a[1] != 0xD8:
        return None
    i, frame, headers_end = 2, 0, 0
    while True:
        if i >= n or a[i] != 0xFF:
            return b""  # garbage where a marker must be
        while i < n and a[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return b""
        m = int(a[i])
        i += 1
        if m == 0xD9:  # EOI
            break
        if m == 0x01 or 0xD0 <= m <= 0xD7:  # TEM, RSTn: no length
            continue
        if i + 2 > n:
            return b""
        length = (int(a[i]) << 8) | int(a[i + 1])
        if length < 2 or i + length > n:
            return b""
        if m in _ANY_SOF:
            if m not in _SEQUENTIAL_SOF:
                return None
            if frame or length < 8 or not (a[i + 3] or a[i + 4]) or not (a[i + 5] or a[i + 6]):
                return b""  # a second frame, or a frame of zero height / width
            frame = i
        i += length
        if m == 0xDA:  # SOS: its entropy-coded data runs to the next marker that is not RSTn
            if not frame:
                return b""
            headers_end = headers_end or i
            ff = np.flatnonzero(a[i : n - 1] == 0xFF) + i
            nxt = a[ff + 1]
            marker = ff[(nxt != 0x00) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7))]
            if not marker.size:
                return b""  # cut inside the scan
            i = int(marker[0])
    if not headers_end:
        return b""
    probe = bytearray(a[:headers_end].tobytes())
    probe[frame + 3 : frame + 7] = b"\x00\x08\x00\x08"  # height, width
    return bytes(probe) + _EOI


def _decodes(b: bytes) -> bool:
    """Whether PIL decodes ``b``; a JPEG at 1/8 scale (libjpeg DCT scaling, same parsing)."""
    try:
        with Image.open(io.BytesIO(b)) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder failure means "undecodable"
        return False


def _decodable(b: bytes | memoryview | None) -> bool:
    """Whether ``b`` is an image training can decode (:func:`_decode`).

    A sequential JPEG (all Pick-a-Pic images) is checked without decoding its scans: its marker
    structure (:func:`jpeg_probe`: catches a file cut at any point and markers inside the scan
    data), then libjpeg decodes its headers alone (the headers followed by EOI, 8x8 px: catches
    bad quantisation / Huffman tables, frame and scan headers). Corrupt bits in the entropy-coded data
    that make no marker are not caught, as libjpeg itself only warns on them and decodes garbage.
    Anything else (PNG, progressive JPEG, ...) is decoded. ~5x faster than a 1/8-scale decode of the
    whole file (benchmarks/data_throughput.py prints both)."""
    if b is None or len(b) == 0:
        return False
    probe = jpeg_probe(np.frombuffer(b, dtype=np.uint8))
    if probe is None:
        return _decodes(bytes(b))
    return bool(probe) and _decodes(probe)


def _binary_values(arr: pa.Array) -> list[memoryview | bytes | None]:
    """The values of a binary array, as zero-copy views of its data buffer (None for nulls)."""
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        return arr.to_pylist()
    bufs = arr.buffers()
    width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    off = np.frombuffer(bufs[1], dtype=width, count=len(arr) + 1, offset=arr.offset * np.dtype(width).itemsize)
    data = memoryview(bufs[2]) if bufs[2] is not None else memoryview(b"")
    valid = np.asarray(arr.is_valid()) if arr.null_count else np.ones(len(arr), dtype=bool)
    return [data[int(off[j]) : int(off[j + 1])] if valid[j] else None for j in range(len(arr))]


def _as_float(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    col = pc.cast(col, pa.float64())
    return np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def label_reasons(label_0: np.ndarray, label_1: np.ndarray, has_label: np.ndarray | None) -> dict[str, np.ndarray]:
    """Masks ``no_label`` / ``tie`` / ``invalid_label`` / ``keep`` (disjoint, covering every row).

    ``no_label``: ``has_label`` false or ``label_0`` null; ``tie``: ``label_0 == 0.5``; ``keep``:
    ``label_0`` in {0, 1} and ``label_1 == 1 - label_0`` (a null / NaN / out-of-range ``label_1`` is
    ``invalid_label``, like any other ``label_0``)."""
    no_label = np.isnan(label_0)
    if has_label is not None:
        no_label |= ~has_label
    tie = ~no_label & (label_0 == 0.5)
    keep = ~no_label & ~tie & ((label_0 == 0.0) | (label_0 == 1.0)) & (label_1 == 1.0 - label_0)
    return {"no_label": no_label, "tie": tie, "invalid_label": ~no_label & ~tie & ~keep, "keep": keep}


@dataclass(frozen=True)
class _ShardJob:
    path: str
    rows: int  # rows of the shard to read (max_rows applied)
    columns: tuple[str, ...]  # light columns: caption, labels, has_label / ranking_id when used
    has_ranking: bool
    check_images: bool
    image_batch_rows: int
    pack_path: str | None  # where to write the pack file (a temporary folder), None: no pack
    pack_ref: str | None  # the pack file's path as recorded in the index
    pack_resolution: int | None  # images stored resized + centre-cropped to this size (PPM), None: as is


def _index_schema(has_ranking: bool) -> pa.Schema:
    fields = [
        pa.field("shard", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("caption", pa.string()),
        pa.field("winner", pa.int8()),
    ]
    if has_ranking:
        fields.append(pa.field("ranking_id", pa.int64()))
    fields += [pa.field("source_shard", pa.string()), pa.field("source_row", pa.int64())]
    return pa.schema(fields)


_PACK_SCHEMA = pa.schema([pa.field(c, pa.binary()) for c in PACK_COLUMNS])


def _unreadable(job: _ShardJob, rg: int, columns: Sequence[str], e: Exception) -> ShardReadError:
    return ShardReadError(
        f"{job.path}: row group {rg}: unreadable page in column(s) {', '.join(columns)} "
        f"({type(e).__name__}: {e})"
    )


def _filter_shard(job: _ShardJob) -> dict:
    """Filter one shard: labels row group by row group, images (when checked or packed) streamed in
    batches of ``image_batch_rows`` rows. Returns the shard's index rows and counts."""
    counts = dict.fromkeys(DROP_REASONS, 0)
    parts: list[pa.Table] = []
    schema = _index_schema(job.has_ranking)
    pf = pq.ParquetFile(job.path, buffer_size=1 << 22, pre_buffer=False)
    writer = (
        pq.ParquetWriter(job.pack_path, _PACK_SCHEMA, compression="none", use_dictionary=False,
                         write_statistics=False)
        if job.pack_path else None
    )
    read_images = job.check_images or writer is not None
    if job.pack_resolution is not None and writer is None:
        raise ValueError("pack_resolution needs an image pack (images_dir)")
    offset = packed = 0
    try:
        for rg in range(pf.metadata.num_row_groups):
            n = min(pf.metadata.row_group(rg).num_rows, job.rows - offset)
            if n <= 0:
                break
            try:
                t = pf.read_row_group(rg, columns=list(job.columns)).slice(0, n)
            except (OSError, pa.ArrowException) as e:
                raise _unreadable(job, rg, job.columns, e) from e
            hl = None
            if "has_label" in t.column_names:
                hl = np.asarray(pc.fill_null(pc.cast(t["has_label"], pa.bool_()), True).to_numpy(
                    zero_copy_only=False), dtype=bool)
            l0 = _as_float(t["label_0"])
            m = label_reasons(l0, _as_float(t["label_1"]), hl)
            for r in ("no_label", "tie", "invalid_label"):
                counts[r] += int(m[r].sum())
            keep = np.flatnonzero(m["keep"])
            if read_images and keep.size:
                ok = np.ones(keep.size, dtype=bool)
                want = np.zeros(n, dtype=bool)
                want[keep] = True
                pos = np.cumsum(want) - 1  # row -> position in keep
                start = 0
                try:
                    for batch in pf.iter_batches(batch_size=job.image_batch_rows, row_groups=[rg],
                                                 columns=list(PACK_COLUMNS)):
                        stop = min(start + batch.num_rows, n)
                        sel = np.flatnonzero(want[start:stop])
                        if sel.size:
                            v0, v1 = _binary_values(batch.column(0)), _binary_values(batch.column(1))
                            if job.pack_resolution is not None:  # decoded anyway: the decode is the check
                                fitted: list[tuple[bytes, bytes] | None] = [None] * len(v0)
                                for j in sel:
                                    fitted[j] = _fit_ppm(v0[j], v1[j], job.pack_resolution)
                                ok[pos[start + sel]] = [fitted[j] is not None for j in sel]
                                batch = pa.record_batch(
                                    [pa.array([f[k] if f is not None else None for f in fitted], pa.binary())
                                     for k in (0, 1)], schema=_PACK_SCHEMA)
                            elif job.check_images:
                                for j in sel:
                                    ok[pos[start + j]] = _decodable(v0[j]) and _decodable(v1[j])
                            if writer is not None:
                                good = sel[ok[pos[start + sel]]]
                                # runs of consecutive kept rows, written as zero-copy slices
                                for run in np.split(good, np.flatnonzero(np.diff(good) != 1) + 1) if good.size else ():
                                    rows = pa.Table.from_batches([batch.slice(int(run[0]), run.size)])
                                    writer.write_table(rows.cast(_PACK_SCHEMA), row_group_size=1)
                        start = stop
                        if start >= n:
                            break
                except (OSError, pa.ArrowException) as e:
                    raise _unreadable(job, rg, PACK_COLUMNS, e) from e
                counts["undecodable_image"] += int((~ok).sum())
                keep = keep[ok]
            if keep.size:
                idx = pa.array(keep)
                src_rows = keep.astype(np.int64) + offset
                arrays = [
                    pa.array(np.full(keep.size, job.pack_ref or job.path, dtype=object), pa.string()),
                    pa.array(np.arange(packed, packed + keep.size, dtype=np.int64) if writer else src_rows),
                    pc.cast(t["caption"].take(idx), pa.string()),
                    pa.array(np.where(l0[keep] == 1.0, 0, 1).astype(np.int8)),
                ]
                if job.has_ranking:
                    arrays.append(pc.cast(t["ranking_id"].take(idx), pa.int64()))
                arrays += [pa.array(np.full(keep.size, job.path, dtype=object), pa.string()), pa.array(src_rows)]
                parts.append(pa.Table.from_arrays(arrays, schema=schema))
                packed += keep.size
            offset += n
    finally:
        if writer is not None:
            writer.close()
        pf.close()
    index = pa.concat_tables(parts) if parts else schema.empty_table()
    return {"index": index, "counts": counts, "rows_in": offset}


def filter_pairs(
    source,
    out_index: str | os.PathLike,
    out_manifest: str | os.PathLike,
    *,
    split: str | None = "train",
    check_images: bool = False,
    max_rows: int | None = None,
    images_dir: str | os.PathLike | None = None,
    num_proc: int = 1,
    image_batch_rows: int = 16,
    pack_resolution: int | None = None,
) -> dict:
    """Filter the shards of ``source``; write the filtered-pairs index, the manifest and, given
    ``images_dir``, the image pack.

    Keeps rows with ``label_0`` in {0, 1}, ``label_1 == 1 - label_0`` and ``has_label`` not false;
    ``winner = 0 if label_0 == 1 else 1``. Each dropped row is counted under one reason (see
    :func:`label_reasons`) or, with ``check_images``, ``undecodable_image`` (either image fails to
    decode: the whole pair is dropped). ``max_rows`` stops after that many input rows.

    ``images_dir``: a folder that receives one pack file per source shard (``00000.parquet``, ...;
    columns ``jpg_0, jpg_1``, one pair per row group) holding the kept pairs' image bytes; the index's
    ``shard`` / ``row`` then point at the pack (path relative to the index's folder). ``num_proc``
    shards are filtered at once, each in its own process; images are read in batches of
    ``image_batch_rows`` rows, never a whole row group. An unreadable page raises
    :class:`ShardReadError` naming the shard and row group; nothing is left behind on failure.

    ``pack_resolution`` (needs ``images_dir``): the pack holds every image decoded, resized and
    centre-cropped to that size (:func:`fit_square`, training's own transform) and stored as PPM (raw RGB), so
    training skips the resize and gets the same pixels; an image that does not decode drops its pair
    (``undecodable_image``), whether or not ``check_images``. None (default): the original bytes, resized
    at training time as the paper's reference code does. The index records the size
    (:data:`PACK_RESOLUTION_KEY`) and :class:`PreferencePairs` refuses another training resolution.
    Returns the manifest dict (also written to ``out_manifest``).
    """
    files = resolve_shards(source, split)
    check_schema(files, split=split)
    schemas = [pq.read_schema(f) for f in files]
    has_ranking = all("ranking_id" in s.names for s in schemas)
    out_index, out_manifest = Path(out_index), Path(out_manifest)
    out_index.parent.mkdir(parents=True, exist_ok=True)
    tmp_index = out_index.with_name(out_index.name + ".tmp")
    pack_dir = Path(images_dir) if images_dir is not None else None
    tmp_pack = pack_dir.with_name(pack_dir.name + ".tmp") if pack_dir is not None else None

    jobs, left = [], max_rows
    for k, (f, schema) in enumerate(zip(files, schemas)):
        n = pq.read_metadata(f).num_rows if left is None else min(left, pq.read_metadata(f).num_rows)
        if left is not None:
            left -= n
        cols = ("caption", "label_0", "label_1") + tuple(
            c for c in OPTIONAL_COLUMNS if c in schema.names and (c != "ranking_id" or has_ranking))
        name = f"{k:05d}.parquet"
        jobs.append(_ShardJob(
            path=os.path.abspath(f), rows=n, columns=cols, has_ranking=has_ranking, check_images=bool(check_images),
            image_batch_rows=int(image_batch_rows),
            pack_path=str(tmp_pack / name) if tmp_pack is not None else None,
            pack_ref=os.path.relpath(pack_dir / name, out_index.parent) if pack_dir is not None else None,
            pack_resolution=int(pack_resolution) if pack_resolution is not None else None,
        ))
    try:
        if tmp_pack is not None:
            shutil.rmtree(tmp_pack, ignore_errors=True)
            tmp_pack.mkdir(parents=True)
        if num_proc > 1 and len(jobs) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(num_proc, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
                results = list(ex.map(_filter_shard, jobs))
        else:
            results = [_filter_shard(j) for j in jobs]
        index = pa.concat_tables([r["index"] for r in results])
        if pack_resolution is not None:
            index = index.replace_schema_metadata({PACK_RESOLUTION_KEY: str(int(pack_resolution))})
        pq.write_table(index, tmp_index, compression="zstd")
        if pack_dir is not None:
            shutil.rmtree(pack_dir, ignore_errors=True)
            os.replace(tmp_pack, pack_dir)
        os.replace(tmp_index, out_index)
    finally:
        tmp_index.unlink(missing_ok=True)
        if tmp_pack is not None:
            shutil.rmtree(tmp_pack, ignore_errors=True)

    counts = {r: sum(res["counts"][r] for res in results) for r in DROP_REASONS}
    rows_in, kept = sum(r["rows_in"] for r in results), index.num_rows
    if rows_in != kept + sum(counts.values()):
        raise AssertionError(f"filter accounting: {rows_in} rows in != {kept} kept + {counts}")
    n1 = int(pc.sum(index["winner"]).as_py() or 0)
    manifest = {
        "source": str(source) if not isinstance(source, (list, tuple)) else [str(s) for s in source],
        "split": split,
        "check_images": bool(check_images),
        "max_rows": max_rows,
        "rows_in": rows_in,
        "pairs_kept": kept,
        "dropped": counts,
        "dropped_total": int(sum(counts.values())),
        "winner_counts": {"0": kept - n1, "1": n1},
        "unique_prompts": int(pc.count_distinct(index["caption"]).as_py()),
        "n_shards": len(results),
        "shards": [{"path": j.path, "rows_in": r["rows_in"], "pairs_kept": r["index"].num_rows}
                   for j, r in zip(jobs, results)],
        "index": str(out_index),
        "images_dir": str(pack_dir) if pack_dir is not None else None,
        "pack_resolution": pack_resolution,
        "images_bytes": sum(f.stat().st_size for f in pack_dir.glob("*.parquet")) if pack_dir is not None else None,
    }
    _write_json_atomic(out_manifest, manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# Random access to image bytes and the preference-pair dataset
# --------------------------------------------------------------------------------------------


class _ShardReader:
    """Reads image bytes of (shard, row) with small LRU caches of open files and row groups.

    Each file's footer is read once (kept with its row offsets), files are opened with
    ``POSIX_FADV_RANDOM`` (no kernel read-ahead beyond what a read asks for) and a row group is read
    with only the columns asked for: on a pack (one pair per row group) a pair costs its own bytes.
    Picklable (open files and caches are dropped), so each DataLoader worker opens its own files.
    """

    def __init__(self, shards: Sequence[str], *, max_open_files: int = 64, cache_row_groups: int = 2):
        self.shards = list(shards)
        self.max_open_files = max_open_files
        self.cache_row_groups = cache_row_groups
        self._meta: dict[int, tuple[pq.FileMetaData, np.ndarray]] = {}
        self._files: OrderedDict[int, tuple[Any, pq.ParquetFile]] = OrderedDict()
        self._groups: OrderedDict[tuple[int, int, tuple[str, ...]], pa.Table] = OrderedDict()

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_files"], d["_groups"] = OrderedDict(), OrderedDict()
        return d

    def _metadata(self, sid: int) -> tuple[pq.FileMetaData, np.ndarray]:
        m = self._meta.get(sid)
        if m is None:
            md = pq.read_metadata(self.shards[sid])
            off = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)], dtype=np.int64)
            m = self._meta[sid] = (md, off)
        return m

    def _open(self, path: str):
        fh = open(path, "rb", buffering=0)  # noqa: SIM115 - kept open in the LRU of files
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
        return fh

    def _file(self, sid: int) -> pq.ParquetFile:
        entry = self._files.get(sid)
        if entry is None:
            fh = self._open(self.shards[sid])
            entry = self._files[sid] = (fh, pq.ParquetFile(fh, metadata=self._metadata(sid)[0]))
            while len(self._files) > self.max_open_files:
                _, (old, _pf) = self._files.popitem(last=False)
                old.close()
        else:
            self._files.move_to_end(sid)
        return entry[1]

    def offsets(self, sid: int) -> np.ndarray:
        return self._metadata(sid)[1]

    def locate(self, sid: int, row: int) -> tuple[int, int]:
        off = self.offsets(sid)
        if not 0 <= row < off[-1]:
            raise IndexError(f"row {row} out of range for shard {self.shards[sid]} ({off[-1]} rows)")
        rg = int(np.searchsorted(off, row, side="right") - 1)
        return rg, int(row - off[rg])

    def read(self, sid: int, row: int, columns: tuple[str, ...]) -> list[bytes | None]:
        """The values of ``columns`` at ``row`` of shard ``sid`` (their row group read once, cached)."""
        rg, local = self.locate(sid, row)
        key = (sid, rg, columns)
        t = self._groups.get(key)
        if t is None:
            try:
                t = self._file(sid).read_row_group(rg, columns=list(columns))
            except (OSError, pa.ArrowException) as e:
                raise ShardReadError(
                    f"{self.shards[sid]}: row group {rg}: unreadable page in column(s) {', '.join(columns)} "
                    f"({type(e).__name__}: {e})") from e
            self._groups[key] = t
            while len(self._groups) > max(1, self.cache_row_groups):
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        return [t.column(c)[local].as_py() for c in columns]

    def get(self, sid: int, row: int, column: str) -> bytes | None:
        """``column`` (``jpg_0`` or ``jpg_1``) at ``row``; both image columns are read and cached together."""
        return self.read(sid, row, PACK_COLUMNS)[PACK_COLUMNS.index(column)]


def _decode(b: bytes | None, shard: str, row: int, column: str) -> Image.Image:
    if not b:
        raise ImageDecodeError(f"empty image bytes in {column} of shard {shard} row {row}")
    try:
        with Image.open(io.BytesIO(b)) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001
        raise ImageDecodeError(
            f"cannot decode {column} of shard {shard} row {row} ({type(e).__name__}: {e}); "
            "run filter_pairs(..., check_images=True) to drop such pairs beforehand"
        ) from e


def fit_square(img: Image.Image, resolution: int, *, center_crop: bool = True) -> Image.Image:
    """Resize the shorter side to ``resolution`` (PIL bilinear, antialiased; the longer side
    ``int(resolution * long / short)``), then crop ``resolution`` x ``resolution`` at the centre
    (offsets rounded) or the top-left: torchvision's ``Resize(resolution)`` + ``CenterCrop`` on a PIL
    image, as Diffusion-DPO's train.py does, pixel for pixel. An image already ``resolution`` px
    square is returned as is, so a pack pre-resized with it gives training the same pixels."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resolution * long / short)
    size = (resolution, new_long) if w <= h else (new_long, resolution)
    if size != img.size:
        img = img.resize(size, Image.BILINEAR)
    if size == (resolution, resolution):
        return img
    top = int(round((size[1] - resolution) / 2.0)) if center_crop else 0
    left = int(round((size[0] - resolution) / 2.0)) if center_crop else 0
    return img.crop((left, top, left + resolution, top + resolution))


def _fit_ppm(b0, b1, resolution: int) -> tuple[bytes, bytes] | None:
    """Both images of a pair fitted to ``resolution`` (:func:`fit_square`, centre crop) as binary PPM
    (raw RGB behind a 15-byte header: no encoding or decoding cost, lossless; PNG at zlib level 1 was
    measured 46 ms per 512 px image to encode and only 25% smaller), or None when either does not decode."""
    out = []
    for b in (b0, b1):
        if b is None or len(b) == 0:
            return None
        try:
            with Image.open(io.BytesIO(b)) as im:
                img = fit_square(im.convert("RGB"), resolution)
        except Exception:  # noqa: BLE001 - any decoder failure means "undecodable"
            return None
        buf = io.BytesIO()
        img.save(buf, format="PPM")
        out.append(buf.getvalue())
    return out[0], out[1]


def preprocess(img: Image.Image, resolution: int, *, flip: bool, center_crop: bool = True):
    """:func:`fit_square` -> optional horizontal flip -> FloatTensor[3, R, R] in [-1, 1]."""
    import torch

    img = fit_square(img, resolution, center_crop=center_crop)
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return x / 127.5 - 1.0


def _flip_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class PreferencePairs:
    """Map-style dataset (for ``torch.utils.data.DataLoader``) over a filtered-pairs index.

    ``ds[i] -> {"pixel_w": FloatTensor[3,R,R] in [-1,1], "pixel_l": ..., "caption": str, "index": i}``
    (``winners_only=True``: no ``pixel_l``, for SFT; only the winner's bytes are read). Horizontal
    flips of winner and loser are drawn independently from an RNG seeded by ``(seed, epoch, index)``:
    reproducible and resumable; call :meth:`set_epoch` every epoch. Image bytes are read lazily from
    the files named in the index (an image pack or the source shards); relative paths are resolved
    against the index's folder.
    """

    def __init__(
        self,
        index_path: str | os.PathLike,
        resolution: int,
        *,
        random_flip: bool = True,
        seed: int = 0,
        center_crop: bool = True,
        winners_only: bool = False,
        cache_row_groups: int = 2,
        max_open_files: int = 64,
    ):
        self.index_path = Path(index_path)
        self.resolution = int(resolution)
        self.random_flip = bool(random_flip)
        self.seed = int(seed)
        self.center_crop = bool(center_crop)
        self.winners_only = bool(winners_only)
        self.epoch = 0
        t = pq.read_table(self.index_path, columns=["shard", "row", "caption", "winner"])
        packed = (t.schema.metadata or {}).get(PACK_RESOLUTION_KEY)
        if packed is not None and (int(packed) != self.resolution or not self.center_crop):
            raise ValueError(
                f"{self.index_path}: its image pack holds images fitted to {int(packed)} px (centre crop); "
                f"training asks for {self.resolution} px{'' if self.center_crop else ', top-left crop'}: "
                "filter again with pack_resolution matching data.resolution, or without it")
        shard = pc.dictionary_encode(t["shard"]).combine_chunks()
        base = self.index_path.parent
        self.shards = [p if os.path.isabs(p) else str(base / p) for p in shard.dictionary.to_pylist()]
        self._shard_id = shard.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        self._row = t["row"].to_numpy().astype(np.int64)
        self._winner = t["winner"].to_numpy().astype(np.int8)
        self._caption = t["caption"].combine_chunks()
        bad = ~np.isin(self._winner, (0, 1))
        if bad.any():
            raise ValueError(f"{self.index_path}: winner must be 0 or 1 ({int(bad.sum())} rows are not)")
        self._reader = _ShardReader(
            self.shards, max_open_files=max_open_files, cache_row_groups=cache_row_groups
        )

    def __len__(self) -> int:
        return len(self._row)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def flips(self, index: int, epoch: int | None = None) -> tuple[bool, bool]:
        """(flip_w, flip_l) drawn for ``index`` at ``epoch`` (default: the current epoch)."""
        if not self.random_flip:
            return False, False
        r = _flip_rng(self.seed, self.epoch if epoch is None else epoch, index).random(2)
        return bool(r[0] < 0.5), bool(r[1] < 0.5)

    def image_bytes(self, index: int) -> list[bytes | None]:
        """Raw bytes of (winner, loser) of pair ``index`` (winner only when ``winners_only``)."""
        sid, row, w = int(self._shard_id[index]), int(self._row[index]), int(self._winner[index])
        cols = (f"jpg_{w}",) if self.winners_only else (f"jpg_{w}", f"jpg_{1 - w}")
        return self._reader.read(sid, row, cols)

    def load_images(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        """Decoded (winner, loser) PIL images of pair ``index`` (loser None when winners_only)."""
        sid, row, w = int(self._shard_id[index]), int(self._row[index]), int(self._winner[index])
        shard = self.shards[sid]
        raw = self.image_bytes(index)
        img_w = _decode(raw[0], shard, row, f"jpg_{w}")
        if self.winners_only:
            return img_w, None
        return img_w, _decode(raw[1], shard, row, f"jpg_{1 - w}")

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        img_w, img_l = self.load_images(index)
        fw, fl = self.flips(index)
        out = {
            "pixel_w": preprocess(img_w, self.resolution, flip=fw, center_crop=self.center_crop),
            "caption": self._caption[index].as_py(),
            "index": index,
        }
        if not self.winners_only:
            out["pixel_l"] = preprocess(img_l, self.resolution, flip=fl, center_crop=self.center_crop)
        return out
