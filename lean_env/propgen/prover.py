"""A decision procedure for propositional logic that returns natural-deduction proof terms.

Intuitionistic logic first: Dyckhoff's contraction-free sequent calculus G4ip (a.k.a. LJT), which
terminates without loop checking.  The search is memoised on the sequent (a frozenset of hypothesis
formulas and a goal), so repeated sub-sequents across the tens of thousands of candidate formulas
the theorem generator tries cost nothing the second time.  A successful search yields a derivation
tree; `_translate` turns it into a natural-deduction term (lambda, application, pair, projections,
inl/inr, case, ex-falso, iff-intro/projections), which is then beta/eta-normalised and cleaned
(`case` whose branch ignores its binder is replaced by that branch).

If no intuitionistic proof exists but the formula is a classical tautology (truth table), the
classical prover introduces/splits as far as the goal allows, then tries excluded middle
(`Classical.em v`) on one or two atoms with intuitionistic branches, and otherwise falls back on
`Classical.byContradiction` (by Glivenko's theorem `Γ, ¬G ⊢ False` is then intuitionistically
provable, so the fallback always succeeds).

Internally `¬a` is unfolded to `a → False` (Lean's definition); the terms do not carry formulas, so a
renderer re-derives every type from the statement (see `lean_env/propgen/render.py`).

Terms (plain tuples, internal binder names are fresh labels such as `x12`):

    ("var", x)            ("lam", x, body)           ("app", f, a)
    ("pair", a, b)        ("fst", t)  ("snd", t)      -- ∧ intro / elim
    ("iff", f, g)         ("mp", t)   ("mpr", t)      -- ↔ intro / elim
    ("inl", t) ("inr", t) ("case", s, x, l, y, r)     -- ∨ intro / elim (Or.elim s (fun x => l) (fun y => r))
    ("efq", t)            ("triv",)                   -- False.elim, True.intro
    ("em", A)             ("bycontra", x, body)       -- Classical.em A, Classical.byContradiction (fun x => body)

Terms are beta-normal and bidirectional: introduction forms (lam, pair, iff, inl, inr, case, efq, triv,
bycontra) only occur where the expected type is known (checking position), so each can be printed as
Lean 4 text without type ascriptions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

from lean_env.prop.formula import FALSE, Formula, variables

INTUITIONISTIC = "intuitionistic"
CLASSICAL = "classical"

_MISSING = object()
_MEMO: dict = {}
_MEMO_LIMIT = 2_000_000
_UNFOLD: dict = {}
_SKEY: dict = {}


# --------------------------------------------------------------------------------------------------
# formulas


def unfold(f: Formula) -> Formula:
    """`f` with every `¬a` replaced by `a → False` (deep), memoised."""
    r = _UNFOLD.get(f)
    if r is not None:
        return r
    tag = f[0]
    if tag == "not":
        r = ("imp", unfold(f[1]), FALSE)
    elif tag in ("and", "or", "imp", "iff"):
        r = (tag, unfold(f[1]), unfold(f[2]))
    else:
        r = f
    if len(_UNFOLD) < 1_000_000:
        _UNFOLD[f] = r
    return r


def _skey(f: Formula):
    """A sort key that does not depend on Python's hash seed (determinism across processes)."""
    k = _SKEY.get(f)
    if k is None:
        k = repr(f)
        if len(_SKEY) < 1_000_000:
            _SKEY[f] = k
    return k


def evaluate(f: Formula, val: Mapping[str, bool]) -> bool:
    tag = f[0]
    if tag == "var":
        return val[f[1]]
    if tag == "true":
        return True
    if tag == "false":
        return False
    if tag == "not":
        return not evaluate(f[1], val)
    a = evaluate(f[1], val)
    if tag == "and":
        return a and evaluate(f[2], val)
    if tag == "or":
        return a or evaluate(f[2], val)
    if tag == "imp":
        return (not a) or evaluate(f[2], val)
    if tag == "iff":
        return a == evaluate(f[2], val)
    raise ValueError(f"not a formula: {f!r}")


def is_tautology(f: Formula, hyps: Sequence[Formula] = ()) -> bool:
    """Classical validity of `hyps ⊢ f` by truth table."""
    vs: list[str] = []
    for h in hyps:
        variables(h, vs)
    variables(f, vs)
    for bits in itertools.product((False, True), repeat=len(vs)):
        val = dict(zip(vs, bits))
        if all(evaluate(h, val) for h in hyps) and not evaluate(f, val):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# G4ip search on sequents (frozenset of unfolded formulas, unfolded goal) -> derivation | None


