import itertools
from math import comb

import numpy as np
import pytest

from pipeline.reporting.metrics import BUCKETS, bucket, pass_at_k, transition_matrix


@pytest.mark.parametrize("n,c,k,expected", [(10, 3, 1, 0.3), (10, 3, 5, 0.916667), (200, 1, 100, 0.5)])
def test_pass_at_k_reference_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_brute_force_enumeration(n):
    # pass@k is the probability that a uniformly random k-subset of the n samples holds a success.
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
            assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_buckets_on_boundaries():
    assert bucket(256, 0) == "unsolvable"
    assert bucket(256, 1) == "hard"
    assert bucket(10, 1) == "hard"
    assert bucket(10, 2) == "medium"  # exactly 20 % is medium
    assert bucket(10, 8) == "medium"  # exactly 80 % is medium
    assert bucket(10, 9) == "easy"


def test_transition_matrix_counts_pairs():
    base = ["easy", "medium", "hard", "hard", "unsolvable"]
    trained = ["easy", "easy", "unsolvable", "medium", "unsolvable"]
    m = transition_matrix(base, trained)
    idx = {b: i for i, b in enumerate(BUCKETS)}
    assert m.sum() == 5
    assert m[idx["medium"], idx["easy"]] == 1
    assert m[idx["hard"], idx["unsolvable"]] == 1
    assert m[idx["hard"], idx["medium"]] == 1
    assert np.trace(m) == 2


def test_bucket_rules_differ_where_their_thresholds_do():
    from pipeline.reporting.metrics import BucketRule

    authors = BucketRule(easy=0.9, easy_inclusive=True, medium=0.3, medium_inclusive=True, name="authors")
    # 85 %: easy by the study's rule (> 80 %), medium by the authors' (≥ 90 % for easy)
    assert bucket(100, 85) == "easy" and bucket(100, 85, authors) == "medium"
    assert bucket(10, 9, authors) == "easy"  # exactly 90 % is easy for them
    # 25 %: medium for the study (≥ 20 %), hard for the authors (< 30 %)
    assert bucket(100, 25) == "medium" and bucket(100, 25, authors) == "hard"
    assert bucket(10, 3, authors) == "medium"  # exactly 30 %
    assert bucket(256, 0, authors) == "unsolvable" and bucket(256, 1, authors) == "hard"
    # a rate computed in floating point at the threshold counts as the threshold
    assert bucket(3, 1, BucketRule(medium=1 / 3, medium_inclusive=False)) == "hard"
    assert bucket(3, 1, BucketRule(medium=1 / 3, medium_inclusive=True)) == "medium"


def test_the_bucket_presets_compose_into_the_config():
    from hydra import compose, initialize_config_dir
    from pathlib import Path

    from pipeline.config import register
    from pipeline.reporting.metrics import DEFAULT_RULE, BucketRule

    register()
    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        study = BucketRule.of(compose(config_name="config").eval.buckets)
        authors = BucketRule.of(compose(config_name="config", overrides=["eval/buckets=alpha_dpg_authors"]).eval.buckets)
    assert study == DEFAULT_RULE
    assert (authors.easy, authors.easy_inclusive, authors.medium, authors.medium_inclusive) == (0.9, True, 0.3, True)
