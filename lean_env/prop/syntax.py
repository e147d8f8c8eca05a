"""The parser of the `prop` fragment of Lean 4 (see docs/prop_fragment.md); tokens come from `lexer.py`.

Everything here works on the full text Lean would check, `statement + " := " + proof`, so every
position (1-based line, 0-based column, counted in code points like Lean) is a position in that
text and layout rules see the same columns Lean sees.

The parser is deliberately *stricter* than Lean's: whenever Lean's grammar would read the text in a
way we do not model, or we are unsure how it reads it, we raise `ProofError` instead of guessing.
The checker (`checker.py`) only ever sees trees this module accepted.

Layout, in one paragraph (the rules the checker relies on):
* A tactic block records the column of its first tactic (`Parser.col`). A token that starts a new
  line at that exact column starts the next tactic; `;` also separates tactics.
* Inside a tactic, a token that starts a new line must be strictly to the right of the block's
  column (Lean requires this of application arguments, `colGt`; we require it of every token, which
  only rejects more). A token at or left of the column ends the tactic.
* A nested block (`by`, `·`, `=> ` of a `cases` alternative) must start right of the enclosing
  block's column (`tacticSeqIndentGt`), and the top-level `by` block may not start at column 0.

Trees are plain tuples whose second element is the token to blame in error messages:

    terms     ("id", tok, name, parts)  ("app", tok, head, args)  ("fun", tok, binders, body)
              ("anon", tok, items)      ("proj", tok, term, field) ("ascr", tok, term, formula)
              ("hole", tok)  ("shole", tok)  ("by", tok, block)  ("em", tok, formula)
    binders   ("name", tok, name|None)  ("typed", tok, [name|None], formula)  ("tuple", tok, [binder])
    tactics   ("intro", tok, [binder]) ("intros", tok, [name|None]) ("exact"|"apply"|"refine", tok, term)
              ("constructor"|"left"|"right"|"assumption"|"exfalso"|"contradiction"|"trivial", tok)
              ("cases", tok, term, alts|None) with alts [(bar_tok, ctor, [name|None], block)]
              ("rcases", tok, term, rpat)   ("have", tok, name, formula|None, term)
              ("show", tok, formula)  ("focus", tok, block)  ("all", tok, first, then)   # t <;> t'
    blocks    (first_tok, [tactic])
    rcases    ("one", tok, name|None)  ("tuple", tok, [rpat])  ("alts", tok, [rpat])  ("paren", tok, rpat)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lean_env.prop import formula
from lean_env.prop.formula import FALSE, TRUE, Formula
from lean_env.prop.lexer import Origin, ProofError, Token, lex, unsupported

MAX_DEPTH = 60  # nesting of terms, formulas, blocks and patterns, counted while parsing


# --------------------------------------------------------------------------------------------------
# names

# Lean keywords (reserved tokens): never a term, never a binder name.
KEYWORDS = frozenset("""
    fun by have show from at with then else if do let in match end open namespace section variable
    universe where deriving instance structure class inductive theorem lemma def example axiom abbrev
    opaque mutual Type Prop Sort sorry calc suffices nomatch nofun forall exists using macro syntax
    notation infix infixl infixr prefix postfix attribute set_option import private protected
    noncomputable partial unsafe local scoped export termination_by decreasing_by macro_rules
    elab elab_rules declare_syntax_cat initialize omit include generalizing only return for unless
    mut try catch finally break continue nonrec
