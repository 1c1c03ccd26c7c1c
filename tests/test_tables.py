"""inpo.tables: win-rates, medians/means, GPU-hours, ablations, toy effect, paper tables (hand-computed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inpo import tables as t

FIX = Path(__file__).parent / "fixtures"


def tidy(model_scores: dict[str, list[float]], evaluator="hps", version="hpsv2.1", prompt_set="hpdv2", indices=None):
    rows = []
    for m, vals in model_scores.items():
        idx = indices.get(m) if isinstance(indices, dict) else indices
        idx = idx if idx is not None else list(range(len(vals)))
        for i, v in zip(idx, vals):
            rows.append((m, prompt_set, i, f"prompt {i}", evaluator, version, float(v)))
    return pd.DataFrame(rows, columns=t.SCORE_COLUMNS)


@pytest.fixture
def four():
    # a beats b on prompts 0 and 3, ties on 1, loses on 2 -> (2 + 0.5) / 4 = 0.625
    return tidy({"inpo": [1, 2, 3, 4], "base": [0, 2, 5, 3]})


@pytest.fixture(scope="module")
def fixture_scores():
    return t.read_scores(FIX / "scores.csv")


# ------------------------------------------------------------------------------------------ win_rate
def test_win_rate_four_prompts_one_tie(four):
    r = t.win_rate(four, "inpo", "base", "hps", "hpdv2")
    assert r["win_rate"] == pytest.approx(0.625)
    assert (r["wins"], r["ties"], r["losses"], r["n"]) == (2, 1, 1, 4)
    assert r["evaluator_version"] == "hpsv2.1"
    # Wilson score interval, z = 1.959964: center (p + z^2/2n)/(1 + z^2/n) = 0.56376,
    # half-width z sqrt(p(1-p)/n + z^2/4n^2)/(1 + z^2/n) = 0.34434
    assert r["ci_low"] == pytest.approx(0.21943, abs=1e-4)
    assert r["ci_high"] == pytest.approx(0.90810, abs=1e-4)
    # the reverse direction is the complement, with the same tie
    rev = t.win_rate(four, "base", "inpo", "hps", "hpdv2")
    assert rev["win_rate"] == pytest.approx(0.375)
    assert (rev["wins"], rev["ties"], rev["losses"]) == (1, 1, 2)


def test_win_rate_pairs_by_index_not_row_order(four):
    shuffled = four.sample(frac=1.0, random_state=3)
    assert t.win_rate(shuffled, "inpo", "base", "hps", "hpdv2")["win_rate"] == pytest.approx(0.625)


def test_win_rate_mismatched_indices_raise():
    s = tidy({"inpo": [1, 2, 3], "base": [0, 0, 0]}, indices={"inpo": [0, 1, 2], "base": [0, 1, 7]})
    with pytest.raises(ValueError, match="prompt indices differ"):
        t.win_rate(s, "inpo", "base", "hps", "hpdv2")


def test_win_rate_missing_model_and_version_mismatch(four):
    with pytest.raises(KeyError):
        t.win_rate(four, "inpo", "dpo", "hps", "hpdv2")
    mixed = pd.concat([four[four.model == "inpo"], four[four.model == "base"].assign(evaluator_version="hpsv2.0")])
    with pytest.raises(ValueError, match="versions differ"):
        t.win_rate(mixed, "inpo", "base", "hps", "hpdv2")


def test_win_rate_bootstrap_is_seeded_and_brackets_estimate():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 200), rng.normal(0, 1, 200)
    s = tidy({"a": a, "b": b})
    r1 = t.win_rate(s, "a", "b", "hps", "hpdv2", ci="bootstrap", n_boot=2000, seed=1)
    r2 = t.win_rate(s, "a", "b", "hps", "hpdv2", ci="bootstrap", n_boot=2000, seed=1)
    assert r1 == r2
    assert r1["ci_low"] < r1["win_rate"] < r1["ci_high"]
    w = t.win_rate(s, "a", "b", "hps", "hpdv2")
    assert r1["ci_high"] - r1["ci_low"] == pytest.approx(w["ci_high"] - w["ci_low"], rel=0.2)


def test_win_rate_table_layout_and_version_label(four):
    s = pd.concat([four, four.assign(evaluator="pickscore", evaluator_version="v1", score=-four["score"])])
    wide = t.win_rate_table(s, "inpo", ["base"])
    assert list(wide.columns) == ["pickscore (v1)", "hps (hpsv2.1)"]  # paper's evaluator order
    assert wide.loc[("inpo", "base", "hpdv2"), "hps (hpsv2.1)"] == pytest.approx(62.5)
    assert wide.loc[("inpo", "base", "hpdv2"), "pickscore (v1)"] == pytest.approx(37.5)
    long = t.win_rate_long(s, "inpo", ["base"])
    assert long.set_index("evaluator").loc["hps", "ties"] == 1


def test_win_rate_vs_paper_puts_table1_beside(fixture_scores):
    wide = t.win_rate_vs_paper(fixture_scores, "inpo", ["base", "dpo"])
    assert wide.columns.names == ["evaluator", "source"]
    # paper Table 1: InPO-SD1.5 over Base-SD1.5 on HPDv2: hps 90.22; over DPO on Parti: pickscore 63.54
    assert wide.loc[("inpo", "base", "hpdv2"), ("hps (hpsv2.1)", "paper")] == pytest.approx(90.22)
    assert wide.loc[("inpo", "dpo", "parti"), ("pickscore (pickscore_v1)", "paper")] == pytest.approx(63.54)
    ours = t.win_rate(fixture_scores, "inpo", "base", "hps", "hpdv2")["win_rate"]
    assert wide.loc[("inpo", "base", "hpdv2"), ("hps (hpsv2.1)", "ours")] == pytest.approx(100 * ours)
    # an unmapped name has no paper figure
    other = t.win_rate_vs_paper(fixture_scores, "inpo", ["base"], name_map={"inpo": "InPO-SD1.5"})
    assert other[("hps (hpsv2.1)", "paper")].isna().all()


def test_mixed_versions_of_one_evaluator_in_a_table_raise(four):
    s = pd.concat([four, four[four.model == "base"].assign(model="dpo", evaluator_version="hpsv2.0")])
    with pytest.raises(ValueError, match="several versions"):
        t.win_rate_table(s, "inpo", ["base", "dpo"])


# ------------------------------------------------------------------------------------ median / mean
def test_summary_table_hand_numbers_and_paper():
    s = pd.concat([tidy({"base": [1, 2, 3, 10], "inpo": [2, 4, 6, 8]}), tidy({"base": [5, 7]}, prompt_set="parti")])
    long = t.summary_long(s)
    b = long.set_index(["prompt_set", "model"]).loc[("hpdv2", "base")]
    assert (b["median"], b["mean"], b["n"]) == (2.5, 4.0, 4)
    assert b["evaluator_version"] == "hpsv2.1"
    # supplementary S7, set A (= HPDv2), Base-SD1.5: hps median 26.647, mean 26.633
    assert (b["paper_median"], b["paper_mean"]) == (26.647, 26.633)
    wide = t.summary_table(s)
    assert wide.loc[("hpdv2", "inpo"), ("hps (hpsv2.1)", "median")] == 5.0
    assert wide.loc[("hpdv2", "inpo"), ("hps (hpsv2.1)", "paper_mean")] == 28.502
    assert math.isnan(wide.loc[("parti", "base"), ("hps (hpsv2.1)", "paper_median")])  # set B/C order unknown
    assert wide.loc[("parti", "base"), ("hps (hpsv2.1)", "mean")] == 6.0
    assert ("parti", "inpo") not in wide.index


# ----------------------------------------------------------------------------------------- GPU hours
def test_gpu_hours_from_fixture_tsv():
    # inpo.tsv: two repeats, 3600 s and 3960 s -> mean 3780 s; 8 GPUs -> 8.4 GPU-hours
    assert t.gpu_hours(FIX / "benchmarks" / "inpo.tsv", 8) == pytest.approx(8.4)
    assert t.gpu_hours(str(FIX / "benchmarks" / "dpo.tsv"), 4) == pytest.approx(10.0)  # 9000 s x 4 GPUs
    # several files (a run split into jobs) are summed
    both = [FIX / "benchmarks" / "inpo.tsv", FIX / "benchmarks" / "dpo.tsv"]
    assert t.gpu_hours(both, 1) == pytest.approx(1.05 + 2.5)
    assert t.gpu_hours(pd.DataFrame({"s": [1800.0]}), 2) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        t.gpu_hours(pd.DataFrame({"x": [1]}), 1)


# ------------------------------------------------------------------------------------------ ablations
def test_ablation_table_on_fixtures(fixture_scores):
    runs = pd.read_csv(FIX / "runs.csv")
    wide = t.ablation_table(
        fixture_scores, runs, benchmark_root=FIX, paper_rows={"inpo": 13, "dpo": "DPO-SD1.5", "base": 1}
    )
    assert [k[0] for k in wide.index] == ["base", "dpo", "inpo"]
    row = wide.xs("inpo", level="run").iloc[0]
    med = fixture_scores.query("model == 'inpo' and prompt_set == 'hpdv2' and evaluator == 'hps'")["score"].median()
    assert row[("hps (hpsv2.1)", "ours")] == pytest.approx(med)
    assert row[("hps (hpsv2.1)", "paper")] == pytest.approx(28.523)
    assert row[("gpu_hours", "ours")] == pytest.approx(8.4)
    assert row[("gpu_hours", "paper")] == pytest.approx(57.6)
    dpo = wide.xs("dpo", level="run").iloc[0]
    assert dpo[("gpu_hours", "ours")] == pytest.approx(20.0)
    assert dpo[("gpu_hours", "paper")] == pytest.approx(204.8)
    assert math.isnan(wide.xs("base", level="run").iloc[0][("gpu_hours", "ours")])  # no training
    with pytest.raises(KeyError):
        t.ablation_table(fixture_scores, runs, benchmark_root=FIX, paper_rows={"inpo": 99})
    with pytest.raises(ValueError, match="lacks columns"):
        t.ablation_table(fixture_scores, runs.drop(columns=["n_gpus"]))


def test_ablation_paper_row_column_wins_per_row(fixture_scores):
    """One run in two sweeps stands beside two paper rows: the sheet's paper_row, row by row."""
    runs = pd.read_csv(FIX / "runs.csv")
    inpo = runs[runs["run"] == "inpo"].iloc[0]
    runs = pd.DataFrame([inpo.to_dict() | {"sweep": "beta", "paper_row": 13},
                         inpo.to_dict() | {"sweep": "init", "paper_row": ""}])
    long = t.ablation_long(fixture_scores, runs, benchmark_root=FIX, paper_rows={"inpo": 3})
    settings = long.groupby("sweep")["paper_setting"].first()
    assert settings["beta"] == "InPO-SD1.5"  # the column's row 13
    assert settings["init"] == "Base initialized"  # empty cell: the run mapping's row 3
    hps = long[long["evaluator"] == "hps"].set_index("sweep")["paper"]
    assert hps["beta"] == pytest.approx(28.523) and hps["init"] == pytest.approx(28.237)


