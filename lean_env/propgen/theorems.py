"""The seeded theorem generator: valid propositional theorems at graded difficulty.

`generate(seed, n)` draws candidate formulas from a mix of families, proves each with the prover
(`prover.py`) and keeps the valid, non-trivial, new ones until every level quota is
filled.  Everything is a pure function of the seed (no set iteration order, no hash seed leaks).

Families (weights in `FAMILIES`):
- `schema`: a classic schema (implication chains, ∧/∨ commutativity and associativity,
  distributivity, currying, contraposition, De Morgan's intuitionistic directions, ¬¬-introduction,
  ↔ reasoning, case analysis, ex falso, …) whose metavariables are instantiated with atoms or, at
  higher complexity, small formulas;
- `classical`: classical-only schemas (Peirce, excluded middle, double-negation elimination, the
  classical De Morgan direction, material implication, …) instantiated the same way;
- `permutation`: `A₁ ∧ … ∧ Aₖ ↔ Aσ(1) ∧ … ∧ Aσ(k)` (or ∨, or one direction) with random
  bracketings on both sides: associativity and commutativity at scale (their proofs are long in the
  tactic styles and short with `<;>`);
- `random`: random `H1 → … → Hk → C` formulas kept when valid (all hypotheses used).

Non-trivial means: 2–5 variables, no `X ∧ X`/`X ∨ X`/`X → X`/`X ↔ X` subformula, no unused top-level
hypothesis, and a proof that is more than "introduce, then name a hypothesis".

Difficulty: `n_vars`, `depth` (connective depth), `size`, `proof_len` (node count of the prover's
natural-deduction term) and the logic give a score, and the score gives the level 1–5 (`level_of`).
Quotas per level (`TRAIN_LEVELS`, `EVAL_LEVELS`) and for classical theorems (10%, spread over levels
2–5 by `CLASSICAL_LEVELS`) shape the split.  A theorem is kept only if some proof style proves it
within `DESIGN_BUDGET_TOKENS` lean_tokens (see `styles.py`): every theorem is possible
at the design budget, and the long ones (most of L4–L5) only in a rare, compact style.

The reference proof of a row is the shortest rendering over the styles (naming `hnum`).

Deduplication is up to renaming of variables: `canonical_key` renames variables in order of first
occurrence (p, q, r, s, t, …) and prints the formula; two statements that differ only by renaming
have the same key, and `exclude_keys` keeps another split's theorems out.
"""

from __future__ import annotations

import random
from typing import Iterable

from lean_env.prop.formula import FALSE, Formula, rename, show, size, variables
from lean_env.propgen.proofs import fits_budget, render
from lean_env.propgen.prover import CLASSICAL, INTUITIONISTIC, free_vars, prove
from lean_env.propgen.statements import parse_formula, parse_statement
from lean_env.propgen.styles import DESIGN_BUDGET_TOKENS, STYLES, lean_tokens

VAR_NAMES = ("p", "q", "r", "s", "t")

# level -> share of the split. Levels 1–2 give the base model its easy and medium problems; levels
# 3–4 are where, under the design budget, the common proof styles no longer fit and only a compact
# rare style does (the benchmark's trap for mode-seeking training; calibration: docs/results.md).
# Level 5 stays in, small: at the design budget few level-5 theorems have any proof that fits.
TRAIN_LEVELS = {1: 0.35, 2: 0.30, 3: 0.23, 4: 0.09, 5: 0.03}
EVAL_LEVELS = dict(TRAIN_LEVELS)
# The pretraining corpus's extra theorems and the validation split: the same mix.
PRETRAIN_LEVELS = dict(TRAIN_LEVELS)
CLASSICAL_FRACTION = 0.10
# how the classical theorems spread over the levels (classical proofs are never level-1 short)
CLASSICAL_LEVELS = {1: 0.0, 2: 0.3, 3: 0.45, 4: 0.25, 5: 0.0}  # no classical level-5 theorem fits the design budget

