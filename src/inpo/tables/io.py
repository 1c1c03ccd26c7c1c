"""Files in and out: benchmarks, training logs, image paths, table writers (CSV, LaTeX) and reader."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd


def read_benchmark(path_or_df: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A Snakemake benchmark TSV (columns ``s, h:m:s, max_rss, ...``; one row per repeat)."""
    if isinstance(path_or_df, pd.DataFrame):
        df = path_or_df
    else:
        df = pd.read_csv(path_or_df, sep="\t", na_values=["-", "NA"])
    if "s" not in df.columns:
        raise ValueError(f"benchmark {path_or_df if not isinstance(path_or_df, pd.DataFrame) else '<frame>'} has no 's' column")
    if len(df) == 0:
        raise ValueError("benchmark file has no rows")
    return df


def read_training_logs(paths: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Training log CSVs (``results/logs/train/{run}.csv``) concatenated with a ``run`` column.

    ``paths``: ``{run: path}`` or a list of paths (run = file stem).
    """
    items = paths.items() if isinstance(paths, Mapping) else [(Path(p).stem, p) for p in paths]
    frames = [pd.read_csv(p).assign(run=str(run)) for run, p in items]
    if not frames:
        raise ValueError("read_training_logs: no logs given")
    df = pd.concat(frames, ignore_index=True)
    return df[["run"] + [c for c in df.columns if c != "run"]]


def smooth_logs(logs: pd.DataFrame, columns: Sequence[str], window: int = 1) -> pd.DataFrame:
    """Per-run trailing rolling mean of ``columns`` (window 1 = unchanged), for plotting."""
    out = logs.sort_values(["run", "update"]).copy()
    if window > 1:
        for c in columns:
            out[c] = out.groupby("run", sort=False)[c].transform(lambda s: s.rolling(window, min_periods=1).mean())
    return out


# -------------------------------------------------------------------------------------------- images
def image_path(images_dir: str | os.PathLike, model: str, prompt_set: str, index: int) -> Path:
    """``{images_dir}/{model}/{prompt_set}/{index:05d}.png`` (docs/CONVENTIONS.md)."""
    return Path(images_dir) / str(model) / str(prompt_set) / f"{int(index):05d}.png"


def image_grid_paths(
    images_dir: str | os.PathLike, models: Sequence[str], prompt_set: str, indices: Sequence[int]
) -> pd.DataFrame:
    """Rows ``index`` x columns ``model`` of image paths (``None`` where the file does not exist)."""
    data = {
        m: [str(p) if (p := image_path(images_dir, m, prompt_set, i)).exists() else None for i in indices]
        for m in models
    }
    return pd.DataFrame(data, index=pd.Index([int(i) for i in indices], name="index"))


# ------------------------------------------------------------------------------------------- writers
def flatten_columns(df: pd.DataFrame, sep: str = " | ") -> pd.DataFrame:
    """Copy with MultiIndex columns joined by ``sep`` (``"hps (hpsv2.1) | ours"``) and the index reset."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [sep.join(str(x) for x in c if str(x) != "") for c in out.columns]
    if not isinstance(out.index, pd.RangeIndex) or out.index.name is not None:
        out = out.reset_index()
    return out


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV (MultiIndex columns flattened, index as columns); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flatten_columns(df).to_csv(path, index=False, float_format="%.10g")
    return path


def to_latex(
    df: pd.DataFrame,
    path: str | os.PathLike | None = None,
    *,
    float_format: str = "%.2f",
    caption: str | None = None,
    label: str | None = None,
) -> str:
    """LaTeX ``tabular`` of ``df`` (booktabs rules, NaN as ``--``, special characters escaped); written
    to ``path`` when given. Returns the LaTeX string."""
    tex = df.to_latex(
        float_format=lambda x: float_format % x,
        na_rep="--",
        escape=True,
        multicolumn=True,
        multicolumn_format="c",
        caption=caption,
        label=label,
    )
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tex, encoding="utf-8")
    return tex


def read_table(path: str | os.PathLike, sep: str = " | ") -> pd.DataFrame:
    """A table as :func:`write_csv` wrote it, its layout restored: when column names hold ``sep`` (a wide
    table's ``(label, source)`` columns), the other columns become the row index and the joined names
    two column levels. A long table comes back as is; a file without columns (an empty wide table) as an
    empty frame."""
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    if not any(sep in c for c in df.columns):
        return df
    index = [c for c in df.columns if sep not in c]
    out = df.set_index(index) if index else df
    out.columns = pd.MultiIndex.from_tuples([tuple(c.split(sep, 1)) for c in out.columns])
    return out
