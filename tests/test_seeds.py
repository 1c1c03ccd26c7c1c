"""inpo.tables.seeds / `inpo seeds`: the spread of Table 1 over whole runs with different seeds."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from inpo.cli import main
from inpo.tables.seeds import base_quality_spread, seed_spread


def _root(tmp_path, name, rows, effect=None, ratio=None):
    t = tmp_path / name / "tables"
    t.mkdir(parents=True)
    cols = ["model", "baseline", "prompt_set", "evaluator", "win_rate_pct", "ci_low_pct", "ci_high_pct", "n"]
    pd.DataFrame([dict(zip(cols, r)) for r in rows]).assign(label="x", paper_pct=float("nan")).to_csv(
        t / "table1_winrates.csv", index=False)
    if effect is not None:
        pd.DataFrame([{"model": m, "baseline": b, "prompt_set": "toy", "evaluator": "toy_reward", "effect_sd": e}
                      for m, b, e in effect]).to_csv(t / "toy_effect.csv", index=False)
    if ratio is not None:
        pd.DataFrame([{"prompt_set": "toy", "evaluator": "toy_reward", "samples_mean": 0.6, "train_mean": 0.6 / ratio,
                       "ratio": ratio}]).to_csv(t / "toy_base_quality.csv", index=False)
    return tmp_path / name


def test_seed_spread_ranges_and_counts(tmp_path, capsys):
    a = _root(tmp_path, "s0", [("inpo", "base", "toy", "toy_reward", 80.0, 76.0, 84.0, 400),
                               ("inpo", "dpo", "toy", "toy_reward", 52.0, 47.0, 57.0, 400)],
              effect=[("inpo", "base", 0.4), ("inpo", "dpo", 0.1)], ratio=0.92)
    b = _root(tmp_path, "s1", [("inpo", "dpo", "toy", "toy_reward", 45.0, 40.0, 49.5, 400),
                               ("inpo", "base", "toy", "toy_reward", 90.0, 87.0, 93.0, 400)],
              effect=[("inpo", "base", 0.6), ("inpo", "dpo", -0.2)], ratio=0.88)
    s = seed_spread([a, b]).set_index(["model", "baseline"])
    base, dpo = s.loc[("inpo", "base")], s.loc[("inpo", "dpo")]
    assert (base.n_seeds, base.win_rate_min, base.win_rate_max, base.win_rate_mean) == (2, 80.0, 90.0, 85.0)
    assert (base.seeds_above_50, base.seeds_below_50) == (2, 0)
    assert (dpo.seeds_above_50, dpo.seeds_below_50) == (0, 1)  # s0's interval straddles 50, s1's lies below
    assert (dpo.effect_sd_min, dpo.effect_sd_max) == (-0.2, 0.1) and math.isclose(base.effect_sd_mean, 0.5)
    assert base.per_seed == f"{a}: 80.0 [76.0, 84.0], +0.40 sd; {b}: 90.0 [87.0, 93.0], +0.60 sd"
    q = base_quality_spread([a, b])
    assert q["ratio"].tolist() == [0.92, 0.88] and q["root"].tolist() == [str(a), str(b)]

    assert main(["seeds", str(a), str(b), "--out-dir", str(tmp_path / "out")]) == 0
    assert pd.read_csv(tmp_path / "out" / "seed_spread.csv").shape[0] == 2
    assert (tmp_path / "out" / "base_quality_seeds.csv").is_file()
    assert "inpo      dpo" in capsys.readouterr().out


def test_seed_spread_errors_name_the_folder(tmp_path):
    a = _root(tmp_path, "s0", [("inpo", "base", "toy", "toy_reward", 80.0, 76.0, 84.0, 400),
                               ("inpo", "dpo", "toy", "toy_reward", 52.0, 47.0, 57.0, 400)])
    b = _root(tmp_path, "s1", [("inpo", "base", "toy", "toy_reward", 90.0, 87.0, 93.0, 400)])
    with pytest.raises(ValueError, match=r"s1/tables/table1_winrates.csv lacks \[\('inpo', 'dpo'"):
        seed_spread([a, b])
    with pytest.raises(FileNotFoundError, match=r"nope/tables/table1_winrates.csv: no such table"):
        seed_spread([a, tmp_path / "nope"])
    s = seed_spread([a])  # without toy_effect: NaN gains
    assert s["effect_sd_min"].isna().all() and base_quality_spread([a]).empty
    (a / "tables" / "toy_effect.csv").write_text("\n")  # an empty table as write_csv writes it (no toy evaluator)
    assert seed_spread([a])["effect_sd_min"].isna().all()