def _search(ctx: frozenset, goal: Formula):
    key = (ctx, goal)
    r = _MEMO.get(key, _MISSING)
    if r is not _MISSING:
        return r
    r = _search_uncached(ctx, goal)
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[key] = r
    return r


def _search_uncached(ctx: frozenset, goal: Formula):
    if goal in ctx:
        return ("ax",)
    if FALSE in ctx:
        return ("efq",)
    tag = goal[0]
    if tag == "true":
        return ("triv",)
    # invertible right rules
    if tag == "imp":
        d = _search(ctx | {goal[1]}, goal[2])
        return None if d is None else ("impR", d)
    if tag == "and":
        d1 = _search(ctx, goal[1])
        if d1 is None:
            return None
        d2 = _search(ctx, goal[2])
        return None if d2 is None else ("andR", d1, d2)
    if tag == "iff":
        a, b = goal[1], goal[2]
        d1 = _search(ctx, ("imp", a, b))
        if d1 is None:
            return None
        d2 = _search(ctx, ("imp", b, a))
        return None if d2 is None else ("iffR", d1, d2)
    items = sorted(ctx, key=_skey)
    # invertible, non-branching left rules
    for f in items:
        t = f[0]
        if t == "and":
            d = _search((ctx - {f}) | {f[1], f[2]}, goal)
            return None if d is None else ("andL", f, d)
        if t == "iff":
            d = _search((ctx - {f}) | {("imp", f[1], f[2]), ("imp", f[2], f[1])}, goal)
            return None if d is None else ("iffL", f, d)
        if t == "true":
            d = _search(ctx - {f}, goal)
            return None if d is None else ("topL", f, d)
        if t == "imp":
            a, b = f[1], f[2]
            if a in ctx:
                d = _search((ctx - {f}) | {b}, goal)
                return None if d is None else ("mpL", f, d)
            ta = a[0]
            if ta == "true":
                d = _search((ctx - {f}) | {b}, goal)
                return None if d is None else ("topImpL", f, d)
            if ta == "false":
                d = _search(ctx - {f}, goal)
                return None if d is None else ("botImpL", f, d)
            if ta == "and":
                d = _search((ctx - {f}) | {("imp", a[1], ("imp", a[2], b))}, goal)
                return None if d is None else ("andImpL", f, d)
            if ta == "or":
                d = _search((ctx - {f}) | {("imp", a[1], b), ("imp", a[2], b)}, goal)
                return None if d is None else ("orImpL", f, d)
            if ta == "iff":
                new = ("imp", ("imp", a[1], a[2]), ("imp", ("imp", a[2], a[1]), b))
                d = _search((ctx - {f}) | {new}, goal)
                return None if d is None else ("iffImpL", f, d)
    # disjunction on the right: try each side first (shorter, more natural proofs) ...
    if tag == "or":
        d = _search(ctx, goal[1])
        if d is not None:
            return ("orR1", d)
        d = _search(ctx, goal[2])
        if d is not None:
            return ("orR2", d)
    # ... then the invertible (branching) left disjunction rule
    for f in items:
        if f[0] == "or":
            rest = ctx - {f}
            d1 = _search(rest | {f[1]}, goal)
            if d1 is None:
                return None
            d2 = _search(rest | {f[2]}, goal)
            return None if d2 is None else ("orL", f, d1, d2)
    # non-invertible: ((c → d) → b) on the left
    for f in items:
        if f[0] == "imp" and f[1][0] == "imp":
            c, dd, b = f[1][1], f[1][2], f[2]
            rest = ctx - {f}
            d1 = _search(rest | {("imp", dd, b), c}, dd)
            if d1 is None:
                continue
            d2 = _search(rest | {b}, goal)
            if d2 is not None:
                return ("impImpL", f, d1, d2)
    return None


# --------------------------------------------------------------------------------------------------
# derivation -> natural-deduction term


class _Fresh:
    def __init__(self) -> None:
        self.n = itertools.count()

    def __call__(self) -> str:
        return f"x{next(self.n)}"


def _size(t) -> int:
    n = 1
    for c in t[1:]:
        if isinstance(c, tuple):
            n += _size(c)
    return n


