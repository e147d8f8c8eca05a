"""The proof generator: many valid Lean 4 proofs of one propositional theorem, in different styles.

Every proof is rendered (`render.py`) from the one natural-deduction term the prover (`prover.py`)
finds; the styles (`styles.py`) differ in how that term is written down, and each proof starts with
`by` (the model is prompted with `statement + " := by"`).  `render(statement, style, naming)` is
deterministic; `sample_proofs` draws (style, naming) pairs from the priors with the caller's
`random.Random`, optionally conditioned on a length budget.

Length budget.  `style_lengths(statement, count)` gives each style's shortest length (over namings)
in characters or any `count` (`lean_tokens` for the design budget); `fits_budget` says whether some
style fits a budget, and `budget_report(statements, budgets, count)` gives the fraction of theorems
where a common style fits, where only rare styles fit, and where nothing fits.  The theorem generator
(`theorems.py`) keeps only theorems with some proof within `DESIGN_BUDGET_TOKENS`; the measured
fractions for the shipped splits are in docs/results.md.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Callable, Iterable

from lean_env.propgen.prover import prove
from lean_env.propgen.render import Renderer
from lean_env.propgen.statements import parse_statement
from lean_env.propgen.styles import COMMON_STYLES, NAMINGS, PRIOR, RARE_STYLES, STYLES, lean_tokens


@lru_cache(maxsize=50_000)
def _analyse(statement: str):
    name, vars_, hyps, goal = parse_statement(statement)
    proof = prove(dict(hyps), goal)
    if proof is None:
        raise ValueError(f"not a valid theorem: {statement}")
    reserved = set(vars_) | {n for n, _ in hyps} | {name}
    return proof, goal, hyps, frozenset(reserved)


@lru_cache(maxsize=200_000)
def render(statement: str, style: str, naming: str = "hnum") -> str:
    """The proof of `statement` in `style` with hypothesis naming scheme `naming` (deterministic)."""
    proof, goal, hyps, reserved = _analyse(statement)
    return Renderer(STYLES[style], naming, reserved).render(proof, goal, list(hyps))


def render_all(statement: str) -> dict[tuple[str, str], str]:
    """Every (style, naming) rendering of one theorem."""
    return {(s, n): render(statement, s, n) for s in STYLES for n in NAMINGS}


def style_lengths(statement: str, count: Callable[[str], int] = len, naming: str | None = None) -> dict[str, int]:
    """Length of the proof in each style (`count`: len for characters, or a tokenizer's counter).

    With `naming=None` the shortest over the naming schemes (the budget a style needs at best)."""
    out = {}
    for s in STYLES:
        namings = NAMINGS if naming is None else (naming,)
        out[s] = min(count(render(statement, s, n)) for n in namings)
    return out


# styles in the order they are usually shortest (for an early exit in `fits_budget`)
_COMPACT_FIRST = ("oneliner", "term", "intro_exact", "term_verbose", "structured", "forward", "casework",
                  "backward", "annotated")


def fits_budget(statement: str, budget: int, count: Callable[[str], int] = len) -> bool:
    """Does some style × naming prove `statement` within `budget` (same as min(style_lengths) <= budget)?"""
    return any(count(render(statement, s, n)) <= budget for s in _COMPACT_FIRST for n in NAMINGS)


def only_rare_fits(lengths: dict[str, int], budget: int) -> bool:
    """Every common style exceeds the budget while some rare style fits it."""
    return all(lengths[s] > budget for s in COMMON_STYLES) and any(lengths[s] <= budget for s in RARE_STYLES)


def budget_report(statements: list[str], budgets: Iterable[int], count: Callable[[str], int] = len) -> dict:
    """Per budget: fraction of theorems where a common style fits, where only rare styles fit, where none fits."""
    lens = [style_lengths(st, count) for st in statements]
    report = {}
    for b in budgets:
        common = sum(any(ln[s] <= b for s in COMMON_STYLES) for ln in lens)
        rare_only = sum(only_rare_fits(ln, b) for ln in lens)
        none = sum(all(v > b for v in ln.values()) for ln in lens)
        n = max(len(lens), 1)
        report[b] = {"common_fits": common / n, "only_rare_fits": rare_only / n, "none_fits": none / n}
    return report


def _draw(rng: random.Random, table: dict[str, float]) -> str:
    x = rng.random() * sum(table.values())
    for k, w in table.items():
        x -= w
        if x < 0:
            return k
    return k


def sample_style(rng: random.Random) -> tuple[str, str]:
    return _draw(rng, PRIOR), _draw(rng, NAMINGS)


def sample_proofs(statement: str, n: int, rng: random.Random, max_chars: int | None = None, *,
                  max_tokens: int | None = None, return_styles: bool = False) -> list:
    """n proofs of `statement`, i.i.d. from the style prior × naming prior (duplicates are expected:
    the frequencies are the point).  With `max_chars` (characters) and/or `max_tokens`
    (`lean_tokens`), the prior is conditioned on the proof fitting (the style × naming draws that do
    not fit are removed and the rest renormalised); if nothing fits, the list is empty.
    With `return_styles`, items are (proof, style, naming)."""
    limited = max_chars is not None or max_tokens is not None
    if limited:
        fitting = {}
        for s in STYLES:
            for nm in NAMINGS:
                text = render(statement, s, nm)
                if max_chars is not None and len(text) > max_chars:
                    continue
                if max_tokens is not None and lean_tokens(text) > max_tokens:
                    continue
                fitting[(s, nm)] = PRIOR[s] * NAMINGS[nm]
        if not fitting:
            return []
    out = []
    for _ in range(n):
        if not limited:
            s, nm = sample_style(rng)
        else:
            x = rng.random() * sum(fitting.values())
            for (s, nm), w in fitting.items():
                x -= w
                if x < 0:
                    break
        text = render(statement, s, nm)
        out.append((text, s, nm) if return_styles else text)
    return out