""".split())

# The fragment's tactics: keyword -> the `Parser` method that reads it. The one list of tactic
# names: `TACTICS` and the checker's dispatch (`checker.Engine.t_<tag>` for each of `TREE_TAGS`)
# are derived from it, so a tactic cannot be parsed without being run, nor run without being parsed.
TACTIC_PARSERS = {
    "intro": "t_intro",
    "intros": "t_intros",
    "exact": "t_term",
    "apply": "t_term",
    "refine": "t_term",
    "constructor": "t_simple",
    "left": "t_simple",
    "right": "t_simple",
    "assumption": "t_simple",
    "exfalso": "t_simple",
    "contradiction": "t_simple",
    "trivial": "t_simple",
    "cases": "t_cases",
    "rcases": "t_rcases",
    "obtain": "t_obtain",
    "have": "t_have",
    "show": "t_show",
}
# Lean does not reserve these words everywhere, but we never accept them as binder names
# (conservative), and they end an application when they appear as arguments.
TACTICS = frozenset(TACTIC_PARSERS)
# Tags of the tactic trees the parser builds: each tactic's keyword, except `obtain` (read as an
# `rcases` tree), plus `focus` (`· tacs`) and `all` (`t <;> t'`).
TREE_TAGS = (TACTICS - {"obtain"}) | {"focus", "all"}

# Tactics and words we know and refuse, for clear messages (any other word at a tactic position
# is refused as well).
KNOWN_UNSUPPORTED = frozenset("""
    simp simp_all simpa dsimp tauto decide omega native_decide aesop linarith nlinarith norm_num
    ring field_simp positivity sorry admit rfl by_contra by_cases by_contra! push_neg contrapose
    rintro induction specialize unfold rw rewrite rwa exists use refine' apply_assumption
    and_intros split injection subst revert clear rename rename_i next case first try repeat
    all_goals any_goals focus iterate skip done stop fail change calc exact_mod_cast norm_cast
    suffices let nofun nomatch match absurd contrapose! infer_instance solve_by_elim tauto!
    library_search exact? apply? simp? hint itauto cc finish trivial' constructorm casesm
""".split())

RESERVED_NAMES = KEYWORDS | TACTICS | KNOWN_UNSUPPORTED | frozenset("""
    this True False And Or Iff Not Classical Eq Ne HEq Nat Bool Decidable Exists Function rfl id
    absurd trivial em propext Quot funext extends renaming hiding haveI letI dbg_trace no_index
    let_fun let_delayed let_tmp leading_parser trailing_parser StateRefT coinductive
    builtin_initialize nonrec rec
