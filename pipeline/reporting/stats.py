"""Paired statistics over theorems: bootstrap intervals and sign-flip tests.

Every run of a sweep is evaluated on the same theorems, so a difference between two runs (or between a
run and the base model) is a mean of per-theorem differences, and its noise is the spread of those
differences, far smaller than the two runs' own spreads suggest. Everything here resamples theorems:

- `Bootstrap(n_theorems)` draws one set of resamples (theorem indices with replacement) that every
  statistic of a report reuses, so the intervals of related quantities come from the same resamples;
- `Bootstrap.interval(values)` the percentile interval of a per-theorem mean or sum (a paired
  difference when `values` are per-theorem differences) and a two-sided p-value from a sign-flip
  permutation test of "the differences are symmetric about 0";
- `Bootstrap.statistic(fn, table)` the interval of any statistic of a [runs × theorems] table (a
  rank correlation across runs, say), recomputed on each resample.

The intervals are over theorems (the evaluation's sampling noise and the choice of theorems); they say
nothing about training noise, which only reseeding measures (the report's seed table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

N_RESAMPLES = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    p: float  # two-sided p-value of "no effect" (nan where no test applies)
    n: int  # theorems

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def as_dict(self, prefix: str) -> dict:
        return {prefix: self.estimate, f"{prefix}_lo": self.low, f"{prefix}_hi": self.high, f"{prefix}_p": self.p}

    def text(self, digits: int = 3) -> str:
        if np.isnan(self.estimate):
            return "n/a"
        return f"{self.estimate:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


NAN = Interval(float("nan"), float("nan"), float("nan"), float("nan"), 0)


class Bootstrap:
    def __init__(self, n_theorems: int, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL):
        self.n, self.level = int(n_theorems), level
        rng = np.random.default_rng(seed)
        self.index = rng.integers(0, max(1, self.n), size=(n_resamples, self.n))
        # sign flips for the permutation tests, drawn once as well
        self.signs = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, self.n))

    def _bounds(self, draws: np.ndarray) -> tuple[float, float]:
        tail = (1 - self.level) / 2 * 100
        if not np.isfinite(draws).any():
            return float("nan"), float("nan")
        lo, hi = np.nanpercentile(draws, [tail, 100 - tail])
        return float(lo), float(hi)

    def interval(self, values, total: bool = False) -> Interval:
        """The per-theorem mean of `values` (their sum when `total`), its percentile interval and
        the sign-flip p-value (for per-theorem differences: is the mean difference 0?)."""
        v = np.asarray(values, dtype=float)
        if v.shape != (self.n,) or self.n < 2:
            return NAN
        scale = self.n if total else 1.0
        estimate = float(v.mean()) * scale
        lo, hi = self._bounds(v[self.index].mean(axis=1) * scale)
        flipped = np.abs((self.signs * v).mean(axis=1))
        p = float((1 + np.sum(flipped >= abs(v.mean()) - 1e-15)) / (1 + len(flipped)))
        if not np.any(v):
            p = 1.0
        return Interval(estimate, lo, hi, min(1.0, p), self.n)

    def statistic(self, fn: Callable[[np.ndarray], float], table) -> Interval:
        """`fn` of the per-run means of a [runs × theorems] table, with its percentile interval over
        theorem resamples; p: twice the share of resamples on the other side of 0 (nan for 0)."""
        t = np.asarray(table, dtype=float)
        if t.ndim != 2 or t.shape[1] != self.n or self.n < 2:
            return NAN
        estimate = float(fn(t.mean(axis=1)))
        draws = np.array([fn(t[:, idx].mean(axis=1)) for idx in self.index])
        lo, hi = self._bounds(draws)
        finite = draws[np.isfinite(draws)]
        if not len(finite) or not np.isfinite(estimate) or estimate == 0:
            p = float("nan")
        else:
            p = min(1.0, 2 * float(np.mean(finite <= 0) if estimate > 0 else np.mean(finite >= 0)))
        return Interval(estimate, lo, hi, p, self.n)


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    import pandas as pd

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    return float(np.corrcoef(rx, ry)[0, 1])
