r"""The proof styles, their prior, the naming schemes and the token count the length budget uses.

A style says how the one natural-deduction term of a theorem is written down (`render.py` does the
writing); `PRIOR` is deliberately unequal: three verbose tactic styles take 72 % of the mass, five
rare styles 3–5 % each.

| style          | prior | what it looks like |
|----------------|-------|--------------------|
| `structured`   | 0.34  | `intro h1 h2`, `constructor` + `·` bullets, `cases h with \| inl … \| inr …`, `left`/`right`, `exfalso`, `exact` with projections `h.1`, `apply` when an argument would be a `fun` |
| `forward`      | 0.22  | `obtain ⟨a, b⟩ := h`, `rcases h with a \| b`, `refine ⟨?_, ?_⟩`, a `have` for every intermediate fact (`have h : A → B := by …`), `exact absurd a n` |
| `backward`     | 0.16  | one `intro` per line, `apply` chains, `apply And.intro`/`Iff.intro`/`Or.inl`/`Or.elim h`, `assumption` |
| `annotated`    | 0.08  | like `structured` with `intros`, `rcases` destructuring and a `show` before every step |
| `oneliner`     | 0.05  | `by intro ⟨a, b⟩; constructor <;> assumption`: one line, `;`, no bullets (goals in order), `<;>` when all branches run the same tactics, `contradiction`/`assumption` |
| `term`         | 0.05  | `by exact fun ⟨a, b⟩ c => …` with anonymous constructors, `Or.elim`, `absurd` |
| `intro_exact`  | 0.04  | `intro ⟨a, b⟩ c` then one `exact` term |
| `term_verbose` | 0.03  | `by exact fun h => And.intro h.right …` with `And.intro`, `Iff.intro`, `False.elim`, `.left`/`.mp` |
| `casework`     | 0.03  | `cases h with \| intro a b => …` for ∧, `cases` for ∨, `contradiction`, `assumption` |

`COMMON_STYLES` = structured, forward, backward; `RARE_STYLES` = the five at ≤ 5 %.  On top of the
style a naming scheme is drawn independently (`NAMINGS`): `hnum` (h1 h2 …) 0.35, `typed`
(hp hq hnp hpq …) 0.30, `letters` (a b c …) 0.20, `xyz` (x y z w …) 0.15.

The verbose common styles grow faster with the size of a theorem than the compact rare ones
(`oneliner` above all, then `term`/`intro_exact`), so on the larger theorems every common style
exceeds a budget that a rare style still fits: that is what makes a rare style worth finding.
`DESIGN_BUDGET_TOKENS` is the budget the theorem generator designs for, counted in `lean_tokens`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
# of at most this many `lean_tokens`; on the larger theorems only a rare, compact style fits.
DESIGN_BUDGET_TOKENS = 44

_LEX = re.compile(r"\n[ ]*|[A-Za-z_][A-Za-z0-9_']*|\d+|<;>|=>|\?_|\S")


def lean_tokens(text: str) -> int:
    """A tokenizer-free proxy for a proof's token count under a small byte-level BPE: identifiers,
    numbers, `<;>`, `=>`, `?_` and every other non-space character count one, a newline with its
    indentation counts one, spaces nothing.  Being tokenizer-free, the design budget does not move
    when a model's tokenizer does (how it tracks a BPE: docs/results.md)."""
    return len(_LEX.findall(text))


# letters the `letters` and `xyz` naming schemes hand out, in order (then with a numeric suffix)
NAME_POOLS = {"letters": "abcdefgkmnuvwxyz", "xyz": "xyzwuvabcdefgkmn"}
