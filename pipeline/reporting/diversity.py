"""Diversity of accepted proofs: how many genuinely different proofs a model finds, per theorem.

Pure functions over a verdicts DataFrame (`theorem_id, statement, proof, verdict`, …). For every
theorem, over its accepted (`verdict == "pass"`) samples:

- `distinct_proofs`: distinct proofs after normalising whitespace and renaming bound names
  (hypotheses introduced by the proof) in order of binding, so `intro h1; exact h1` and
  `intro hp; exact hp` are one proof, and so are `rcases h with h | h` and `rcases h with hp | hq`;
- `distinct_tactic_seqs`: distinct sequences of tactic names, arguments ignored (a term-mode
  proof has the empty sequence, which counts as one sequence);
- `tactic_entropy`: Shannon entropy (bits) of the tactic names used over all accepted proofs;
- `distinct_premises`: distinct global constants and projections used (`Or.inl`, `absurd`,
  `Classical.em`, `.1`, `.mp`, …), counted by name.

Theorems with no accepted proof get zeros and `solved = False`.

The tokenizer is a light regex lexer with a few binder heuristics, not a Lean parser: it has to
work on whatever text a real prover emits, so it never fails, it only classifies tokens less
precisely on exotic syntax. Limits worth knowing: a use refers to the textually latest binding of
its name (no real scopes), so a proof that reuses an outer name after an inner one shadowed it may
look different from its renamed twin; a name the proof uses but never visibly binds (Lean's
auto-names `h_1`, `a✝`) counts as a premise.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

METRICS = ("distinct_proofs", "distinct_tactic_seqs", "tactic_entropy", "distinct_premises")

# Lean keywords: never renamed, never premises, never tactics by themselves.
KEYWORDS = frozenset("""
    fun by have show from at with then else if do let in match end open namespace section variable
    universe where deriving instance structure class inductive theorem lemma def example axiom abbrev
    opaque mutual Type Prop Sort sorry calc suffices nomatch nofun forall exists using macro syntax
    notation infix infixl infixr prefix postfix attribute set_option import private protected
    noncomputable partial unsafe local scoped export termination_by decreasing_by generalizing only
    return for unless mut try catch finally this λ
""".split())

# Tactic names of Lean 4 core and common Mathlib ones. A known name at the start of a line counts
# as a tactic; an unknown name counts only where nothing but a tactic can stand (after `by`, `;`, `·`).
TACTICS = frozenset("""
    intro intros rintro exact exacts apply refine refine' constructor left right cases cases' rcases
    obtain induction induction' assumption exfalso contradiction trivial have haveI show suffices let
    simp simp_all simpa dsimp simp? simp_arith tauto decide omega native_decide aesop linarith
    nlinarith norm_num ring ring_nf field_simp positivity sorry admit rfl by_contra by_contra!
    by_cases push_neg contrapose contrapose! specialize unfold rw rewrite rwa nth_rewrite nth_rw use
    exists existsi and_intros split split_ifs injection subst revert clear rename rename_i next case
    first try repeat all_goals any_goals focus iterate skip done change exact_mod_cast norm_cast
    push_cast infer_instance solve_by_elim library_search exact? apply? rw? hint itauto cc
    constructorm casesm congr ext funext gcongr calc conv set generalize interval_cases fin_cases
    abel group noncomm_ring symm trans filter_upwards choose lift zify qify bound polyrith
    linear_combination apply_fun apply_assumption wlog classical absurd fun_prop continuity
    measurability exact_mod_cast mono rel stop