INTUITIONISTIC_SCHEMAS = [
    "(A → B) → (B → C) → A → C",
    "(A → B) → (B → C) → (C → D) → A → D",
    "(B → C) → (A → B) → A → C",
    "A → (A → B) → B",
    "(A → B → C) → B → A → C",
    "(A → B → C) → (A → B) → A → C",
    "A ∧ B → B ∧ A",
    "A ∧ B ↔ B ∧ A",
    "A ∨ B → B ∨ A",
    "A ∨ B ↔ B ∨ A",
    "(A ∧ B) ∧ C → A ∧ B ∧ C",
    "(A ∧ B) ∧ C ↔ A ∧ B ∧ C",
    "(A ∨ B) ∨ C → A ∨ B ∨ C",
    "(A ∨ B) ∨ C ↔ A ∨ B ∨ C",
    "A ∧ (B ∨ C) ↔ A ∧ B ∨ A ∧ C",
    "A ∧ (B ∨ C) → A ∧ B ∨ A ∧ C",
    "A ∧ B ∨ A ∧ C → A ∧ (B ∨ C)",
    "A ∨ B ∧ C ↔ (A ∨ B) ∧ (A ∨ C)",
    "(A ∨ B) ∧ (A ∨ C) → A ∨ B ∧ C",
    "A ∨ B ∧ C → (A ∨ B) ∧ (A ∨ C)",
    "(A ∧ B → C) ↔ (A → B → C)",
    "(A ∧ B → C) → A → B → C",
    "(A → B → C) → A ∧ B → C",
    "(A → B) → ¬B → ¬A",
    "(A → ¬B) → B → ¬A",
    "¬(A ∨ B) ↔ ¬A ∧ ¬B",
    "¬(A ∨ B) → ¬A ∧ ¬B",
    "¬A ∧ ¬B → ¬(A ∨ B)",
    "¬A ∨ ¬B → ¬(A ∧ B)",
    "(A → ¬B) ↔ ¬(A ∧ B)",
    "A → ¬¬A",
    "¬¬¬A ↔ ¬A",
    "¬¬¬A → ¬A",
    "¬¬(A ∨ ¬A)",
    "¬¬(¬¬A → A)",
    "(A → B) → ¬¬A → ¬¬B",
    "¬¬(A ∧ B) ↔ ¬¬A ∧ ¬¬B",
    "¬¬(A → B) → ¬¬A → ¬¬B",
    "(A ↔ B) → (B ↔ C) → (A ↔ C)",
    "(A ↔ B) → (B ↔ A)",
    "(A ↔ B) → A → B",
    "(A ↔ B) ↔ (A → B) ∧ (B → A)",
    "(A → B) → (B → A) → (A ↔ B)",
    "(A → C) → (B → C) → A ∨ B → C",
    "(A → C) → (B → D) → A ∨ B → C ∨ D",
    "(A → C) → (B → D) → A ∧ B → C ∧ D",
    "(A ∨ B → C) ↔ (A → C) ∧ (B → C)",
    "(A → B ∧ C) ↔ (A → B) ∧ (A → C)",
    "(A → B) → (A → C) → A → B ∧ C",
    "A ∧ (A ∨ B) ↔ A",
    "A ∨ A ∧ B ↔ A",
    "A → ¬A → B",
    "¬A → A → B",
    "A ∧ ¬A → B",
    "False → A",
    "(A → B) → A ∨ C → B ∨ C",
    "A ∨ B → ¬A → B",
    "(A ∨ B) ∧ ¬A → B",
    "(A ↔ B) → (C ↔ D) → (A ∧ C ↔ B ∧ D)",
    "(A ↔ B) → (C ↔ D) → (A ∨ C ↔ B ∨ D)",
    "(A ↔ B) → (A ∨ C ↔ B ∨ C)",
    "(A ↔ B) → (¬A ↔ ¬B)",
    "((A → B) → C) → B → C",
    "A ∧ B → A ∨ B",
    "¬(A ↔ ¬A)",
    "(A → ¬A) → ¬A",
    "(¬A → A) → ¬¬A",
    "A ∨ ¬A → ¬¬A → A",
    "(A → B) → (C → D) → A ∨ C → B ∨ D",
    "A ∧ (B ∧ C) → C ∧ (B ∧ A)",
    "A ∨ (B ∨ C) → C ∨ (B ∨ A)",
    "(A → B) ∧ (B → C) → A → C",
    "(A → B) ∧ (C → B) → A ∨ C → B",
    "(A → B ∨ C) → (B → D) → (C → D) → A → D",
    "(A ∧ B) ∨ (A ∧ C) ↔ A ∧ (B ∨ C)",
    "(A ∨ B) ∧ (C ∨ D) → (A ∧ C ∨ A ∧ D) ∨ (B ∧ C ∨ B ∧ D)",
    "(A ↔ B) ∧ (B ↔ C) → (C ↔ A)",
    "¬(A ∨ B) → ¬A",
    "(A → B) → (A → ¬B) → ¬A",
    "(A ∨ B → A ∧ B) → (A ↔ B)",
]

