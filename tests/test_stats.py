"""Paired statistics of the sweep report: bootstrap intervals, sign-flip p-values, seeds, claims.

Values are checked against independent computations (normal-theory intervals, exact permutation
p-values, hand-made panels whose answer is known), not against the implementation's own helpers.
"""

import math
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.reporting.claims import check_claims
from pipeline.reporting.compare import Method, Panel, gains, group_methods, merged_run, pairs, seed_pairs, seed_table
from pipeline.reporting.metrics import BucketRule, pass_at_k
from pipeline.reporting.runs import Run, order_runs
from pipeline.reporting.stats import Bootstrap, spearman


def test_interval_of_a_mean_matches_normal_theory_on_many_theorems():
    rng = np.random.default_rng(1)
    values = rng.normal(0.05, 0.2, size=400)
    i = Bootstrap(400, n_resamples=4000, seed=3).interval(values)
    se = values.std(ddof=1) / math.sqrt(400)
    assert i.estimate == pytest.approx(values.mean())
    assert i.low == pytest.approx(values.mean() - 1.96 * se, abs=0.25 * se)
    assert i.high == pytest.approx(values.mean() + 1.96 * se, abs=0.25 * se)
    assert i.excludes_zero and i.p < 0.001


def test_sign_flip_p_value_matches_the_exact_permutation_test():
    values = np.array([0.3, 0.1, -0.05, 0.2, 0.15, 0.4, -0.1, 0.25])
    # exact: all 2^8 sign patterns, two-sided, |mean| at least the observed
    observed = abs(values.mean())
    flips = [abs((np.array(s) * values).mean()) >= observed - 1e-15 for s in product([-1, 1], repeat=8)]
    exact = sum(flips) / len(flips)
    p = Bootstrap(8, n_resamples=20000, seed=5).interval(values).p
    assert p == pytest.approx(exact, abs=0.01)


def test_no_difference_gives_p_one_and_an_interval_around_zero():
    i = Bootstrap(50, n_resamples=2000).interval(np.zeros(50))
    assert (i.estimate, i.low, i.high, i.p) == (0.0, 0.0, 0.0, 1.0)
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1, 200)
    noise -= noise.mean()  # mean exactly 0
    i = Bootstrap(200, n_resamples=2000).interval(noise)
    assert i.low < 0 < i.high and i.p > 0.9 and not i.excludes_zero


def test_totals_scale_the_mean_by_the_number_of_theorems():
    events = np.array([1, 0, 0, 1, 1, 0, 0, 0, 0, 1.0])
    i = Bootstrap(10, n_resamples=2000).interval(events, total=True)
    assert i.estimate == 4 and 0 <= i.low <= 4 <= i.high <= 10


def test_spearman_against_hand_ranks():
    assert spearman([0, 0.25, 0.5, 1], [0.1, 0.2, 0.3, 0.9]) == pytest.approx(1.0)
    assert spearman([0, 0.25, 0.5, 1], [0.9, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks 1..4, y ranks 1.5, 1.5, 3, 4 -> Pearson of the ranks
    rx, ry = np.array([1, 2, 3, 4.0]), np.array([1.5, 1.5, 3, 4])
    assert spearman([1, 2, 3, 4], [5, 5, 6, 7]) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))


# ---- a synthetic sweep held in memory: per-theorem counts for the base model and each run

N = 256  # samples per theorem
THEOREMS = [f"t{i}" for i in range(60)]


def _table(counts) -> pd.DataFrame:
    t = pd.DataFrame({"theorem_id": THEOREMS, "n": N, "c": list(counts)}).set_index("theorem_id")
    t["pass@1"] = t["c"] / N
    t[f"pass@{N}"] = [pass_at_k(N, int(c), N) for c in t["c"]]
    return t


def _run(job, method, objective, alpha=None, seed=0) -> Run:
    summary = {"method": method, "objective": objective, "alpha": alpha, "seed": seed,
               "trained": {"pass@1": 0.0}, "base": {"pass@1": 0.0}}
    return Run(job, Path("."), summary, method)