""".split())

# Tactics whose arguments up to the end of the tactic are binder patterns.
_BINDING_TACTICS = frozenset("intro intros rintro rename_i next".split())
# Tactics (or keywords) followed by one binder pattern, ended by `:`, `:=` or the end of the tactic.
_NAMING = frozenset("have haveI let obtain suffices by_cases by_contra by_contra! set".split())
# Tactics whose `with` introduces a binder pattern (rcases-style, not `| ctor names =>` alternatives).
_WITH_BINDS = frozenset("rcases cases' induction' obtain".split())

_TOKEN = re.compile(r"""
    (?P<comment>--[^\n]*|/-.*?-/)
  | (?P<ws>[^\S\n]+)
  | (?P<nl>\n)
  | (?P<str>"(?:\\.|[^"\\])*")
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<ident>(?:«[^»]*»|[^\W\d]|_)[\w'₀-₉]*[!?]?(?:\.(?:«[^»]*»|[^\W\d]|_|\d)[\w'₀-₉]*)*)
  | (?P<dot>\.(?:[^\W\d]|_|\d)[\w'₀-₉]*)
  | (?P<op>:=|=>|<;>|<\|>|<\||\|>|->|<-|<=|>=|!=|==|\.\.|::|\?_|[^\s\w])
""", re.VERBOSE | re.DOTALL)


@dataclass
class Token:
    kind: str        # ident, proj (`.1` glued to a term), dot (`.inl` after a space), num, str, op
    text: str
    line: int
    line_start: bool  # first token of its line
    role: str = ""   # after classification: tactic, bound, fixed, premise, keyword, ctor, other
    indent: int = 0  # column of the first token of its line
    slot: tuple | None = None  # set on a binding occurrence (`intro h`, `| inl h =>`): (region, position)


def tokenize(text: str) -> list[Token]:
    """Lex Lean text; comments dropped, whitespace recorded only as line structure."""
    tokens: list[Token] = []
    line, at_line_start, glued, indent = 0, True, False, 0
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # an unmatched `/-` or similar: take one character as an operator
            tokens.append(Token("op", text[pos], line, at_line_start, indent=indent))
            at_line_start, glued, pos = False, True, pos + 1
            continue
        kind, lexeme = m.lastgroup, m.group()
        pos = m.end()
        if kind == "nl":
            line, at_line_start, glued = line + 1, True, False
            continue
        if kind in ("ws", "comment"):
            line += lexeme.count("\n")
            at_line_start = at_line_start or "\n" in lexeme
            glued = False
            continue
        if kind == "dot" and glued:
            kind = "proj"  # `(h x).1`, `⟨a, b⟩.2`: a projection of the term just before
        if kind == "op" and lexeme == "." and not glued:
            lexeme = "·"  # `. tac` is Lean's ASCII focusing dot
        if at_line_start:
            indent = m.start() - (text.rfind("\n", 0, m.start()) + 1)
        tokens.append(Token(kind, lexeme, line, at_line_start, indent=indent))
        at_line_start, glued = False, True
    return tokens


def statement_names(statement: str) -> frozenset:
    """Names the statement binds (`(p q : Prop) (h : p)`): fixed by the theorem, never renamed."""
    header = statement.split(":=")[0]
    names = set()
    for group in re.finditer(r"[({⦃\[]\s*([^(){}⦃⦄\[\]:]+?)\s*:", header):
        names.update(n for n in group.group(1).split() if re.fullmatch(r"[^\W\d][\w'₀-₉]*", n))
    return frozenset(names)


# ---- classification: which identifiers the proof binds, which tokens are tactics

_OPEN, _CLOSE = frozenset("(⟨[{"), frozenset(")⟩]}")
# In a binder region these start a type or a binder predicate (`x : ℕ`, `∀ x ∈ s,`, `∑ i in range n,`).
_TYPE_MARKS = frozenset(": ∈ ∉ ⊆ ⊂ < ≤ > ≥ ≠ in".split())
# After these tactics the next token is again a tactic (`try simp`, `all_goals exact h`).
_COMBINATORS = frozenset("try repeat all_goals any_goals focus".split())


def _ends_tactic(tok: Token) -> bool:
    return tok.line_start or tok.text in (";", "<;>")


def _collect_binders(tokens: list[Token], start: int, stops: frozenset, to_tactic_end: bool) -> tuple[set, int]:
    """Binder names in tokens[start:] up to a stop token at bracket depth 0 (or the end of the
    tactic); type annotations (`(h : p)`, `x : Nat`) are skipped. Returns the names and the end index.

    Each binder gets a slot: its position in the pattern, where the alternatives of an rcases
    pattern (`hp | hq`, `⟨a, b | c⟩`) count positions from the same start, because only one
    alternative is in scope in each goal and `h | h` must equal `hp | hq`."""
    names, depth, type_depth = set(), 0, None
    position, groups = 0, []  # groups: (position at the bracket's start, furthest position inside)
    i = start
    while i < len(tokens):
        tok = tokens[i]
        if depth == 0 and (tok.text in stops or (to_tactic_end and _ends_tactic(tok))):
            break
        if tok.text in _OPEN:
            depth += 1
            groups.append([position, position])
        elif tok.text in _CLOSE:
            if depth == 0:
                break  # the region sat inside brackets: `(fun h => h)`
            type_depth = None if type_depth == depth else type_depth
            depth -= 1
            position = max(position, groups.pop()[1])
        elif tok.text == "|" and type_depth is None:
            if groups:
                groups[-1][1] = max(groups[-1][1], position)
            position = groups[-1][0] if groups else 0
        elif tok.text in _TYPE_MARKS and type_depth is None:
            type_depth = depth  # a type or bound follows, up to the closing bracket (or the region's end)
        elif (tok.kind == "ident" and type_depth is None and "." not in tok.text
              and tok.text not in KEYWORDS and tok.text not in TACTICS):
            names.add(tok.text)
            tok.slot = (start, position)
            position += 1
        i += 1
    return names, i


def _alternative(tokens: list[Token], at: int) -> tuple[set, int]:
    """`| inl h => …`, `case inl h =>`: the first name is a constructor or tag, the rest are binders."""
    j = at + 1
    if j < len(tokens) and tokens[j].kind in ("ident", "dot"):
        tokens[j].role = "ctor"
        j += 1
    return _collect_binders(tokens, j, frozenset({"=>", "|", "↦"}), to_tactic_end=False)


def _binder_region(tokens: list[Token], i: int, owner: str) -> tuple[set, int] | None:
    """If tokens[i] opens a binder region, its names and end; else None."""
    text = tokens[i].text
    if text in _BINDING_TACTICS:
        return _collect_binders(tokens, i + 1, frozenset(), to_tactic_end=True)
    if text in ("fun", "λ"):
        if i + 1 < len(tokens) and tokens[i + 1].text == "|":
            return None  # `fun | inl h => …`: alternatives, handled at each `|`
        return _collect_binders(tokens, i + 1, frozenset({"=>", "↦"}), to_tactic_end=False)
    if text in ("∀", "∃", "Σ", "∑", "∏", "⋃", "⋂"):
        return _collect_binders(tokens, i + 1, frozenset({","}), to_tactic_end=False)
    if text in _NAMING:
        return _collect_binders(tokens, i + 1, frozenset({":", ":=", "from", "using"}), to_tactic_end=True)
    if text in ("choose", "generalize"):
        return _collect_binders(tokens, i + 1, frozenset({"using", ":="}), to_tactic_end=True)
    if text == "with" and owner in _WITH_BINDS:
        return _collect_binders(tokens, i + 1, frozenset(), to_tactic_end=True)
    if text == "case" or (text == "|" and _has_arrow(tokens, i)):
        return _alternative(tokens, i)  # a `| … =>` outside any pattern region: a match/cases alternative
    return None


def _has_arrow(tokens: list[Token], bar: int) -> bool:
    """`| inl h =>` is an alternative; `first | simp | rfl` is not (no `=>` before the next `|` or line)."""
    for tok in tokens[bar + 1:]:
        if tok.text == "=>":
            return True
        if tok.text == "|" or _ends_tactic(tok):
            return False
    return False


def bound_names(tokens: list[Token]) -> set:
    """Every name the proof binds: intro/fun/∀ binders, patterns, have/obtain names, case alternatives."""
    bound: set = set()
    owner = ""  # the tactic that owns the next `with`: `rcases … with pat` binds, `cases … with | …` does not
    pattern_end = -1  # inside an rcases/obtain pattern a `|` separates alternatives of the pattern
    for i, tok in enumerate(tokens):
        if tok.kind == "ident" and tok.text in TACTICS and tok.text != "with":
            owner = tok.text
        if i < pattern_end and tok.text == "|":
            continue
        region = _binder_region(tokens, i, owner)
        if region is not None:
            names, end = region
            bound |= names
            if tok.text != "|":
                pattern_end = max(pattern_end, end)
    return bound


def _tactic_start(tokens: list[Token], i: int, in_tactic_mode: bool) -> str:
    """'strong' where only a tactic can stand, 'weak' at a line start in tactic mode, '' elsewhere."""
    if i == 0:
        return ""  # the proof follows `:=`, a term position
    prev = tokens[i - 1]
    if prev.text in ("by", ";", "<;>", "·") or (prev.role == "tactic" and prev.text in _COMBINATORS):
        return "strong"
    if prev.text == "|" and _after_first(tokens, i - 1):
        return "strong"  # `first | simp | exact h`
    if prev.text == "=>" and _closes_alternative(tokens, i - 1) and in_tactic_mode:
        return "weak"
    return "weak" if tokens[i].line_start and in_tactic_mode else ""


def _after_first(tokens: list[Token], bar: int) -> bool:
    for j in range(bar - 1, -1, -1):
        if tokens[j].text == "first" and tokens[j].role == "tactic":
            return True
        if tokens[j].line_start or tokens[j].text in (";", "=>"):
            return False
    return False


def _closes_alternative(tokens: list[Token], arrow: int) -> bool:
    """Does this `=>` end a `| ctor names` or `case tag names` alternative (not a `fun … =>`)?"""
    for j in range(arrow - 1, -1, -1):
        if tokens[j].text in ("|", "case", "next"):
            return True
        if tokens[j].text in ("fun", "λ") or tokens[j].line_start:
            return False
    return False


def classify(tokens: list[Token], fixed: frozenset = frozenset()) -> list[Token]:
    """Give every token its role; dotted names headed by a local are split into name + projections."""
    bound = bound_names(tokens) - fixed
    local = bound | fixed | {"this", "_"}
    out: list[Token] = []
    seen_by = False
    for i, tok in enumerate(tokens):
        seen_by = seen_by or tok.text == "by"
        if tok.kind != "ident" or tok.role == "ctor":
            tok.role = tok.role or ("premise" if tok.kind in ("proj", "dot") else "other")
            out.append(tok)
            continue
        head, *fields = tok.text.split(".")
        if head in local:
            tok.text, tok.role = head, ("bound" if head in bound else "fixed")
            out.append(tok)
            out.extend(Token("proj", "." + f, tok.line, False, "premise", tok.indent) for f in fields)
            continue
        start = _tactic_start(tokens, i, seen_by)
        if not fields and start and (tok.text in TACTICS or
                                     (start == "strong" and re.fullmatch(r"[a-z_][\w'₀-₉]*[!?]?", tok.text))):
            tok.role = "tactic"
        elif tok.text in KEYWORDS:
            tok.role = "keyword"
        elif not fields and tok.text[:1].isupper():
            tok.role = "other"  # a type or structure name (`True`, `Nat`), not a lemma
        else:
            tok.role = "premise"
        out.append(tok)
    return out


# ---- per-proof features


@dataclass(frozen=True)
class ProofFeatures:
    normalised: str
    tactics: tuple
    premises: frozenset


@lru_cache(maxsize=200_000)
def proof_features(proof: str, statement: str = "") -> ProofFeatures:
    tokens = classify(tokenize(proof), statement_names(statement))
    return ProofFeatures(normalise(tokens), tuple(t.text for t in tokens if t.role == "tactic"),
                         frozenset(t.text for t in tokens if t.role == "premise"))


def normalise(tokens: list[Token]) -> str:
    """Canonical text: every binding slot gets the next name `x1, x2, …` and each use the name of the
    latest binding of its text (so renamings, and names reused across branches, vanish);
    one space between tokens, projections glued; lines kept, indented by the rank of their indentation."""
    current: dict[str, str] = {}
    slot_names: dict[tuple, str] = {}
    lines: dict[int, list[str]] = {}
    indents: dict[int, int] = {}
    for tok in tokens:
        text = tok.text
        if tok.role == "bound":
            if tok.slot is not None:
                current[text] = slot_names.setdefault(tok.slot, f"x{len(slot_names) + 1}")
            elif text not in current:  # a use before any binding: named where first seen
                current[text] = slot_names.setdefault(("use", text), f"x{len(slot_names) + 1}")
            text = current[text]
        words = lines.setdefault(tok.line, [])
        indents.setdefault(tok.line, tok.indent)
        if tok.kind == "proj" and words:
            words[-1] += text
        else:
            words.append(text)
    rank = {col: r for r, col in enumerate(sorted(set(indents.values())))}
    return "\n".join("  " * rank[indents[n]] + " ".join(words) for n, words in sorted(lines.items()))


def normalise_proof(proof: str, statement: str = "") -> str:
    return proof_features(proof, statement).normalised


def tactic_sequence(proof: str, statement: str = "") -> tuple:
    return proof_features(proof, statement).tactics


def premises(proof: str, statement: str = "") -> frozenset:
    return proof_features(proof, statement).premises


def entropy_bits(counts: Counter) -> float:
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return float(-sum(c / total * math.log2(c / total) for c in counts.values() if c))


# ---- per theorem and averaged


def theorem_diversity(proofs: list[str], statement: str = "") -> dict:
    """The four metrics over the accepted proofs of one theorem. Every accepted sample counts in the
    tactic distribution, so a proof sampled often weighs more, as it does for the model."""
    feats = [proof_features(p, statement) for p in proofs]
    tactic_counts = Counter(t for f in feats for t in f.tactics)
    return {
        "accepted": len(feats),
        "distinct_proofs": len({f.normalised for f in feats}),
        "distinct_tactic_seqs": len({f.tactics for f in feats}),
        "tactic_entropy": entropy_bits(tactic_counts),
        "distinct_premises": len(frozenset().union(*(f.premises for f in feats))) if feats else 0,
    }


def per_theorem(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One row per theorem of the verdicts table; theorems with no accepted proof are zeros, `solved=False`."""
    rows = []
    statements = verdicts.groupby("theorem_id", sort=True)["statement"].first() if "statement" in verdicts \
        else pd.Series("", index=sorted(verdicts["theorem_id"].unique()))
    passed = verdicts[verdicts["verdict"] == "pass"]
    accepted = passed.groupby("theorem_id")["proof"].apply(lambda ps: [p for p in ps if isinstance(p, str)])
    for theorem_id, statement in statements.items():
        proofs = accepted.get(theorem_id, [])
        statement = statement if isinstance(statement, str) else ""
        rows.append({"theorem_id": theorem_id, **theorem_diversity(proofs, statement), "solved": bool(proofs)})
    return pd.DataFrame(rows, columns=["theorem_id", "accepted", *METRICS, "solved"])


def summarise(table: pd.DataFrame) -> dict:
    """Averages over all theorems (unsolved count as zero) and over solved theorems only (`…_solved`)."""
    solved = table[table["solved"]]
    out = {"theorems": int(len(table)), "solved_theorems": int(len(solved))}
    for m in METRICS:
        out[m] = float(table[m].mean()) if len(table) else 0.0
        out[f"{m}_solved"] = float(solved[m].mean()) if len(solved) else 0.0
    return out


def diversity(verdicts: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    table = per_theorem(verdicts)
    return table, summarise(table)


# ---- correlations across the runs of a sweep


def _pass_columns(runs_table: pd.DataFrame) -> list[str]:
    return sorted((c for c in runs_table.columns if re.fullmatch(r"pass@\d+", str(c))),
                  key=lambda c: int(c.split("@")[1]))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")  # undefined for constants; meaningless for two points
    return float(np.corrcoef(x, y)[0, 1])


def correlations(runs_table: pd.DataFrame, metrics: tuple | None = None) -> pd.DataFrame:
    """Pearson and Spearman correlation of each averaged diversity metric with pass@1 and pass@max-k.

    One row per (metric, target). Spearman is Pearson on average ranks (no SciPy needed). Runs with a
    missing value are dropped pairwise; fewer than three runs or a constant column gives NaN.
    """
    passes = _pass_columns(runs_table)
    targets = list(dict.fromkeys([passes[0], passes[-1]])) if passes else []
    metrics = metrics or tuple(c for c in runs_table.columns
                               if str(c).split("_solved")[0] in METRICS)
    rows = []
    for metric in metrics:
        for target in targets:
            pair = runs_table[[metric, target]].apply(pd.to_numeric, errors="coerce").dropna()
            x, y = pair[metric].to_numpy(float), pair[target].to_numpy(float)
            rows.append({"metric": metric, "target": target, "runs": len(pair), "pearson": _pearson(x, y),
                         "spearman": _pearson(pair[metric].rank().to_numpy(float),
                                              pair[target].rank().to_numpy(float))})
    return pd.DataFrame(rows, columns=["metric", "target", "runs", "pearson", "spearman"])