def _env_add(env: dict, f: Formula, t) -> None:
    old = env.get(f)
    if old is None or _size(t) < _size(old):
        env[f] = t


def _translate(d, env: dict, goal: Formula, fresh: _Fresh):
    rule = d[0]
    if rule == "ax":
        return env[goal]
    if rule == "efq":
        return ("efq", env[FALSE])
    if rule == "triv":
        return ("triv",)
    if rule == "impR":
        x = fresh()
        env2 = dict(env)
        env2[goal[1]] = ("var", x)
        return ("lam", x, _translate(d[1], env2, goal[2], fresh))
    if rule == "andR":
        return ("pair", _translate(d[1], env, goal[1], fresh), _translate(d[2], env, goal[2], fresh))
    if rule == "iffR":
        a, b = goal[1], goal[2]
        return ("iff", _translate(d[1], env, ("imp", a, b), fresh), _translate(d[2], env, ("imp", b, a), fresh))
    if rule == "orR1":
        return ("inl", _translate(d[1], env, goal[1], fresh))
    if rule == "orR2":
        return ("inr", _translate(d[1], env, goal[2], fresh))
    f = d[1]
    t = env[f]
    env2 = dict(env)
    del env2[f]
    if rule == "andL":
        _env_add(env2, f[1], ("fst", t))
        _env_add(env2, f[2], ("snd", t))
        return _translate(d[2], env2, goal, fresh)
    if rule == "iffL":
        _env_add(env2, ("imp", f[1], f[2]), ("mp", t))
        _env_add(env2, ("imp", f[2], f[1]), ("mpr", t))
        return _translate(d[2], env2, goal, fresh)
    if rule in ("topL", "botImpL"):
        return _translate(d[2], env2, goal, fresh)
    if rule == "mpL":
        _env_add(env2, f[2], ("app", t, env[f[1]]))
        return _translate(d[2], env2, goal, fresh)
    if rule == "topImpL":
        _env_add(env2, f[2], ("app", t, ("triv",)))
        return _translate(d[2], env2, goal, fresh)
    a, b = f[1], f[2]
    if rule == "andImpL":
        c, dd = fresh(), fresh()
        w = ("lam", c, ("lam", dd, ("app", t, ("pair", ("var", c), ("var", dd)))))
        _env_add(env2, ("imp", a[1], ("imp", a[2], b)), w)
        return _translate(d[2], env2, goal, fresh)
    if rule == "orImpL":
        c, dd = fresh(), fresh()
        _env_add(env2, ("imp", a[1], b), ("lam", c, ("app", t, ("inl", ("var", c)))))
        _env_add(env2, ("imp", a[2], b), ("lam", dd, ("app", t, ("inr", ("var", dd)))))
        return _translate(d[2], env2, goal, fresh)
    if rule == "iffImpL":
        u, v = fresh(), fresh()
        w = ("lam", u, ("lam", v, ("app", t, ("iff", ("var", u), ("var", v)))))
        _env_add(env2, ("imp", ("imp", a[1], a[2]), ("imp", ("imp", a[2], a[1]), b)), w)
        return _translate(d[2], env2, goal, fresh)
    if rule == "orL":
        x, y = fresh(), fresh()
        envl = dict(env2)
        envl[f[1]] = ("var", x)
        envr = dict(env2)
        envr[f[2]] = ("var", y)
        return ("case", t, x, _translate(d[2], envl, goal, fresh), y, _translate(d[3], envr, goal, fresh))
    if rule == "impImpL":
        c, dd, bb = a[1], a[2], b
        xc, xd, xc2 = fresh(), fresh(), fresh()
        env1 = dict(env2)
        _env_add(env1, ("imp", dd, bb), ("lam", xd, ("app", t, ("lam", xc2, ("var", xd)))))
        env1[c] = ("var", xc)
        u = ("lam", xc, _translate(d[2], env1, dd, fresh))
        envb = dict(env2)
        _env_add(envb, bb, ("app", t, u))
        return _translate(d[3], envb, goal, fresh)
    raise ValueError(f"unknown rule {rule}")


# --------------------------------------------------------------------------------------------------
# normalisation