# -------------------------------------------------------------------------------------------- effect
def test_reward_effect_hand_numbers():
    s = tidy({"inpo": [2, 3, 4, 5], "base": [1, 2, 3, 6]})
    # gains 1, 1, 1, -1 -> mean 0.5; base sd (ddof 1) = sqrt(14 / 3)
    assert t.reward_effect(s, "inpo", "base", "hps") == pytest.approx(0.5 / math.sqrt(14 / 3))
    st = t.reward_effect_stats(s, "inpo", "base", "hps", "hpdv2")
    assert (st["mean_gain"], st["n"]) == (0.5, 4)
    tab = t.reward_effect_table(s, "inpo", ["base"])
    assert tab.loc[0, "effect_sd"] == pytest.approx(0.5 / math.sqrt(14 / 3))
    assert tab.loc[0, "label"] == "hps (hpsv2.1)"


# ------------------------------------------------------------------------------------ I/O and paper
def test_load_paper_tables():
    t1 = t.load_paper("table1_winrates")
    assert t1.shape == (14, 7)
    assert t1.set_index(["model", "baseline", "prompt_set"]).loc[("InPO-SD1.5", "KTO-SD1.5", "Parti"), "clip"] == 57.60
    t2 = t.load_paper("table2")
    assert len(t2) == 13 and t2.loc[t2.row == 13, "note"].item() == "beta 2000, 10 inversion steps"
    supp = t.load_paper("supp_median_mean.csv")
    assert supp.shape == (27, 10)
    with pytest.raises(KeyError):
        t.load_paper("table9")


