"""The benchmark generator of the embedded `prop` benchmark: theorems, their proofs, the splits.

A program of its own beside the checker (`lean_env/prop/`), which it is used to test: it shares only
the formula representation (`lean_env/prop/formula.py`) and imports nothing of the checker.

    prover.py      a decision procedure for propositional logic returning natural-deduction terms
    theorems.py    the seeded theorem generator (graded levels, dedup up to renaming, reference proofs)
    styles.py      the proof styles, their prior, the naming schemes, `lean_tokens`, the design budget
    render.py      one term written out as Lean 4 text in one style
    proofs.py      many proofs of one theorem: `render`, `sample_proofs`, the length-budget helpers
    statements.py  the generator's own reader of statements and formulas (why not the checker's: there)

Callers outside this package (the pretraining corpus, `scripts/make_prop_splits.py`) use only the
names below.
"""

from lean_env.propgen.proofs import budget_report, fits_budget, render, render_all, sample_proofs, style_lengths
from lean_env.propgen.prover import CLASSICAL, INTUITIONISTIC
from lean_env.propgen.statements import ParseError, parse_formula, parse_statement
from lean_env.propgen.styles import (COMMON_STYLES, DESIGN_BUDGET_TOKENS, NAMINGS, PRIOR, RARE_STYLES, STYLES,
                                     lean_tokens)
from lean_env.propgen.theorems import (EVAL_LEVELS, PRETRAIN_LEVELS, TRAIN_LEVELS, canonical_key, generate,
                                       reference_proof, statement_of)

__all__ = [
    "CLASSICAL", "COMMON_STYLES", "DESIGN_BUDGET_TOKENS", "EVAL_LEVELS", "INTUITIONISTIC", "NAMINGS", "PRETRAIN_LEVELS",
    "PRIOR", "ParseError", "RARE_STYLES", "STYLES", "TRAIN_LEVELS", "budget_report", "canonical_key", "fits_budget",
    "generate", "lean_tokens", "parse_formula", "parse_statement", "reference_proof", "render", "render_all",
    "sample_proofs", "statement_of", "style_lengths",
]
