"""Tests of the `prop` checker (lean_env/prop/checker.py, syntax.py; docs/prop_fragment.md).

The checker must be sound: it may accept a proof only if Lean 4 core would. So most tests here are
negative (tests/data/bad_proofs.jsonl, at least 200 wrong or dishonest proofs, none may pass), and
the positive ones are proofs we are confident Lean accepts, in every style the fragment supports.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lean_env.prop import syntax
from lean_env.prop.lexer import ProofError
from lean_env.prop.checker import MAX_PROOF_CHARS, VERSION, CheckResult, check
from lean_env.prop.formula import FALSE, TRUE, conj, disj, iff, imp, neg, show, var

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "bad_proofs.jsonl"
SPLITS = [ROOT / "lean_env" / "data" / name for name in ("prop_eval.jsonl", "prop_train.jsonl")]

AND_COMM = "theorem prop_t_001 (p q : Prop) : p ∧ q → q ∧ p"
OR_COMM = "theorem prop_t_002 (p q : Prop) : p ∨ q → q ∨ p"
SYLL = "theorem prop_t_003 (p q r : Prop) : (p → q) → (q → r) → p → r"
IFF_COMM = "theorem prop_t_004 (p q : Prop) : (p ↔ q) → (q ↔ p)"
DNE = "theorem prop_t_005 (p : Prop) : ¬¬p → p"
DEMORGAN = "theorem prop_t_006 (p q : Prop) : ¬(p ∨ q) → ¬p ∧ ¬q"
HYPS = "theorem prop_t_007 (p q : Prop) (hp : p) (hq : q) : p ∧ q"
K = "theorem prop_t_008 (p q : Prop) : p → q → p"
EM = "theorem prop_t_010 (p : Prop) : p ∨ ¬p"
DISTRIB = "theorem prop_t_011 (p q r : Prop) : p ∧ (q ∨ r) → p ∧ q ∨ p ∧ r"
EFQ = "theorem prop_t_012 (p : Prop) : False → p"
DS = "theorem prop_t_013 (p q : Prop) (h : p ∨ q) (hnp : ¬p) : q"
DNI = "theorem prop_t_014 (p : Prop) : p → ¬¬p"
TT = "theorem prop_t_015 : True ∧ True"
MT = "theorem prop_t_016 (p q : Prop) : (p → q) → ¬q → ¬p"
ASSOC = "theorem prop_t_017 (p q r : Prop) : p ∧ q ∧ r → (p ∧ q) ∧ r"
CONTRA = "theorem prop_t_018 (p q : Prop) (hp : p) (hnp : ¬p) : q"
IFF_NEG = "theorem prop_t_019 (p q : Prop) : (p ↔ q) → (¬p ↔ ¬q)"
PEIRCE = "theorem prop_t_020 (p q : Prop) : ((p → q) → p) → p"
OR3 = "theorem prop_t_021 (p q r : Prop) : p ∨ q ∨ r → r ∨ q ∨ p"
NOT_IMP = "theorem prop_t_022 (p q : Prop) : ¬(p → q) → p"
SUBSCRIPT = "theorem prop_t_023 (p q : Prop) (h₁ : p) (h₂ : p → q) : q"
TRUE_IMP = "theorem prop_t_024 (p : Prop) : p → True ∧ p"


# Proofs Lean 4 core accepts, in every style of the fragment.
GOOD = [
    # -- intro / exact / anonymous constructors / projections
    (AND_COMM, "by\n  intro h\n  exact ⟨h.2, h.1⟩"),
    (AND_COMM, "by\n  intro h\n  exact ⟨h.right, h.left⟩"),
    (AND_COMM, "by intro h; exact ⟨h.2, h.1⟩"),
    (AND_COMM, "by\n  intro ⟨hp, hq⟩\n  exact ⟨hq, hp⟩"),
    (AND_COMM, "by\n  intro ⟨_, hq⟩\n  constructor\n  · exact hq\n  · assumption"),
    (AND_COMM, "fun ⟨hp, hq⟩ => ⟨hq, hp⟩"),
    (AND_COMM, "fun h => ⟨h.2, h.1⟩"),
    (AND_COMM, "λ h ↦ ⟨h.2, h.1⟩"),
    (AND_COMM, "fun (h : p ∧ q) => And.intro h.right h.left"),
    (AND_COMM, "fun h => And.intro (And.right h) (And.left h)"),
    (AND_COMM, "\n  fun h =>\n    ⟨h.2,\n      h.1⟩"),
    (AND_COMM, "by\n  exact fun h => ⟨h.2, h.1⟩"),
    (AND_COMM, "by exact fun ⟨hp, hq⟩ => ⟨hq, hp⟩"),
    (AND_COMM, "by\n  intro h\n  exact (⟨h.2, h.1⟩ : q ∧ p)"),
    (AND_COMM, "by\n  intro h\n  exact ⟨(h : p ∧ q).2, h.1⟩"),
    (AND_COMM, "by\n  intro h\n  exact ⟨by exact h.2, by exact h.1⟩"),
    (AND_COMM, "by\n  intro h\n  exact\n    ⟨h.2, h.1⟩"),
    # -- constructor, focusing dots, refine, <;>
    (AND_COMM, "by\n  intro h\n  constructor\n  · exact h.2\n  · exact h.1"),
    (AND_COMM, "by\n  intro h\n  constructor\n  . exact h.2\n  . exact h.1"),
    (AND_COMM, "by\n  intro h\n  constructor\n  exact h.2\n  exact h.1"),
    (AND_COMM, "by\n  intro h\n  constructor\n  ·\n    exact h.2\n  · exact h.1"),
    (AND_COMM, "by\n  intro h\n  refine ⟨?_, ?_⟩\n  · exact h.2\n  · exact h.1"),
    (AND_COMM, "by\n  intro h\n  refine ⟨?_, h.1⟩\n  exact h.2"),
    (AND_COMM, "by\n  intro h\n  refine And.intro ?_ ?_\n  exact h.2\n  exact h.1"),
    (AND_COMM, "by\n  intro h\n  apply And.intro\n  · exact h.2\n  · exact h.1"),
    (AND_COMM, "by\n  intro h\n  exact And.intro h.2 h.1"),
    (TT, "by\n  constructor <;> trivial"),
    (TT, "by constructor <;> exact trivial"),
    (TT, "⟨trivial, True.intro⟩"),
    (TT, "by trivial"),
    (TT, "by\n  refine ⟨?_, ?_⟩ <;> constructor"),
    # -- cases / rcases / obtain
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp => exact Or.inr hp\n  | inr hq => exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  cases h with\n    | inr hq => exact Or.inl hq\n    | inl hp => exact Or.inr hp"),
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp =>\n    right\n    exact hp\n  | inr hq =>\n    left\n    exact hq"),
    (OR_COMM, "by\n  intro h\n  cases h with | inl hp => exact Or.inr hp | inr hq => exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  cases h\n  · right\n    assumption\n  · left\n    assumption"),
    (OR_COMM, "by\n  intro h\n  cases h\n  · apply Or.inr\n    assumption\n  · apply Or.inl\n    assumption"),
    (OR_COMM, "by\n  intro h\n  rcases h with hp | hq\n  · exact Or.inr hp\n  · exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  rcases h with hp | hq\n  exact Or.inr hp\n  exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  obtain hp | hq := h\n  · right; exact hp\n  · left; exact hq"),
    (OR_COMM, "by\n  intro h\n  rcases h with h | h\n  · exact Or.inr h\n  · exact Or.inl h"),
    (OR_COMM, "by\n  intro h\n  rcases h with (hp | hq)\n  · exact Or.inr hp\n  · exact Or.inl hq"),
    (OR_COMM, "fun h => Or.elim h (fun hp => Or.inr hp) (fun hq => Or.inl hq)"),
    (OR_COMM, "fun h => h.elim (fun hp => Or.inr hp) (fun hq => Or.inl hq)"),
    (OR_COMM, "fun h => h.elim Or.inr Or.inl"),
    (OR_COMM, "fun h => Or.elim h Or.inr Or.inl"),
    (OR_COMM, "by\n  intro h\n  apply Or.elim h\n  · intro hp\n    exact Or.inr hp\n  · intro hq\n    exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  refine Or.elim h (fun hp => ?_) (fun hq => ?_)\n  · exact Or.inr hp\n  · exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  exact h.elim Or.inr Or.inl"),
    (DISTRIB, "by\n  intro h\n  rcases h with ⟨hp, hq | hr⟩\n  · left\n    exact ⟨hp, hq⟩\n  · right\n    exact ⟨hp, hr⟩"),
    (DISTRIB, "by\n  intro ⟨hp, hqr⟩\n  cases hqr with\n  | inl hq => exact Or.inl ⟨hp, hq⟩\n  | inr hr => exact Or.inr ⟨hp, hr⟩"),
    (DISTRIB, "by\n  intro h\n  obtain ⟨hp, hq | hr⟩ := h\n  exact Or.inl ⟨hp, hq⟩\n  exact Or.inr ⟨hp, hr⟩"),
    (DISTRIB, "by\n  intro h\n  cases h with\n  | intro hp hqr =>\n    cases hqr with\n    | inl hq => exact Or.inl ⟨hp, hq⟩\n    | inr hr => exact Or.inr ⟨hp, hr⟩"),
    (DISTRIB, "fun ⟨hp, hqr⟩ => hqr.elim (fun hq => Or.inl ⟨hp, hq⟩) (fun hr => Or.inr ⟨hp, hr⟩)"),
    (ASSOC, "by\n  intro h\n  rcases h with ⟨hp, hq, hr⟩\n  exact ⟨⟨hp, hq⟩, hr⟩"),
    (ASSOC, "by\n  intro h\n  obtain ⟨hp, ⟨hq, hr⟩⟩ := h\n  exact ⟨⟨hp, hq⟩, hr⟩"),
    (ASSOC, "fun ⟨hp, hq, hr⟩ => ⟨⟨hp, hq⟩, hr⟩"),
    (ASSOC, "fun h => ⟨⟨h.1, h.2.1⟩, h.2.2⟩"),
    (ASSOC, "by\n  intro ⟨hp, ⟨hq, hr⟩⟩\n  exact ⟨⟨hp, hq⟩, hr⟩"),
    (ASSOC, "by\n  intro h\n  obtain ⟨hp, h2⟩ := h\n  obtain ⟨hq, hr⟩ := h2\n  exact ⟨⟨hp, hq⟩, hr⟩"),
    (ASSOC, "by\n  intro h\n  cases h with\n  | intro hp h2 =>\n    cases h2 with\n    | intro hq hr => exact ⟨⟨hp, hq⟩, hr⟩"),
    (OR3, "by\n  intro h\n  rcases h with hp | hq | hr\n  · exact Or.inr (Or.inr hp)\n  · exact Or.inr (Or.inl hq)\n  · exact Or.inl hr"),
    (OR3, "by\n  intro h\n  rcases h with hp | hq | hr\n  · right; right; exact hp\n  · right; left; exact hq\n  · left; exact hr"),
    (EFQ, "by\n  intro h\n  rcases h with ⟨⟩"),
    (EFQ, "by\n  intro h\n  cases h"),
    (EFQ, "fun h => h.elim"),
    (EFQ, "fun h => False.elim h"),
    (EFQ, "by\n  intro h\n  exact absurd h id"),
    (EFQ, "by\n  intro h\n  contradiction"),
    (EFQ, "by\n  intro\n  contradiction"),
    (EFQ, "by\n  intros\n  trivial"),
    (EFQ, "by\n  intro h\n  exfalso\n  exact h"),
    (EFQ, "by\n  intro h\n  apply False.elim\n  exact h"),
    (EFQ, "by\n  intro h\n  obtain ⟨⟩ := h"),
    # -- implications and negations
    (SYLL, "fun hpq hqr hp => hqr (hpq hp)"),
    (SYLL, "by\n  intro hpq hqr hp\n  exact hqr (hpq hp)"),
    (SYLL, "by\n  intro hpq hqr hp\n  apply hqr\n  apply hpq\n  exact hp"),
    (SYLL, "by\n  intro hpq hqr hp\n  apply hqr\n  apply hpq\n  assumption"),
    (SYLL, "by\n  intro hpq hqr\n  intro hp\n  have hq : q := hpq hp\n  exact hqr hq"),
    (SYLL, "by\n  intro hpq hqr hp\n  have : q := hpq hp\n  exact hqr this"),
    (SYLL, "by\n  intro hpq hqr hp\n  have hq := hpq hp\n  have hr := hqr hq\n  exact hr"),
    (SYLL, "by\n  intro hpq hqr hp\n  have hq : q := by\n    apply hpq\n    exact hp\n  exact hqr hq"),
    (SYLL, "by\n  intro hpq hqr hp\n  have hq : q := by exact hpq hp\n  exact hqr hq"),
    (SYLL, "by\n  intro hpq hqr\n  exact fun hp => hqr (hpq hp)"),
    (SYLL, "by\n  intro hpq hqr\n  intro hp\n  show r\n  exact hqr (hpq hp)"),
    (SYLL, "by\n  show (p → q) → (q → r) → p → r\n  intro hpq hqr hp\n  show r\n  exact hqr (hpq hp)"),
    (SYLL, "by\n  intros h1 h2 h3\n  exact h2 (h1 h3)"),
    (SYLL, "by\n  intro hpq\n  intro hqr\n  intro hp\n  exact hqr (hpq hp)"),
    (SYLL, "fun (hpq : p → q) (hqr : q → r) (hp : p) => hqr (hpq hp)"),
    (SYLL, "fun hpq hqr => fun hp => id (hqr (hpq hp))"),
    (K, "fun hp _ => hp"),
    (K, "by\n  intro hp _\n  exact hp"),
    (K, "by\n  intros\n  assumption"),
    (K, "by\n  intro hp hq\n  assumption"),
    (K, "fun hp => fun _ => hp"),
    (K, "by\n  intro h h'\n  exact h"),
    (MT, "fun hpq hnq hp => hnq (hpq hp)"),
    (MT, "by\n  intro hpq hnq hp\n  exact hnq (hpq hp)"),
    (MT, "by\n  intro hpq hnq hp\n  apply hnq\n  apply hpq\n  exact hp"),
    (MT, "by\n  intro hpq hnq\n  intro hp\n  have hq : q := hpq hp\n  contradiction"),
    (MT, "by\n  intro hpq hnq hp\n  exact absurd (hpq hp) hnq"),
    (MT, "by\n  intro hpq hnq\n  show p → False\n  intro hp\n  exact hnq (hpq hp)"),
    (DNI, "fun hp hnp => hnp hp"),
    (DNI, "by\n  intro hp hnp\n  exact hnp hp"),
    (DNI, "by\n  intro hp\n  intro hnp\n  contradiction"),
    (DNI, "by\n  intro hp hnp\n  apply hnp\n  exact hp"),
    (DNI, "by\n  intro hp\n  intro hnp\n  exact absurd hp hnp"),
    (DNI, "by\n  intros\n  intro h\n  contradiction"),
    (DNI, "by\n  intro hp\n  exact fun hnp => hnp hp"),
    (DEMORGAN, "fun h => ⟨fun hp => h (Or.inl hp), fun hq => h (Or.inr hq)⟩"),
    (DEMORGAN, "by\n  intro h\n  constructor\n  · intro hp\n    exact h (Or.inl hp)\n  · intro hq\n    exact h (Or.inr hq)"),
    (DEMORGAN, "by\n  intro h\n  refine ⟨?_, ?_⟩\n  · intro hp\n    apply h\n    left\n    exact hp\n  · intro hq\n    apply h\n    right\n    exact hq"),
    (DEMORGAN, "by\n  intro h\n  exact ⟨fun hp => h (Or.inl hp), fun hq => h (Or.inr hq)⟩"),
    (DEMORGAN, "by\n  intro h\n  apply And.intro\n  · intro hp\n    apply h\n    apply Or.inl\n    exact hp\n  · intro hq\n    apply h\n    apply Or.inr\n    exact hq"),
    (DEMORGAN, "fun h => And.intro (fun hp => h (Or.inl hp)) (fun hq => h (Or.inr hq))"),
    (DEMORGAN, "by\n  intro h\n  constructor\n  · intro hp\n    apply h\n    constructor\n    exact hp\n  · intro hq\n    exact h (Or.inr hq)"),
    (HYPS, "⟨hp, hq⟩"),
    (HYPS, "And.intro hp hq"),
    (HYPS, "by exact ⟨hp, hq⟩"),
    (HYPS, "by\n  constructor\n  · exact hp\n  · exact hq"),
    (HYPS, "by\n  constructor <;> assumption"),
    (HYPS, "by constructor; exact hp; exact hq"),
    (HYPS, "by\n  constructor\n  trivial\n  trivial"),
    (HYPS, "by trivial"),
    (HYPS, "by\n  apply And.intro hp\n  exact hq"),
    (HYPS, "by\n  apply And.intro hp hq"),
    (CONTRA, "absurd hp hnp"),
    (CONTRA, "False.elim (hnp hp)"),
    (CONTRA, "(hnp hp).elim"),
    (CONTRA, "by contradiction"),
    (CONTRA, "by\n  exfalso\n  exact hnp hp"),
    (CONTRA, "by\n  exfalso\n  apply hnp\n  exact hp"),
    (CONTRA, "by\n  apply absurd hp\n  exact hnp"),
    (CONTRA, "by\n  apply False.elim\n  exact hnp hp"),
    (CONTRA, "by\n  exact absurd hp hnp"),
    (CONTRA, "by trivial"),
    (CONTRA, "by\n  have h : False := hnp hp\n  exact h.elim"),
    (DS, "by\n  cases h with\n  | inl hp => exact absurd hp hnp\n  | inr hq => exact hq"),
    (DS, "by\n  rcases h with hp | hq\n  · contradiction\n  · assumption"),
    (DS, "Or.elim h (fun hp => absurd hp hnp) id"),
    (DS, "h.elim (fun hp => (hnp hp).elim) (fun hq => hq)"),
    (DS, "by\n  cases h\n  · contradiction\n  · assumption"),
    (DS, "by\n  obtain hp | hq := h\n  · exact False.elim (hnp hp)\n  · exact hq"),
    (SUBSCRIPT, "h₂ h₁"),
    (SUBSCRIPT, "by\n  exact h₂ h₁"),
    (SUBSCRIPT, "by\n  apply h₂\n  exact h₁"),
    (TRUE_IMP, "fun hp => ⟨trivial, hp⟩"),
    (TRUE_IMP, "fun hp => ⟨⟨⟩, hp⟩"),
    (TRUE_IMP, "by\n  intro\n  trivial"),
    (TRUE_IMP, "by\n  intro hp\n  exact ⟨True.intro, hp⟩"),
    (TRUE_IMP, "by\n  intro hp\n  constructor\n  · trivial\n  · exact hp"),
    (TRUE_IMP, "by\n  intro hp\n  constructor\n  · constructor\n  · exact hp"),
    # -- iff
    (IFF_COMM, "fun h => ⟨h.2, h.1⟩"),
    (IFF_COMM, "fun h => ⟨h.mpr, h.mp⟩"),
    (IFF_COMM, "fun h => Iff.intro h.mpr h.mp"),
    (IFF_COMM, "fun h => Iff.intro (Iff.mpr h) (Iff.mp h)"),
    (IFF_COMM, "fun ⟨hpq, hqp⟩ => ⟨hqp, hpq⟩"),
    (IFF_COMM, "by\n  intro h\n  constructor\n  · exact h.mpr\n  · exact h.mp"),
    (IFF_COMM, "by\n  intro h\n  constructor\n  · intro hq\n    exact h.2 hq\n  · intro hp\n    exact h.1 hp"),
    (IFF_COMM, "by\n  intro h\n  constructor <;> intro x\n  · exact h.mpr x\n  · exact h.mp x"),
    (IFF_COMM, "by\n  intro h\n  apply Iff.intro\n  · exact h.mpr\n  · exact h.mp"),
    (IFF_COMM, "by\n  intro h\n  obtain ⟨hpq, hqp⟩ := h\n  exact ⟨hqp, hpq⟩"),
    (IFF_COMM, "by\n  intro h\n  cases h with\n  | intro hpq hqp => exact ⟨hqp, hpq⟩"),
    (IFF_COMM, "by\n  intro h\n  rcases h with ⟨hpq, hqp⟩\n  constructor\n  · exact hqp\n  · exact hpq"),
    (IFF_NEG, "fun h => ⟨fun hnp hq => hnp (h.2 hq), fun hnq hp => hnq (h.1 hp)⟩"),
    (IFF_NEG, "by\n  intro h\n  constructor\n  · intro hnp hq\n    exact hnp (h.mpr hq)\n  · intro hnq hp\n    exact hnq (h.mp hp)"),
    # -- classical
    (DNE, "fun h => Classical.byContradiction (fun hn => h hn)"),
    (DNE, "fun h => Classical.byContradiction fun hn => h hn"),
    (DNE, "fun h => Classical.byContradiction h"),
    (DNE, "fun h => (Classical.em p).elim id (fun hn => absurd hn h)"),
    (DNE, "fun h => Or.elim (Classical.em p) (fun hp => hp) (fun hnp => False.elim (h hnp))"),
    (DNE, "by\n  intro h\n  apply Classical.byContradiction\n  intro hn\n  exact h hn"),
    (DNE, "by\n  intro h\n  refine Classical.byContradiction ?_\n  intro hn\n  exact h hn"),
    (DNE, "by\n  intro h\n  exact Classical.byContradiction (fun hn => h hn)"),
    (DNE, "by\n  intro h\n  cases Classical.em p with\n  | inl hp => exact hp\n  | inr hnp => exact absurd hnp h"),
    (DNE, "by\n  intro h\n  rcases Classical.em p with hp | hnp\n  · exact hp\n  · exact absurd hnp h"),
    (DNE, "by\n  intro h\n  obtain hp | hnp := Classical.em p\n  · exact hp\n  · contradiction"),
    (DNE, "by\n  intro h\n  apply Or.elim (Classical.em p)\n  · intro hp\n    exact hp\n  · intro hnp\n    exact False.elim (h hnp)"),
    (DNE, "by\n  intro h\n  have hem : p ∨ ¬p := Classical.em p\n  cases hem with\n  | inl hp => exact hp\n  | inr hnp => exact (h hnp).elim"),
    (DNE, "by\n  intro h\n  have := Classical.em p\n  rcases this with hp | hnp\n  · assumption\n  · contradiction"),
    (EM, "Classical.em p"),
    (EM, "by exact Classical.em p"),
    (EM, "by\n  apply Classical.byContradiction\n  intro h\n  apply h\n  right\n  intro hp\n  apply h\n  left\n  exact hp"),
    (EM, "Classical.byContradiction fun h => h (Or.inr fun hp => h (Or.inl hp))"),
    (PEIRCE, "fun h => Classical.byContradiction (fun hnp => hnp (h (fun hp => absurd hp hnp)))"),
    (PEIRCE, "by\n  intro h\n  cases Classical.em p with\n  | inl hp => exact hp\n  | inr hnp =>\n    apply h\n    intro hp\n    exact absurd hp hnp"),
    (NOT_IMP, "fun h => Classical.byContradiction (fun hnp => h (fun hp => absurd hp hnp))"),
    (NOT_IMP, "by\n  intro h\n  apply Classical.byContradiction\n  intro hnp\n  apply h\n  intro hp\n  contradiction"),
    (NOT_IMP, "by\n  intro h\n  cases Classical.em (p → q) with\n  | inl hpq => exact absurd hpq h\n  | inr _ =>\n    apply Classical.byContradiction\n    intro hnp\n    exact h (fun hp => absurd hp hnp)"),
]


def test_version_and_result_shape():
    assert VERSION == "prop-2"
    r = check(AND_COMM, "by\n  intro h\n  exact ⟨h.2, h.1⟩")
    assert r == CheckResult(True)
    assert r.message == "" and r.line is None and r.col is None and not r.unsupported


@pytest.mark.parametrize("statement,proof", GOOD, ids=[f"good{i}" for i in range(len(GOOD))])
def test_honest_proofs_pass(statement, proof):
    r = check(statement, proof)
    assert r.ok, f"{statement} := {proof}\n-> {r}"


# Proofs Lean 4 accepts that the fragment deliberately refuses (documented completeness gaps).
VALID_BUT_REFUSED = [
    (AND_COMM, "by\nintro h\nexact ⟨h.2, h.1⟩"),                        # block at column 0
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp =>\n  exact Or.inr hp\n  | inr hq =>\n  exact Or.inl hq"),
    (AND_COMM, "by\n  intro h\n  exact ⟨h.2,\nh.1⟩"),                     # ⟨…⟩ item at column 0
    (AND_COMM, "by\n  intro h\n  exact ⟨h.2, h.1⟩ -- done"),               # comment
    (AND_COMM, "by\r\n  intro h\r\n  exact ⟨h.2, h.1⟩"),                   # CRLF
    (K, "by\n  intro p q\n  exact p"),                                        # shadows a Prop variable
    (CONTRA, "by\n  apply absurd\n  exact hp\n  exact hnp"),                  # leaves an implicit goal
    (OR_COMM, "by\n  intro h\n  rcases h with x\n  exact h.elim Or.inr Or.inl"),
    (AND_COMM, "by\n  intro abc\n  exact ⟨abc.2, abc.1⟩"),               # binder-name shape
    ("theorem prop_t_030 (p : Prop) : p ↔ p", "by trivial"),                  # trivial via rfl
    (HYPS, "by\n  constructor\n  <;> assumption"),                         # <;> starting a line
]


@pytest.mark.parametrize("statement,proof", VALID_BUT_REFUSED,
                         ids=[f"refused{i}" for i in range(len(VALID_BUT_REFUSED))])
def test_documented_refusals(statement, proof):
    assert not check(statement, proof).ok


# ---------------------------------------------------------------------------------------------
# the corpus of wrong or dishonest proofs

UNSUPPORTED_KINDS = {"sorry", "admit", "extra_declaration", "eval_command", "set_option", "open_in",
                     "attribute", "unicode_lookalike", "invisible_character", "hidden_comment",
                     "hidden_string"}
ERROR_KINDS = {"wrong_hypothesis", "unsolved_goals", "placeholder", "no_goals", "cleared_hypothesis",
               "bad_indentation"}
REQUIRED_KINDS = UNSUPPORTED_KINDS | ERROR_KINDS | {
    "type_mismatch", "wrong_connective", "truncated", "outside_fragment", "restated_theorem"}


def _bad_rows() -> list[dict]:
    with open(BAD, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_bad_corpus_is_large_and_varied():
    rows = _bad_rows()
    assert len(rows) >= 200
    assert all(set(r) == {"statement", "proof", "kind"} for r in rows)
    assert REQUIRED_KINDS <= {r["kind"] for r in rows}
    assert len({(r["statement"], r["proof"]) for r in rows}) == len(rows)
    for tactic in ("simp", "tauto", "decide", "omega", "exact?", "apply?", "native_decide"):
        assert any(tactic in r["proof"] and r["kind"] == "outside_fragment" for r in rows), tactic


@pytest.mark.parametrize("row", _bad_rows(), ids=lambda r: r["kind"])
def test_bad_proof_fails(row):
    r = check(row["statement"], row["proof"])
    assert not r.ok, row
    assert r.message
    if row["kind"] in UNSUPPORTED_KINDS:
        assert r.unsupported, (row, r)
    if row["kind"] in ERROR_KINDS:
        assert not r.unsupported, (row, r)


# ---------------------------------------------------------------------------------------------
# specific semantics


@pytest.mark.parametrize("statement,proof,message", [
    (AND_COMM, "by\n  intro h\n  refine ⟨_, _⟩", "don't know how to synthesize placeholder"),
    (AND_COMM, "by\n  intro h\n  exact ⟨?_, ?_⟩", "'?_' is only allowed in 'refine'"),
    (AND_COMM, "by\n  intro h\n  exact ⟨h.2, h.1⟩\n  exact h", "no goals to be proved"),
    (AND_COMM, "by\n  intro h\n  constructor\n  · exact h.2", "unsolved goals"),
    (AND_COMM, "by\n  intro h\n  obtain ⟨hp, hq⟩ := h\n  exact ⟨h.2, hp⟩", "unknown identifier 'h'"),
    (AND_COMM, "by\n  intro h\n  simp", "unsupported construct: simp"),
    (DNE, "by\n  intro h\n  by_contra hn\n  exact h hn", "unsupported construct: by_contra"),
    (CONTRA, "by\n  apply absurd\n  exact hp\n  exact hnp", "don't know how to synthesize implicit"),
    (DNI, "by\n  intros\n  contradiction", "contradiction"),                # intros does not unfold ¬
    (DNI, "by\n  intro hp\n  constructor", "constructor"),                   # ¬ is not inductive
    (DNI, "by\n  intro hp\n  left", "not a disjunction"),
    ("theorem prop_t_040 (p : Prop) : p ∧ p → p", "fun ⟨a, a⟩ => a", "occurs more than once"),
    ("theorem prop_t_041 (p : Prop) : p ↔ p ↔ p", "by trivial", "the statement must end"),
    ("theorem prop_t_042 (p : Prop) : p → q", "fun h => h", "unknown identifier 'q'"),
])
def test_specific_failures(statement, proof, message):
    r = check(statement, proof)
    assert not r.ok
    assert message in r.message, r


def test_constructor_on_or_takes_the_left_disjunct():
    st = "theorem prop_t_043 (p q : Prop) (hp : p) : p ∨ q"
    assert check(st, "by\n  constructor\n  exact hp").ok
    st2 = "theorem prop_t_044 (p q : Prop) (hq : q) : p ∨ q"
    assert not check(st2, "by\n  constructor\n  exact hq").ok


def test_intros_counts_syntactic_arrows_only():
    st = "theorem prop_t_045 (p q : Prop) : p → ¬q → ¬q"
    assert check(st, "by\n  intros\n  assumption").ok                  # goal ¬q, hypothesis ¬q
    assert not check(st, "by\n  intros\n  intro h\n  assumption").ok      # goal False now


def test_show_accepts_unfolded_negation_only_for_the_main_goal():
    assert check(MT, "by\n  intro hpq hnq\n  show p → False\n  exact fun hp => hnq (hpq hp)").ok
    assert not check(MT, "by\n  intro hpq hnq\n  show q → False\n  exact hnq").ok


def test_cases_removes_a_hypothesis_but_not_a_generalised_term():
    st = "theorem prop_t_046 (p q : Prop) (h : (p ∨ q) ∧ p) : p"
    assert check(st, "by\n  cases h.1 with\n  | inl hp => exact hp\n  | inr _ => exact h.2").ok
    assert not check(st, "by\n  obtain ⟨hpq, hp⟩ := h\n  exact h.2").ok


def test_apply_new_goal_order_and_arity():
    st = "theorem prop_t_047 (p q r : Prop) (f : p → q → r) (hp : p) (hq : q) : r"
    assert check(st, "by\n  apply f\n  · exact hp\n  · exact hq").ok
    assert not check(st, "by\n  apply f\n  · exact hq\n  · exact hp").ok
    st2 = "theorem prop_t_048 (p q r : Prop) (f : p → q → r) (hp : p) : q → r"
    assert check(st2, "by\n  apply f\n  exact hp").ok                   # f takes one new argument


def test_term_mode_layout():
    assert check(AND_COMM, "fun h =>\n  ⟨h.2, h.1⟩").ok
    assert not check(AND_COMM, "fun h =>\n⟨h.2, h.1⟩").ok               # a line at column 0


def test_nested_by_block_must_be_indented():
    ok = "by\n  intro h\n  have hq : q := by\n    exact h.2\n  exact ⟨hq, h.1⟩"
    assert check(AND_COMM, ok).ok
    assert not check(AND_COMM, ok.replace("\n    exact h.2", "\n  exact h.2")).ok


def test_semicolon_binds_to_the_innermost_block():
    # `; exact ⟨hq, h.1⟩` belongs to the nested `by`, which then has no goal left for it
    st, pf = AND_COMM, "by\n  intro h\n  have hq : q := by exact h.2; exact ⟨hq, h.1⟩"
    r = check(st, pf)
    assert not r.ok and "no goals" in r.message


def test_cases_alternatives_may_share_the_cases_column():
    pf = "by\n  intro h\n  cases h with\n  | inl hp => exact Or.inr hp\n  | inr hq => exact Or.inl hq\n"
    assert check(OR_COMM, pf).ok
    assert not check(OR_COMM, pf.replace("  | inr", " | inr")).ok


def test_rcases_bar_at_line_start_is_refused():
    pf = "by\n  intro h\n  rcases h with hp\n  | hq\n  · exact Or.inr hp\n  · exact Or.inl hq"
    r = check(OR_COMM, pf)
    assert not r.ok and r.unsupported


# ---------------------------------------------------------------------------------------------
# positions and messages


def test_error_positions_point_at_the_token():
    st = "theorem prop_t_050 (p q : Prop) : p ∧ q → q ∧ p"
    r = check(st, "by\n  intro h\n  exact ⟨h.1, h.2⟩")
    assert (r.line, r.col) == (3, 10)          # the offending h.1
    r = check(st, "by\n  intro h\n  simp")
    assert (r.line, r.col, r.unsupported) == (3, 2, True)
    r = check(st, "fun h => ⟨h.2, h3⟩")
    assert r.message == "unknown identifier 'h3'" and (r.line, r.col) == (1, len(st) + 4 + 15)
    r = check(st, "by\n  intro h\n  exact ⟨h.2, h.1⟩ --")
    assert r.unsupported and "comment" in r.message and (r.line, r.col) == (3, 19)
    r = check(st, "by\n  intro h\n  exact ⟨h.2, \u0440.1⟩")
    assert "U+0440" in r.message and (r.line, r.col) == (3, 14)


def test_positions_after_a_multi_line_statement():
    st = "theorem prop_t_051 (p q : Prop) :\n    p ∧ q → q ∧ p"
    assert check(st, "by\n  intro h\n  exact ⟨h.2, h.1⟩").ok
    r = check(st, "by\n  intro h\n  exact ⟨h.1, h.2⟩")
    assert (r.line, r.col) == (4, 10)
    r = check(st, "fun h => ⟨h.2, h3⟩")        # first proof line continues the statement's last line
    assert (r.line, r.col) == (2, len("    p ∧ q → q ∧ p") + 4 + 15)


def test_statement_errors_are_reported_every_time():
    st = "theorem prop_t_052 (p : Prop) : p → q"   # not cached: it never parsed
    for _ in range(2):
        r = check(st, "fun h => h")
        assert not r.ok and "unknown identifier 'q'" in r.message and (r.line, r.col) == (1, 36)


def test_unsupported_messages_name_the_construct():
    for tac in ("tauto", "omega", "decide", "native_decide", "aesop"):
        r = check(AND_COMM, f"by\n  intro h\n  {tac}")
        assert r.unsupported and r.message == f"unsupported construct: {tac}"
    for text, word in [("by\n  intro h\n  exact?", "exact?"), ("by apply?", "apply?"),
                       ("sorry", "sorry"), ("by admit", "admit")]:
        r = check(AND_COMM, text)
        assert r.unsupported and word in r.message


# ---------------------------------------------------------------------------------------------
# formulas: Lean precedences, round trip with formula.show


def _random_formula(rng: random.Random, depth: int):
    if depth == 0 or rng.random() < 0.25:
        return rng.choice([var("p"), var("q"), var("r"), TRUE, FALSE])
    k = rng.randrange(5)
    if k == 0:
        return neg(_random_formula(rng, depth - 1))
    op = [conj, disj, imp, iff][k - 1]
    return op(_random_formula(rng, depth - 1), _random_formula(rng, depth - 1))


def _parse_formula(text: str):
    st, _ = syntax.parse(f"theorem prop_f_1 (p q r : Prop) : {text}", "trivial")
    return st.goal


def test_formula_round_trip():
    rng = random.Random(0)
    for _ in range(2000):
        f = _random_formula(rng, 5)
        assert _parse_formula(show(f)) == f, show(f)


@pytest.mark.parametrize("text,expected", [
    ("¬p ∧ q", conj(neg(var("p")), var("q"))),
    ("¬(p ∧ q)", neg(conj(var("p"), var("q")))),
    ("p ∧ q ∧ r", conj(var("p"), conj(var("q"), var("r")))),
    ("p → q → r", imp(var("p"), imp(var("q"), var("r")))),
    ("p ∧ q → r", imp(conj(var("p"), var("q")), var("r"))),
    ("p ∨ q ∧ r", disj(var("p"), conj(var("q"), var("r")))),
    ("p → q ↔ r", iff(imp(var("p"), var("q")), var("r"))),
    ("p ↔ q → r", iff(var("p"), imp(var("q"), var("r")))),
    ("p -> q", imp(var("p"), var("q"))),
    ("¬¬p", neg(neg(var("p")))),
])
def test_formula_precedences(text, expected):
    assert _parse_formula(text) == expected


@pytest.mark.parametrize("text", ["p ↔ q ↔ r", "p ∧", "(p", "p q", "Not p", "p ∧ s", "p ⋀ q"])
def test_bad_formulas(text):
    with pytest.raises(ProofError):
        _parse_formula(text)


# ---------------------------------------------------------------------------------------------
# robustness: never raises, bounded work


def test_never_raises_on_mutations():
    rng = random.Random(1)
    alphabet = list("()⟨⟩,.;:|_?=> \n·¬∧∨→↔hpqabxyz12") + ["exact", "intro", "by", "fun", "cases", "with"]
    for statement, proof in GOOD[::3]:
        for _ in range(20):
            text = list(proof)
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(text) + 1)
                op = rng.random()
                if op < 0.4 and text:
                    del text[min(i, len(text) - 1)]
                elif op < 0.8:
                    text.insert(i, rng.choice(alphabet))
                else:
                    text[i:i] = list(rng.choice(alphabet))
            r = check(statement, "".join(text))
            assert isinstance(r, CheckResult)


def test_wrong_argument_types_do_not_raise():
    assert not check(None, "x").ok  # type: ignore[arg-type]
    assert not check(AND_COMM, 42).ok  # type: ignore[arg-type]


def test_limits():
    r = check(AND_COMM, "by\n  intro h\n  exact ⟨h.2, h.1⟩" + " " * MAX_PROOF_CHARS)
    assert not r.ok and r.unsupported
    deep = "fun h => " + "(" * 200 + "⟨h.2, h.1⟩" + ")" * 200
    r = check(AND_COMM, deep)
    assert not r.ok and "nested" in r.message
    deep_formula = "theorem prop_t_060 (p : Prop) : " + "¬" * 500 + "p → " + "¬" * 500 + "p"
    assert not check(deep_formula, "fun h => h").ok
    # exponentially many goals from a short text are cut off, not computed
    n = 16
    st = "theorem prop_t_061 (p : Prop) : " + " ∧ ".join(["(p ∨ p)"] * n) + " → p"
    pat = "⟨" + ", ".join(f"a{i} | b{i}" for i in range(n)) + "⟩"
    r = check(st, f"by\n  intro h\n  rcases h with {pat}\n  exact a0")
    assert not r.ok and "expensive" in r.message


def test_check_is_fast_enough():
    # not a benchmark (see scripts/bench_prop_checker.py), a guard against accidental blow-ups
    import time
    start = time.process_time()
    for statement, proof in GOOD:
        check(statement, proof)
    assert time.process_time() - start < 2.0


# ---------------------------------------------------------------------------------------------
# the shipped splits


@pytest.mark.parametrize("path", SPLITS, ids=lambda p: p.name)
def test_every_split_row_passes(path):
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} not generated yet")
    failures = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            r = check(row["statement"], row["proof"])
            if not r.ok:
                failures.append((n, row.get("id"), r.message, r.line, r.col))
    assert not failures, f"{len(failures)} rows fail, first: {failures[:5]}"


# ---------------------------------------------------------------------------------------------
# spellings: each alternative spelling is accepted exactly where Lean's grammar accepts it
# (docs/prop_fragment.md, "Spellings"). `↦` is only the arrow of `fun`/`λ` (Lean's `basicFun`);
# the alternatives of `cases` take `=>` only (`inductionAlt`), so `↦` there must fail wherever it is.

EM_CASES = "theorem prop_t_050 (p q : Prop) : q → q ∨ ¬q"
MAPSTO_IN_ALTERNATIVES = [
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp ↦ exact Or.inr hp\n  | inr hq => exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp => exact Or.inr hp\n  | inr hq ↦ exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp ↦ exact Or.inr hp\n  | inr hq ↦ exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp ↦\n    exact Or.inr hp\n  | inr hq =>\n    exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  have h2 : q ∨ p := by\n    cases h with\n    | inl hp ↦ exact Or.inr hp\n    | inr hq => exact Or.inl hq\n  exact h2"),
    (OR_COMM, "by\n  intro h\n  refine ?_\n  · cases h with\n    | inl hp => exact Or.inr hp\n    | inr hq ↦ exact Or.inl hq"),
    (EM_CASES, "by\n  intro hq\n  cases Classical.em q with\n  | inl h ↦ exact Or.inl h\n  | inr h => exact Or.inr h"),
    (AND_COMM, "by\n  intro h\n  cases h with\n  | intro hp hq ↦ exact ⟨hq, hp⟩"),
    (AND_COMM, "by\n  intro h\n  cases h with\n  | intro hp hq ↦\n    exact ⟨hq, hp⟩"),
    (AND_COMM, "by\n  intro h\n  exact (by\n    cases h with\n    | intro hp hq ↦ exact ⟨hq, hp⟩)"),
    # the ASCII arrow is `→` in a proposition, never the arrow of an alternative or a `fun`
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp -> exact Or.inr hp\n  | inr hq => exact Or.inl hq"),
    (AND_COMM, "fun h -> ⟨h.2, h.1⟩"),
    (AND_COMM, "fun h → ⟨h.2, h.1⟩"),
    # and `=>`/`↦` are not a proposition's arrow
    (AND_COMM, "fun (h : p ∧ q ↦ q) => h.2"),
]


@pytest.mark.parametrize("statement,proof", MAPSTO_IN_ALTERNATIVES,
                         ids=[f"alias{i}" for i in range(len(MAPSTO_IN_ALTERNATIVES))])
def test_aliases_are_refused_where_lean_refuses_them(statement, proof):
    r = check(statement, proof)
    assert not r.ok, f"{statement} := {proof}"


def test_the_refused_aliases_are_the_only_fault():
    """With `=>` for the alternatives' `↦`, each proof above passes: the alias is what fails it."""
    for statement, proof in MAPSTO_IN_ALTERNATIVES[:10]:
        r = check(statement, proof.replace("↦", "=>"))
        assert r.ok, f"{statement} := {proof}\n-> {r}"


