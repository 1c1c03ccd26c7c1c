"""One-line summaries of a written table (what won, by how much), for the notebooks' headlines.

Each function takes a table as :mod:`inpo.report` writes it (the long CSV, read back) and returns
Markdown bullet lines; nothing is recomputed from scores. An interval "above 50 %" is a win at the
95 % level, "below" a loss; otherwise the pair is not told apart by that comparison.
"""

from __future__ import annotations

import pandas as pd


def _verdict(wins: int, losses: int, k: int) -> str:
    """``wins``/``losses``: comparisons (of ``k``) whose interval lies above / below 50 %."""
    if wins == k:
        return "beats"
    if losses == k:
        return "loses to"
    if wins == 0 and losses == 0:
        return "is not told apart from"
    if losses == 0:
        return "is ahead of"
    if wins == 0:
        return "is behind"
    return "is mixed against"


def win_rate_headline(winrates: pd.DataFrame, effect: pd.DataFrame | None = None) -> list[str]:
    """Per (model, baseline) of Table 1's long form (``table1_winrates.csv``): the verdict, the
    win-rate (with its 95 % interval when there is one comparison; the range over the (prompt set,
    evaluator) comparisons otherwise), the paper's figure where one stands beside, and the mean paired
    gain in baseline sd from ``effect`` (``toy_effect.csv``) when given."""
    lines = []
    for (m, b), g in winrates.groupby(["model", "baseline"], sort=False):
        k = len(g)
        wins, losses = int((g["ci_low_pct"] > 50).sum()), int((g["ci_high_pct"] < 50).sum())
        if k == 1:
            r = g.iloc[0]
            how = (f"{r.win_rate_pct:.1f} % of {int(r.n)} prompts, 95 % interval [{r.ci_low_pct:.1f}, "
                   f"{r.ci_high_pct:.1f}] ({r.evaluator}, {r.prompt_set})")
        else:
            lo, hi = f"{g['win_rate_pct'].min():.1f}", f"{g['win_rate_pct'].max():.1f}"
            how = (f"{lo if lo == hi else f'{lo}-{hi}'} % over {k} (prompt set, evaluator) "
                   f"comparisons, {wins} with the interval above 50 %, {losses} below")
        if effect is not None and len(effect):
            e = effect[(effect["model"] == m) & (effect["baseline"] == b)]["effect_sd"].dropna()
            if len(e):
                how += f"; mean gain {e.mean():+.2f} sd"
        paper = g["paper_pct"].dropna()
        if len(paper):
            how += f" (paper: {paper.min():.1f}-{paper.max():.1f} %)" if len(paper) > 1 else f" (paper: {paper.iloc[0]:.1f} %)"
        lines.append(f"**{m}** {_verdict(wins, losses, k)} **{b}**: {how}")
    return lines


def ablation_headline(ablations: pd.DataFrame) -> list[str]:
    """Per sweep of Table 2's long form (``table2_ablations.csv``) and per evaluator: the setting with
    the highest median and its training GPU-hours."""
    lines = []
    for (sweep, label), g in ablations.groupby(["sweep", "label"], sort=False):
        best = g.loc[g["ours"].idxmax()]
        hours = "" if pd.isna(best["gpu_hours"]) else f", {best['gpu_hours']:.3g} GPU-hours"
        value = "" if pd.isna(best["value"]) or str(best["value"]) == "" else f" = {best['value']}"
        lines.append(f"sweep **{sweep}**, {label}: best median {best['ours']:.4g} at {best['setting']}{value} "
                     f"(run {best['run']}{hours}) of {len(g)} settings")
    return lines


def summary_headline(summary: pd.DataFrame) -> list[str]:
    """Per (prompt set, evaluator) of the supplementary table's long form (``supp_median_mean.csv``):
    the model with the highest median, and by how much it leads the next."""
    lines = []
    for (ps, label), g in summary.groupby(["prompt_set", "label"], sort=False):
        g = g.sort_values("median", ascending=False)
        top = g.iloc[0]
        lead = f", {top['median'] - g.iloc[1]['median']:+.4g} over **{g.iloc[1]['model']}**" if len(g) > 1 else ""
        lines.append(f"{ps}, {label}: **{top['model']}** has the highest median ({top['median']:.4g}{lead})")
    return lines
