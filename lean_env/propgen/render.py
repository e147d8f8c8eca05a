"""Rendering one natural-deduction term as Lean 4 text in a given style.

The prover's terms (`prover.py`) carry no types; the renderer re-derives every type from the
statement while it walks the term (bidirectionally: `synth` for eliminations, `check` against the goal
for introductions), so every `have`/`show` annotation it writes is the statement's own formula.
`TermRenderer` writes terms (`fun`, `⟨…⟩`, `Or.elim`, projections); `Renderer` adds the tactic
scripts built on them.  Rendering is deterministic.
"""

from __future__ import annotations

from typing import Iterable

from lean_env.prop.formula import FALSE, Formula, show
from lean_env.propgen.prover import Proof, unfold
from lean_env.propgen.styles import NAME_POOLS, Style


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


class TermRenderer:
    """Proof terms: names for hypotheses, bidirectional term rendering (`synth` infers a term's type,
    `check` renders it against a known goal), binders and anonymous-constructor patterns."""

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
        pool = NAME_POOLS[self.naming]
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



class Renderer(TermRenderer):
    """Whole proofs: the tactic script of a style (intro, constructor/refine, case splits, `have`
    chains, `<;>` combinators), or one term after `by exact` in the term styles."""

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