SPELLINGS_LEAN_ACCEPTS = [
    (AND_COMM, "fun h ↦ ⟨h.2, h.1⟩"),
    (AND_COMM, "λ h => ⟨h.2, h.1⟩"),
    (AND_COMM, "fun ⟨hp, hq⟩ ↦ ⟨hq, hp⟩"),
    (AND_COMM, "fun (h : p ∧ q) ↦ ⟨h.2, h.1⟩"),
    (AND_COMM, "fun (h : p ∧ q) => (⟨h.2, h.1⟩ : q ∧ p)"),
    (OR_COMM, "fun h => Or.elim h (fun hp ↦ Or.inr hp) (λ hq => Or.inl hq)"),
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp => exact Or.inr hp\n  | inr hq => exact Or.inl hq"),
    (OR_COMM, "by\n  intro h\n  cases h with\n  | inl hp =>\n    have h3 : p → q ∨ p := fun x ↦ Or.inr x\n    exact h3 hp\n  | inr hq => exact Or.inl hq"),
    (SYLL, "fun (hpq : p -> q) (hqr : q → r) hp => hqr (hpq hp)"),
    ("theorem prop_t_051 (p q : Prop) : (p -> q) -> p -> q", "fun h hp => h hp"),
    (AND_COMM, "by\n  intro h\n  constructor\n  . exact h.2\n  · exact h.1"),
]


@pytest.mark.parametrize("statement,proof", SPELLINGS_LEAN_ACCEPTS,
                         ids=[f"spelling{i}" for i in range(len(SPELLINGS_LEAN_ACCEPTS))])
def test_aliases_are_accepted_where_lean_accepts_them(statement, proof):
    r = check(statement, proof)
    assert r.ok, f"{statement} := {proof}\n-> {r}"


def test_the_lexer_keeps_every_spelling():
    """No token is rewritten into another before the grammar sees it: the parser decides per place."""
    from lean_env.prop.lexer import lex

    texts = [t.text for t in lex("fun x ↦ y => z -> w → v λ · .")][:-1]
    assert texts == ["fun", "x", "↦", "y", "=>", "z", "->", "w", "→", "v", "λ", "·", "."]
