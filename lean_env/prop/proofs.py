r"""The proof generator: many valid Lean 4 proofs of one propositional theorem, in different styles.

Every proof is rendered from the one natural-deduction term the prover (`lean_env/prop/prover.py`)
finds; the styles differ in how that term is written down, and each proof starts with `by`
(the model is prompted with `statement + " := by"`).  Types are re-derived from the statement while
rendering (bidirectionally), so every `have`/`show` annotation is the statement's own formula.
Rendering is deterministic: `render(statement, style, naming)`; `sample_proofs` draws (style,
naming) pairs from the priors with the caller's `random.Random`.

Style prior (deliberately unequal: three verbose tactic styles take 72% of the mass, five rare
styles 3–5% each; "measured" is the frequency in 20,000 `sample_proofs` draws over the train split):

| style          | prior | measured | what it looks like |
|----------------|-------|----------|--------------------|
| `structured`   | 0.34  | 0.342    | `intro h1 h2`, `constructor` + `·` bullets, `cases h with \| inl … \| inr …`, `left`/`right`, `exfalso`, `exact` with projections `h.1`, `apply` when an argument would be a `fun` |
| `forward`      | 0.22  | 0.218    | `obtain ⟨a, b⟩ := h`, `rcases h with a \| b`, `refine ⟨?_, ?_⟩`, a `have` for every intermediate fact (`have h : A → B := by …`), `exact absurd a n` |
| `backward`     | 0.16  | 0.160    | one `intro` per line, `apply` chains, `apply And.intro`/`Iff.intro`/`Or.inl`/`Or.elim h`, `assumption` |
| `annotated`    | 0.08  | 0.079    | like `structured` with `intros`, `rcases` destructuring and a `show` before every step |
| `oneliner`     | 0.05  | 0.050    | `by intro ⟨a, b⟩; constructor <;> assumption`: one line, `;`, no bullets (goals in order), `<;>` when all branches run the same tactics, `contradiction`/`assumption` |
| `term`         | 0.05  | 0.052    | `by exact fun ⟨a, b⟩ c => …` with anonymous constructors, `Or.elim`, `absurd` |
| `intro_exact`  | 0.04  | 0.038    | `intro ⟨a, b⟩ c` then one `exact` term |
| `term_verbose` | 0.03  | 0.029    | `by exact fun h => And.intro h.right …` with `And.intro`, `Iff.intro`, `False.elim`, `.left`/`.mp` |
| `casework`     | 0.03  | 0.031    | `cases h with \| intro a b => …` for ∧, `cases` for ∨, `contradiction`, `assumption` |

`COMMON_STYLES` = structured, forward, backward; `RARE_STYLES` = the five at ≤ 5%.  On top of the
style a naming scheme is drawn independently: `hnum` (h1 h2 …) 0.35, `typed` (hp hq hnp hpq …) 0.30,
`letters` (a b c …) 0.20, `xyz` (x y z w …) 0.15.  A theorem has ~34 distinct renderings.

Length budget.  The verbose common styles grow faster with the size of a theorem than the compact
rare ones (`oneliner` above all, then `term`/`intro_exact`), so on the larger theorems every common
style exceeds a budget that a rare style still fits.  `lean_tokens` is a tokenizer-free token count
(≈ 0.83 × the tokens of a 768-entry byte-level BPE trained on sampled proofs, correlation 0.996);
`style_lengths(statement, count)` gives each style's shortest length (over namings) in characters or
any `count`, and `budget_report(statements, budgets, count)` the fraction of theorems where a common
style fits, where only rare styles fit, and where nothing fits.  The theorem generator keeps only
theorems with some proof of at most `DESIGN_BUDGET_TOKENS` = 72 lean_tokens; at that budget, on the
train split of the first level mix (14–24 % per level, shipped until 2026-12-01), only rare styles fit
on 22.3% of the theorems (0% fit none; L4 43%, L5 94%), with the shortest common proof a median 1.5×
longer than the shortest rare one; the current mix (weighted to levels 1–2) has ~5% such theorems
(tests/test_prop_generator.py).  That earlier split measured with the BPE: 22.6% rare-only at 64 tokens (3.3% none), 16.9% at 72 (0.1% none); in
characters: 22.0% at 180 (3.5% none), 16.9% at 200 (1.8% none).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

from lean_env.prop.formula import FALSE, Formula, show
from lean_env.prop.prover import Proof, prove, unfold

# --------------------------------------------------------------------------------------------------
# statements


class ParseError(ValueError):
    pass


_TOKEN = re.compile(r"\s*(⟨|⟩|\(|\)|\{|\}|:|¬|∧|∨|→|↔|<->|->|/\\|\\/|[A-Za-z_][A-Za-z0-9_'.]*)")
_BIN = {"∧": ("and", 35, 36, 35), "∨": ("or", 30, 31, 30), "→": ("imp", 25, 26, 25), "↔": ("iff", 20, 21, 21)}
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
            left, level = ("not", self.expr(40)), 1024
        elif t == "(":
            left, level = self.expr(0), 1024
            self.take(")")
        elif t == "True":
            left, level = ("true",), 1024
        elif t == "False":
            left, level = ("false",), 1024
        elif t in ("Not",):
            left, level = ("not", self.expr(1024)), 1024
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_']*", t):
            left, level = ("var", t), 1024
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


# --------------------------------------------------------------------------------------------------
# styles and the prior


@dataclass(frozen=True)
class Style:
    name: str
    weight: float
    mode: str = "tactic"  # tactic | linear | term | intro_exact
    intro: str = "merge"  # merge | each | intros
    destruct: str = "proj"  # proj | pattern | obtain | rcases | cases
    pair: str = "constructor"  # constructor | refine | apply | anon
    orelim: str = "cases"  # cases | rcases | obtain | apply | term
    orintro: str = "leftright"  # leftright | apply | exact
    efq: str = "exfalso"  # exfalso | absurd | contradiction | false_elim
    elim: str = "mixed"  # exact | apply | have | mixed (exact, or apply when an argument is a fun/⟨⟩/…)
    show: bool = False
    assumption: bool = False
    verbose: bool = False  # And.intro / Iff.intro / False.elim / .left .right .mp .mpr in terms
    combinator: bool = False  # `<;>` when both branches render the same
    bycontra: str = "apply"  # apply | exact


STYLES: dict[str, Style] = {
    s.name: s
    for s in [
        Style("structured", 0.34),
        Style("forward", 0.22, destruct="obtain", pair="refine", orelim="rcases", orintro="exact", efq="absurd",
              elim="have"),
        Style("backward", 0.16, intro="each", pair="apply", orelim="apply", orintro="apply", elim="apply",
              assumption=True),
        Style("annotated", 0.08, intro="intros", destruct="rcases", orelim="cases", show=True),
        Style("oneliner", 0.05, mode="linear", destruct="pattern", orelim="rcases", efq="contradiction",
              elim="exact", assumption=True, combinator=True),
        Style("term", 0.05, mode="term", destruct="pattern", bycontra="exact", elim="exact"),
        Style("intro_exact", 0.04, mode="intro_exact", destruct="pattern", bycontra="exact", elim="exact"),
        Style("term_verbose", 0.03, mode="term", verbose=True, bycontra="exact", elim="exact"),
        Style("casework", 0.03, intro="each", destruct="cases", orelim="cases", efq="contradiction",
              assumption=True),
    ]
}
PRIOR: dict[str, float] = {k: s.weight for k, s in STYLES.items()}
COMMON_STYLES = ("structured", "forward", "backward")
RARE_STYLES = tuple(k for k, w in PRIOR.items() if w <= 0.05)
NAMINGS: dict[str, float] = {"hnum": 0.35, "typed": 0.30, "letters": 0.20, "xyz": 0.15}

# The budget the theorem generator designs for: every generated theorem has a proof (in some style)
# of at most this many `lean_tokens`, and on roughly a fifth of them only rare styles fit.
DESIGN_BUDGET_TOKENS = 72

_LEX = re.compile(r"\n[ ]*|[A-Za-z_][A-Za-z0-9_']*|\d+|<;>|=>|\?_|\S")


def lean_tokens(text: str) -> int:
    """A tokenizer-free proxy for a proof's token count: identifiers, numbers, `<;>`, `=>`, `?_` and
    every other non-space character count one, a newline with its indentation counts one, spaces
    nothing.  On the shipped splits it correlates at 0.996 with a 768-token byte-level BPE trained on
    sampled proofs (BPE tokens ≈ 1.2 × lean_tokens, the same ratio within ±8% for every style)."""
    return len(_LEX.findall(text))

_LETTERS = "abcdefgkmnuvwxyz"
_XYZ = "xyzwuvabcdefgkmn"


def _draw(rng: random.Random, table: dict[str, float]) -> str:
    x = rng.random() * sum(table.values())
    for k, w in table.items():
        x -= w
        if x < 0:
            return k
    return k


# --------------------------------------------------------------------------------------------------
# formula helpers


def _arrow(f: Formula) -> tuple[Formula, Formula]:
    if f[0] == "imp":
        return f[1], f[2]
    if f[0] == "not":
        return f[1], FALSE
    raise RenderError(f"not a function type: {show(f)}")


def _same(a: Formula, b: Formula) -> bool:
    return a == b or unfold(a) == unfold(b)


def _desc(f: Formula) -> str:
    tag = f[0]
    if tag == "var":
        return f[1]
    if tag == "not":
        return "n" + _desc(f[1])
    if tag == "false":
        return "f"
    if tag == "true":
        return "t"
    return _desc(f[1]) + _desc(f[2])


class RenderError(Exception):
    pass


_PROJ = ("fst", "snd", "mp", "mpr")
_SYNTH = ("var", "app", "fst", "snd", "mp", "mpr", "em")


def _occurs(sub, t) -> bool:
    if t == sub:
        return True
    if t[0] in ("em", "triv"):
        return False
    return any(isinstance(c, tuple) and _occurs(sub, c) for c in t[1:])


def _paths(t, x: str) -> list[tuple]:
    """Access paths (projection chains) of the uses of variable x in t."""
    out: list[tuple] = []

    def walk(u):
        tag = u[0]
        if tag in _PROJ:
            ops = []
            v = u
            while v[0] in _PROJ:
                ops.append(v[0])
                v = v[1]
            if v == ("var", x):
                out.append(tuple(reversed(ops)))
            else:
                walk(v)
            return
        if tag == "var":
            if u[1] == x:
                out.append(())
            return
        if tag in ("em", "triv"):
            return
        for c in u[1:]:
            if isinstance(c, tuple):
                walk(c)

    walk(t)
    return out


def _spine(t):
    args = []
    while t[0] == "app":
        args.append(t[2])
        t = t[1]
    return t, args[::-1]


def _paren(text: str, atomic: bool) -> str:
    return text if atomic else f"({text})"


def _indent(lines: list[str], n: int = 2) -> list[str]:
    return [" " * n + ln for ln in lines]


def _bullet(lines: list[str]) -> list[str]:
    return ["· " + lines[0]] + _indent(lines[1:])


# --------------------------------------------------------------------------------------------------
# the renderer


class Scope:
    """Names in scope: internal proof-term -> (Lean name, statement-level type)."""

    __slots__ = ("names", "used")

    def __init__(self, names=None, used=None):
        self.names: dict = {} if names is None else names
        self.used: set = set() if used is None else used

    def copy(self) -> "Scope":
        return Scope(dict(self.names), set(self.used))

    def bind(self, term, name: str, typ: Formula) -> None:
        self.names[term] = (name, typ)
        self.used.add(name)

    def drop(self, term) -> None:
        self.names.pop(term, None)


class Renderer:
    def __init__(self, style: Style, naming: str, reserved: Iterable[str] = ()):
        self.s = style
        self.naming = naming
        self.reserved = set(reserved)

    # ---- names
    def fresh(self, sc: Scope, typ: Formula) -> str:
        taken = sc.used | self.reserved
        if self.naming == "hnum":
            i = 1
            while f"h{i}" in taken:
                i += 1
            return f"h{i}"
        if self.naming == "typed":
            base = "h" + _desc(typ)[:4]
            if base not in taken:
                return base
            i = 1
            while f"{base}{i}" in taken:
                i += 1
            return f"{base}{i}"
        pool = _LETTERS if self.naming == "letters" else _XYZ
        k = 0
        while True:
            for c in pool:
                n = c if k == 0 else f"{c}{k}"
                if n not in taken:
                    return n
            k += 1

    # ---- terms
    def proj(self, op: str, base_typ: Formula) -> tuple[str, Formula]:
        tag = base_typ[0]
        if tag == "and" and op in ("fst", "snd"):
            typ = base_typ[1] if op == "fst" else base_typ[2]
            suffix = (".left" if op == "fst" else ".right") if self.s.verbose else (".1" if op == "fst" else ".2")
            return suffix, typ
        if tag == "iff" and op in ("mp", "mpr", "fst", "snd"):
            fwd = op in ("mp", "fst")
            a, b = base_typ[1], base_typ[2]
            typ = ("imp", a, b) if fwd else ("imp", b, a)
            suffix = (".mp" if fwd else ".mpr") if self.s.verbose else (".1" if fwd else ".2")
            return suffix, typ
        raise RenderError(f"projection {op} of {show(base_typ)}")

    def synth(self, t, sc: Scope) -> tuple[str, Formula, bool]:
        hit = sc.names.get(t)
        if hit is not None:
            return hit[0], hit[1], True
        tag = t[0]
        if tag == "var":
            raise RenderError(f"unbound variable {t[1]}")
        if tag == "app":
            ftext, ftyp, _ = self.synth(t[1], sc)
            a, b = _arrow(ftyp)
            atext, aatom = self.check(t[2], a, sc)
            return f"{ftext} {_paren(atext, aatom)}", b, False
        if tag in _PROJ:
            btext, btyp, batom = self.synth(t[1], sc)
            suffix, typ = self.proj(tag, btyp)
            return _paren(btext, batom) + suffix, typ, True
        if tag == "em":
            a = _fold(t[1])
            return f"Classical.em {_paren(show(a), a[0] in ('var', 'true', 'false'))}", ("or", a, ("not", a)), False
        raise RenderError(f"not a synthesizable term: {tag}")

    def check(self, t, goal: Formula, sc: Scope) -> tuple[str, bool]:
        hit = sc.names.get(t) or sc.names.get(("@", t, goal))
        if hit is not None:
            return hit[0], True
        tag = t[0]
        if tag == "em":
            a = goal[1]
            return f"Classical.em {_paren(show(a), a[0] in ('var', 'true', 'false'))}", False
        if tag in _SYNTH:
            text, typ, atomic = self.synth(t, sc)
            if not _same(typ, goal):
                raise RenderError(f"type mismatch: {show(typ)} vs {show(goal)}")
            return text, atomic
        if tag == "lam":
            sc2 = sc.copy()
            binders = []
            while t[0] == "lam" and goal[0] in ("imp", "not") and t not in sc2.names:
                a, goal = _arrow(goal)
                x, t = t[1], t[2]
                binders.append(self.binder(x, a, t, sc2, "pattern" if self.s.destruct == "pattern" else "name"))
            body, _ = self.check(t, goal, sc2)
            return f"fun {' '.join(binders)} => {body}", False
        if tag == "pair":
            if goal[0] != "and":
                raise RenderError(f"pair against {show(goal)}")
            a, aatom = self.check(t[1], goal[1], sc)
            if self.s.verbose:
                b, batom = self.check(t[2], goal[2], sc)
                return f"And.intro {_paren(a, aatom)} {_paren(b, batom)}", False
            b, _ = self.check(t[2], goal[2], sc)
            if t[2][0] == "pair" and goal[2][0] == "and" and b.startswith("⟨") and t[2] not in sc.names:
                return f"⟨{a}, {b[1:-1]}⟩", True
            return f"⟨{a}, {b}⟩", True
        if tag == "iff":
            if goal[0] != "iff":
                raise RenderError(f"iff against {show(goal)}")
            a, b = goal[1], goal[2]
            f, fatom = self.check(t[1], ("imp", a, b), sc)
            g, gatom = self.check(t[2], ("imp", b, a), sc)
            if self.s.verbose:
                return f"Iff.intro {_paren(f, fatom)} {_paren(g, gatom)}", False
            return f"⟨{f}, {g}⟩", True
        if tag in ("inl", "inr"):
            if goal[0] != "or":
                raise RenderError(f"{tag} against {show(goal)}")
            sub, atom = self.check(t[1], goal[1] if tag == "inl" else goal[2], sc)
            return f"Or.{tag} {_paren(sub, atom)}", False
        if tag == "case":
            stext, styp, satom = self.synth(t[1], sc)
            if styp[0] != "or":
                raise RenderError(f"case on {show(styp)}")
            parts = []
            for x, body, typ in ((t[2], t[3], styp[1]), (t[4], t[5], styp[2])):
                sc2 = sc.copy()
                b = self.binder(x, typ, body, sc2, "pattern" if self.s.destruct == "pattern" else "name")
                btext, _ = self.check(body, goal, sc2)
                parts.append(f"(fun {b} => {btext})")
            return f"Or.elim {_paren(stext, satom)} {parts[0]} {parts[1]}", False
        if tag == "efq":
            inner = t[1]
            if _same(goal, FALSE):
                return self.check(inner, FALSE, sc)
            if not self.s.verbose and inner[0] == "app" and inner[2][0] in _SYNTH and inner[2][0] != "em":
                ftext, ftyp, fatom = self.synth(inner[1], sc)
                a, _ = _arrow(ftyp)
                atext, aatom = self.check(inner[2], a, sc)
                return f"absurd {_paren(atext, aatom)} {_paren(ftext, fatom)}", False
            itext, iatom = self.check(inner, FALSE, sc)
            return f"False.elim {_paren(itext, iatom)}", False
        if tag == "triv":
            return "trivial", True
        if tag == "bycontra":
            sc2 = sc.copy()
            name = self.fresh(sc2, ("not", goal))
            sc2.bind(("var", t[1]), name, ("not", goal))
            body, _ = self.check(t[2], FALSE, sc2)
            return f"Classical.byContradiction (fun {name} => {body})", False
        raise RenderError(f"unknown term {tag}")

    # ---- binders and destructuring
    def binder(self, x: str, typ: Formula, body, sc: Scope, how: str, depth: int = 4) -> str:
        """Bind variable x (of type typ, used in body) in sc; returns the binder text (name or pattern)."""
        v = ("var", x)
        if how == "name":
            name = self.fresh(sc, typ)
            sc.bind(v, name, typ)
            return name
        return self._pattern(v, typ, _paths(body, x), sc, depth)

    def _pattern(self, base, typ: Formula, paths: list[tuple], sc: Scope, depth: int) -> str:
        if depth > 0 and paths and all(paths) and typ[0] in ("and", "iff"):
            if typ[0] == "and":
                ops, types = ("fst", "snd"), (typ[1], typ[2])
            else:
                ops, types = ("mp", "mpr"), (("imp", typ[1], typ[2]), ("imp", typ[2], typ[1]))
            subs = []
            for op, ty in zip(ops, types):
                sub = [p[1:] for p in paths if p[0] == op]
                subs.append(self._pattern((op, base), ty, sub, sc, depth - 1))
            left, right = subs
            if typ[0] == "and" and typ[2][0] == "and" and right.startswith("⟨"):
                return f"⟨{left}, {right[1:-1]}⟩"
            return f"⟨{left}, {right}⟩"
        name = self.fresh(sc, typ)
        sc.bind(base, name, typ)
        return name

    def destructurable(self, x: str, typ: Formula, body) -> bool:
        paths = _paths(body, x)
        return bool(paths) and all(paths) and typ[0] in ("and", "iff")

    # ---- tactics
    def tac(self, t, goal: Formula, sc: Scope) -> tuple[list[str], bool]:
        """Tactic lines proving `goal`; the flag says whether the block is a straight line (no goal splits)."""
        s = self.s
        hit = sc.names.get(t)
        tag = t[0]
        if hit is not None or tag in _SYNTH:
            return self.tac_elim(t, goal, sc)
        hit = sc.names.get(("@", t, goal))  # a `have` of an introduction term (its type is part of the key)
        if hit is not None:
            return (["assumption"] if s.assumption else [f"exact {hit[0]}"]), True
        if tag == "lam":
            return self.tac_intro(t, goal, sc)
        if tag in ("pair", "iff"):
            return self.tac_pair(t, goal, sc)
        if tag in ("inl", "inr"):
            sub_goal = goal[1] if tag == "inl" else goal[2]
            if s.orintro == "exact" or s.mode == "linear" and _is_small(t[1]):
                text, _ = self.check(t, goal, sc)
                return [f"exact {text}"], True
            head = ("left" if tag == "inl" else "right") if s.orintro == "leftright" else f"apply Or.{tag}"
            lines, lin = self.tac(t[1], sub_goal, sc)
            return [head] + self.maybe_show(sub_goal) + lines, lin
        if tag == "case":
            return self.tac_case(t, goal, sc)
        if tag == "efq":
            return self.tac_efq(t, goal, sc)
        if tag == "triv":
            return ["trivial"], True
        if tag == "bycontra":
            sc2 = sc.copy()
            name = self.fresh(sc2, ("not", goal))
            sc2.bind(("var", t[1]), name, ("not", goal))
            if s.bycontra == "exact":
                text, _ = self.check(t, goal, sc)
                return [f"exact {text}"], True
            lines, lin = self.tac(t[2], FALSE, sc2)
            return ["apply Classical.byContradiction", f"intro {name}"] + self.maybe_show(FALSE) + lines, lin
        raise RenderError(f"unknown term {tag}")

    def maybe_show(self, goal: Formula) -> list[str]:
        return [f"show {show(goal)}"] if self.s.show else []

    def tac_intro(self, t, goal: Formula, sc: Scope):
        s = self.s
        sc2 = sc.copy()
        binders: list[str] = []
        deferred: list[tuple[int, str, Formula, object]] = []  # destructured after all names are chosen
        while t[0] == "lam" and goal[0] in ("imp", "not"):
            a, goal = _arrow(goal)
            x, t = t[1], t[2]
            if s.destruct == "pattern" and s.intro != "intros":
                binders.append(self.binder(x, a, t, sc2, "pattern"))
            elif s.destruct in ("obtain", "rcases", "pattern", "cases") and self.destructurable(x, a, t):
                name = self.fresh(sc2, a)
                sc2.used.add(name)
                binders.append(name)
                deferred.append((name, x, a, t))
            else:
                binders.append(self.binder(x, a, t, sc2, "name"))
        post: list[tuple[str, str]] = []  # (hypothesis name, pattern) to destructure after intro
        cases_post: list[tuple[str, str, str]] = []
        for name, x, a, body in deferred:
            if s.destruct == "cases":
                pat = self._pattern(("var", x), a, _paths(body, x), sc2, 1)
                left, right = pat[1:-1].split(", ")
                cases_post.append((name, left, right))
            else:
                post.append((name, self._pattern(("var", x), a, _paths(body, x), sc2, 4)))
        lines: list[str] = []
        if s.intro == "merge" or s.mode == "linear":
            lines.append("intro " + " ".join(binders))
        elif s.intro == "intros":
            lines.append("intros " + " ".join(binders))
        else:
            lines += [f"intro {b}" for b in binders]
        for name, pat in post:
            if s.destruct == "rcases":
                lines.append(f"rcases {name} with {pat}")
            else:
                lines.append(f"obtain {pat} := {name}")
        lines += self.maybe_show(goal)
        body, lin = self.tac(t, goal, sc2)
        if cases_post:
            for name, a_, b_ in reversed(cases_post):
                body = [f"cases {name} with", f"| intro {a_} {b_} =>"] + _indent(body)
                lin = False
        return lines + body, lin

    def tac_pair(self, t, goal: Formula, sc: Scope):
        s = self.s
        is_and = t[0] == "pair"
        if is_and and goal[0] != "and" or not is_and and goal[0] != "iff":
            raise RenderError(f"{t[0]} against {show(goal)}")
        if is_and:
            comps, goals = [t[1], t[2]], [goal[1], goal[2]]
        else:
            comps, goals = [t[1], t[2]], [("imp", goal[1], goal[2]), ("imp", goal[2], goal[1])]
        mode = s.pair
        if s.combinator and is_and and t[2][0] == "pair" and goal[2][0] == "and":
            # ⟨a, b, c⟩ whose components all close with the same tactic: `refine ⟨?_, ?_, ?_⟩ <;> tac`
            fc, fg = [t[1]], [goal[1]]
            rest, rg = t[2], goal[2]
            while rest[0] == "pair" and rg[0] == "and" and rest not in sc.names:
                fc.append(rest[1])
                fg.append(rg[1])
                rest, rg = rest[2], rg[2]
            fc.append(rest)
            fg.append(rg)
            blocks = [self.tac(c, g, sc.copy()) for c, g in zip(fc, fg)]
            if all(b == blocks[0] for b in blocks) and blocks[0][1]:
                holes = ", ".join("?_" for _ in fc)
                return [" <;> ".join([f"refine ⟨{holes}⟩"] + blocks[0][0])], True
        if mode == "anon":
            if not _has_case(t):
                text, _ = self.check(t, goal, sc)
                return [f"exact {text}"], True
            mode = "constructor"
        if mode == "refine":
            # flatten right-nested ∧ into ⟨_, _, _⟩, inline what is already a name
            if is_and:
                while comps[-1][0] == "pair" and goals[-1][0] == "and" and comps[-1] not in sc.names:
                    last, lg = comps.pop(), goals.pop()
                    comps += [last[1], last[2]]
                    goals += [lg[1], lg[2]]
            holes, texts = [], []
            for c, g in zip(comps, goals):
                if c in sc.names or (c[0] in _SYNTH and c[0] != "em" and _is_small(c)):
                    texts.append(self.check(c, g, sc)[0])
                else:
                    texts.append("?_")
                    holes.append((c, g))
            head = "exact" if not holes else "refine"
            lines = [f"{head} ⟨{', '.join(texts)}⟩"]
            blocks = [self.tac(c, g, sc.copy()) for c, g in holes]
            return lines + self.join_goals(blocks, [g for _, g in holes]), False
        if mode == "apply":
            head = "apply And.intro" if is_and else "apply Iff.intro"
        else:
            head = "constructor"
        blocks = [self.tac(c, g, sc.copy()) for c, g in zip(comps, goals)]
        if s.combinator and blocks[0] == blocks[1] and blocks[0][1]:
            return [" <;> ".join([head] + blocks[0][0])], True
        return [head] + self.join_goals(blocks, goals), False

    def join_goals(self, blocks, goals) -> list[str]:
        if len(blocks) == 1 and self.s.mode != "linear":
            return self.maybe_show(goals[0]) + blocks[0][0]
        out: list[str] = []
        for (lines, _), g in zip(blocks, goals):
            lines = self.maybe_show(g) + lines
            if self.s.mode == "linear":
                out += lines
            else:
                out += _bullet(lines)
        return out

    def tac_case(self, t, goal: Formula, sc: Scope):
        s = self.s
        scrut = t[1]
        lines: list[str] = []
        if s.elim == "have" and scrut not in sc.names and scrut[0] != "em" and not _is_small(scrut):
            sc = sc.copy()
            self.lift(scrut, sc, lines, top=False)
        stext, styp, satom = self.synth(scrut, sc)
        if styp[0] != "or":
            raise RenderError(f"case on {show(styp)}")
        clears = scrut in sc.names and scrut[0] != "em"
        used_later = _occurs(scrut, t[3]) or _occurs(scrut, t[5])
        mode = s.orelim
        if s.mode == "linear":
            mode = "rcases"
        if clears and used_later and mode in ("cases", "rcases", "obtain"):
            mode = "apply" if s.mode != "linear" else "term"
        if mode == "term":
            text, _ = self.check(t, goal, sc)
            return lines + [f"exact {text}"], True
        branches = []
        for x, body, typ in ((t[2], t[3], styp[1]), (t[4], t[5], styp[2])):
            sc2 = sc.copy()
            if clears and mode != "apply":
                sc2.drop(scrut)
            if mode in ("rcases", "obtain"):
                how = "pattern" if s.destruct != "proj" else "name"
            else:
                how = "name"
            b = self.binder(x, typ, body, sc2, how)
            if mode == "apply":
                blines, blin = self.tac(body, goal, sc2)
                blines = [f"intro {b}"] + self.maybe_show(goal) + blines
            else:
                blines, blin = self.tac(body, goal, sc2)
                blines = self.maybe_show(goal) + blines
            branches.append((b, blines, blin))
        (bl, ll, linl), (br, lr, linr) = branches
        if mode == "apply":
            return lines + [f"apply Or.elim {_paren(stext, satom)}"] + _bullet(ll) + _bullet(lr), False
        if mode == "cases":
            out = lines + [f"cases {stext} with"]
            for ctor, b, bls in (("inl", bl, ll), ("inr", br, lr)):
                if len(bls) == 1:
                    out.append(f"| {ctor} {b} => {bls[0]}")
                else:
                    out += [f"| {ctor} {b} =>"] + _indent(bls)
            return out, False
        head = f"rcases {stext} with {bl} | {br}" if mode == "rcases" else f"obtain {bl} | {br} := {stext}"
        if s.combinator and linl and linr:
            # try the same binder name in both branches: `rcases h with a | a <;> tac`
            same = self.same_branch(t, goal, sc, styp, clears, scrut)
            if same is not None:
                b, blines = same
                return lines + [" <;> ".join([f"rcases {stext} with {b} | {b}"] + blines)], True
        if s.mode == "linear":
            return lines + [head] + ll + lr, False
        return lines + [head] + _bullet(ll) + _bullet(lr), False

    def same_branch(self, t, goal, sc, styp, clears, scrut):
        outs = []
        name = None
        for x, body, typ in ((t[2], t[3], styp[1]), (t[4], t[5], styp[2])):
            sc2 = sc.copy()
            if clears:
                sc2.drop(scrut)
            if name is None:
                name = self.fresh(sc2, typ)
            sc2.bind(("var", x), name, typ)
            lines, lin = self.tac(body, goal, sc2)
            if not lin:
                return None
            outs.append(lines)
        if outs[0] != outs[1]:
            return None
        return name, outs[0]

    def tac_efq(self, t, goal: Formula, sc: Scope):
        s = self.s
        inner = t[1]
        if _same(goal, FALSE):
            return self.tac(inner, FALSE, sc)
        if s.efq == "contradiction" and self.contradiction_ok(inner, sc):
            return ["contradiction"], True
        lines: list[str] = []
        if s.elim == "have":
            sc = sc.copy()
            self.lift(inner, sc, lines, top=True)
        if s.efq == "absurd" and inner[0] == "app" and inner[2][0] in _SYNTH and inner[2][0] != "em":
            ftext, ftyp, fatom = self.synth(inner[1], sc)
            a, _ = _arrow(ftyp)
            atext, aatom = self.check(inner[2], a, sc)
            return lines + [f"exact absurd {_paren(atext, aatom)} {_paren(ftext, fatom)}"], True
        if s.efq == "false_elim":
            itext, iatom = self.check(inner, FALSE, sc)
            return lines + [f"exact False.elim {_paren(itext, iatom)}"], True
        body, lin = self.tac(inner, FALSE, sc)
        return lines + ["exfalso"] + self.maybe_show(FALSE) + body, lin

    def contradiction_ok(self, inner, sc: Scope) -> bool:
        hit = sc.names.get(inner)
        if hit is not None:
            return hit[1] == FALSE
        if inner[0] != "app":
            return False
        f, a = sc.names.get(inner[1]), sc.names.get(inner[2])
        return f is not None and a is not None and f[1][0] == "not" and f[1][1] == a[1]

    def tac_elim(self, t, goal: Formula, sc: Scope):
        s = self.s
        lines: list[str] = []
        hit = sc.names.get(t)
        if hit is not None:
            if s.assumption and hit[1] == goal:
                return ["assumption"], True
            return [f"exact {hit[0]}"], True
        if t[0] == "em":
            text, _ = self.check(t, goal, sc)
            return [f"exact {text}"], True
        if s.elim == "have":
            sc = sc.copy()
            self.lift(t, sc, lines, top=True)
            text, _ = self.check(t, goal, sc)
            return lines + [f"exact {text}"], True
        if s.elim == "apply" or (s.elim == "mixed" and _has_intro_arg(t)):
            head, args = _spine(t)
            if args:
                htext, htyp, _ = self.synth(head, sc)
                arg_goals = []
                typ = htyp
                for _a in args:
                    a, typ = _arrow(typ)
                    arg_goals.append(a)
                if not _same(typ, goal):
                    raise RenderError(f"apply: {show(typ)} vs {show(goal)}")
                blocks = [self.tac(a, g, sc.copy()) for a, g in zip(args, arg_goals)]
                if len(blocks) == 1:
                    return [f"apply {htext}"] + self.maybe_show(arg_goals[0]) + blocks[0][0], blocks[0][1]
                return [f"apply {htext}"] + self.join_goals(blocks, arg_goals), False
        text, _ = self.check(t, goal, sc)
        return [f"exact {text}"], True

    def lift(self, t, sc: Scope, lines: list[str], top: bool) -> None:
        """`have` every intermediate fact inside the elimination term t (and t itself unless top)."""
        if t in sc.names or t[0] not in _SYNTH or t[0] == "em":
            return
        if t[0] in _PROJ:
            self.lift(t[1], sc, lines, top=False)
            return
        if t[0] == "var":
            return
        head, args = _spine(t)
        self.lift(head, sc, lines, top=True)  # a partial application is not a fact worth naming
        htext, htyp, _ = self.synth(head, sc)
        typ = htyp
        for arg in args:
            a, typ = _arrow(typ)
            if arg[0] in _SYNTH:
                self.lift(arg, sc, lines, top=False)
            elif ("@", arg, a) not in sc.names and _term_size(arg) >= 3 and self.s.mode == "tactic":
                name = self.fresh(sc, a)
                inner = sc.copy()
                inner.used.add(name)
                sub, _ = self.tac(arg, a, inner)
                lines += [f"have {name} : {show(a)} := by"] + _indent(sub)
                sc.bind(("@", arg, a), name, a)  # the same term can prove different types
        if not top:
            text, typ, _ = self.synth(t, sc)
            name = self.fresh(sc, typ)
            lines.append(f"have {name} : {show(typ)} := {text}")
            sc.bind(t, name, typ)

    # ---- whole proofs
    def render(self, proof: Proof, goal: Formula, hyps: list[tuple[str, Formula]]) -> str:
        sc = Scope()
        for name, h in hyps:
            sc.bind(("var", name), name, h)
        t = proof.term
        s = self.s
        if s.mode == "term":
            text, _ = self.check(t, goal, sc)
            return f"by exact {text}"
        if s.mode == "intro_exact":
            lines = []
            if t[0] == "lam" and goal[0] in ("imp", "not"):
                sc2 = sc.copy()
                binders = []
                while t[0] == "lam" and goal[0] in ("imp", "not"):
                    a, goal = _arrow(goal)
                    binders.append(self.binder(t[1], a, t[2], sc2, "pattern"))
                    t = t[2]
                lines.append("intro " + " ".join(binders))
                sc = sc2
            text, _ = self.check(t, goal, sc)
            lines.append(f"exact {text}")
            return "by\n" + "\n".join(_indent(lines))
        lines = self.maybe_show(goal) if s.mode == "tactic" else []
        body, _ = self.tac(t, goal, sc)
        lines += body
        if s.mode == "linear":
            if any(ln.startswith((" ", "·", "|")) for ln in lines):
                raise RenderError("linear style produced a nested block")
            return "by " + "; ".join(lines)
        return "by\n" + "\n".join(_indent(lines))


def _fold(f: Formula) -> Formula:
    """Print internal (¬-unfolded) formulas with ¬ again."""
    tag = f[0]
    if tag == "imp" and f[2] == FALSE:
        return ("not", _fold(f[1]))
    if tag in ("and", "or", "imp", "iff"):
        return (tag, _fold(f[1]), _fold(f[2]))
    return f


def _term_size(t) -> int:
    n = 1
    for c in t[1:]:
        if isinstance(c, tuple) and t[0] != "em":
            n += _term_size(c)
    return n


def _is_small(t) -> bool:
    """Names and projections of names (no application)."""
    while t[0] in _PROJ:
        t = t[1]
    return t[0] == "var"


def _has_intro_arg(t) -> bool:
    """Does the elimination term t take a lambda/pair/… argument somewhere in its spine?"""
    head, args = _spine(t)
    for a in args:
        if a[0] not in _SYNTH or _has_intro_arg(a):
            return True
    while head[0] in _PROJ:
        head = head[1]
        if head[0] == "app" and _has_intro_arg(head):
            return True
    return False


def _has_case(t) -> bool:
    if t[0] in ("case", "bycontra"):
        return True
    if t[0] in ("em", "triv"):
        return False
    return any(isinstance(c, tuple) and _has_case(c) for c in t[1:])


# --------------------------------------------------------------------------------------------------
# public API


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


def logic_of(statement: str) -> str:
    return _analyse(statement)[0].logic


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
