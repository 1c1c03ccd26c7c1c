"""Training efficiency (Figure 4, inpo.efficiency): first crossings, speed-ups, hours, prompt subsets with
hand-computed numbers; the trainer's snapshots equal the model of a run stopped there; a snapshot
generates the images of that model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inpo import efficiency as E


def test_first_crossing_interpolates_between_the_points_around_it():
    x, y = [0, 10, 20, 30], [0.50, 0.52, 0.58, 0.60]
    assert E.first_crossing(x, y, 0.55) == pytest.approx(15.0)  # 10 + (0.55 - 0.52) / 0.06 * 10
    assert E.first_crossing(x, y, 0.52) == pytest.approx(10.0)  # reached at a point: that point
    assert E.first_crossing(x, y, 0.40) == 0.0  # starts at the level
    assert math.isnan(E.first_crossing(x, y, 0.61))  # never
    # the FIRST crossing: a curve that rises, falls back and rises again
    assert E.first_crossing([0, 1, 2, 3], [0.0, 2.0, 0.0, 4.0], 1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="x must increase"):
        E.first_crossing([0, 2, 1], [0, 1, 2], 0.5)


def _curves():
    """inpo reaches 0.6 at 2.0 hours (update 10), dpo at 7.2 hours (update 1500), kto never (20 hours)."""
    rows = []
    for run, pts in {
        "inpo": [(0, 0.0, 0.5), (5, 1.0, 0.55), (10, 2.0, 0.6), (20, 4.0, 0.7)],
        "dpo": [(0, 0.0, 0.5), (1000, 4.0, 0.56), (2000, 8.0, 0.61)],
        "kto": [(0, 0.0, 0.5), (10, 10.0, 0.52), (20, 20.0, 0.58)],
    }.items():
        for u, h, m in pts:
            rows.append({"run": run, "point": "snapshot", "update": u, "hours": h, "evaluator": "r",
                         "evaluator_version": "v", "n": 4, "mean": m, "sd": 0.1})
    rows.append({"run": "base", "point": "base", "update": 0, "hours": 0.0, "evaluator": "r",
                 "evaluator_version": "v", "n": 4, "mean": 0.5, "sd": 0.1})
    return pd.DataFrame(rows)


def test_speedup_table_hand_numbers():
    paper = E.load_paper_speedups()
    names = {"inpo": "InPO-SD1.5", "dpo": "DPO-SD1.5", "kto": "KTO-SD1.5"}
    t = E.speedup_table(_curves(), "inpo", "r", 0.6, "GPU-hours", paper, names).set_index("run")
    assert list(t.index) == ["inpo", "dpo", "kto"]  # the base is no run
    assert t.loc["inpo", "hours_to_level"] == pytest.approx(2.0) and t.loc["inpo", "speedup"] == 1.0
    # dpo crosses 0.6 between (4.0 h, 0.56) and (8.0 h, 0.61): 4 + 0.04 / 0.05 * 4 = 7.2 h, update 1800
    assert t.loc["dpo", "hours_to_level"] == pytest.approx(7.2)
    assert t.loc["dpo", "updates_to_level"] == pytest.approx(1800.0)
    assert t.loc["dpo", "speedup"] == pytest.approx(3.6) and not t.loc["dpo", "speedup_is_lower_bound"]
    assert t.loc["dpo", "full_run_ratio"] == pytest.approx(8.0 / 4.0)
    # kto never reaches it: at least its 20 hours / 2.0
    assert not t.loc["kto", "reached"] and t.loc["kto", "speedup_is_lower_bound"]
    assert t.loc["kto", "speedup"] == pytest.approx(10.0)
    assert (t.loc["dpo", "paper_speedup"], t.loc["kto", "paper_speedup"]) == (3.6, 18.4)
    assert math.isnan(t.loc["inpo", "paper_speedup"])
    text = E.describe(t.reset_index(), "inpo")
    assert "3.6x faster than dpo" in text and "at least 10.0x faster than kto" in text
    assert text.startswith("inpo reaches the level after 10 updates (2 GPU-hours).")
    t = E.speedup_table(_curves(), "inpo", "r", 0.65, "GPU-hours").set_index("run")
    assert t.loc["inpo", "hours_to_level"] == pytest.approx(3.0)  # 2 + 0.05 / 0.1 * 2
    assert t.loc["dpo", "speedup"] == pytest.approx(8.0 / 3.0) and t.loc["dpo", "speedup_is_lower_bound"]
    # the model never reaching the level: no speed-up at all
    t = E.speedup_table(_curves(), "kto", "r", 0.6).set_index("run")
    assert t["speedup"].isna().all() and t.index[0] == "kto"


def test_hours_at_shares_the_benchmark_by_the_loop_clock():
    log = pd.DataFrame({"update": [1, 2, 3, 4], "wall_s": [1.0, 2.0, 4.0, 8.0]})
    assert E.hours_at([0, 2, 4], log, 2.0) == pytest.approx([0.0, 0.5, 2.0])
    with pytest.raises(ValueError, match="no row for update 5"):
        E.hours_at([5], log, 2.0)


def test_training_hours_gpu_and_cpu():
    b = pd.DataFrame({"s": [3600.0, 7200.0], "cpu_time": [1800.0, 1800.0]})
    assert E.training_hours(b, 8) == (pytest.approx(12.0), "GPU-hours")  # mean 5400 s x 8 GPUs
    assert E.training_hours(b, 0) == (pytest.approx(0.5), "CPU-hours")
    with pytest.raises(ValueError, match="cpu_time"):
        E.training_hours(b.drop(columns="cpu_time"), 0)


def test_prompt_subset_spans_the_set_and_keeps_indices():
    p = pd.DataFrame({"index": np.arange(10) + 100, "prompt": [f"p{i}" for i in range(10)]})
    assert E.prompt_subset(p, 4)["index"].tolist() == [100, 103, 106, 109]  # rows round(i * 9 / 3)
    assert E.prompt_subset(p, 3)["index"].tolist() == [100, 104, 109]  # rows 0, 4.5 -> 4, 9
    assert E.prompt_subset(p, 20)["index"].tolist() == list(range(100, 110))


def test_level_value():
    base = pd.Series([1.0, 3.0, 5.0])  # mean 3, sd 2
    assert E.level_value(base, 0.25, "score") == pytest.approx(3.25)
    assert E.level_value(base, 0.5, "base_sd") == pytest.approx(4.0)
    with pytest.raises(ValueError, match="unit"):
        E.level_value(base, 0.5, "percent")


def test_curve_restricts_to_the_subset():
    s = pd.DataFrame({"index": [0, 1, 2], "evaluator": "r", "evaluator_version": "v", "score": [1.0, 2.0, 6.0]})
    c = E.curve({0: s, 7: s.assign(score=s["score"] + 1)}, {0: 0.0, 7: 3.5}, "inpo", ["r"], [0, 2], {0: "init"})
    assert c["mean"].tolist() == [3.5, 4.5] and c["hours"].tolist() == [0.0, 3.5]
    assert c["point"].tolist() == ["init", "snapshot"] and c["n"].tolist() == [2, 2]
    with pytest.raises(ValueError, match="update 0: no r score for prompt indices \\[5\\]"):
        E.curve({0: s}, {0: 0.0}, "inpo", ["r"], [0, 5])


def _config():
    return {"efficiency": {"runs": ["inpo", "dpo"], "every": 10, "every_by_run": {"dpo": 50}, "prompt_set": "p",
                           "n_prompts": 4, "evaluators": ["r"], "level": {"evaluator": "r", "offset": 0.1, "unit": "score"}},
            "report": {"model": "inpo"}, "evaluation": {"prompt_sets": {"p": None}, "evaluators": ["r", "q"]}}


def test_snapshot_settings_and_config_checks():
    cfg = _config()
    assert (E.snapshot_every(cfg, "inpo"), E.snapshot_every(cfg, "dpo"), E.snapshot_every(cfg, "sft")) == (10, 50, 0)
    assert E.snapshot_updates(30, 10) == [10, 20] and E.snapshot_updates(30, 7) == [7, 14, 21, 28]
    assert E.snapshot_updates(2, 1) == [1] and E.snapshot_updates(30, 0) == []
    runs = {"inpo": {"init": "sft"}, "dpo": {"init": "base"}, "sft": {"init": "base"}}
    E.check_config(cfg, runs, ["base", "sft", "inpo", "dpo"])
    with pytest.raises(ValueError, match="needs the main scores of 'sft'"):
        E.check_config(cfg, runs, ["base", "inpo", "dpo"])
    cfg["efficiency"]["runs"] = ["dpo"]
    with pytest.raises(ValueError, match="must include report.model 'inpo'"):
        E.check_config(cfg, runs, ["base", "sft", "inpo", "dpo"])
    cfg = _config()
    cfg["efficiency"]["level"]["evaluator"] = "q"
    with pytest.raises(ValueError, match="level.evaluator 'q' must be one of efficiency.evaluators"):
        E.check_config(cfg, runs, ["base", "sft", "inpo", "dpo"])


def test_snapshot_is_the_model_of_a_run_stopped_there(tmp_path, jpeg, write_shard):
    """The snapshot at update 1 of a 2-update run has the weights of a 1-update run, and generated through
    ``evaluate_snapshot`` (the 2-update run's pipeline with that UNet) it draws that run's images."""
    from PIL import Image
    from train_utils import build_world, make_run_cfg, max_unet_diff, unet_state

    from inpo.generate import generate_images
    from inpo.trainer import train

    world = build_world(tmp_path / "world", jpeg, write_shard)
    train(make_run_cfg(world, "two", tmp_path, max_updates=2, snapshot_every=1))
    train(make_run_cfg(world, "one", tmp_path, max_updates=1))
    snaps = sorted(p.name for p in (tmp_path / "two" / "state" / "snapshots").iterdir())
    assert snaps == ["update-000001"]  # below max_updates only: the last one is the model
    snap = E.snapshot_path(tmp_path / "two" / "state", 1)
    from diffusers import UNet2DConditionModel

    s1 = UNet2DConditionModel.from_pretrained(snap).state_dict()
    assert max_unet_diff(s1, unet_state(tmp_path / "one" / "model")) == 0.0
    assert max_unet_diff(s1, unet_state(tmp_path / "two" / "model")) > 0.0

    prompts = pd.DataFrame({"index": [0, 3], "prompt": ["a colour swatch", "a red swatch"]})
    gen = {"steps": 2, "guidance_scale": 3.0, "seed_base": 5, "batch_size": 2}
    scores = E.evaluate_snapshot(str(tmp_path / "two" / "model"), str(snap), prompts, str(tmp_path / "img_snap"),
                                 family="sd15", generation=gen, evaluators={"toy_reward": {}}, label="two@1",
                                 prompt_set="p")
    generate_images(str(tmp_path / "one" / "model"), prompts, tmp_path / "img_one", num_inference_steps=2,
                    guidance_scale=3.0, seed_base=5, batch_size=2, progress=False)
    for i in (0, 3):
        a = np.asarray(Image.open(tmp_path / "img_snap" / f"{i:05d}.png"))
        b = np.asarray(Image.open(tmp_path / "img_one" / f"{i:05d}.png"))
        assert np.array_equal(a, b), i
    assert scores["model"].unique().tolist() == ["two@1"] and scores["index"].tolist() == [0, 3]


def write_fixture_tables(folder):
    """Figure 4's two tables as rule efficiency_tables writes them, from the hand-made curves of
    :func:`_curves` (also the fixture of tests/test_notebooks.py's render test); returns ``folder``."""
    from pathlib import Path

    from inpo import tables as T

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    curves = _curves()
    speed = E.speedup_table(curves, "inpo", "r", 0.6, "GPU-hours", E.load_paper_speedups(),
                            {"inpo": "InPO-SD1.5", "dpo": "DPO-SD1.5", "kto": "KTO-SD1.5"})
    speed.insert(3, "base_mean", 0.5)
    speed.insert(4, "offset", "0.1 score")
    T.write_csv(curves.assign(hours_unit="GPU-hours"), folder / "fig4_curves.csv")
    T.write_csv(speed, folder / "fig4_efficiency.csv")
    return folder


def test_notebook_renders_the_tables(tmp_path):
    """notebooks/fig4_efficiency.py (jupytext) on tables written here: the headline states the speed-ups."""
    import json
    from pathlib import Path

    from inpo.report import render_notebook

    write_fixture_tables(tmp_path)
    source = Path(__file__).resolve().parents[1] / "notebooks" / "fig4_efficiency.py"
    out = render_notebook(source, tmp_path / "out.ipynb", tmp_path / "out.html", {"tables_dir": str(tmp_path)},
                          cwd=source.parent, exclude_input=True)
    nb = json.loads(out["ipynb"].read_text())
    text = "".join("".join(o.get("data", {}).get("text/markdown", "")) + "".join(o.get("text", ""))
                   for c in nb["cells"] for o in c.get("outputs", []))
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert "3.6x faster than dpo" in text and "at least 10.0x faster than kto" in text
    assert text.startswith("## Headline\n\ninpo reaches the level after 10 updates (2 GPU-hours).")  # first
    html = out["html"].read_text()
    assert "image/png" in html and "import matplotlib" not in html  # the figure, and no input code
