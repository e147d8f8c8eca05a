"""Evaluation quantities: unbiased pass@k and difficulty buckets (definitions: docs/objectives.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BUCKETS = ("easy", "medium", "hard", "unsolvable")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k), computed stably."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass(frozen=True)
class BucketRule:
    """Difficulty buckets by a theorem's solve rate c/n: unsolvable at c = 0, else easy above
    `easy` (`easy_inclusive`: at it too), medium from `medium` (`medium_inclusive`: at it too), else
    hard. The default is the study's definition (easy > 80 %, medium 20–80 %, hard < 20 % and solved)."""
    easy: float = 0.8
    easy_inclusive: bool = False
    medium: float = 0.2
    medium_inclusive: bool = True
    name: str = "easy > 80 %, medium 20–80 %, hard < 20 % and solved, unsolvable 0/n"

    @classmethod
    def of(cls, cfg) -> "BucketRule":
        """From a config section with the same fields (eval.buckets), or the default for None."""
        if cfg is None:
            return cls()
        return cls(**{f: cfg[f] if hasattr(cfg, "__getitem__") else getattr(cfg, f)
                      for f in ("easy", "easy_inclusive", "medium", "medium_inclusive", "name")})


DEFAULT_RULE = BucketRule()


def bucket(n: int, c: int, rule: BucketRule = DEFAULT_RULE) -> str:
    """The difficulty bucket of a theorem solved c times in n samples (see BucketRule)."""
    if c == 0:
        return "unsolvable"
    rate = c / n
    if _above(rate, rule.easy, rule.easy_inclusive):
        return "easy"
    if _above(rate, rule.medium, rule.medium_inclusive):
        return "medium"
    return "hard"


def _above(rate: float, threshold: float, inclusive: bool) -> bool:
    # c/n computed in floating point: a rate within 1e-12 of the threshold is the threshold
    if abs(rate - threshold) <= 1e-12:
        return inclusive
    return rate > threshold


def transition_matrix(base: list[str], trained: list[str]) -> np.ndarray:
    """4×4 counts: row = base bucket, column = trained bucket, in BUCKETS order."""
    index = {b: i for i, b in enumerate(BUCKETS)}
    m = np.zeros((4, 4), dtype=int)
    for b, t in zip(base, trained, strict=True):
        m[index[b], index[t]] += 1
    return m