def free_vars(t, acc: set | None = None) -> set:
    if acc is None:
        acc = set()
    tag = t[0]
    if tag == "var":
        acc.add(t[1])
    elif tag in ("lam", "bycontra"):
        inner = free_vars(t[2])
        inner.discard(t[1])
        acc |= inner
    elif tag == "case":
        free_vars(t[1], acc)
        l_ = free_vars(t[3])
        l_.discard(t[2])
        r_ = free_vars(t[5])
        r_.discard(t[4])
        acc |= l_ | r_
    elif tag == "em":
        pass
    else:
        for c in t[1:]:
            if isinstance(c, tuple):
                free_vars(c, acc)
    return acc


def _subst(t, x: str, s, fv_s: set, fresh: _Fresh):
    tag = t[0]
    if tag == "var":
        return s if t[1] == x else t
    if tag in ("lam", "bycontra"):
        y, body = t[1], t[2]
        if y == x:
            return t
        if y in fv_s:
            z = fresh()
            body = _subst(body, y, ("var", z), {z}, fresh)
            y = z
        return (tag, y, _subst(body, x, s, fv_s, fresh))
    if tag == "case":
        sc = _subst(t[1], x, s, fv_s, fresh)
        branches = []
        for y, body in ((t[2], t[3]), (t[4], t[5])):
            if y != x:
                if y in fv_s:
                    z = fresh()
                    body = _subst(body, y, ("var", z), {z}, fresh)
                    y = z
                body = _subst(body, x, s, fv_s, fresh)
            branches.append((y, body))
        return ("case", sc, branches[0][0], branches[0][1], branches[1][0], branches[1][1])
    if tag in ("em", "triv"):
        return t
    return (tag,) + tuple(_subst(c, x, s, fv_s, fresh) for c in t[1:])


_SYNTH = ("var", "app", "fst", "snd", "mp", "mpr", "em")


def normalise(t, fresh: _Fresh | None = None):
    """Beta/eta-normal form, with `case` on a constructor reduced and unused case splits dropped."""
    if fresh is None:
        fresh = _Fresh()
        fresh.n = itertools.count(10_000)
    tag = t[0]
    if tag in ("var", "triv", "em"):
        return t
    if tag == "app":
        f = normalise(t[1], fresh)
        a = normalise(t[2], fresh)
        if f[0] == "lam":
            return normalise(_subst(f[2], f[1], a, free_vars(a), fresh), fresh)
        return ("app", f, a)
    if tag in ("fst", "snd", "mp", "mpr"):
        u = normalise(t[1], fresh)
        if u[0] in ("pair", "iff"):
            return u[1] if tag in ("fst", "mp") else u[2]
        return (tag, u)
    if tag == "lam":
        x = t[1]
        body = normalise(t[2], fresh)
        if body[0] == "app" and body[2] == ("var", x) and body[1][0] in _SYNTH and x not in free_vars(body[1]):
            return body[1]  # eta
        return ("lam", x, body)
    if tag == "bycontra":
        return ("bycontra", t[1], normalise(t[2], fresh))
    if tag == "case":
        s = normalise(t[1], fresh)
        if s[0] in ("inl", "inr"):
            x, body = (t[2], t[3]) if s[0] == "inl" else (t[4], t[5])
            return normalise(_subst(body, x, s[1], free_vars(s[1]), fresh), fresh)
        left = normalise(t[3], fresh)
        if t[2] not in free_vars(left):
            return left
        right = normalise(t[5], fresh)
        if t[4] not in free_vars(right):
            return right
        return ("case", s, t[2], left, t[4], right)
    if tag == "efq":
        return ("efq", normalise(t[1], fresh))
    return (tag,) + tuple(normalise(c, fresh) for c in t[1:])


def term_size(t) -> int:
    """Number of nodes of a proof term (the `proof_len` of the theorem generator)."""
    return _size(t)


def uses_classical(t) -> bool:
    tag = t[0]
    if tag in ("em", "bycontra"):
        return True
    return any(isinstance(c, tuple) and uses_classical(c) for c in t[1:])


# --------------------------------------------------------------------------------------------------
# classical layer


def _int_term(env: dict, goal: Formula, fresh: _Fresh):
    d = _search(frozenset(env), goal)
    if d is None:
        return None
    return _translate(d, env, goal, fresh)


def _atoms(env: dict, goal: Formula) -> list[str]:
    vs: list[str] = []
    variables(goal, vs)
    for f in sorted(env, key=_skey):
        variables(f, vs)
    return vs


