"""The generator's reader of propositional statements and formulas.

It reads what the generator itself writes: statements printed by `theorems.statement_of`
(`theorem NAME (p q : Prop) (h : A) : GOAL`), bare formulas, and the schema notation of
`theorems.py` (metavariables `A`, `B`, … that no statement declares, ASCII spellings `->`, `<->`,
`/\\`, `\\/`).  Precedences come from `lean_env/prop/formula.py` (`BINARY`), the same table
`show` prints with, so reading back a printed formula gives the same tree.

Why a second parser beside the checker's (`lean_env/prop/syntax.py`): the generator is the checker's
test oracle.  Every proof it renders must pass the checker (tests/test_prop_generator.py) and real Lean
(tests/test_real_lean.py); if both read statements with one parser, a misreading in that parser would
make the generator prove the misread theorem and the checker accept it, and the tests would pass while
Lean disagrees.  Kept apart, a parser bug on either side shows up as a failed check.  The two also
want different things: the checker's parser is strict (declared variables only, Lean's layout rules,
names restricted to the fragment) and positions every error in the text Lean sees; this one is
lenient (undeclared metavariables, ASCII notation) and only ever reads trusted, generated text.
`lean_env.propgen` imports nothing from the checker (tests/test_prop_generator.py checks it).
"""

from __future__ import annotations

import re

from lean_env.prop.formula import BINARY, MAX_PREC, NOT_ARG_PREC, Formula


class ParseError(ValueError):
    pass


_TOKEN = re.compile(r"\s*(⟨|⟩|\(|\)|\{|\}|:|¬|∧|∨|→|↔|<->|->|/\\|\\/|[A-Za-z_][A-Za-z0-9_'.]*)")
# symbol -> (tag, precedence, min precedence of the left operand, of the right operand)
_BIN = {sym: (tag, p, lp, rp) for tag, (sym, p, lp, rp) in BINARY.items()}
_ASCII = {"->": "→", "<->": "↔", "/\\": "∧", "\\/": "∨"}


def _tokens(text: str) -> list[str]:
    out, i = [], 0
    text = text.rstrip()
    while i < len(text):
        m = _TOKEN.match(text, i)
        if not m:
            raise ParseError(f"unexpected character at {i}: {text[i:i + 10]!r}")
        tok = m.group(1)
        out.append(_ASCII.get(tok, tok))
        i = m.end()
    return out


class _FormulaParser:
    def __init__(self, toks: list[str]):
        self.toks = toks
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, tok=None):
        t = self.peek()
        if t is None or (tok is not None and t != tok):
            raise ParseError(f"expected {tok!r}, got {t!r}")
        self.i += 1
        return t

    def expr(self, min_prec: int = 0) -> Formula:
        t = self.take()
        if t == "¬":
            left, level = ("not", self.expr(NOT_ARG_PREC)), MAX_PREC
        elif t == "(":
            left, level = self.expr(0), MAX_PREC
            self.take(")")
        elif t == "True":
            left, level = ("true",), MAX_PREC
        elif t == "False":
            left, level = ("false",), MAX_PREC
        elif t in ("Not",):
            left, level = ("not", self.expr(MAX_PREC)), MAX_PREC
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_']*", t):
            left, level = ("var", t), MAX_PREC
        else:
            raise ParseError(f"unexpected token {t!r}")
        while True:
            op = self.peek()
            if op not in _BIN:
                return left
            tag, p, lmin, rmin = _BIN[op]
            if p < min_prec:
                return left
            if level < lmin:
                raise ParseError(f"operator {op} needs parentheses (non-associative)")
            self.take()
            right = self.expr(rmin)
            left, level = (tag, left, right), p


def parse_formula(text: str) -> Formula:
    p = _FormulaParser(_tokens(text))
    f = p.expr(0)
    if p.peek() is not None:
        raise ParseError(f"trailing tokens: {p.toks[p.i:]}")
    return f


def parse_statement(statement: str) -> tuple[str, list[str], list[tuple[str, Formula]], Formula]:
    """`theorem NAME (p q : Prop) (h : p ∧ q) : GOAL` -> (name, prop variables, hypotheses, goal)."""
    toks = _tokens(statement)
    i = 0
    if toks and toks[0] in ("theorem", "lemma", "example"):
        i = 1
    name = ""
    if toks[0] != "example":
        name = toks[i]
        i += 1
    vars_: list[str] = []
    hyps: list[tuple[str, Formula]] = []
    while i < len(toks) and toks[i] in ("(", "{"):
        close = ")" if toks[i] == "(" else "}"
        j = toks.index(":", i)
        k = j + 1
        depth = 0
        while not (toks[k] == close and depth == 0):
            depth += toks[k] in ("(", "{")
            depth -= toks[k] in (")", "}")
            k += 1
        names = toks[i + 1:j]
        body = toks[j + 1:k]
        if body == ["Prop"]:
            vars_ += names
        else:
            f = _FormulaParser(body).expr(0)
            hyps += [(n, f) for n in names]
        i = k + 1
    if i >= len(toks) or toks[i] != ":":
        raise ParseError("expected ':' before the goal")
    p = _FormulaParser(toks[i + 1:])
    goal = p.expr(0)
    if p.peek() is not None:
        raise ParseError(f"trailing tokens: {p.toks[p.i:]}")
    return name, vars_, hyps, goal
