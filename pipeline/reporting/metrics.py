"""Evaluation quantities: unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on
Code") and difficulty buckets."""

from __future__ import annotations

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


def bucket(n: int, c: int) -> str:
    """easy > 80 % solved, medium 20–80 %, hard < 20 % with at least one success, unsolvable 0/n."""
    if c == 0:
        return "unsolvable"
    rate = c / n
    if rate > 0.8:
        return "easy"
    if rate >= 0.2:
        return "medium"
    return "hard"


def transition_matrix(base: list[str], trained: list[str]) -> np.ndarray:
    """4×4 counts: row = base bucket, column = trained bucket, in BUCKETS order."""
    index = {b: i for i, b in enumerate(BUCKETS)}
    m = np.zeros((4, 4), dtype=int)
    for b, t in zip(base, trained, strict=True):
        m[index[b], index[t]] += 1
    return m
