"""The `prop` checker: a sound stand-in for Lean 4 on a documented fragment of propositional proofs.

`check(statement, proof)` answers ok=True only if Lean 4 core (no imports) would accept
`statement + " := " + proof` exactly as written. Anything outside the fragment, or anything whose
Lean behaviour we are not sure of, is a failure (`unsupported=True` when it is a construct we do not
model). docs/prop_fragment.md documents the fragment; this file models its semantics:

* `Engine` runs tactics on goals. A goal is `(ctx, target)`; `ctx` is a tuple of hypotheses
  `(name, formula, uid)`, newest last (name lookups take the newest; `None` is an inaccessible name).
* `Elab` elaborates terms bidirectionally like Lean's elaborator: it checks a term against a known
  expected type and infers the type of heads. Implicit arguments of constants (`Or.inl`, `absurd`,
  ...) become metavariables `("mvar", i)` solved by first-order unification up to unfolding `¬a`
  to `a → False` (the only definitional unfolding that matters here). Where Lean would postpone an
  elaboration problem (a `fun` or `⟨…⟩` whose expected type is not known yet), we refuse.

Formulas are the tuples of `lean_env/prop/formula.py`; `¬a` is kept as written (tactics such as
`intros` and `constructor` see the difference) and unfolded only for comparisons.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from lean_env.prop.formula import FALSE, TRUE, Formula, show
from lean_env.prop.lexer import ProofError, unsupported
from lean_env.prop.syntax import TREE_TAGS, Statement, parse

VERSION = "prop-2"
MAX_PROOF_CHARS = 8000
MAX_STATEMENT_CHARS = 2000
# Tactic runs plus goals created by case splits. Honest proofs of the benchmark use a few dozen;
# the cap stops a small text (`rcases` patterns, `<;>` chains) from demanding exponential work.
MAX_STEPS = 20_000


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str = ""  # first error, "" when ok
    line: int | None = None  # 1-based line in statement + " := " + proof
    col: int | None = None  # 0-based column
    unsupported: bool = False  # True when the failure is a construct outside the fragment


_OK = CheckResult(True)


def check(statement: str, proof: str) -> CheckResult:
    """Would Lean 4 core accept `statement + " := " + proof`? Never raises."""
    try:
        if not isinstance(statement, str) or not isinstance(proof, str):
            return CheckResult(False, "statement and proof must be strings")
        if len(proof) > MAX_PROOF_CHARS:
            return CheckResult(False, f"proof longer than {MAX_PROOF_CHARS} characters", unsupported=True)
        if len(statement) > MAX_STATEMENT_CHARS:
            return CheckResult(False, f"statement longer than {MAX_STATEMENT_CHARS} characters",
                               unsupported=True)
        st, tree = parse(statement, proof)
        Engine(st).check_proof(tree)
        return _OK
    except ProofError as e:
        return CheckResult(False, e.message, e.line, e.col, e.unsupported)
    except RecursionError:
        return CheckResult(False, "proof nested too deeply", unsupported=True)
    except Exception as e:  # a bug here must not become a crash (or a pass) for the caller
        return CheckResult(False, f"internal checker error: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------------------------------
# formulas

_BIN = frozenset({"and", "or", "imp", "iff"})
_NF: dict = {}


def nf(f: Formula) -> Formula:
    """`f` with every `¬a` unfolded to `a → False` (memoised; formulas without metavariables)."""
    r = _NF.get(f)
    if r is None:
        tag = f[0]
        if tag == "not":
            r = ("imp", nf(f[1]), FALSE)
        elif tag in _BIN:
            r = (tag, nf(f[1]), nf(f[2]))
        else:
            r = f
        if len(_NF) > 200_000:
            _NF.clear()
        _NF[f] = r
    return r


def defeq(a: Formula, b: Formula) -> bool:
    """Lean's definitional equality on metavariable-free formulas: equal once `¬` is unfolded."""
    return a == b or nf(a) == nf(b)


def _erase_mvars(f: Formula) -> Formula:
    tag = f[0]
    if tag == "mvar":
        return ("var", f"?m{f[1]}")
    if tag in _BIN:
        return (tag, _erase_mvars(f[1]), _erase_mvars(f[2]))
    if tag == "not":
        return ("not", _erase_mvars(f[1]))
    return f


def pretty(f: Formula) -> str:
    return show(_erase_mvars(f))