BASE = np.array([200] * 15 + [100] * 15 + [20] * 15 + [0] * 15)  # easy, medium, hard, unsolvable


def _panel(tables: dict) -> Panel:
    return Panel(pd.Index(THEOREMS), _table(BASE), tables, ["pass@1", f"pass@{N}"], BucketRule())


def test_seeds_of_one_method_are_one_method_with_their_mean():
    runs = [_run("0", "α-DPG α=0", "alpha_dpg", 0.0, 0), _run("1", "GRPO", "grpo", seed=0),
            _run("2", "α-DPG α=0", "alpha_dpg", 0.0, 1)]
    methods = group_methods(runs)
    assert [m.label for m in methods] == ["α-DPG α=0", "GRPO"] and methods[0].seeds == [0, 1]
    panel = _panel({"0": _table(BASE + 10), "1": _table(BASE), "2": _table(BASE + 20)})
    assert panel.values(methods[0], "pass@1") == pytest.approx((BASE + 15) / N)
    # two runs of one label with the same seed are not reseedings: each stays its own row
    twins = group_methods(order_runs([_run("0", "X", "rsft", seed=0), _run("1", "X", "rsft", seed=0)]))
    assert [m.label for m in twins] == ["X (job 0)", "X (job 1)"]


def test_merged_run_averages_the_seeds_numbers():
    a = _run("0", "M", "grpo", seed=0)
    b = _run("1", "M", "grpo", seed=1)
    for run, p1, lost in ((a, 0.2, ["t1"]), (b, 0.4, ["t1", "t2", "t3"])):
        run.summary.update(trained={"pass@1": p1, "theorems": 60}, budget={"steps": 32},
                           buckets={"trained_counts": {"easy": 10 if p1 < 0.3 else 20}, "lost": lost, "gained": [],
                                    "transitions": [[1, 0], [0, 1]] if p1 < 0.3 else [[0, 1], [1, 0]]})
    merged = merged_run(Method("M", [a, b])).summary
    assert merged["trained"]["pass@1"] == pytest.approx(0.3) and merged["budget"]["steps"] == 32
    assert merged["buckets"]["trained_counts"]["easy"] == 15 and merged["buckets"]["lost"] == 2
    assert merged["buckets"]["transitions"] == [[0.5, 0.5], [0.5, 0.5]] and merged["seeds"] == [0, 1]


def test_gains_and_pairs_find_a_real_difference_and_not_a_fake_one():
    better = BASE.copy()
    better[15:45] += 40  # medium and hard theorems solved more often
    panel = _panel({"0": _table(better), "1": _table(BASE)})
    methods = group_methods([_run("0", "A", "grpo"), _run("1", "B", "rsft")])
    boot = Bootstrap(len(THEOREMS), n_resamples=3000)
    g = gains(panel, methods, boot).set_index("method")
    assert g.loc["A", "pass@1_gain"] == pytest.approx(30 * 40 / N / 60)
    assert g.loc["A", "pass@1_gain_lo"] > 0 and g.loc["A", "pass@1_gain_p"] < 0.01
    assert g.loc["B", "pass@1_gain"] == 0 and g.loc["B", "pass@1_gain_p"] == 1.0
    assert g.loc["B", "lost"] == 0 and g.loc["A", "medium_to_easy"] == 0  # 100+40 of 256 is still medium
    p = pairs(panel, methods, boot).iloc[0]
    assert (p["a"], p["b"]) == ("A", "B") and p["pass@1"] == pytest.approx(g.loc["A", "pass@1_gain"])
    assert p["pass@1_lo"] > 0


def test_bucket_events_count_lost_and_hard_to_unsolvable():
    after = BASE.copy()
    after[30:35] = 0  # five hard theorems lost
    after[15:20] = 230  # five medium theorems now easy
    panel = _panel({"0": _table(after)})
    (m,) = group_methods([_run("0", "A", "grpo")])
    assert panel.events(m, "lost").sum() == 5 and panel.events(m, "hard_to_unsolvable").sum() == 5
    assert panel.events(m, "medium_to_easy").sum() == 5 and panel.events(m, "gained").sum() == 0


