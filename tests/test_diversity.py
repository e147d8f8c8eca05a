"""Diversity of accepted proofs: normalisation, tactic sequences, entropy, premises, unsolved theorems."""

import math

import pandas as pd
import pytest

from pipeline.reporting import diversity
from pipeline.reporting.diversity import normalise_proof, premises, tactic_sequence

STATEMENT = "theorem t1 (p q : Prop) : p ∧ q → q ∧ p"
OR_STATEMENT = "theorem t2 (p q r : Prop) : (p ∨ q) ∧ (p → r) ∧ (q → r) → r"


def test_renamed_proofs_with_other_whitespace_are_equal():
    a = "by\n  intro h1\n  exact ⟨h1.2, h1.1⟩"
    b = "by\n    intro hpq\n    exact ⟨hpq.2,   hpq.1⟩  "
    c = "by\n  intro x -- a comment\n  exact ⟨x.2, x.1⟩"
    assert normalise_proof(a, STATEMENT) == normalise_proof(b, STATEMENT) == normalise_proof(c, STATEMENT)


def test_pattern_alternatives_reusing_one_name_equal_two_names():
    # `h | h` and `hp | hq` bind the same slots: only one alternative is in scope per goal
    a = "by\n  intro ⟨h1, h2, h3⟩\n  rcases h1 with h4 | h4\n  · exact h2 h4\n  · exact h3 h4"
    b = "by\n  intro ⟨hpq, hpr, hqr⟩\n  rcases hpq with hp | hq\n  · exact hpr hp\n  · exact hqr hq"
    assert normalise_proof(a, OR_STATEMENT) == normalise_proof(b, OR_STATEMENT)


@pytest.mark.parametrize("other", [
    "by\n  intro h1\n  exact ⟨h1.1, h1.2⟩",            # other projections
    "by\n  intro h1\n  constructor\n  exact h1.2\n  exact h1.1",  # other tactics
    "by intro h1; exact ⟨h1.2, h1.1⟩",               # `;` instead of a new line
    "by\n  intro h1\n  exact ⟨h1.2, h1.1⟩\n",         # same: a trailing newline is whitespace
])
def test_different_proofs_stay_different(other):
    base = "by\n  intro h1\n  exact ⟨h1.2, h1.1⟩"
    same = other.rstrip("\n") == base
    assert (normalise_proof(other, STATEMENT) == normalise_proof(base, STATEMENT)) is same


def test_swapped_hypothesis_uses_are_different():
    # h1, h2 renamed consistently is the same proof; swapping which one is used is not
    a = "fun h1 h2 => h1 h2"
    assert normalise_proof(a) == normalise_proof("fun a b => a b")
    assert normalise_proof(a) != normalise_proof("fun h1 h2 => h2 h1")


def test_proposition_variables_and_constants_are_not_renamed():
    proof = "by\n  intro h\n  cases h with\n  | inl hp => exact Or.inr hp\n  | inr hq => exact Or.inl hq"
    text = normalise_proof(proof, "theorem t3 (p q : Prop) : p ∨ q → q ∨ p")
    assert "Or.inr x2" in text and "Or.inl x3" in text and "| inl x2 =>" in text
    shown = normalise_proof("by\n  show p → p\n  intro hp\n  exact hp", "theorem t4 (p : Prop) : p → p")
    assert shown.splitlines()[1].strip() == "show p → p"


def test_tactic_sequences_ignore_arguments():
    assert tactic_sequence("by\n  intro h1\n  exact ⟨h1.2, h1.1⟩", STATEMENT) == ("intro", "exact")
    assert tactic_sequence("by intro ⟨hp, hq⟩; constructor <;> assumption", STATEMENT) == \
        ("intro", "constructor", "assumption")
    nested = "by\n  intro h\n  cases h.1 with\n  | inl a => exact h.2.1 a\n  | inr b =>\n    apply h.2.2\n    exact b"
    assert tactic_sequence(nested, OR_STATEMENT) == ("intro", "cases", "exact", "apply", "exact")
    assert tactic_sequence("fun ⟨hp, hq⟩ => ⟨hq, hp⟩", STATEMENT) == ()  # a term proof has no tactics
    # a tactic name inside a term (`trivial` as a constant) is not a tactic
    assert tactic_sequence("by exact ⟨trivial, trivial⟩") == ("exact",)