def _whnf_pi(f: Formula):
    """(domain, codomain) if `f` is an implication once `¬` is unfolded at its head, else None."""
    tag = f[0]
    if tag == "imp":
        return f[1], f[2]
    if tag == "not":
        return f[1], FALSE
    return None


def _arity(f: Formula) -> int:
    """Number of premises, unfolding `¬` whenever a conclusion is one (`forallMetaTelescopeReducing`)."""
    n = 0
    while True:
        tag = f[0]
        if tag == "imp":
            f = f[2]
        elif tag == "not":
            f = FALSE
        else:
            return n
        n += 1


def _structure_fields(f: Formula):
    """Fields of the single constructor of a structure type (∧, ↔, True), else None."""
    tag = f[0]
    if tag == "and":
        return (f[1], f[2])
    if tag == "iff":
        return (("imp", f[1], f[2]), ("imp", f[2], f[1]))
    if tag == "true":
        return ()
    return None


def _constructors(f: Formula):
    """[(constructor name, field types)] of an inductive proposition, else None (`¬a`, `a → b`, variables)."""
    tag = f[0]
    if tag == "or":
        return [("inl", (f[1],)), ("inr", (f[2],))]
    if tag == "false":
        return []
    fields = _structure_fields(f)
    return None if fields is None else [("intro", fields)]


# --------------------------------------------------------------------------------------------------
# constants and hypotheses

_A, _B, _C = ("tpl", 0), ("tpl", 1), ("tpl", 2)


def _imp(*fs: Formula) -> Formula:
    out = fs[-1]
    for f in reversed(fs[:-1]):
        out = ("imp", f, out)
    return out


# name -> (number of implicit Prop arguments, type with ("tpl", k) for the k-th implicit)
CONSTANTS: dict[str, tuple[int, Formula]] = {
    "And.intro": (2, _imp(_A, _B, ("and", _A, _B))),
    "And.left": (2, _imp(("and", _A, _B), _A)),
    "And.right": (2, _imp(("and", _A, _B), _B)),
    "Or.inl": (2, _imp(_A, ("or", _A, _B))),
    "Or.inr": (2, _imp(_B, ("or", _A, _B))),
    "Or.elim": (3, _imp(("or", _A, _B), ("imp", _A, _C), ("imp", _B, _C), _C)),
    "Iff.intro": (2, _imp(("imp", _A, _B), ("imp", _B, _A), ("iff", _A, _B))),
    "Iff.mp": (2, _imp(("iff", _A, _B), _A, _B)),
    "Iff.mpr": (2, _imp(("iff", _A, _B), _B, _A)),
    "False.elim": (1, _imp(FALSE, _A)),
    "absurd": (2, _imp(_A, ("not", _A), _B)),
    "id": (1, _imp(_A, _A)),
    "Classical.byContradiction": (1, _imp(_imp(("not", _A), FALSE), _A)),
    "True.intro": (0, TRUE),
    "trivial": (0, TRUE),
}


def _subst(f: Formula, base: int) -> Formula:
    tag = f[0]
    if tag == "tpl":
        return ("mvar", base + f[1])
    if tag in _BIN:
        return (tag, _subst(f[1], base), _subst(f[2], base))
    if tag == "not":
        return ("not", _subst(f[1], base))
    return f


_uids = itertools.count()


def hyp(name: str | None, f: Formula) -> tuple:
    return (name, f, next(_uids))


def lookup(ctx: tuple, name: str):
    for e in reversed(ctx):
        if e[0] == name:
            return e
    return None


def remove(ctx: tuple, entry: tuple) -> tuple:
    uid = entry[2]
    return tuple(e for e in ctx if e[2] != uid)


def _goal_text(goal) -> str:
    return "⊢ " + pretty(goal[1])


# --------------------------------------------------------------------------------------------------
# term elaboration