def test_a_difference_survives_reseeding_only_when_every_seed_shows_it():
    strong = BASE.copy()
    strong[15:45] += 60
    tables = {"a0": _table(strong), "a1": _table(strong + 1), "b0": _table(BASE), "b1": _table(BASE + 1),
              # method C beats B in one seed and loses in the other
              "c0": _table(strong), "c1": _table(np.clip(BASE - 30 * (BASE > 0), 0, N))}
    runs = [_run("a0", "A", "x", seed=0), _run("a1", "A", "x", seed=1), _run("b0", "B", "x", seed=0),
            _run("b1", "B", "x", seed=1), _run("c0", "C", "x", seed=0), _run("c1", "C", "x", seed=1)]
    panel = _panel(tables)
    methods = group_methods(runs)
    boot = Bootstrap(len(THEOREMS), n_resamples=2000)
    sp = seed_pairs(panel, methods, boot).set_index(["a", "b", "metric"])
    assert sp.loc[("A", "B", "pass@1"), "survives_reseeding"] == "survives"
    assert sp.loc[("B", "C", "pass@1"), "survives_reseeding"] == "no"
    st = seed_table(panel, methods, boot)
    a_rows = st[st["method"] == "A"]
    assert list(a_rows["seed"]) == [0, 1, "mean", "sd"]
    assert a_rows.iloc[2]["pass@1"] == pytest.approx(a_rows.iloc[:2]["pass@1"].mean())


def _alpha_sweep(p1_trend: int, lost_grpo: int, lost_low: int, noise: float = 0.0) -> tuple[Panel, list]:
    """α-DPG at α = 0, 0.25, 0.5, 1 and a GRPO run; pass@1 rising (p1_trend=+1) or falling (-1) with α;
    `noise`: each run's counts move by independent noise of that size (no trend)."""
    tables, runs = {}, []
    rng = np.random.default_rng(7)
    for i, alpha in enumerate((0.0, 0.25, 0.5, 1.0)):
        counts = BASE.copy()
        counts[:45] = np.clip(counts[:45] + p1_trend * 20 * i + rng.normal(0, noise, 45).round(), 1, N)
        if alpha <= 0.25:
            counts[30:30 + lost_low] = 0
        tables[str(i)] = _table(counts)
        runs.append(_run(str(i), f"α-DPG α={alpha:g}", "alpha_dpg", alpha))
    grpo = BASE.copy()
    grpo[30:30 + lost_grpo] = 0
    tables["g"] = _table(grpo)
    runs.append(_run("g", "GRPO", "grpo"))
    return _panel(tables), group_methods(runs)


def test_claims_are_reproduced_contradicted_or_inconclusive_as_built():
    boot = Bootstrap(len(THEOREMS), n_resamples=2000)
    panel, methods = _alpha_sweep(p1_trend=+1, lost_grpo=8, lost_low=1)
    verdicts = {c.number: c.verdict for c in check_claims(panel, methods, boot)}
    assert verdicts["1"] == "reproduced"  # pass@1 rises with α
    assert verdicts["3"] == "reproduced"  # GRPO lost 8, low α 1
    assert verdicts["4"] == "not testable" or verdicts["4"].startswith("inconclusive")
    panel, methods = _alpha_sweep(p1_trend=-1, lost_grpo=1, lost_low=8)
    verdicts = {c.number: c.verdict for c in check_claims(panel, methods, boot)}
    assert verdicts["1"] == "contradicted" and verdicts["3"] == "contradicted"
    # no trend, only noise, and the same losses on both sides: nothing can be concluded
    panel, methods = _alpha_sweep(p1_trend=0, lost_grpo=0, lost_low=0, noise=30)
    verdicts = {c.number: c.verdict for c in check_claims(panel, methods, boot)}
    assert verdicts["1"].startswith("inconclusive") and verdicts["3"] == "inconclusive at this power"