CLASSICAL_SCHEMAS = [
    "((A → B) → A) → A",
    "A ∨ ¬A",
    "¬¬A → A",
    "(¬B → ¬A) → A → B",
    "¬(A ∧ B) → ¬A ∨ ¬B",
    "(A → B) → ¬A ∨ B",
    "(A → B) ∨ (B → A)",
    "¬(A → B) → A ∧ ¬B",
    "¬(A → B) → A",
    "(¬A → A) → A",
    "A ∨ (A → B)",
    "(¬A → B) → A ∨ B",
    "(A ↔ B) ∨ (A ↔ ¬B)",
    "¬(A ↔ B) → (A ↔ ¬B)",
    "(A → B ∨ C) → (A → B) ∨ (A → C)",
    "(¬A → ¬B) ↔ (B → A)",
    "((A → B) → B) → (B → A) → A",
    "(A → B) → (¬A → B) → B",
    "¬¬A ↔ A",
    "(¬A → B ∧ C) → (A ∨ B) ∧ (A ∨ C)",
]

FAMILIES = {"schema": 0.52, "classical": 0.13, "random": 0.23, "permutation": 0.12}


# --------------------------------------------------------------------------------------------------
# canonical forms


def canonical(f: Formula) -> Formula:
    """Rename variables in order of first occurrence to p, q, r, s, t (then v5, v6, …)."""
    vs = variables(f)
    names = list(VAR_NAMES) + [f"v{i}" for i in range(len(VAR_NAMES), len(vs))]
    # two steps, so that a renaming such as p ↦ q, q ↦ p cannot collide
    tmp = rename(f, {v: f"\x00{i}" for i, v in enumerate(vs)})
    return rename(tmp, {f"\x00{i}": names[i] for i in range(len(vs))})


def _statement_formula(statement: str) -> Formula:
    _, _, hyps, goal = parse_statement(statement)
    for _, h in reversed(hyps):
        goal = ("imp", h, goal)
    return goal


def canonical_key(statement_or_formula) -> str:
    """Key identifying a theorem up to renaming of its variables (statement text or formula tuple).

    Hypotheses given as binders `(h : A)` count as premises `A → …` of the goal."""
    if isinstance(statement_or_formula, str):
        text = statement_or_formula
        f = _statement_formula(text) if (":" in text and text.lstrip().startswith(("theorem", "lemma", "example"))) \
            else parse_formula(text)
    else:
        f = statement_or_formula
    return show(canonical(f))


def depth(f: Formula) -> int:
    tag = f[0]
    if tag == "not":
        return 1 + depth(f[1])
    if tag in ("and", "or", "imp", "iff"):
        return 1 + max(depth(f[1]), depth(f[2]))
    return 0


def statement_of(name: str, f: Formula) -> str:
    vs = variables(f)
    return f"theorem {name} ({' '.join(vs)} : Prop) : {show(f)}"


# --------------------------------------------------------------------------------------------------
# triviality filters


def _degenerate(f: Formula) -> bool:
    tag = f[0]
    if tag in ("and", "or", "imp", "iff"):
        if f[1] == f[2]:
            return True
        if _contradiction(f):
            return True  # X ∧ ¬X, X ↔ ¬X inside a formula: contrived (see _degenerate_theorem)
        if tag in ("and", "or") and (f[1] in (("true",), FALSE) or f[2] in (("true",), FALSE)):
            return True
        return _degenerate(f[1]) or _degenerate(f[2])
    if tag == "not":
        if f[1][0] == "not" and f[1][1][0] == "not" and f[1][1][1][0] == "not":
            return True
        if f[1][0] in ("true", "false"):
            return True
        return _degenerate(f[1])
    return False