class Elab:
    """One top-level term elaboration (an `exact`, `refine`, `have`, `apply` or term-mode proof).

    `mv` holds metavariable assignments (None: unassigned); `pending` the nested `by` blocks, run at
    the end like Lean's synthetic metavariables; `holes` the `?_` goals a `refine` creates.
    """

    __slots__ = ("eng", "mv", "pending", "holes", "allow_holes")

    def __init__(self, eng: "Engine", allow_holes: bool = False):
        self.eng = eng
        self.mv: list = []
        self.pending: list = []
        self.holes: list = []
        self.allow_holes = allow_holes

    # ---- metavariables

    def fresh(self) -> Formula:
        self.mv.append(None)
        return ("mvar", len(self.mv) - 1)

    def inst(self, f: Formula) -> Formula:
        return self._inst(f) if self.mv else f

    def _inst(self, f: Formula) -> Formula:
        tag = f[0]
        if tag == "mvar":
            v = self.mv[f[1]]
            return f if v is None else self._inst(v)
        if tag in _BIN:
            a, b = self._inst(f[1]), self._inst(f[2])
            return f if a is f[1] and b is f[2] else (tag, a, b)
        if tag == "not":
            a = self._inst(f[1])
            return f if a is f[1] else ("not", a)
        return f

    def has_mvar(self, f: Formula) -> bool:
        """Does the instantiated `f` still contain an unassigned metavariable?"""
        if not self.mv:
            return False
        tag = f[0]
        if tag == "mvar":
            v = self.mv[f[1]]
            return True if v is None else self.has_mvar(v)
        if tag in _BIN:
            return self.has_mvar(f[1]) or self.has_mvar(f[2])
        if tag == "not":
            return self.has_mvar(f[1])
        return False

    def walk(self, f: Formula) -> Formula:
        while f[0] == "mvar":
            v = self.mv[f[1]]
            if v is None:
                return f
            f = v
        return f

    def unify(self, a: Formula, b: Formula) -> bool:
        """First-order unification up to `¬a ≡ a → False`; on failure no assignment is kept."""
        if not self.mv:
            return defeq(a, b)
        trail: list = []
        if self._unify(a, b, trail):
            return True
        for i in trail:
            self.mv[i] = None
        return False

    def _unify(self, a: Formula, b: Formula, trail: list) -> bool:
        a, b = self.walk(a), self.walk(b)
        if a == b:
            return True
        ta, tb = a[0], b[0]
        if ta == "mvar":
            return self._assign(a[1], b, trail)
        if tb == "mvar":
            return self._assign(b[1], a, trail)
        if ta == tb:
            if ta in _BIN:
                return self._unify(a[1], b[1], trail) and self._unify(a[2], b[2], trail)
            if ta == "not":
                return self._unify(a[1], b[1], trail)
            return False
        if ta == "not" and tb == "imp":
            return self._unify(("imp", a[1], FALSE), b, trail)
        if ta == "imp" and tb == "not":
            return self._unify(a, ("imp", b[1], FALSE), trail)
        return False

    def _assign(self, i: int, f: Formula, trail: list) -> bool:
        if self._occurs(i, f):
            return False
        self.mv[i] = f
        trail.append(i)
        return True

    def _occurs(self, i: int, f: Formula) -> bool:
        f = self.walk(f)
        tag = f[0]
        if tag == "mvar":
            return f[1] == i
        if tag in _BIN:
            return self._occurs(i, f[1]) or self._occurs(i, f[2])
        if tag == "not":
            return self._occurs(i, f[1])
        return False

    def known(self, exp: Formula | None, node, what: str) -> Formula:
        """The expected type of `node`, which must be fully known (Lean would postpone otherwise)."""
        if exp is None:
            raise unsupported(f"{what} without a known expected type", node[1])
        t = self.inst(exp)
        if self.has_mvar(t):
            raise unsupported(f"{what} whose expected type is not known yet ({pretty(t)})", node[1])
        return t

    def finish(self, tok) -> None:
        """End of the elaboration: every implicit argument solved, then the nested `by` blocks run."""
        for v in self.mv:
            if v is None:
                raise ProofError("don't know how to synthesize implicit argument", tok)
        for ctx, t, block, by_tok in self.pending:
            left = self.eng.run_block(block, [(ctx, self.inst(t))])
            if left:
                raise ProofError(f"unsolved goals {_goal_text(left[0])}", by_tok)

    # ---- terms

    def elab(self, node, ctx: tuple, exp: Formula | None) -> Formula:
        """Elaborate `node` in `ctx` against `exp` (None: infer); returns the term's type."""
        tag = node[0]
        if tag == "id":
            return self.check_type(self.ident_type(node, ctx), exp, node)
        if tag == "app":
            return self.elab_app(node, ctx, exp)
        if tag == "fun":
            return self.elab_fun(node, ctx, exp)
        if tag == "anon":
            return self.elab_anon(node, ctx, exp)
        if tag == "proj":
            t = self.project(self.elab(node[2], ctx, None), node[3], node[1])
            return self.check_type(t, exp, node)
        if tag == "by":
            if exp is None:
                raise unsupported("'by' without a known expected type", node[1])
            self.pending.append((ctx, exp, node[2], node[1]))
            return exp
        if tag == "shole":
            if not self.allow_holes:
                raise ProofError("'?_' is only allowed in 'refine' (it would leave a goal here)", node[1])
            if exp is None:
                raise unsupported("'?_' without a known expected type", node[1])
            self.holes.append((ctx, exp, node[1]))
            return exp
        if tag == "ascr":
            self.elab(node[2], ctx, node[3])
            return self.check_type(node[3], exp, node)
        if tag == "em":
            f = node[2]
            return self.check_type(("or", f, ("not", f)), exp, node)
        if tag == "hole":
            raise ProofError("don't know how to synthesize placeholder '_'", node[1])
        raise ProofError(f"unexpected term {tag}", node[1])  # not reachable from the parser

    def check_type(self, t: Formula, exp: Formula | None, node) -> Formula:
        if exp is None or self.unify(t, exp):
            return t
        raise ProofError(f"type mismatch: the term has type {pretty(self.inst(t))} but is expected "
                         f"to have type {pretty(self.inst(exp))}", node[1])

    def ident_type(self, node, ctx: tuple) -> Formula:
        _, tok, name, parts = node
        e = lookup(ctx, parts[0])
        if e is not None:  # a hypothesis, possibly with field accesses: `h.left.mp`
            t = e[1]
            for field in parts[1:]:
                t = self.project(t, field, tok)
            return t
        const = CONSTANTS.get(name)
        if const is not None:
            k, t = const
            if not k:
                return t
            base = len(self.mv)
            self.mv.extend([None] * k)
            return _subst(t, base)
        if name == "Classical.em":
            raise unsupported("Classical.em without its proposition argument", tok)
        if parts[0] in self.eng.prop_vars:
            raise ProofError(f"'{parts[0]}' is a proposition, not a proof of one", tok)
        raise ProofError(f"unknown identifier '{name}'", tok)

    def project(self, t: Formula, field: str, tok) -> Formula:
        t = self.inst(t)
        if self.has_mvar(t):
            raise unsupported(f"'.{field}' on a term whose type is not known yet", tok)
        tag = t[0]
        if tag == "and":
            if field in ("1", "left"):
                return t[1]
            if field in ("2", "right"):
                return t[2]
        elif tag == "iff":
            if field in ("1", "mp"):
                return ("imp", t[1], t[2])
            if field in ("2", "mpr"):
                return ("imp", t[2], t[1])
        elif tag == "or" and field == "elim":  # `h.elim` is `Or.elim h`
            c = self.fresh()
            return _imp(("imp", t[1], c), ("imp", t[2], c), c)
        elif tag == "false" and field == "elim":  # `h.elim` is `False.elim h`
            return self.fresh()
        raise ProofError(f"invalid field notation '.{field}' on a term of type {pretty(t)}", tok)

    def elab_app(self, node, ctx: tuple, exp: Formula | None) -> Formula:
        """Lean's `elabAppArgs`: explicit arguments left to right; the expected type is unified with
        the result type before the first argument that is not `_`, `?_` or `by` (and retried at later
        arguments while that unification fails), like `propagateExpectedType`."""
        args = node[3]
        ft = self.elab(node[2], ctx, None)
        n = len(args)
        propagate = exp is not None
        for k, arg in enumerate(args):
            if propagate and arg[0] not in ("hole", "shole", "by"):
                body = self.result_after(ft, n - k)
                if body is not None and self.unify(body, exp):
                    propagate = False
            ft = self.walk(ft)
            tag = ft[0]
            if tag == "imp":
                dom, ft = ft[1], ft[2]
            elif tag == "not":
                dom, ft = ft[1], FALSE
            elif tag == "mvar":
                raise unsupported("an argument to a term whose type is not known yet", arg[1])
            else:
                raise ProofError(f"function expected: a term of type {pretty(self.inst(ft))} takes no "
                                 "argument", arg[1])
            self.elab(arg, ctx, dom)
        return self.check_type(ft, exp, node)

    def result_after(self, ft: Formula, m: int) -> Formula | None:
        """The type left after `m` more arguments, or None (`getForallBody` after `whnf` of the head)."""
        ft = self.walk(ft)
        if ft[0] == "not":
            ft = ("imp", ft[1], FALSE)
        for _ in range(m):
            if ft[0] != "imp":
                return None
            ft = ft[2]
        return ft

    def elab_fun(self, node, ctx: tuple, exp: Formula | None) -> Formula:
        t = self.known(exp, node, "'fun'")
        for b in node[2]:
            kind = b[0]
            if kind == "typed":
                for name in b[2]:
                    dom, t = self.binder(t, b)
                    if not defeq(b[3], dom):
                        raise ProofError(f"type mismatch: binder annotated {pretty(b[3])} where "
                                         f"{pretty(dom)} is expected", b[1])
                    ctx = ctx + (hyp(name, b[3]),)
            else:
                dom, t = self.binder(t, b)
                if kind == "name":
                    ctx = ctx + (hyp(b[2], dom),)
                else:
                    ctx = self.eng.destructure(ctx, dom, b)
        self.elab(node[3], ctx, t)
        return exp

    @staticmethod
    def binder(t: Formula, b):
        pi = _whnf_pi(t)
        if pi is None:
            raise ProofError(f"type mismatch: 'fun' binder where the expected type {pretty(t)} is not "
                             "an implication", b[1])
        return pi

    def elab_anon(self, node, ctx: tuple, exp: Formula | None) -> Formula:
        t = self.known(exp, node, "anonymous constructor ⟨…⟩")
        fields = _structure_fields(t)
        if fields is None:
            raise ProofError(f"invalid constructor ⟨...⟩: the expected type {pretty(t)} is not a "
                             "structure (∧, ↔ or True)", node[1])
        items = node[2]
        n, m = len(items), len(fields)
        if n < m or (m == 0 and n):
            raise ProofError(f"invalid constructor ⟨...⟩: {n} arguments for {pretty(t)}, which has "
                             f"{m} fields", node[1])
        if n > m:  # `⟨a, b, c⟩ : p ∧ q ∧ r` is `⟨a, ⟨b, c⟩⟩`
            items = list(items[:m - 1]) + [("anon", items[m - 1][1], items[m - 1:])]
        for item, f in zip(items, fields):
            self.elab(item, ctx, f)
        return exp


