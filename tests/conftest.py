"""Shared pytest fixtures. Tests never touch the network: the Hugging Face hub is forced offline.

``INPO_REQUIRE_ALL=1`` (set by ``.ci/run``) makes the suite refuse to pass with a test group
missing: the shared data folder must hold the real data files (checked before any test runs, so
no test can fall back to a stand-in such as a random aesthetic MLP), and every skipped test is
reported as a failure naming its skip reason, unless it is marked ``ci_optional``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIRE_ALL = os.environ.get("INPO_REQUIRE_ALL", "") not in ("", "0")
# files of the shared data folder that the real-data tests read (README of that folder)
REQUIRED_SHARED_FILES = [
    "aesthetic/sac+logos+ava1-l14-linearMSE.pth",
    "hpdv2/photo.json",
    "parti/PartiPrompts.tsv",
]


def shared_data_path() -> Path:
    env = os.environ.get("INPO_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ci_optional: may skip even under INPO_REQUIRE_ALL=1 (say why in the skip reason)")
    if not REQUIRE_ALL:
        return
    if not os.environ.get("INPO_SHARED_DATA"):
        raise pytest.UsageError("INPO_REQUIRE_ALL=1: set INPO_SHARED_DATA to the shared data folder "
                                "(CI passes ../shared/data explicitly)")
    root = shared_data_path()
    missing = [f for f in REQUIRED_SHARED_FILES if not (root / f).is_file()]
    if missing:
        raise pytest.UsageError(f"INPO_REQUIRE_ALL=1: INPO_SHARED_DATA={root} lacks {missing}; the "
                                "real-data tests would skip and the aesthetic tests use a random MLP")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail") \
            and item.get_closest_marker("ci_optional") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under INPO_REQUIRE_ALL=1 (a test group CI must run): {reason}"
    return report


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real evaluation data files ($INPO_SHARED_DATA or <repo>/../shared/data)."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"real data files absent: {path} (set INPO_SHARED_DATA to the shared data folder)")
    return path


def _jpeg(color, size=(48, 32), marker=(255, 255, 255), quality=95) -> bytes:
    """Solid ``color`` JPEG whose left quarter is ``marker`` (so horizontal flips are visible)."""
    import io

    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, tuple(color))
    if marker is not None:
        ImageDraw.Draw(im).rectangle([0, 0, size[0] // 4 - 1, size[1] - 1], fill=tuple(marker))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write_shard(path, rows, row_group_size=None):
    """Write ``rows`` (dicts with caption, label_0, jpg_0, jpg_1 and optionally label_1, has_label,
    ranking_id, image_0_uid, image_1_uid) as one parquet shard in the exact Pick-a-Pic v2 schema."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from inpo.data.pickapic import PICKAPIC_V2_SCHEMA

    cols = {name: [] for name in PICKAPIC_V2_SCHEMA.names}
    t0 = datetime.datetime(2023, 5, 1)
    for i, r in enumerate(rows):
        l0 = r["label_0"]
        l1 = r.get("label_1", None if l0 is None else 1.0 - l0)
        rid = r.get("ranking_id", 1000 + i)
        vals = {
            "are_different": r.get("are_different", True),
            "best_image_uid": f"uid{rid}_{0 if l0 == 1 else 1}",
            "caption": r["caption"],
            "created_at": t0 + datetime.timedelta(seconds=i),
            "has_label": r.get("has_label", l0 is not None),
            "image_0_uid": r.get("image_0_uid", f"uid{rid}_0"),
            "image_0_url": f"https://example.invalid/{rid}_0.jpg",
            "image_1_uid": r.get("image_1_uid", f"uid{rid}_1"),
            "image_1_url": f"https://example.invalid/{rid}_1.jpg",
            "jpg_0": r["jpg_0"],
            "jpg_1": r["jpg_1"],
            "label_0": l0,
            "label_1": l1,
            "model_0": "sdxl",
            "model_1": "sd-2.1",
            "ranking_id": rid,
            "user_id": 7,
            "num_example_per_prompt": 1,
            "__index_level_0__": i,
        }
        for k, v in vals.items():
            cols[k].append(v)
    table = pa.Table.from_pydict(cols, schema=PICKAPIC_V2_SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="session")
def jpeg():
    return _jpeg


@pytest.fixture(scope="session")
def write_shard():
    return _write_shard


def _sinfo_answers() -> str | None:
    """None when a SLURM controller answers ``sinfo``, else the reason to skip."""
    if shutil.which("sinfo") is None:
        return "no SLURM cluster: `sinfo` not installed (start one with .ci/slurm-up)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %a %T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "no SLURM cluster: `sinfo` did not answer within 15 s (start one with .ci/slurm-up)"
    if proc.returncode != 0 or not proc.stdout.strip():
        err = (proc.stderr.strip().splitlines() or ["no partitions"])[-1]
        return f"no SLURM cluster: `sinfo` failed ({err}); start one with .ci/slurm-up"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    reason = _sinfo_answers()
    if reason:
        pytest.skip(reason)
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.skip("snakemake-executor-plugin-slurm not installed in this environment")


@pytest.fixture(scope="session")
def trainer_world(tmp_path_factory, jpeg, write_shard) -> Path:
    """A tiny random SD1.5 pipeline (``base``) and 4 fixed pairs, red preferred over blue
    (:func:`train_utils.build_world`)."""
    from train_utils import build_world

    return build_world(tmp_path_factory.mktemp("trainer_world"), jpeg, write_shard)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The toy DAG at smoke size, run once per session in a scratch copy of the workflow."""
    from workflow_utils import SMOKE, copy_workflow, run_snakemake

    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    run_snakemake(work, "--cores", "2", "all", *SMOKE)
    return work