def _contradiction(f: Formula) -> bool:
    return f[0] in ("and", "iff") and (f[1] == ("not", f[2]) or f[2] == ("not", f[1]))


def _degenerate_theorem(f: Formula) -> bool:
    """`_degenerate`, except that a contradiction is fine as a whole premise (`A ∧ ¬A → B`, ex falso)
    or as the whole negated goal (`¬(A ↔ ¬A)`)."""
    if f[0] == "not" and _contradiction(f[1]):
        return _degenerate(f[1][1]) or _degenerate(f[1][2])
    while f[0] == "imp":
        prem = f[1]
        if _contradiction(prem):
            if _degenerate(prem[1]) or _degenerate(prem[2]):
                return True
        elif _degenerate(prem):
            return True
        f = f[2]
    return _degenerate(f)


def _trivial_proof(term) -> bool:
    """Introduce-then-name proofs, and proofs that ignore a top-level hypothesis."""
    t = term
    binders = []
    while t[0] == "lam":
        binders.append(t[1])
        t = t[2]
    if t[0] == "var":
        return True
    fv = free_vars(t)
    # a top-level hypothesis that is never used (weakening) makes a silly theorem
    return any(b not in fv for b in binders)


# --------------------------------------------------------------------------------------------------
# candidate families


def _parse_schemas(texts: list[str]) -> list[Formula]:
    return [parse_formula(t) for t in texts]


_INT = None
_CLS = None


def _schemas():
    global _INT, _CLS
    if _INT is None:
        _INT = _parse_schemas(INTUITIONISTIC_SCHEMAS)
        _CLS = _parse_schemas(CLASSICAL_SCHEMAS)
    return _INT, _CLS


def random_formula(rng: random.Random, atoms: list[str], size_: int) -> Formula:
    """A random formula with about `size_` leaves over `atoms`."""
    if size_ <= 1:
        f = ("var", rng.choice(atoms))
        return ("not", f) if rng.random() < 0.2 else f
    x = rng.random()
    if x < 0.12:
        return ("not", random_formula(rng, atoms, size_))
    k = rng.randint(1, size_ - 1)
    tag = "and" if x < 0.40 else "or" if x < 0.62 else "imp" if x < 0.92 else "iff"
    return (tag, random_formula(rng, atoms, k), random_formula(rng, atoms, size_ - k))


def _metavars(f: Formula, acc: list[str]) -> list[str]:
    return variables(f, acc)


def instantiate(rng: random.Random, schema: Formula, complexity: int) -> Formula:
    """Replace the schema's metavariables by atoms (complexity 0) or small random formulas."""
    metas = _metavars(schema, [])
    n_atoms = min(5, max(2, len(metas) + rng.randint(0, complexity)))
    atoms = list(VAR_NAMES[:n_atoms])
    rng.shuffle(atoms)
    mapping = {}
    free_atoms = list(atoms)
    for m in metas:
        r = rng.random()
        if complexity == 0 or r < 0.55 - 0.1 * complexity:
            a = free_atoms.pop() if free_atoms else rng.choice(atoms)
            mapping[m] = ("var", a)
        elif r < 0.7 - 0.05 * complexity:
            a = free_atoms.pop() if free_atoms else rng.choice(atoms)
            mapping[m] = ("not", ("var", a))
        else:
            mapping[m] = random_formula(rng, atoms, rng.randint(2, 1 + complexity))
    return _subst_meta(schema, mapping)


def _subst_meta(f: Formula, mapping: dict) -> Formula:
    tag = f[0]
    if tag == "var":
        return mapping.get(f[1], f)
    if tag == "not":
        return ("not", _subst_meta(f[1], mapping))
    if tag in ("and", "or", "imp", "iff"):
        return (tag, _subst_meta(f[1], mapping), _subst_meta(f[2], mapping))
    return f