def test_read_scores_parquet_and_duplicates(tmp_path, four):
    p = tmp_path / "s.parquet"
    four.assign(prompt_set="toy").to_parquet(p)
    back = t.read_scores([p, FIX / "scores.csv"])
    assert len(back) == 8 + 240 and back["score"].dtype == np.float64
    with pytest.raises(ValueError, match="duplicated"):
        t.check_scores(pd.concat([four, four]))
    with pytest.raises(ValueError, match="lack columns"):
        t.check_scores(four.drop(columns=["evaluator_version"]))


def test_writers(tmp_path, fixture_scores):
    wide = t.win_rate_vs_paper(fixture_scores, "inpo", ["base"])
    csv = t.write_csv(wide, tmp_path / "a" / "t1.csv")
    back = pd.read_csv(csv)
    assert list(back.columns[:3]) == ["model", "baseline", "prompt_set"]
    assert "hps (hpsv2.1) | paper" in back.columns
    tex = t.to_latex(wide, tmp_path / "t1.tex")
    assert (tmp_path / "t1.tex").read_text() == tex
    assert "pickscore (pickscore\\_v1)" in tex and "90.22" in tex and "\\toprule" in tex


def test_training_logs_and_image_paths():
    logs = t.read_training_logs({"inpo": FIX / "logs" / "inpo.csv", "dpo": FIX / "logs" / "dpo.csv"})
    assert set(logs["run"]) == {"inpo", "dpo"} and len(logs) == 24
    sm = t.smooth_logs(logs, ["loss"], window=2)
    one = logs[logs.run == "inpo"].sort_values("update")["loss"].to_numpy()
    assert sm[sm.run == "inpo"]["loss"].iloc[1] == pytest.approx((one[0] + one[1]) / 2)
    assert t.image_path("r", "inpo", "hpdv2", 7).as_posix() == "r/inpo/hpdv2/00007.png"
    grid = t.image_grid_paths(FIX / "images", ["base", "inpo", "nope"], "hpdv2", [0, 1, 5])
    assert grid.loc[1, "inpo"].endswith("inpo/hpdv2/00001.png")
    assert grid["nope"].isna().all() and pd.isna(grid.loc[5, "base"])