def test_tactic_entropy_on_known_distributions():
    one_tactic = ["by exact fun h => ⟨h.2, h.1⟩"] * 3
    assert diversity.theorem_diversity(one_tactic, STATEMENT)["tactic_entropy"] == 0.0
    # intro, exact, intro, exact: two names, equally often -> 1 bit
    two = ["by\n  intro h\n  exact ⟨h.2, h.1⟩", "by\n  intro h\n  exact ⟨h.right, h.left⟩"]
    assert diversity.theorem_diversity(two, STATEMENT)["tactic_entropy"] == pytest.approx(1.0)
    # intro×2, exact×1, constructor×1 -> H(1/2, 1/4, 1/4) = 1.5 bits
    mixed = ["by\n  intro h\n  exact ⟨h.2, h.1⟩", "by\n  intro h\n  constructor"]
    assert diversity.theorem_diversity(mixed, STATEMENT)["tactic_entropy"] == pytest.approx(1.5)


def test_premises_counted_by_name():
    proof = ("by exact fun h1 h2 h3 => Or.elim h3 (fun h4 => Or.inl ⟨h4, (h1 h4).2⟩) "
             "(fun h4 => Or.inr (absurd h4 h2.mp))")
    assert premises(proof) == {"Or.elim", "Or.inl", "Or.inr", "absurd", ".2", ".mp"}
    assert premises("by\n  rcases Classical.em p with hp | hnp\n  · exact False.elim (hnp hp)",
                    "theorem t5 (p : Prop) : p") == {"Classical.em", "False.elim"}
    stats = diversity.theorem_diversity(["by exact Or.inl h.1", "by exact Or.inl h.2", "by exact Or.inr h.1"],
                                        "theorem t6 (p q : Prop) (h : p ∧ p) : p ∨ q")
    assert stats["distinct_premises"] == 4  # Or.inl, Or.inr, .1, .2
    assert stats["distinct_proofs"] == 3 and stats["distinct_tactic_seqs"] == 1


def test_lean_text_outside_the_fragment_never_fails():
    proof = "by\n  nlinarith [sq_nonneg (n - 1), h₀]\n  /- unclosed"
    feats = diversity.proof_features(proof, "theorem t (n : ℕ) (h₀ : 0 < n) : n ^ 2 ≥ n")
    assert feats.tactics[0] == "nlinarith" and "sq_nonneg" in feats.premises and "h₀" not in feats.premises


def _verdicts(rows):
    return pd.DataFrame(rows, columns=["theorem_id", "statement", "sample_idx", "proof", "verdict"])


def test_per_theorem_flags_unsolved_and_averages():
    rows = [
        ("a", STATEMENT, 0, "by\n  intro h1\n  exact ⟨h1.2, h1.1⟩", "pass"),
        ("a", STATEMENT, 1, "by\n  intro hpq\n  exact ⟨hpq.2, hpq.1⟩", "pass"),  # same proof renamed
        ("a", STATEMENT, 2, "fun ⟨hp, hq⟩ => ⟨hq, hp⟩", "pass"),
        ("a", STATEMENT, 3, "by simp", "fail"),  # failures never count
        ("b", STATEMENT, 0, "by exact h", "fail"),
        ("b", STATEMENT, 1, None, "error"),
    ]
    table, summary = diversity.diversity(_verdicts(rows))
    a, b = table.set_index("theorem_id").loc["a"], table.set_index("theorem_id").loc["b"]
    assert a["solved"] and a["accepted"] == 3 and a["distinct_proofs"] == 2 and a["distinct_tactic_seqs"] == 2
    assert a["tactic_entropy"] == pytest.approx(1.0)  # intro, exact, intro, exact
    assert a["distinct_premises"] == 2  # .1 and .2
    assert not b["solved"] and all(b[m] == 0 for m in diversity.METRICS) and b["accepted"] == 0
    assert summary["theorems"] == 2 and summary["solved_theorems"] == 1
    assert summary["distinct_proofs"] == pytest.approx(1.0) and summary["distinct_proofs_solved"] == pytest.approx(2.0)


def test_correlations_pearson_and_spearman():
    runs = pd.DataFrame({"method": list("abcd"), "pass@1": [0.1, 0.2, 0.3, 0.4], "pass@64": [0.9, 0.8, 0.7, 0.6],
                         "pass@8": [0.5] * 4, "distinct_proofs": [1.0, 2.0, 3.0, 10.0],
                         "tactic_entropy": [1.0, 1.0, 1.0, 1.0]})
    corr = diversity.correlations(runs).set_index(["metric", "target"])
    assert set(corr.index.get_level_values("target")) == {"pass@1", "pass@64"}  # max k, not pass@8
    assert corr.loc[("distinct_proofs", "pass@1"), "spearman"] == pytest.approx(1.0)
    assert corr.loc[("distinct_proofs", "pass@64"), "spearman"] == pytest.approx(-1.0)
    assert 0.8 < corr.loc[("distinct_proofs", "pass@1"), "pearson"] < 1.0  # linear-ish, not exactly
    assert math.isnan(corr.loc[("tactic_entropy", "pass@1"), "pearson"])  # constant column
