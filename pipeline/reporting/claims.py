"""The paper's claims, checked one by one on a sweep: a statistic, its interval, a verdict.

Each claim predicts the sign of one statistic. The verdict is `reproduced` when the statistic's 95 %
interval over theorems lies on the predicted side of 0, `contradicted` when it lies on the other
side, and `inconclusive at this power` otherwise (or `not testable` when the sweep lacks the runs
the claim compares). Intervals resample theorems (stats.Bootstrap): they hold the evaluation's noise,
not the training noise (see the report's seed table for that).

1. pass@1 rises with α across the α-DPG runs: Spearman ρ(α, pass@1) > 0.
2. pass@k (the largest k) falls with α: ρ(α, pass@k) < 0.
3. Low α (α ≤ 0.25) loses fewer base-solved theorems than GRPO: mean lost count of the GRPO runs −
   that of the low-α runs > 0; the same for hard → unsolvable.
4. Mode-seeking runs (GRPO, α ≥ 0.99) turn more medium theorems easy than low α does: mean
   medium → easy count of the mode-seeking runs − that of the low-α runs > 0.
5. Diversity predicts coverage: across the trained runs, ρ(diversity, pass@k) > 0 and
   ρ(diversity, pass@1) < 0, for distinct proofs, tactic entropy and distinct premises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.reporting.compare import Method, Panel
from pipeline.reporting.stats import NAN, Bootstrap, Interval, spearman

LOW_ALPHA = 0.25
MODE_SEEKING_ALPHA = 0.99
DIVERSITY = ("distinct_proofs", "tactic_entropy", "distinct_premises")


@dataclass
class Claim:
    number: str
    claim: str
    statistic: str
    predicted: int  # +1: the statistic should be > 0; -1: < 0
    interval: Interval
    note: str = ""

    @property
    def verdict(self) -> str:
        i = self.interval
        if np.isnan(i.estimate):
            return "not testable"
        if (i.low > 0 and self.predicted > 0) or (i.high < 0 and self.predicted < 0):
            return "reproduced"
        if (i.low > 0 and self.predicted < 0) or (i.high < 0 and self.predicted > 0):
            return "contradicted"
        return "inconclusive at this power"

    def row(self) -> dict:
        i = self.interval
        return {"claim": self.number, "statement": self.claim, "statistic": self.statistic,
                "predicted": ">0" if self.predicted > 0 else "<0", "estimate": i.estimate, "low": i.low,
                "high": i.high, "p": i.p, "verdict": self.verdict, "note": self.note}


def _rank_claim(panel, boot, alpha_methods, column, number, text, predicted) -> Claim:
    if len(alpha_methods) < 3 or column not in panel.columns:
        return Claim(number, text, f"Spearman ρ(α, {column})", predicted, NAN,
                     f"needs ≥ 3 α-DPG runs with {column}; the sweep has {len(alpha_methods)}")
    alphas = np.array([m.alpha for m in alpha_methods])
    table = np.stack([panel.values(m, column) for m in alpha_methods])
    return Claim(number, text, f"Spearman ρ(α, {column}) over {len(alphas)} α-DPG runs", predicted,
                 boot.statistic(lambda means: spearman(alphas, means), table))


def _group_difference(panel, boot, high: list[Method], low: list[Method], event: str) -> Interval:
    if not high or not low:
        return NAN
    values = np.mean([panel.events(m, event) for m in high], axis=0) - np.mean([panel.events(m, event) for m in low],
                                                                                axis=0)
    return boot.interval(values, total=True)


def check_claims(panel: Panel, methods: list[Method], boot: Bootstrap,
                 diversity: dict[str, pd.DataFrame] | None = None) -> list[Claim]:
    """The five claims on the methods of a sweep (`diversity`: method label → per-theorem diversity
    table indexed by theorem, for claim 5)."""
    trained = [m for m in methods if m.summary.get("objective") not in (None, "none", "base")]
    alpha_methods = sorted([m for m in trained if m.alpha is not None], key=lambda m: m.alpha)
    grpo = [m for m in trained if m.is_grpo]
    low = [m for m in alpha_methods if m.alpha <= LOW_ALPHA]
    mode_seeking = grpo + [m for m in alpha_methods if m.alpha >= MODE_SEEKING_ALPHA]
    k_col = panel.columns[-1]
    names = lambda ms: ", ".join(m.label for m in ms) or "none"  # noqa: E731
    claims = [
        _rank_claim(panel, boot, alpha_methods, "pass@1", "1", "pass@1 rises with α across the α-DPG runs", +1),
        _rank_claim(panel, boot, alpha_methods, k_col, "2", f"{k_col} falls with α across the α-DPG runs", -1),
    ]
    for event, what in (("lost", "base-solved theorems lost"), ("hard_to_unsolvable", "hard → unsolvable theorems")):
        claims.append(Claim(
            "3" if event == "lost" else "3b", f"low α (α ≤ {LOW_ALPHA:g}) has fewer {what} than GRPO",
            f"{what}: mean over GRPO runs − mean over low-α runs (theorem count)", +1,
            _group_difference(panel, boot, grpo, low, event), f"GRPO: {names(grpo)}; low α: {names(low)}"))
    claims.append(Claim(
        "4", f"mode-seeking runs (GRPO, α ≥ {MODE_SEEKING_ALPHA:g}) turn more medium theorems easy than low α",
        "medium → easy: mean over mode-seeking runs − mean over low-α runs (theorem count)", +1,
        _group_difference(panel, boot, mode_seeking, low, "medium_to_easy"),
        f"mode-seeking: {names(mode_seeking)}; low α: {names(low)}"))
    claims += _diversity_claims(panel, boot, trained, diversity or {}, k_col)
    return claims


def _diversity_claims(panel, boot, methods, diversity, k_col) -> list[Claim]:
    out = []
    have = [m for m in methods if m.label in diversity]
    for metric in DIVERSITY:
        for column, predicted, sign in ((k_col, +1, "with"), ("pass@1", -1, "against")):
            number = f"5 {metric} {'+' if predicted > 0 else '−'}"
            text = f"diversity ({metric}) correlates {sign} {column} across runs"
            if len(have) < 3:
                out.append(Claim(number, text, f"Spearman ρ({metric}, {column})", predicted, NAN,
                                 f"needs ≥ 3 trained runs with diversity; the sweep has {len(have)}"))
                continue
            div = np.stack([diversity[m.label].reindex(panel.theorems)[metric].fillna(0).to_numpy(float)
                            for m in have])
            passes = np.stack([panel.values(m, column) for m in have])
            n = len(have)
            # both tables resampled on the same theorems: ρ of their run means
            out.append(Claim(number, text, f"Spearman ρ({metric}, {column}) over {n} trained runs", predicted,
                             boot.statistic(lambda means: spearman(means[:n], means[n:]),
                                            np.concatenate([div, passes]))))
    return out


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([c.row() for c in claims])