# --------------------------------------------------------------------------------------------------
# tactics


class Engine:
    def __init__(self, st: Statement):
        self.st = st
        self.prop_vars = frozenset(st.prop_vars)
        self.steps = 0

    def spend(self, n: int, tok) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise ProofError(f"proof too expensive to check (more than {MAX_STEPS} steps)", tok,
                             unsupported=True)

    def check_proof(self, tree) -> None:
        st = self.st
        ctx = tuple(hyp(name, f) for name, f in st.hyps)
        kind, tok, body = tree
        if kind == "by":
            left = self.run_block(body, [(ctx, st.goal)])
            if left:
                raise ProofError(f"unsolved goals {_goal_text(left[0])}", tok)
        else:
            el = Elab(self)
            el.elab(body, ctx, st.goal)
            el.finish(tok)

    def run_block(self, block, goals: list) -> list:
        for tac in block[1]:
            goals = self.run(tac, goals)
        return goals

    def run(self, tac, goals: list) -> list:
        if not goals:
            raise ProofError("no goals to be proved", tac[1])
        self.spend(1, tac[1])
        return _HANDLERS[tac[0]](self, tac, goals)

    # ---- introduction

    def t_intro(self, tac, goals):
        ctx, t = goals[0]
        pats = tac[2] or [("name", tac[1], None)]
        for pat in pats:
            pi = _whnf_pi(t)
            if pi is None:
                raise ProofError(f"intro: no binder to introduce, the goal is {pretty(t)}", pat[1])
            dom, t = pi
            if pat[0] == "name":
                ctx = ctx + (hyp(pat[2], dom),)
            else:  # `intro ⟨a, b⟩` is `intro h; match h with | ⟨a, b⟩ => ?_` (h is cleared)
                ctx = self.destructure(ctx, dom, pat)
        return [(ctx, t)] + goals[1:]

    def t_intros(self, tac, goals):
        if tac[2]:  # `intros x y` is `intro x y`
            return self.t_intro(tac, goals)
        ctx, t = goals[0]
        while t[0] == "imp":  # `intros` counts syntactic arrows: it does not unfold `¬`
            ctx = ctx + (hyp(None, t[1]),)
            t = t[2]
        return [(ctx, t)] + goals[1:]

    def destructure(self, ctx: tuple, f: Formula, pat) -> tuple:
        """An anonymous-constructor pattern `⟨a, b, …⟩` matched against a hypothesis of type `f`."""
        fields = _structure_fields(f)
        if fields is None:
            raise ProofError(f"invalid pattern ⟨...⟩ for a hypothesis of type {pretty(f)}", pat[1])
        items = pat[2]
        n, m = len(items), len(fields)
        if n < m or (m == 0 and n):
            raise ProofError(f"invalid pattern: {n} components for {pretty(f)}, which has {m} fields",
                             pat[1])
        if n > m:
            items = list(items[:m - 1]) + [("tuple", items[m - 1][1], items[m - 1:])]
        for item, field in zip(items, fields):
            if item[0] == "name":
                ctx = ctx + (hyp(item[2], field),)
            else:
                ctx = self.destructure(ctx, field, item)
        return ctx

    # ---- closing and refining with terms

    def t_exact(self, tac, goals):
        ctx, t = goals[0]
        el = Elab(self)
        el.elab(tac[2], ctx, t)
        el.finish(tac[1])
        return goals[1:]

    def t_refine(self, tac, goals):
        ctx, t = goals[0]
        el = Elab(self, allow_holes=True)
        el.elab(tac[2], ctx, t)
        el.finish(tac[1])
        return [(c, el.inst(h)) for c, h, _ in el.holes] + goals[1:]

    def t_apply(self, tac, goals):
        """Lean's `MVarId.apply`: try the number of new arguments from (arity of the term's type) −
        (arity of the goal) upwards until the conclusion unifies with the goal; the new goals are the
        explicit premises, in order. Implicit arguments must all be solved."""
        ctx, target = goals[0]
        term, tok = tac[2], tac[1]
        el = Elab(self)
        if term[0] == "id" and lookup(ctx, term[3][0]) is None and term[2] in CONSTANTS:
            # `apply c` uses the constant itself: its implicit binders count as arguments too
            k, tpl = CONSTANTS[term[2]]
            base = len(el.mv)
            el.mv.extend([None] * k)
            ft = _subst(tpl, base)
        else:
            ft = el.inst(el.elab(term, ctx, None))
        premises, concl = [], ft
        while True:
            pi = _whnf_pi(el.walk(concl))
            if pi is None:
                break
            premises.append(pi[0])
            concl = pi[1]
        concl = el.walk(concl)
        if concl[0] == "mvar":  # conclusion is a metavariable: all premises become arguments
            candidates = [len(premises)]
        else:
            candidates = range(max(0, len(premises) - _arity(target)), len(premises) + 1)
        for i in candidates:
            rest = ft
            for _ in range(i):
                rest = _whnf_pi(el.walk(rest))[1]
            if el.unify(rest, target):
                new = premises[:i]
                break
        else:
            raise ProofError(f"apply failed: could not unify the conclusion of {pretty(el.inst(ft))} "
                             f"with the goal {pretty(target)}", tok)
        el.finish(tok)
        return [(ctx, el.inst(p)) for p in new] + goals[1:]

    # ---- constructors

    def t_constructor(self, tac, goals):
        ctx, t = goals[0]
        tag = t[0]
        if tag == "and":
            new = [(ctx, t[1]), (ctx, t[2])]
        elif tag == "iff":
            new = [(ctx, ("imp", t[1], t[2])), (ctx, ("imp", t[2], t[1]))]
        elif tag == "true":
            new = []
        elif tag == "or":  # the first constructor that applies: Or.inl
            new = [(ctx, t[1])]
        else:
            raise ProofError(f"constructor: the goal {pretty(t)} is not an inductive type with an "
                             "applicable constructor", tac[1])
        return new + goals[1:]

    def t_left(self, tac, goals):
        return self._or_side(tac, goals, 1)

    def t_right(self, tac, goals):
        return self._or_side(tac, goals, 2)

    def _or_side(self, tac, goals, side: int):
        ctx, t = goals[0]
        if t[0] != "or":
            raise ProofError(f"{tac[0]}: the goal {pretty(t)} is not a disjunction", tac[1])
        return [(ctx, t[side])] + goals[1:]

    def t_exfalso(self, tac, goals):
        ctx, _ = goals[0]
        return [(ctx, FALSE)] + goals[1:]

    # ---- closing tactics

    def t_assumption(self, tac, goals):
        ctx, t = goals[0]
        if not any(defeq(e[1], t) for e in ctx):
            raise ProofError(f"assumption: no hypothesis has type {pretty(t)}", tac[1])
        return goals[1:]

    @staticmethod
    def contradictory(ctx: tuple, types: set | None = None) -> bool:
        """`contradiction`'s cases we model: a hypothesis `False`, or `¬p` (or `p → False`) and `p`.
        `types` is the set of the hypotheses' unfolded types, if the caller has it."""
        if types is None:
            types = {nf(e[1]) for e in ctx}
        if FALSE in types:
            return True
        for e in ctx:
            f = e[1]
            if (f[0] == "not" or (f[0] == "imp" and f[2] == FALSE)) and nf(f[1]) in types:
                return True
        return False

    def t_contradiction(self, tac, goals):
        if not self.contradictory(goals[0][0]):
            raise ProofError("contradiction: no contradictory hypotheses found", tac[1])
        return goals[1:]

    def trivially(self, ctx: tuple, t: Formula) -> bool:
        """`trivial` succeeds. Sound subset of its macro: assumption, contradiction, True.intro,
        and `apply And.intro <;> trivial`. Each alternative either closes the goal or fails, and
        Lean backtracks over them, so any alternative we see succeed makes Lean succeed."""
        types = {nf(e[1]) for e in ctx}
        if self.contradictory(ctx, types):
            return True

        def go(t: Formula) -> bool:
            if t == TRUE or nf(t) in types:
                return True
            return t[0] == "and" and go(t[1]) and go(t[2])

        return go(t)

    def t_trivial(self, tac, goals):
        ctx, t = goals[0]
        if not self.trivially(ctx, t):
            raise ProofError(f"trivial failed on the goal {pretty(t)}", tac[1])
        return goals[1:]

    # ---- hypotheses and goals

    def t_show(self, tac, goals):
        ctx, t = goals[0]
        f = tac[2]
        if not defeq(f, t):
            raise ProofError(f"show: {pretty(f)} does not match the goal {pretty(t)}", tac[1])
        return [(ctx, f)] + goals[1:]

    def t_have(self, tac, goals):
        ctx, t = goals[0]
        _, tok, name, f, value = tac
        el = Elab(self)
        ty = el.elab(value, ctx, f)
        el.finish(tok)
        ty = f if f is not None else el.inst(ty)
        return [(ctx + (hyp(name, ty),), t)] + goals[1:]

    def t_focus(self, tac, goals):
        left = self.run_block(tac[2], [goals[0]])
        if left:
            raise ProofError(f"unsolved goals {_goal_text(left[0])}", tac[1])
        return goals[1:]

    def t_all(self, tac, goals):
        """`t <;> t'`: t on the main goal, then t' on every goal t produced."""
        out = []
        for g in self.run(tac[2], [goals[0]]):
            out.extend(self.run(tac[3], [g]))
        self.spend(len(out), tac[1])
        return out + goals[1:]

    # ---- case analysis

    def scrutinee(self, term, ctx: tuple, tok):
        """(type, hypothesis or None) of a `cases`/`rcases` target. A bare hypothesis name is used
        as is (and cleared by the case split); any other term is elaborated and generalised."""
        if term[0] == "id" and len(term[3]) == 1:
            e = lookup(ctx, term[2])
            if e is not None:
                return e[1], e
        if term[0] == "ascr":
            raise unsupported("a type ascription as a cases target", term[1])
        el = Elab(self)
        t = el.elab(term, ctx, None)
        el.finish(tok)
        return el.inst(t), None

    def t_cases(self, tac, goals):
        ctx, t = goals[0]
        _, tok, term, alts = tac
        f, entry = self.scrutinee(term, ctx, tok)
        ctors = _constructors(f)
        if ctors is None:
            raise ProofError(f"cases: {pretty(f)} is not an inductive type", term[1])
        base = remove(ctx, entry) if entry is not None else ctx
        if alts is None:
            return [(base + tuple(hyp(None, x) for x in fields), t) for _, fields in ctors] + goals[1:]
        by_name = dict(ctors)
        seen = set()
        for bar, cname, names, block in alts:
            if cname not in by_name:
                raise ProofError(f"invalid alternative name '{cname}'", bar)
            if cname in seen:
                raise ProofError(f"duplicate alternative name '{cname}'", bar)
            seen.add(cname)
            fields = by_name[cname]
            if len(names) > len(fields):
                raise ProofError(f"too many variable names provided at alternative '{cname}'", bar)
            names = list(names) + [None] * (len(fields) - len(names))
            g = (base + tuple(hyp(n, x) for n, x in zip(names, fields)), t)
            left = self.run_block(block, [g])
            if left:
                raise ProofError(f"unsolved goals {_goal_text(left[0])}", bar)
        for cname, _ in ctors:
            if cname not in seen:
                raise ProofError(f"alternative '{cname}' has not been provided", tok)
        return goals[1:]

    def t_rcases(self, tac, goals):
        ctx, t = goals[0]
        _, tok, term, pat = tac
        if _unwrap(pat)[0] == "one":
            raise unsupported("rcases/obtain with a single-name pattern", pat[1])
        f, entry = self.scrutinee(term, ctx, tok)
        if entry is None:  # a term is first generalised into an (inaccessible) hypothesis
            entry = hyp(None, f)
            ctx = ctx + (entry,)
        return [(c, t) for c in self.rcases(ctx, entry, pat)] + goals[1:]

    def rcases(self, ctx: tuple, entry: tuple, pat) -> list:
        """Contexts produced by matching `pat` against hypothesis `entry` (Lean's `rcasesCore`)."""
        pat = _unwrap(pat)
        if pat[0] == "one":  # the hypothesis was named when it was introduced
            return [ctx]
        f = entry[1]
        ctors = _constructors(f)
        if ctors is None:
            raise ProofError(f"rcases: {pretty(f)} is not an inductive type", pat[1])
        alts = _as_alts(pat)
        if f[0] != "or":
            if len(alts) > 1:
                raise unsupported(f"an alternative pattern for {pretty(f)}", pat[1])
            if f[0] in ("true", "false") and not (pat[0] == "tuple" and not pat[2]):
                raise unsupported(f"a pattern other than ⟨⟩ for {pretty(f)}", pat[1])
        base = remove(ctx, entry)
        out = []
        for fields, fpats in _match_constructors(ctors, alts, pat[1]):
            new = [hyp(_pat_name(p), x) for p, x in zip(fpats, fields)]
            ctxs = [base + tuple(new)]
            for e, p in zip(new, fpats):  # later fields are matched in every goal of earlier ones
                ctxs = [c2 for c in ctxs for c2 in self.rcases(c, e, p)]
            self.spend(len(ctxs), pat[1])
            out.extend(ctxs)
        return out