""".split())

# A binder name must be a plain identifier that also has this shape: it starts with `h`/`H`, or
# has at most two characters, or contains a digit, a prime or a subscript. Lean reserves every
# keyword token as a name; we cannot list all of them, but none has this shape except the few in
# RESERVED_NAMES (`have`, `hiding`, `haveI`, `at`, `by`, `do`, `if`, `in`). Every naming scheme of
# the proof generator fits (h1, hpq, a, x2, ...).
_BINDER_NAME = re.compile(r"(?:[hH][A-Za-z0-9_'₀-₉]*|[A-Za-z][A-Za-z0-9_'₀-₉]?|"
                          r"[A-Za-z][A-Za-z0-9_'₀-₉]*[0-9'₀-₉][A-Za-z0-9_'₀-₉]*)\Z")


def check_binder_name(tok: Token, prop_vars: frozenset) -> str:
    """A name we accept for a hypothesis: a plain identifier, not reserved, not a Prop variable."""
    name = tok.text
    if name in RESERVED_NAMES:
        raise ProofError(f"'{name}' cannot be used as a name here (reserved in this fragment)", tok,
                         unsupported=True)
    if not _BINDER_NAME.match(name):
        raise ProofError(f"binder name '{name}' is outside the fragment (names start with h, or "
                         "have at most two characters, or contain a digit, ' or a subscript)", tok,
                         unsupported=True)
    if name in prop_vars:
        raise ProofError(f"hypothesis name '{name}' shadows the proposition variable '{name}' "
                         "(outside the fragment)", tok, unsupported=True)
    return name


_THEOREM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def check_theorem_name(tok: Token) -> str:
    """Theorem names must not collide with a declaration of Lean core ("already declared").

    We cannot list core's names, so we accept only names that no core declaration has: ASCII
    letters, digits and `_`, at least one digit, and either an underscore or no capital letter
    (core's digit-bearing root names look like `UInt8`, `Float32`).
    """
    name = tok.text
    ok = (_THEOREM_NAME.match(name) is not None and any(c.isdigit() for c in name)
          and ("_" in name or name.islower()))
    if not ok:
        raise ProofError(f"theorem name '{name}' is outside the fragment (use names like prop_eval_12)",
                         tok, unsupported=True)
    return name


# --------------------------------------------------------------------------------------------------
# parsed statements


@dataclass(frozen=True)
class Statement:
    name: str
    prop_vars: tuple[str, ...]
    hyps: tuple[tuple[str, Formula], ...]
    goal: Formula


# formula operators: tag, precedence, minimum precedence of the left and of the right operand
# (one table, in formula.py, so the parser and the printer cannot disagree)
_BINOPS = {sym: (tag, p, lp, rp) for tag, (sym, p, lp, rp) in formula.BINARY.items()}
# Lean's arrow is `unicodeSymbol " → " " -> "`: `->` is `→` wherever an arrow is (and we have arrows
# only in propositions). The ASCII forms of the other connectives (`/\`, `\/`, `<->`) are refused by
# the lexer.
_BINOPS["->"] = _BINOPS["→"]
# `fun`'s arrow: Lean's `basicFun` takes `unicodeSymbol " ↦" " =>"`; nothing else takes `↦`
# (alternatives of `cases` and `match` take `=>` only).
_FUN_ARROWS = frozenset({"=>", "↦"})
_MAX_PREC = formula.MAX_PREC
_FORMULA_OPS = frozenset(_BINOPS) | {"¬"}

# tokens that may start an application argument (besides identifiers)
_ARG_START = frozenset({"(", "⟨", "?_"})


# --------------------------------------------------------------------------------------------------
# the parser


class Parser:
    def __init__(self, tokens: list[Token], prop_vars: frozenset = frozenset()):
        self.toks = tokens
        self.i = 0
        self.col = -1  # column of the enclosing tactic block; -1: no layout constraint
        self.depth = 0
        self.prop_vars = prop_vars

    # ---- low level

    def raw(self) -> Token:
        return self.toks[self.i]

    def peek(self) -> Token | None:
        """The next token if it may continue the current construct, else None (see layout rules)."""
        t = self.toks[self.i]
        if t.kind == "eof" or (t.nl and t.col <= self.col):
            return None
        return t

    def peek_is(self, text: str) -> bool:
        t = self.peek()
        return t is not None and t.kind == "sym" and t.text == text

    def expect(self, text: str, what: str | None = None) -> Token:
        t = self.peek()
        if t is None or t.kind != "sym" or t.text != text:
            raise self.error_at_next(f"expected '{text}'" + (f" {what}" if what else ""))
        self.i += 1
        return t

    def error_at_next(self, message: str) -> ProofError:
        t = self.toks[self.i]
        if t.kind == "eof":
            return ProofError(f"{message}, found the end of the proof", t)
        return ProofError(f"{message}, found '{t.text}'", t)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ProofError(f"proof nested more than {MAX_DEPTH} levels deep", self.toks[self.i],
                             unsupported=True)

    # ---- statements

    def statement(self) -> Statement:
        t = self.raw()
        if not (t.kind == "id" and t.text == "theorem"):
            if t.kind == "id" and t.text in ("lemma", "example", "def", "abbrev", "instance"):
                raise unsupported(f"'{t.text}' (statements start with 'theorem')", t)
            raise ProofError("expected 'theorem'", t)
        self.i += 1
        t = self.raw()
        if t.kind != "id":
            raise self.error_at_next("expected the theorem name")
        name = check_theorem_name(t)
        self.i += 1
        prop_vars: list[str] = []
        hyps: list[tuple[str, Formula]] = []
        while self.raw().text == "(" and self.raw().kind == "sym":
            self.i += 1
            names = []
            while self.raw().kind == "id" and self.raw().text not in ("Prop",):
                names.append(self.raw())
                self.i += 1
            if not names:
                raise self.error_at_next("expected binder names")
            self.expect(":")
            t = self.raw()
            if t.kind == "id" and t.text == "Prop":
                if hyps:
                    raise unsupported("a Prop binder after a hypothesis binder", t)
                self.i += 1
                for n in names:
                    v = check_binder_name(n, frozenset())
                    if v in prop_vars:
                        raise unsupported(f"repeated variable name '{v}'", n)
                    prop_vars.append(v)
                self.prop_vars = frozenset(prop_vars)
            else:
                f = self.formula()
                for n in names:
                    hyps.append((check_binder_name(n, self.prop_vars), f))
            self.expect(")")
        t = self.raw()
        if t.kind == "sym" and t.text in ("{", "["):
            raise unsupported("implicit or instance binders", t)
        self.expect(":", "before the theorem's proposition")
        goal = self.formula()
        t = self.raw()
        if t.kind != "eof":
            raise ProofError("the statement must end with its proposition", t)
        return Statement(name, tuple(prop_vars), tuple(hyps), goal)

    # ---- formulas

    def formula(self) -> Formula:
        return self._formula(0)[0]

    def _formula(self, min_prec: int) -> tuple[Formula, int]:
        """Precedence climbing with Lean's precedences; returns (formula, its precedence)."""
        self.enter()
        t = self.peek()
        if t is None:
            raise self.error_at_next("expected a proposition")
        text = t.text
        if t.kind == "sym" and text == "¬":
            self.i += 1
            lhs, lhs_prec = ("not", self._formula(40)[0]), _MAX_PREC
        elif t.kind == "sym" and text == "(":
            self.i += 1
            lhs, lhs_prec = self._formula(0)[0], _MAX_PREC
            self.expect(")")
        elif t.kind == "id":
            lhs, lhs_prec = self.atom(t), _MAX_PREC
            self.i += 1
        else:
            raise self.error_at_next("expected a proposition")
        while True:
            t = self.peek()
            if t is None or t.kind != "sym":
                break
            op = _BINOPS.get(t.text)
            if op is None:
                break
            tag, prec, left_min, right_min = op
            if prec < min_prec or lhs_prec < left_min:
                break  # e.g. the second `↔` of `a ↔ b ↔ c`: the caller reports it
            self.i += 1
            rhs = self._formula(right_min)[0]
            lhs, lhs_prec = (tag, lhs, rhs), prec
        self.depth -= 1
        return lhs, lhs_prec

    def atom(self, t: Token) -> Formula:
        name = t.text
        if name == "True":
            return TRUE
        if name == "False":
            return FALSE
        if name in self.prop_vars:
            return ("var", name)
        if name in ("Not", "And", "Or", "Iff"):
            raise unsupported(f"'{name}' applied as a function (write ¬ ∧ ∨ ↔)", t)
        raise ProofError(f"unknown identifier '{name}' (not a declared proposition variable)", t)

    def formula_arg(self) -> Formula:
        """An argument-position proposition (`Classical.em p`, `Classical.em (p ∨ q)`)."""
        t = self.peek()
        if t is None or not t.ws:
            raise self.error_at_next("expected a proposition argument")
        if t.kind == "id":
            self.i += 1
            return self.atom(t)
        if t.kind == "sym" and t.text == "(":
            self.i += 1
            f = self.formula()
            self.expect(")")
            return f
        raise self.error_at_next("expected a proposition variable or a parenthesised proposition")

    # ---- proofs

    def proof(self):
        """`:=` then ("by", tok, block) or ("term", tok, term), then the end of the text."""
        self.expect(":=")
        t = self.raw()
        self.col = 0  # top level: nothing may start a line at column 0 (it would be a new command)
        if t.kind == "id" and t.text == "by":
            self.i += 1
            result = ("by", t, self.block(0))
        else:
            result = ("term", t, self.term())
        t = self.raw()
        if t.kind != "eof":
            if t.kind == "id" and t.text in KEYWORDS:
                raise unsupported(f"'{t.text}' after the end of the proof", t)
            raise ProofError(f"unexpected '{t.text}' after the end of the proof (check the "
                             "indentation: a tactic block's tactics must start in the same column)", t)
        return result

    # ---- tactic blocks

    def block(self, parent_col: int):
        """A tactic sequence whose first tactic must sit right of `parent_col`."""
        self.enter()
        first = self.raw()
        if first.kind == "eof":
            raise ProofError("expected a tactic, found the end of the proof", first)
        if first.nl and first.col <= parent_col:
            raise ProofError("expected an indented tactic block (a tactic to the right of the "
                             "enclosing block's column)", first)
        col = first.col
        saved, self.col = self.col, col
        tactics = []
        while True:
            tactics.append(self.tactic())
            t = self.raw()
            if t.kind == "sym" and t.text == ";":
                self.i += 1
                n = self.raw()
                if n.kind != "id" and n.text not in ("·", "."):
                    raise ProofError("expected a tactic after ';'", n)
                if n.col < col:
                    raise ProofError("a tactic after ';' must not be left of its block", n)
                continue
            if t.kind != "eof" and t.nl and t.col == col:
                continue
            break
        self.col = saved
        self.depth -= 1
        return (first, tactics)

    def tactic(self):
        node = self.tactic1()
        while True:
            t = self.raw()
            if t.kind == "sym" and t.text == "<;>" and not t.nl:
                self.i += 1
                if self.raw().kind == "eof" or self.raw().nl:
                    raise ProofError("expected a tactic after '<;>' on the same line", self.raw())
                node = ("all", t, node, self.tactic1())
            else:
                return node

    def tactic1(self):
        t = self.raw()
        if t.kind == "sym" and t.text in ("·", "."):
            return self.t_focus(t)
        if t.kind != "id":
            raise ProofError(f"expected a tactic, found '{t.text or 'the end of the proof'}'", t)
        handler = TACTIC_PARSERS.get(t.text)
        if handler is None:
            raise unsupported(t.text, t)
        self.i += 1
        return getattr(self, handler)(t)

    def t_focus(self, tok: Token):
        self.i += 1
        n = self.raw()
        if not n.ws:
            raise ProofError(f"expected a space after '{tok.text}'", n)
        return ("focus", tok, self.block(self.col))

    def t_simple(self, tok: Token):
        return (tok.text, tok)

    def t_term(self, tok: Token):
        t = self.peek()
        if t is None or not t.ws:
            raise self.error_at_next(f"expected a term after '{tok.text}'")
        return (tok.text, tok, self.term())

    def t_intro(self, tok: Token):
        pats = []
        while True:
            t = self.peek()
            if t is None or not t.ws:
                break
            if t.kind == "id":
                if t.text in KEYWORDS or t.text in TACTICS:
                    break
                pats.append(self.binder_name(t))
            elif t.kind == "sym" and t.text == "⟨":
                pats.append(self.tuple_pattern())
            elif t.kind == "sym" and t.text == "(":
                raise unsupported("typed or parenthesised intro patterns", t)
            else:
                break
        if not pats and self.raw().kind == "sym" and self.raw().text == "|":
            raise unsupported("intro with match alternatives", self.raw())
        return ("intro", tok, pats)

    def t_intros(self, tok: Token):
        names = []
        while True:
            t = self.peek()
            if t is None or not t.ws or t.kind != "id" or t.text in KEYWORDS or t.text in TACTICS:
                break
            names.append(self.binder_name(t))
        return ("intros", tok, names)

    def binder_name(self, t: Token):
        """`_` or a hypothesis name, as a ("name", tok, name|None) binder; consumes the token."""
        self.i += 1
        if t.text == "_":
            return ("name", t, None)
        return ("name", t, check_binder_name(t, self.prop_vars))

    def tuple_pattern(self):
        """`⟨p, q, …⟩` where each part is `_`, a name or another tuple (anonymous-constructor pattern)."""
        self.enter()
        open_tok = self.expect("⟨")
        items = []
        if not self.peek_is("⟩"):
            while True:
                t = self.peek()
                if t is None:
                    raise self.error_at_next("expected a pattern")
                if t.kind == "id":
                    items.append(self.binder_name(t))
                elif t.kind == "sym" and t.text == "⟨":
                    items.append(self.tuple_pattern())
                else:
                    raise unsupported(f"pattern '{t.text}' (patterns are names, _ and ⟨…⟩)", t)
                if self.peek_is(","):
                    self.i += 1
                    continue
                break
        self.expect("⟩")
        self.depth -= 1
        node = ("tuple", open_tok, items)
        # Lean's `match` refuses a variable bound twice in one pattern (`fun ⟨a, a⟩ => …`)
        _check_distinct(_binder_names(node, []), open_tok, "pattern")
        return node

    def t_cases(self, tok: Token):
        t = self.peek()
        if t is None or not t.ws:
            raise self.error_at_next("expected a term after 'cases'")
        target = self.term()
        t = self.peek()
        if t is None or not (t.kind == "id" and t.text == "with"):
            if t is not None and t.kind == "sym" and t.text in (":", ","):
                raise unsupported(f"cases with '{t.text}'", t)
            if t is not None and t.kind == "id" and t.text == "using":
                raise unsupported("cases ... using", t)
            return ("cases", tok, target, None)
        self.i += 1
        first = self.raw()
        if not (first.kind == "sym" and first.text == "|"):
            raise unsupported("cases ... with followed by something other than '| alternative'", first)
        if first.nl and first.col < self.col:
            raise ProofError("a cases alternative must not be left of its tactic block", first)
        alt_col = first.col
        alts = []
        while True:
            bar = self.raw()
            if not (bar.kind == "sym" and bar.text == "|" and bar.col >= alt_col
                    and not (bar.nl and bar.col < self.col)):
                break
            self.i += 1
            name_tok = self.peek()
            if name_tok is None or name_tok.kind != "id":
                raise self.error_at_next("expected a constructor name after '|'")
            if name_tok.text == "_":
                raise unsupported("wildcard cases alternative '| _'", name_tok)
            if name_tok.text not in ("inl", "inr", "intro"):
                raise ProofError(f"invalid alternative name '{name_tok.text}'", name_tok)
            self.i += 1
            names = []
            while True:
                t = self.peek()
                if t is None or t.kind != "id":
                    break
                names.append(self.binder_name(t)[2])
            named = [n for n in names if n is not None]
            if len(set(named)) < len(named):
                raise unsupported("a name repeated in one cases alternative", name_tok)
            self.expect("=>")
            rhs = self.raw()
            if (rhs.kind == "sym" and rhs.text == "?_") or (rhs.kind == "id" and rhs.text == "_"):
                raise unsupported("a hole as a cases alternative", rhs)
            if rhs.nl and rhs.col <= alt_col:
                raise ProofError("the alternative's tactics must be indented past its '|'", rhs)
            alts.append((bar, name_tok.text, names, self.block(self.col)))
        return ("cases", tok, target, alts)

    def t_rcases(self, tok: Token):
        t = self.peek()
        if t is None or not t.ws:
            raise self.error_at_next("expected a term after 'rcases'")
        target = self.term()
        t = self.peek()
        if t is None or not (t.kind == "id" and t.text == "with"):
            raise unsupported("rcases without 'with PATTERN' or with several targets", self.raw())
        self.i += 1
        pat = self.rpat_med()
        if self.peek_is(":"):
            raise unsupported("typed rcases pattern", self.raw())
        _check_rcases_names(pat)
        return ("rcases", tok, target, pat)

    def t_obtain(self, tok: Token):
        pat = self.rpat_med()
        if self.peek_is(":"):
            raise unsupported("obtain with a type ascription", self.raw())
        self.expect(":=", "in obtain")
        target = self.term()
        if self.peek_is(","):
            raise unsupported("obtain with several values", self.raw())
        _check_rcases_names(pat)
        return ("rcases", tok, target, pat)

    def rpat_med(self):
        """`pat | pat | …` (rcases patterns)."""
        self.enter()
        first = self.raw()
        pats = [self.rpat()]
        while True:
            t = self.raw()
            if not (t.kind == "sym" and t.text == "|"):
                break
            if self.peek() is None:
                # Lean would continue the pattern with this `|` (no column check there), while we
                # would end the tactic: refuse rather than guess.
                raise ProofError("'|' at the start of a line after an rcases pattern is ambiguous", t,
                                 unsupported=True)
            self.i += 1
            pats.append(self.rpat())
        self.depth -= 1
        node = pats[0] if len(pats) == 1 else ("alts", first, pats)
        return node

    def rpat(self):
        self.enter()
        t = self.peek()
        if t is None:
            raise self.error_at_next("expected an rcases pattern")
        if t.kind == "id":
            if t.text in KEYWORDS or t.text in TACTICS:
                raise self.error_at_next("expected an rcases pattern")
            node = self.binder_name(t)
            node = ("one", t, node[2])
        elif t.kind == "sym" and t.text == "⟨":
            self.i += 1
            items = []
            if not self.peek_is("⟩"):
                while True:
                    items.append(self.rpat_med())
                    if self.peek_is(":"):
                        raise unsupported("typed rcases pattern", self.raw())
                    if self.peek_is(","):
                        self.i += 1
                        continue
                    break
            self.expect("⟩")
            node = ("tuple", t, items)
        elif t.kind == "sym" and t.text == "(":
            self.i += 1
            inner = self.rpat_med()
            if self.peek_is(":"):
                raise unsupported("typed rcases pattern", self.raw())
            self.expect(")")
            node = ("paren", t, inner)
        else:  # `-` and `@` patterns never get here: the lexer refuses those operators
            raise self.error_at_next("expected an rcases pattern")
        self.depth -= 1
        return node

    def t_have(self, tok: Token):
        name = "this"
        t = self.peek()
        if t is not None and t.kind == "id" and t.text not in KEYWORDS:
            if t.text == "_":
                raise unsupported("have _", t)
            name = check_binder_name(t, self.prop_vars)
            self.i += 1
        elif t is not None and t.kind == "sym" and t.text == "⟨":
            raise unsupported("have with a pattern", t)
        formula = None
        if self.peek_is(":"):
            self.i += 1
            formula = self.formula()
        t = self.peek()
        if t is None or t.kind != "sym" or t.text != ":=":
            if t is not None and t.kind == "sym" and t.text in ("(", "|"):
                raise unsupported("have with binders or match alternatives", t)
            raise self.error_at_next("expected ':=' in have")
        self.i += 1
        return ("have", tok, name, formula, self.term())

    def t_show(self, tok: Token):
        return ("show", tok, self.formula())

    # ---- terms

    def term(self):
        self.enter()
        t = self.peek()
        if t is None:
            raise self.error_at_next("expected a term")
        if (t.kind == "sym" and t.text == "λ") or (t.kind == "id" and t.text == "fun"):
            node = self.fun()
        elif t.kind == "id" and t.text == "by":
            self.i += 1
            node = ("by", t, self.block(self.col))
        else:
            node = self.app()
        self.depth -= 1
        return node

    def fun(self):
        tok = self.raw()
        self.i += 1
        binders = []
        while True:
            t = self.peek()
            if t is None:
                raise self.error_at_next("expected '=>' in fun")
            if t.kind == "sym" and t.text in _FUN_ARROWS:
                break
            if t.kind == "id":
                if t.text in KEYWORDS or t.text in TACTICS:
                    raise self.error_at_next("expected a binder")
                binders.append(self.binder_name(t))
            elif t.kind == "sym" and t.text == "⟨":
                binders.append(self.tuple_pattern())
            elif t.kind == "sym" and t.text == "(":
                binders.append(self.typed_binder())
            elif t.kind == "sym" and t.text == ":":
                raise unsupported("fun x : T => (write fun (x : T) =>)", t)
            elif t.kind == "sym" and t.text == "|":
                raise unsupported("fun with match alternatives", t)
            else:
                raise self.error_at_next("expected a binder")
        if not binders:
            raise ProofError("expected a binder after 'fun'", self.raw())
        self.i += 1
        return ("fun", tok, binders, self.term())

    def typed_binder(self):
        open_tok = self.expect("(")
        names = []
        while True:
            t = self.peek()
            if t is None or t.kind != "id":
                break
            if t.text in KEYWORDS or t.text in TACTICS:
                raise self.error_at_next("expected a binder name")
            names.append(self.binder_name(t)[2])
        if not names:
            raise self.error_at_next("expected a binder name")
        self.expect(":", "in a typed binder")
        f = self.formula()
        self.expect(")")
        return ("typed", open_tok, names, f)

    def app(self):
        head = self.arg()
        if head[0] == "id" and head[2] == "Classical.em":
            return ("em", head[1], self.formula_arg())
        args = []
        while True:
            t = self.peek()
            if t is None or not t.ws:
                break
            if t.kind == "id":
                # `fun` may be the last argument (`f fun x => e`); `by` may not (Lean: leadPrec)
                if t.text == "fun":
                    args.append(self.fun())
                    continue
                if t.text in KEYWORDS or (t.text in TACTICS and t.text != "trivial"):
                    break
            elif t.kind == "sym":
                if t.text == "λ":
                    args.append(self.fun())
                    continue
                if t.text not in _ARG_START:
                    break
            else:
                break
            args.append(self.arg())
        if not args:
            return head
        return ("app", head[1], head, args)

    def arg(self):
        """An argument-level term: identifier, `(…)`, `⟨…⟩`, `_`, `?_`, then `.1`/`.x` projections."""
        t = self.peek()
        if t is None:
            raise self.error_at_next("expected a term")
        if t.kind == "id":
            text = t.text
            if text in KEYWORDS:
                if text in ("then", "else", "with", "at", "from", "in", "do"):
                    raise self.error_at_next("expected a term")
                raise unsupported(text, t)
            self.i += 1
            if text == "_":
                return ("hole", t)
            if text in KNOWN_UNSUPPORTED and text not in ("trivial", "absurd"):
                raise unsupported(text, t)
            node = ("id", t, text, tuple(text.split(".")))
        elif t.kind == "sym" and t.text == "?_":
            self.i += 1
            return ("shole", t)
        elif t.kind == "sym" and t.text == "(":
            self.i += 1
            inner = self.term()
            if self.peek_is(":"):
                self.i += 1
                inner = ("ascr", t, inner, self.formula())
            elif self.peek_is(","):
                raise unsupported("tuple (a, b) (write ⟨a, b⟩)", self.raw())
            self.expect(")")
            node = inner
        elif t.kind == "sym" and t.text == "⟨":
            self.i += 1
            items = []
            if not self.peek_is("⟩"):
                while True:
                    items.append(self.term())
                    if self.peek_is(","):
                        self.i += 1
                        continue
                    break
            self.expect("⟩")
            node = ("anon", t, items)
        elif t.kind == "sym" and t.text in _FORMULA_OPS:
            raise ProofError(f"'{t.text}' builds a proposition, not a proof", t)
        else:
            raise self.error_at_next("expected a term")
        while True:
            p = self.raw()
            if p.kind != "proj" or p.ws:
                break
            self.i += 1
            node = ("proj", p, node, p.text[1:])
        return node


def _binder_names(node, acc: list) -> list:
    """Names bound by a binder or pattern tree (intro/fun patterns and rcases patterns)."""
    kind = node[0]
    if kind in ("name", "one"):
        if node[2] is not None:
            acc.append((node[2], node[1]))
    elif kind == "typed":
        acc.extend((n, node[1]) for n in node[2] if n is not None)
    elif kind == "paren":
        _binder_names(node[2], acc)
    else:  # "tuple", "alts"
        for item in node[2]:
            _binder_names(item, acc)
    return acc


def _check_distinct(names: list, tok: Token, what: str) -> None:
    seen = set()
    for name, name_tok in names:
        if name in seen:
            raise ProofError(f"invalid {what}: variable '{name}' occurs more than once", name_tok)
        seen.add(name)


def _check_rcases_names(pat) -> set:
    """The names an rcases pattern may bind. A name bound twice in one goal (twice in a tuple):
    we do not know how rcases names them, so we refuse. Alternatives are separate goals, so
    `h | h` is fine."""
    kind = pat[0]
    if kind == "one":
        return {pat[2]} if pat[2] is not None else set()
    if kind == "paren":
        return _check_rcases_names(pat[2])
    names: set = set()
    for item in pat[2]:
        item_names = _check_rcases_names(item)
        if kind == "tuple" and names & item_names:
            raise unsupported("a name bound twice in one rcases pattern", item[1])
        names |= item_names
    return names


@lru_cache(maxsize=4096)
def parse_statement(statement: str) -> Statement:
    """The statement, parsed once per text: a workload checks many proofs of one theorem.
    `Statement` is immutable, so sharing it is safe."""
    p = Parser(lex(statement))
    return p.statement()


def parse(statement: str, proof: str):
    """(Statement, proof tree) of `statement + " := " + proof`; raises ProofError.

    The two parts are lexed separately, the second from where it starts in the full text, so
    every position is the one Lean reports. Splitting is exact: a statement that lexes cleanly
    ends its last token before the joining " := " (comments and strings are refused).
    """
    st = parse_statement(statement)
    last_line = statement.rfind("\n")
    origin = Origin(statement.count("\n") + 1, len(statement) - (last_line + 1))
    p = Parser(lex(" := " + proof, origin), frozenset(st.prop_vars))
    return st, p.proof()