def random_implication(rng: random.Random, complexity: int) -> Formula:
    n_atoms = rng.randint(2, min(5, 3 + complexity))
    atoms = list(VAR_NAMES[:n_atoms])
    k = rng.randint(1, 2 + min(complexity, 2))
    hyps = [random_formula(rng, atoms, rng.randint(1, 2 + complexity)) for _ in range(k)]
    concl = random_formula(rng, atoms, rng.randint(1, 2 + complexity // 2))
    f = concl
    for h in reversed(hyps):
        f = ("imp", h, f)
    return f


def _bracket(rng: random.Random, tag: str, leaves: list[Formula]) -> Formula:
    if len(leaves) == 1:
        return leaves[0]
    k = rng.randint(1, len(leaves) - 1)
    return (tag, _bracket(rng, tag, leaves[:k]), _bracket(rng, tag, leaves[k:]))


def permutation(rng: random.Random, complexity: int) -> Formula:
    """`A₁ ∧ … ∧ Aₖ ↔ Aσ(1) ∧ … ∧ Aσ(k)` (or ∨, or one direction) with random bracketings:
    associativity and commutativity at scale."""
    k = rng.randint(3, 5)
    atoms = list(VAR_NAMES[:k])
    rng.shuffle(atoms)
    leaves: list[Formula] = []
    for a in atoms:
        r = rng.random()
        if r < 0.6 - 0.1 * complexity:
            leaves.append(("var", a))
        elif r < 0.8:
            leaves.append(("not", ("var", a)))
        else:
            leaves.append(random_formula(rng, atoms, 2))
    tag = "and" if rng.random() < 0.75 else "or"
    other = list(leaves)
    rng.shuffle(other)
    left, right = _bracket(rng, tag, leaves), _bracket(rng, tag, other)
    return ("iff" if rng.random() < 0.7 else "imp", left, right)


def _normalise_neg(f: Formula) -> Formula:
    """`a → False` is written `¬a` in statements."""
    tag = f[0]
    if tag == "imp" and f[2] == FALSE and f[1] != FALSE:
        return ("not", _normalise_neg(f[1]))
    if tag == "not":
        return ("not", _normalise_neg(f[1]))
    if tag in ("and", "or", "imp", "iff"):
        return (tag, _normalise_neg(f[1]), _normalise_neg(f[2]))
    return f


def candidate(rng: random.Random) -> tuple[str, Formula]:
    fam = rng.random()
    complexity = rng.choice((0, 0, 1, 1, 2, 3))
    ints, cls = _schemas()
    if fam < FAMILIES["schema"]:
        return "schema", instantiate(rng, rng.choice(ints), complexity)
    if fam < FAMILIES["schema"] + FAMILIES["classical"]:
        return "classical", instantiate(rng, rng.choice(cls), min(complexity, 2))
    if fam < FAMILIES["schema"] + FAMILIES["classical"] + FAMILIES["permutation"]:
        return "permutation", permutation(rng, complexity)
    return "random", random_implication(rng, complexity)


# --------------------------------------------------------------------------------------------------
# difficulty


def score(n_vars: int, depth_: int, size_: int, proof_len: int, logic: str) -> float:
    return proof_len + 1.5 * (n_vars - 2) + 0.5 * depth_ + 0.25 * size_ + (6 if logic == CLASSICAL else 0)


LEVEL_THRESHOLDS = (14.0, 22.0, 32.0, 45.0)  # score < t[0] -> level 1, … , >= t[3] -> level 5
MAX_PROOF_LEN = 90
MAX_STATEMENT_FORMULA_CHARS = 110


def level_of(s: float) -> int:
    for i, t in enumerate(LEVEL_THRESHOLDS):
        if s < t:
            return i + 1
    return 5


def analyse(f: Formula) -> dict | None:
    """Features of a candidate formula, or None when it is invalid or trivial."""
    f = canonical(_normalise_neg(f))
    vs = variables(f)
    if not 2 <= len(vs) <= 5 or _degenerate_theorem(f):
        return None
    if len(show(f)) > MAX_STATEMENT_FORMULA_CHARS:
        return None
    proof = prove([], f)
    if proof is None or _trivial_proof(proof.term):
        return None
    if proof.size > MAX_PROOF_LEN:
        return None
    d, sz = depth(f), size(f)
    sc = score(len(vs), d, sz, proof.size, proof.logic)
    return {"formula": f, "key": show(f), "logic": proof.logic, "n_vars": len(vs), "depth": d, "size": sz,
            "proof_len": proof.size, "score": sc, "level": level_of(sc)}


def reference_proof(statement: str) -> str:
    """The reference proof of a row: the shortest rendering over the styles (naming `hnum`),
    ties broken by the style prior's order."""
    best = None
    for style in STYLES:
        text = render(statement, style, "hnum")
        if best is None or len(text) < len(best):
            best = text
    return best


# --------------------------------------------------------------------------------------------------
# the generator


def _quotas(n: int, weights: dict[int, float]) -> dict[int, int]:
    raw = {k: n * w / sum(weights.values()) for k, w in weights.items()}
    q = {k: int(v) for k, v in raw.items()}
    rest = n - sum(q.values())
    for k in sorted(raw, key=lambda k: (q[k] - raw[k], k))[:rest]:
        q[k] += 1
    return q


def generate(seed: int, n: int, exclude_keys: Iterable[str] = frozenset(), *, split: str = "gen",
             id_width: int = 5, level_weights: dict[int, float] | None = None,
             classical_fraction: float = CLASSICAL_FRACTION, max_candidates: int = 2_000_000,
             max_shortest_tokens: int | None = DESIGN_BUDGET_TOKENS) -> list[dict]:
    """n theorems, deterministic in `seed`, none of whose canonical keys is in `exclude_keys`.

    `max_shortest_tokens`: keep only theorems that some proof style proves within this many
    `lean_tokens` (every theorem is possible at the design budget; the long ones only in a rare style).

    Rows: {"id", "statement", "proof", "logic", "n_vars", "depth", "proof_len", "level"}; ids are
    `prop-{split}-{i:0{id_width}d}` and theorem names `prop_{split}_{i:0{id_width}d}`."""
    rng = random.Random(seed)
    exclude = set(exclude_keys)
    seen: set[str] = set()
    level_q = _quotas(n, level_weights or TRAIN_LEVELS)
    n_classical = round(n * classical_fraction)
    cls_q = _quotas(n_classical, CLASSICAL_LEVELS)
    cls_q = {k: min(cls_q.get(k, 0), level_q[k]) for k in level_q}
    int_q = {k: level_q[k] - cls_q[k] for k in level_q}
    picked: list[dict] = []
    tries = 0
    while len(picked) < n:
        tries += 1
        if tries > max_candidates:
            missing = {k: (int_q[k], cls_q[k]) for k in level_q if int_q[k] or cls_q[k]}
            raise RuntimeError(f"could not fill the quotas after {max_candidates} candidates: {missing}")
        _, f = candidate(rng)
        info = analyse(f)
        if info is None or info["key"] in seen or info["key"] in exclude:
            continue
        q = cls_q if info["logic"] == CLASSICAL else int_q
        if q[info["level"]] <= 0:
            continue
        seen.add(info["key"])
        if max_shortest_tokens is not None and not fits_budget(
                statement_of("prop_measure_0", info["formula"]), max_shortest_tokens, lean_tokens):
            continue
        q[info["level"]] -= 1
        picked.append(info)
    # The quotas fill the common levels first and the rare (easy) ones last: shuffled, so that the
    # first N rows of a split (`dataset.eval_limit`, `train_limit`) have the split's level mix.
    rng.shuffle(picked)
    rows = []
    for i, info in enumerate(picked):
        num = f"{i:0{id_width}d}"
        statement = statement_of(f"prop_{split}_{num}", info["formula"])
        rows.append({
            "id": f"prop-{split}-{num}",
            "statement": statement,
            "proof": reference_proof(statement),
            "logic": info["logic"],
            "n_vars": info["n_vars"],
            "depth": info["depth"],
            "proof_len": info["proof_len"],
            "level": info["level"],
        })
    return rows


__all__ = [
    "CLASSICAL", "INTUITIONISTIC", "analyse", "canonical", "canonical_key", "depth", "generate", "level_of",
    "reference_proof", "statement_of",
]
