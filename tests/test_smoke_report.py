"""The smoke DAG's report shows the run's own results: the rendered notebooks were executed on
the run's tables and files (its evaluators and models, not the notebooks' defaults), their HTML
hides the code, and the tables' values equal what the per-shard score files give when
recomputed here (win counts by paired prompt index, medians and means).

The checks are plain functions of a finished smoke workflow folder (``check_*``). The smoke run
is conftest's session fixture ``smoke_run``, so a module that uses it instead of defining its own
shares the one DAG run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_utils import SMOKE, workflow_notebooks

from inpo import report

pytestmark = pytest.mark.slow

NOTEBOOKS = workflow_notebooks(sheet=True)  # the smoke config has an ablation sheet
# strings only the notebooks' fixture defaults (tests/fixtures) would bring into a rendered notebook
FIXTURE_MARKS = ["tests/fixtures", "pickscore_v1", "hpsv2.1", "hpdv2 prompt"]


def run_settings(work) -> dict:
    """The run's evaluators, prompt sets and models, from its config files (not from its outputs)."""
    cfg = {}
    for f in SMOKE[1:]:
        _merge(cfg, yaml.safe_load((work / f).read_text()))
    ev = cfg["evaluation"]
    runs = list(cfg["runs"])
    sheet = pd.read_csv(work / cfg["ablations"], sep="\t", comment="#") if cfg.get("ablations") else None
    if sheet is not None and "run" in sheet.columns:
        runs += [r for r in sheet["run"] if r not in runs]
    b = cfg["report"]["baselines"]  # a list, or {model: [baselines]} (the toy's control beside InPO)
    baselines = list(dict.fromkeys([*b, *(x for v in b.values() for x in v)])) if isinstance(b, dict) else list(b)
    return {"evaluators": list(ev["evaluators"]), "prompt_sets": list(ev["prompt_sets"]), "runs": runs,
            "model": cfg["report"]["model"], "baselines": baselines}


def _merge(a: dict, b: dict) -> None:
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            _merge(a[k], v)
        else:
            a[k] = v


def scores_from_shards(work) -> pd.DataFrame:
    """Every ``results/scores/<model>/<prompt set>/<evaluator>.parquet``, concatenated."""
    files = sorted((work / "results" / "scores").glob("*/*/*.parquet"))
    assert files, "no per-model score files"
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def notebook_text(path) -> tuple[str, str, list[str]]:
    """(injected parameter source, all output text, error outputs) of an executed notebook."""
    nb = json.loads(path.read_text())
    params, texts, errors = "", [], []
    for cell in nb["cells"]:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            params = "".join(cell["source"])
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                errors.append(f"{out.get('ename')}: {out.get('evalue')}")
            if "text" in out:
                texts.append("".join(out["text"]))
            for mime, val in out.get("data", {}).items():
                if mime.startswith("text/"):
                    texts.append("".join(val) if isinstance(val, list) else str(val))
    return params, "\n".join(texts), errors


def check_notebooks_show_the_run(work) -> None:
    s = run_settings(work)
    scores = scores_from_shards(work)
    models = sorted(set(scores["model"]))
    for name in NOTEBOOKS:
        params, text, errors = notebook_text(work / "results" / "notebooks" / f"{name}.ipynb")
        assert not errors, (name, errors)
        assert params, f"{name}: no injected parameters: the notebook ran on its defaults"
        for mark in FIXTURE_MARKS:
            assert mark not in params and mark not in text, f"{name} shows the fixtures' {mark!r}"
        html = (work / "results" / "notebooks" / f"{name}.html").read_text()
        assert len(html) > 10_000 and "from inpo import" not in html, name  # code hidden in the HTML
        if "tables" in report.NOTEBOOKS[name].needs:  # read from the tables rule `tables` wrote
            assert str(work / "results" / "tables") in params, name
        if name in ("table1_winrates", "table2_ablations", "supp_median_mean"):
            for ev in s["evaluators"]:
                assert ev in text, f"{name}: evaluator {ev!r} of the run not shown"
        shown = {"table1_winrates": [s["model"], *s["baselines"]], "supp_median_mean": models,
                 "training_curves": s["runs"], "image_grids": models}.get(name, [])
        for m in shown:
            assert m in params + text, f"{name}: model {m!r} of the run not shown"