def _classical_em(env: dict, goal: Formula, depth: int, fresh: _Fresh):
    t = _int_term(env, goal, fresh)
    if t is not None or depth == 0:
        return t
    for v in _atoms(env, goal):
        pv = ("var", v)
        nv = ("imp", pv, FALSE)
        if pv in env or nv in env:
            continue
        x, y = fresh(), fresh()
        envl = dict(env)
        envl[pv] = ("var", x)
        left = _classical_em(envl, goal, depth - 1, fresh)
        if left is None:
            continue
        envr = dict(env)
        envr[nv] = ("var", y)
        right = _classical_em(envr, goal, depth - 1, fresh)
        if right is None:
            continue
        return ("case", ("em", pv), x, left, y, right)
    return None


def _classical(env: dict, goal: Formula, fresh: _Fresh):
    t = _int_term(env, goal, fresh)
    if t is not None:
        return t
    tag = goal[0]
    if tag == "imp":
        x = fresh()
        env2 = dict(env)
        env2[goal[1]] = ("var", x)
        body = _classical(env2, goal[2], fresh)
        return None if body is None else ("lam", x, body)
    if tag == "and":
        a = _classical(env, goal[1], fresh)
        b = _classical(env, goal[2], fresh) if a is not None else None
        return None if b is None else ("pair", a, b)
    if tag == "iff":
        a = _classical(env, ("imp", goal[1], goal[2]), fresh)
        b = _classical(env, ("imp", goal[2], goal[1]), fresh) if a is not None else None
        return None if b is None else ("iff", a, b)
    if tag == "or" and goal[2] == ("imp", goal[1], FALSE):
        return ("em", goal[1])
    t = _classical_em(env, goal, 2, fresh)
    if t is not None:
        return t
    # Glivenko: Γ ⊢c G  ⇒  Γ, ¬G ⊢i False
    x = fresh()
    env2 = dict(env)
    env2[("imp", goal, FALSE)] = ("var", x)
    body = _int_term(env2, FALSE, fresh)
    if body is None:  # pragma: no cover - impossible for a classically valid sequent
        return None
    return ("bycontra", x, body)


# --------------------------------------------------------------------------------------------------
# public API


@dataclass(frozen=True)
class Proof:
    """A natural-deduction proof of `hyps ⊢ goal` (hypotheses referenced as ("var", name))."""

    term: tuple
    logic: str
    goal: Formula
    hyps: tuple

    @property
    def size(self) -> int:
        return term_size(self.term)


_PROVE_CACHE: dict = {}


def prove(hyps: Sequence[Formula] | Mapping[str, Formula], goal: Formula, classical: bool = True) -> Proof | None:
    """Prove `hyps ⊢ goal`: intuitionistically if possible, else classically (when `classical`).

    `hyps` is a sequence of formulas (named h0, h1, …) or a mapping name -> formula.
    Returns None when the sequent is not valid (classically, or intuitionistically if not `classical`).
    """
    if isinstance(hyps, Mapping):
        named = tuple(hyps.items())
    else:
        named = tuple((f"h{i}", h) for i, h in enumerate(hyps))
    key = (named, goal, classical)
    if key in _PROVE_CACHE:
        return _PROVE_CACHE[key]
    fresh = _Fresh()
    env: dict = {}
    for name, h in named:
        _env_add(env, unfold(h), ("var", name))
    ugoal = unfold(goal)
    term = _int_term(env, ugoal, fresh)
    logic = INTUITIONISTIC
    if term is None and classical and is_tautology(goal, [h for _, h in named]):
        term = _classical(env, ugoal, fresh)
        logic = CLASSICAL
    result = None
    if term is not None:
        term = normalise(term)
        if logic == CLASSICAL and not uses_classical(term):  # pragma: no cover - defensive
            logic = INTUITIONISTIC
        result = Proof(term=term, logic=logic, goal=goal, hyps=named)
    if len(_PROVE_CACHE) > 200_000:
        _PROVE_CACHE.clear()
    _PROVE_CACHE[key] = result
    return result


def logic(goal: Formula, hyps: Sequence[Formula] = ()) -> str | None:
    """`intuitionistic`, `classical` (valid classically only) or None (not valid)."""
    if _search(frozenset(unfold(h) for h in hyps), unfold(goal)) is not None:
        return INTUITIONISTIC
    if is_tautology(goal, hyps):
        return CLASSICAL
    return None