# ----------------------------------------------------------------------------------- read / headlines
def test_read_table_restores_the_wide_layout(tmp_path, fixture_scores):
    wide = t.win_rate_vs_paper(fixture_scores, "inpo", ["base"], ["hps"], ["hpdv2"])
    back = t.read_table(t.write_csv(wide, tmp_path / "w.csv"))
    assert back.index.names == ["model", "baseline", "prompt_set"]
    assert list(back.columns) == [("hps (hpsv2.1)", "ours"), ("hps (hpsv2.1)", "paper")]
    assert back.loc[("inpo", "base", "hpdv2"), ("hps (hpsv2.1)", "paper")] == pytest.approx(90.22)
    long = t.win_rate_long(fixture_scores, "inpo", ["base"], ["hps"], ["hpdv2"])
    assert back.iloc[0, 0] == pytest.approx(long["win_rate_pct"].iloc[0])
    assert list(t.read_table(t.write_csv(long, tmp_path / "l.csv")).columns) == list(long.columns)  # long: as is


def _winrow(baseline, evaluator, pct, lo, hi, paper=math.nan, n=400):
    return dict(model="inpo", baseline=baseline, prompt_set="toy", evaluator=evaluator, win_rate_pct=pct,
                ci_low_pct=lo, ci_high_pct=hi, n=n, paper_pct=paper)


def test_win_rate_headline_verdicts_from_the_table():
    t1 = pd.DataFrame([
        _winrow("base", "r", 75.2, 70.8, 79.2, paper=85.84),
        _winrow("dpo", "r", 51.8, 46.9, 56.6),
        _winrow("kto", "r", 34.0, 29.5, 38.8),
        _winrow("sft", "r", 60.0, 55.1, 64.7), _winrow("sft", "q", 40.0, 35.3, 44.9),
        _winrow("ref", "r", 60.0, 55.1, 64.7), _winrow("ref", "q", 52.0, 47.1, 56.9),
        _winrow("sd", "r", 83.3, 55.2, 95.3), _winrow("sd", "q", 83.3, 55.2, 95.3),
    ])
    eff = pd.DataFrame({"model": ["inpo", "inpo"], "baseline": ["base", "base"], "effect_sd": [0.2, 0.3]})
    assert t.win_rate_headline(t1, eff) == [
        "**inpo** beats **base**: 75.2 % of 400 prompts, 95 % interval [70.8, 79.2] (r, toy); mean gain +0.25 sd"
        " (paper: 85.8 %)",
        "**inpo** is not told apart from **dpo**: 51.8 % of 400 prompts, 95 % interval [46.9, 56.6] (r, toy)",
        "**inpo** loses to **kto**: 34.0 % of 400 prompts, 95 % interval [29.5, 38.8] (r, toy)",
        "**inpo** is mixed against **sft**: 40.0-60.0 % over 2 (prompt set, evaluator) comparisons, 1 with the "
        "interval above 50 %, 1 below",
        "**inpo** is ahead of **ref**: 52.0-60.0 % over 2 (prompt set, evaluator) comparisons, 1 with the "
        "interval above 50 %, 0 below",
        "**inpo** beats **sd**: 83.3 % over 2 (prompt set, evaluator) comparisons, 2 with the interval above 50 %, 0 below",
    ]


def test_ablation_and_summary_headlines_pick_the_best():
    t2 = pd.DataFrame({"run": ["b1", "b2", "b3"], "sweep": "beta", "setting": "beta", "value": [1, 10, 100],
                       "label": "r (v)", "ours": [0.2, 0.5, 0.4], "gpu_hours": [1.0, 2.0, math.nan]})
    assert t.ablation_headline(t2) == ["sweep **beta**, r (v): best median 0.5 at beta = 10 (run b2, 2 GPU-hours) of 3 settings"]
    supp = pd.DataFrame({"prompt_set": "toy", "label": "r (v)", "model": ["base", "inpo", "dpo"],
                         "median": [0.50, 0.75, 0.70]})
    assert t.summary_headline(supp) == ["toy, r (v): **inpo** has the highest median (0.75, +0.05 over **dpo**)"]