def check_tables_match_scores(work) -> None:
    scores = scores_from_shards(work)
    allp = pd.read_parquet(work / "results" / "scores" / "all.parquet")
    key = ["model", "prompt_set", "evaluator", "index"]
    pd.testing.assert_frame_equal(
        allp.sort_values(key).reset_index(drop=True)[scores.columns],
        scores.sort_values(key).reset_index(drop=True), check_dtype=False)

    def of(model, ps, ev) -> pd.Series:
        sel = scores[(scores["model"] == model) & (scores["prompt_set"] == ps) & (scores["evaluator"] == ev)]
        return sel.set_index("index")["score"].sort_index()

    tables = work / "results" / "tables"
    t1 = pd.read_csv(tables / "table1_winrates.csv")
    assert len(t1) > 0
    for r in t1.itertuples():
        a, b = of(r.model, r.prompt_set, r.evaluator), of(r.baseline, r.prompt_set, r.evaluator)
        assert list(a.index) == list(b.index) and len(a) == r.n
        wins, ties = int((a.to_numpy() > b.to_numpy()).sum()), int((a.to_numpy() == b.to_numpy()).sum())
        assert (r.wins, r.ties, r.losses) == (wins, ties, len(a) - wins - ties), r
        assert r.win_rate_pct == pytest.approx(100 * (wins + ties / 2) / len(a))
        assert r.ci_low_pct <= r.win_rate_pct <= r.ci_high_pct
    text = notebook_text(work / "results" / "notebooks" / "table1_winrates.ipynb")[1]
    for v in t1["win_rate_pct"]:
        assert f"{v:.1f}" in text, f"Table 1 notebook does not show {v:.1f}"

    supp = pd.read_csv(tables / "supp_median_mean.csv")
    assert len(supp) > 0
    for r in supp.itertuples():
        s = of(r.model, r.prompt_set, r.evaluator).to_numpy()
        assert r.n == len(s)
        assert r.median == pytest.approx(float(np.median(s)), rel=1e-8)
        assert r.mean == pytest.approx(float(np.mean(s)), rel=1e-8)

    t2 = pd.read_csv(tables / "table2_ablations.csv")
    assert len(t2) > 0
    for r in t2.itertuples():
        s = of(r.run, r.prompt_set, r.evaluator).to_numpy()
        assert r.n == len(s) and r.ours == pytest.approx(float(np.median(s)), rel=1e-8), r
        assert not math.isnan(r.gpu_hours)


def test_smoke_notebooks_show_the_run(smoke_run):
    check_notebooks_show_the_run(smoke_run)


def test_smoke_tables_match_score_files(smoke_run):
    check_tables_match_scores(smoke_run)


def check_efficiency_curves(work) -> None:
    """Figure 4: every curve point is the mean of its score file on the prompt subset (update 0: the run's
    initial model, the last: the trained model, between: the snapshots); the last point's hours are the
    training benchmark's CPU-hours; the level is the base's mean + X on the same prompts."""
    cfg = {}
    for f in SMOKE[1:]:
        _merge(cfg, yaml.safe_load((work / f).read_text()))
    eff, res = cfg["efficiency"], work / "results"
    curves = pd.read_csv(res / "tables" / "fig4_curves.csv")
    speed = pd.read_csv(res / "tables" / "fig4_efficiency.csv")
    n_all = cfg["evaluation"]["prompt_sets"][eff["prompt_set"]]["n"]
    n = eff["n_prompts"]
    subset = [round(i * (n_all - 1) / (n - 1)) for i in range(n)]  # evenly spaced (inpo.efficiency.prompt_subset)

    def mean(path, ev):
        s = pd.read_parquet(path)
        s = s[s["evaluator"] == ev].set_index("index")
        return float(s.loc[subset, "score"].mean())

    max_updates = {r: cfg["runs"].get(r, {}).get("overrides", {}).get("max_updates", cfg["training"]["max_updates"])
                   for r in eff["runs"]}
    for ev in eff["evaluators"]:
        base = mean(res / "scores" / "base" / eff["prompt_set"] / f"{ev}.parquet", ev)
        for run in eff["runs"]:
            c = curves[(curves["run"] == run) & (curves["evaluator"] == ev)].set_index("update")
            snaps = list(range(eff["every"], max_updates[run], eff["every"]))
            assert list(c.index) == [0, *snaps, max_updates[run]], run
            assert c.loc[0, "mean"] == pytest.approx(base)  # the toy's runs start from the base
            final = mean(res / "scores" / run / eff["prompt_set"] / f"{ev}.parquet", ev)
            assert c.loc[max_updates[run], "mean"] == pytest.approx(final)
            for k in snaps:
                assert c.loc[k, "mean"] == pytest.approx(mean(res / "efficiency" / "scores" / run / f"update-{k}.parquet", ev))
            bench = pd.read_csv(res / "benchmarks" / "train" / f"{run}.tsv", sep="\t")
            assert c.loc[max_updates[run], "hours"] == pytest.approx(bench["cpu_time"].mean() / 3600)
            assert (c["n"] == n).all() and c["hours_unit"].eq("CPU-hours").all()
    lv = eff["level"]
    b = pd.read_parquet(res / "scores" / "base" / eff["prompt_set"] / f"{lv['evaluator']}.parquet").set_index("index")
    b = b.loc[subset, "score"]
    assert speed["level"].iloc[0] == pytest.approx(b.mean() + lv["offset"] * b.std(ddof=1))
    assert list(speed["run"]) == eff["runs"]  # report.model first
    params, text, errors = notebook_text(res / "notebooks" / "fig4_efficiency.ipynb")
    assert not errors and params and "Headline" in text
    assert (res / "notebooks" / "fig4_efficiency.html").stat().st_size > 10_000


def test_smoke_efficiency_curves_match_score_files(smoke_run):
    check_efficiency_curves(smoke_run)
