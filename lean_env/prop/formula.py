"""Propositional formulas: the one representation shared by the checker, the prover and the generators.

A formula is a plain tuple, so it is hashable, cheap to compare and cheap to build in the hot loop:

    ("var", "p")   ("true",)   ("false",)   ("not", a)
    ("and", a, b)  ("or", a, b)  ("imp", a, b)  ("iff", a, b)

`show` prints Lean 4 syntax with the fewest parentheses Lean's own precedences allow
(core notation: `¬` is `notation:max "¬" p:40`, `∧` infixr 35, `∨` infixr 30, `→` infixr 25,
`↔` infix 20, i.e. non-associative), so a printed formula parses back to the same tree in Lean.
"""

from __future__ import annotations

Formula = tuple

TRUE: Formula = ("true",)
FALSE: Formula = ("false",)


def var(name: str) -> Formula:
    return ("var", name)


def neg(a: Formula) -> Formula:
    return ("not", a)


def conj(a: Formula, b: Formula) -> Formula:
    return ("and", a, b)


def disj(a: Formula, b: Formula) -> Formula:
    return ("or", a, b)


def imp(a: Formula, b: Formula) -> Formula:
    return ("imp", a, b)


def iff(a: Formula, b: Formula) -> Formula:
    return ("iff", a, b)


# (symbol, precedence of the node, min precedence of the left operand, of the right operand)
BINARY = {
    "and": ("∧", 35, 36, 35),
    "or": ("∨", 30, 31, 30),
    "imp": ("→", 25, 26, 25),
    "iff": ("↔", 20, 21, 21),
}
NOT_ARG_PREC = 40
MAX_PREC = 1024


def prec(f: Formula) -> int:
    tag = f[0]
    if tag in BINARY:
        return BINARY[tag][1]
    return MAX_PREC  # atoms and ¬ (notation:max)


def show(f: Formula) -> str:
    """Lean 4 text of `f`, minimally parenthesised."""
    tag = f[0]
    if tag == "var":
        return f[1]
    if tag == "true":
        return "True"
    if tag == "false":
        return "False"
    if tag == "not":
        return "¬" + _wrap(f[1], NOT_ARG_PREC)
    sym, _, lp, rp = BINARY[tag]
    return f"{_wrap(f[1], lp)} {sym} {_wrap(f[2], rp)}"


def _wrap(f: Formula, min_prec: int) -> str:
    s = show(f)
    return f"({s})" if prec(f) < min_prec else s


def variables(f: Formula, acc: list[str] | None = None) -> list[str]:
    """Variable names in order of first occurrence (left to right)."""
    if acc is None:
        acc = []
    tag = f[0]
    if tag == "var":
        if f[1] not in acc:
            acc.append(f[1])
    elif tag == "not":
        variables(f[1], acc)
    elif tag in BINARY:
        variables(f[1], acc)
        variables(f[2], acc)
    return acc


def rename(f: Formula, mapping: dict[str, str]) -> Formula:
    tag = f[0]
    if tag == "var":
        return ("var", mapping.get(f[1], f[1]))
    if tag == "not":
        return ("not", rename(f[1], mapping))
    if tag in BINARY:
        return (tag, rename(f[1], mapping), rename(f[2], mapping))
    return f


def size(f: Formula) -> int:
    """Number of connectives and atoms."""
    tag = f[0]
    if tag == "not":
        return 1 + size(f[1])
    if tag in BINARY:
        return 1 + size(f[1]) + size(f[2])
    return 1