def _unwrap(pat):
    while pat[0] == "paren":
        pat = pat[2]
    return pat


def _as_alts(pat) -> list:
    pat = _unwrap(pat)
    return list(pat[2]) if pat[0] == "alts" else [pat]


def _as_tuple(pat) -> list:
    pat = _unwrap(pat)
    return list(pat[2]) if pat[0] == "tuple" else [pat]


def _pat_name(pat):
    pat = _unwrap(pat)
    return pat[2] if pat[0] == "one" else None


def _match_constructors(ctors, alts: list, tok) -> list:
    """Lean's `processConstructors`: the i-th alternative goes to the i-th constructor; surplus
    alternatives go, as one alternation, to the last constructor; missing ones are `_`."""
    blank = ("one", tok, None)
    out = []
    for idx, (_, fields) in enumerate(ctors):
        p = alts[0] if alts else blank
        rest = alts[1:]
        if idx == len(ctors) - 1 and rest:
            ps = [("alts", tok, alts)]
        else:
            ps = _as_tuple(p)
        alts = rest
        out.append((fields, _match_fields(len(fields), ps, tok)))
    return out


def _match_fields(n: int, ps: list, tok) -> list:
    """Lean's `processConstructor`: one pattern per field; surplus patterns go, as one tuple, to the
    last field; missing ones are `_`."""
    blank = ("one", tok, None)
    out = []
    for i in range(n):
        if i + 1 < n:
            out.append(ps[0] if ps else blank)
            ps = ps[1:]
        elif not ps:
            out.append(blank)
        elif len(ps) == 1:
            out.append(ps[0])
        else:
            out.append(("tuple", tok, ps))
    return out


# One handler per tactic tree the parser builds (`syntax.TACTIC_PARSERS` is the one list of tactics);
# a tree tag without its `Engine.t_<tag>` fails here, at import.
_HANDLERS = {tag: getattr(Engine, f"t_{tag}") for tag in TREE_TAGS}
