"""The proof guard: every rule in several spellings, and honest proofs that merely look suspicious."""

import pytest

from lean_env.guard import KEYWORD_RULES, GuardConfig, guard, guard_proof, guard_statement, strip_comments

STATEMENT = "theorem t (p q : Prop) (h : p) : p"

# (proof, rule that must fire)
REFUSED = [
    # sorry and friends
    ("by sorry", "sorry"),
    ("by\n  sorry", "sorry"),
    ("by   sorry   ", "sorry"),
    ("by intro h; sorry", "sorry"),
    ("by intro h;sorry", "sorry"),
    ("by\n  intro h\n  exact (sorry)", "sorry"),
    ("⟨sorry, h⟩", "sorry"),
    ("by constructor <;>sorry", "sorry"),
    ("by\n  constructor\n  · sorry\n  · exact h", "sorry"),
    ("by /- a comment -/ sorry", "sorry"),
    ("by exact h -- a comment\n  sorry", "sorry"),
    ("by /- /- -/ -/ sorry", "sorry"),
    ("by /- -/ -/ sorry", "sorry"),
    ('by /- "-/ sorry -/ exact h', "sorry"),  # like Lean, comments know nothing of strings
    ('by /- "-/" sorry', "unterminated_string"),
    ("by -- /-\n  sorry", "sorry"),  # a block comment cannot start inside a line comment
    ("by /--/ sorry", "sorry"),
    ('by exact (fun _ => h) "--" ; sorry', "sorry"),  # `--` in a string is not a comment
    ('by exact (fun _ => h) "a\\"--" ; sorry', "sorry"),  # nor after an escaped quote
    ("by exact (fun _ => h) '\"' ; sorry", "sorry"),  # a char literal holding a quote
    ("by exact sorryAx _ false", "sorry"),
    ("by exact @sorryAx p false", "sorry"),
    ("by exact _root_.sorryAx p false", "sorry"),
    ("by exact «sorry»", "sorry"),
    ("by exact 0xAsorry", "sorry"),
    ("by exact 2sorry", "sorry"),
    ("by\n  exact h\ndecreasing_by sorry", "sorry"),
    ("by admit", "admit"),
    ("by\n  intro h\n  admit", "admit"),
    ("by intro h;admit", "admit"),
    ("by\n  stop\n  exact h", "stop"),
    # search tactics
    ("by apply?", "apply?"),
    ("by\n  intro h\n  apply?", "apply?"),
    ("by first | apply? | rfl", "apply?"),
    ("by exact?", "exact?"),
    ("by intro h; exact?", "exact?"),
    ("by library_search", "library_search"),
    # kernel bypasses
    ("by native_decide", "native_decide"),
    ("by\n  native_decide", "native_decide"),
    ("by exact of_decide_eq_true (by native_decide)", "native_decide"),
    ("by exact Lean.ofReduceBool _ _ rfl", "native_decide"),
    ("by exact Lean.«ofReduceBool» _ _ rfl", "native_decide"),
    ("by exact (Lean.trustCompiler)", "native_decide"),
    ("by simp (config := { decide := true })", "kernel_bypass"),
    ("by simp (config := {decide:=true})", "kernel_bypass"),
    ("by decide (config := { kernel := true })", "kernel_bypass"),
    ("by decide +native", "kernel_bypass"),
    ("by simp +decide", "kernel_bypass"),
    # declarations that assume or hide things
    ("by\n  exact h\naxiom ax : False", "axiom"),
    ("axiom ax : False", "axiom"),
    ("by exact h\nopaque x : Nat", "opaque"),
    ("by\n  implemented_by foo", "implemented_by"),
    ('by extern "c_fn"', "extern"),
    ("by exact unsafeCast h", "unsafe"),
    ("by exact h\nunsafe def f : Nat := 1", "unsafe"),
    ("by exact h\npartial def f : Nat → Nat := f", "partial"),
    ("by exact lcProof", "unsafe"),
    # options
    ("set_option maxHeartbeats 0 in\nby simp", "set_option"),
    ("by\n  set_option maxRecDepth 10000 in\n  simp", "set_option"),
    ("by set_option debug.skipKernelTC true in exact h", "set_option"),
    # commands
    ("by exact h\n#eval 1", "#eval"),
    ("by exact h\n  #eval IO.println 1", "#eval"),
    ("#eval 1", "#eval"),
    ("by exact h\n#exit", "#exit"),
    ("by exact h\n#print axioms t", "#print"),
    ("by exact h\n#check t", "#command"),
    ("by exact h\n#reduce 1", "#command"),
    ("by exact h\n#guard_msgs in\nexample : True := trivial", "#command"),
    ("by exact h\nrun_cmd pure ()", "run_cmd"),
    ("by run_tac pure ()", "run_tac"),
    ("by exact h\nrun_elab pure ()", "run_elab"),
    ("by exact h\nrun_meta pure ()", "run_meta"),
    ('by exact h\nelab "foo" : tactic => pure ()', "elab"),
    ("by_elab pure h", "elab"),
    ('by exact h\nmacro "foo" : tactic => `(tactic| rfl)', "macro"),
    ("by exact h\nmacro_rules | `(tactic| foo) => `(tactic| rfl)", "macro_rules"),
    ('by exact h\nsyntax "foo" : tactic', "syntax"),
    ('by exact h\nnotation "⊤⊤" => True', "notation"),
    ('by exact h\ninfix:50 " ~~ " => And', "infix"),
    ('by exact h\ninfixl:65 " +++ " => HAdd.hAdd', "infix"),
    ('by exact h\ninfixr:65 " +++ " => HAdd.hAdd', "infix"),
    ('by exact h\nprefix:max "√" => id', "prefix"),
    ('by exact h\npostfix:max "!!" => id', "postfix"),
    ("by exact h\ninstance : Inhabited Nat := ⟨0⟩", "instance"),
    ("by exact h\nlocal instance : Inhabited Nat := ⟨0⟩", "local"),
    ("by exact h\nattribute [simp] foo", "attribute"),
    ("attribute [local simp] foo in\nby simp", "attribute"),
    ("by exact h\n@[simp] theorem x : True := trivial", "attribute"),
    ("import Mathlib\nby simp", "import"),
    ("by exact h\nimport Foo", "import"),
    ("open Classical in\nby exact em p", "open"),
    ("by\n  open Classical in\n  exact em p", "open"),
    ("by open Classical in exact em p", "open"),
    ("by exact h\nnamespace Foo", "namespace"),
    ("by exact h\nsection", "section"),
    ("by exact h\nend Foo", "end"),
    ("by exact h\nend", "end"),
    ('by exact h\nlocal notation "x" => 1', "local"),
    ('by exact h\nscoped notation "x" => 1', "scoped"),
    # more declarations, restating the theorem
    ("by exact h\ntheorem t2 : False := h", "declaration"),
    ("by exact h\n\ntheorem t (p q : Prop) (h : p) : p := h", "declaration"),
    ("by exact h\nlemma l : True := trivial", "declaration"),
    ("by exact h\ndef f := 1", "declaration"),
    ("by exact h\nexample : True := trivial", "declaration"),
    ("by exact h\nabbrev X := Nat", "declaration"),
    ("by exact h\nstructure S where", "declaration"),
    ("by exact h\ninductive I | a", "declaration"),
    ("by exact h\nclass C", "declaration"),
    ("by exact h\nmutual", "command"),
    ("by exact h\nvariable (x : Nat)", "command"),
    ("by exact h\nuniverse u", "command"),
    ("by exact h\nnoncomputable section", "command"),
    ("by exact aux\nwhere aux : p := h", "where"),
    ("by exact h\n:= by simp", "top_level"),
    ("h\n:=\nfun x => x", "top_level"),
    # metaprogramming in disguise
    ("by exact `(x)", "quotation"),
    ('by exact s!"{h}"', "interpolated_string"),
    ('by exact m! "{h}"', "interpolated_string"),
    # escapes Lean would decode
    ('by exact (fun _ => h) "\\u0073orry"', "escape"),
    ("by exact (fun _ => h) '\\x41'", "escape"),
    ('by exact (fun _ => h) "\\u{73}"', "escape"),
    # unterminated things that would swallow what follows the proof
    ("by exact h /-", "unterminated_comment"),
    ("by exact h /- /- -/", "unterminated_comment"),
    ('by exact (fun _ => h) "abc', "unterminated_string"),
    ("by exact «abc", "unterminated_ident"),
    # characters
    ("by exact h\u202e", "bidi"),
    ("by exact h -- \u2067 hidden in a comment", "bidi"),
    ("by\u200b sorry", "invisible"),
    ("by exact h\u2060", "invisible"),
    ("by\u00a0exact h", "invisible"),
    ("\ufeffby exact h", "invisible"),
    ("by exact h\u00ad", "invisible"),
    ("by exact h\x00", "control_char"),
    ("by\x0bexact h", "control_char"),
    ("by exact he\u0301", "non_nfc"),
    ("by exact h\u0336", "combining_mark"),
    ("by exact h\ue000", "unassigned_char"),
    ("by exact hе", "lookalike"),  # Cyrillic е
    ("by ехасt h", "lookalike"),  # Cyrillic е, х, а, с
    ("by exact sоrry", "lookalike"),  # Cyrillic о: would dodge a naive `sorry` check
    ("by exact Οr.inl h", "lookalike"),  # Greek capital omicron
    ("by exact Or.inl h ∶ p", "lookalike"),  # ratio sign, looks like a colon
    ("by ｓｏｒｒｙ", "fullwidth"),
    ("by exact h；", "fullwidth"),
]

HONEST = [
    "by\n  intro h\n  exact h",
    "fun h => h",
    "fun ⟨hp, hq⟩ => ⟨hq, hp⟩",
    "by\n  intro h\n  exact sorry_free h",
    "by exact my_axiom_lemma",
    "by\n  intro hsorry\n  exact hsorry",
    "by exact h.sorry_free",
    "by exact h.sorry",  # a field named `sorry` is an identifier, not the keyword
    "by exact admit_lemma",
    "by exact hadmit",
    "by exact native_decide_free",
    "by exact hexact",
    "by exact apply_lemma",
    "by exact instance_free",
    "by exact open_lemma",
    "by exact endpoint",
    "by exact sectionally",
    "by exact h.partial_sum",
    "by exact localVar",
    "by exact h.scoped",
    "by exact axiomatic",
    "by exact sorry'",
    "by decide",
    "by simp",
    "by tauto",
    "by\n  omega",
    "by exact Or.inl h",
    "by exact ⟨h.2, h.1⟩",
    "by exact h.1.2",
    "by\n  constructor\n  · exact h.2\n  · exact h.1",
    "by\n  rcases h with ⟨hp, hq⟩\n  exact ⟨hq, hp⟩",
    "by\n  cases h with\n  | inl hp => exact Or.inr hp\n  | inr hq => exact Or.inl hq",
    "by\n  -- sorry, no time to explain\n  exact h",
    "by\n  /- sorry\n  admit -/\n  exact h",
    "by /- nested /- sorry -/ still a comment: axiom -/ exact h",
    "by exact h -- #eval, set_option, import, theorem",
    "by exact h /-- doc comment: sorry -/",
    "by exact h\n  -- theorem foo := sorry",
    "by\n  intro x\n  exact x  -- `sorry`",
    "by decide -- with +native in a comment",
    "by\n  intro h'\n  exact h'",
    "by\n  intro h₁ h₂\n  exact h₁",
    "fun (α : Prop) (a : α) => a",
    "by exact Classical.em p",
    "by exact Classical.byContradiction fun hn => hn h",
    "by\n  by_contra hneg\n  exact hneg h",
    "by exact absurd h hn",
    "by exact (fun x => x) h",
    "by exact id h",
    "by\n  have h2 : q := h.2\n  exact h2",
    "by\n  show p\n  exact h",
    "by exact ‹p›",
    'by exact (fun _ => h) "-- not a comment"',
    "by exact (fun _ => h) '-'",
    "by\n  apply And.intro\n  exact hp\n  exact hq",
    "by\n  apply Or.elim h\n  · intro hp; exact Or.inr hp\n  · intro hq; exact Or.inl hq",
    "by exact Nat.le_refl 0",
    "by exact #[1, 2].size_pos",
    "by simp only [Nat.reduceMul]",
    "by exact decide_eq_true rfl",
    "by simp (config := { zeta := true })",
    "by\n  refine ⟨?_, ?_⟩ <;> assumption",
    "by exact fun h => (h.elim : p)",
    "λ h => h",
    "by\n  intro h\n  exact h -- café, naïve, 证明: other scripts are fine in comments",
    "by exact «my lemma»",
]

STATEMENTS_OK = [
    "theorem t1 (p q : Prop) : p ∧ q → q ∧ p",
    "theorem t (p : Prop) :\n    p → p",
    "theorem t {α : Type} (a : α) : a = a",
    "theorem foo.bar (p : Prop) (h : p) : p",
    "theorem t (p q : Prop) : (p → q) → ¬q → ¬p",
    "theorem t -- a comment\n    (p : Prop) : p → p",
    "theorem sorry_free (p : Prop) : p → p",
]

# (statement, rule)
STATEMENTS_REFUSED = [
    ("lemma t : p", "statement"),
    ("theorem t (p : Prop) : p := h", "statement"),
    ("theorem t (p : Prop)", "statement"),
    ("def t : Nat", "statement"),
    ("theorem : p", "statement"),
    ("theorem sorry : p", "statement"),
    ("theorem t (h : p := x) : p", "statement"),
    ("@[simp] theorem t : True", "statement"),
    ("open Foo in theorem t : True", "statement"),
    ("theorem t (p : Prop) : p\ntheorem u (q : Prop) : q", "declaration"),
    ("theorem t : (sorry : Prop)", "sorry"),
    ("theorem t (p : Prop) : p /- unterminated", "unterminated_comment"),
    ("theorem t (p : Prop) : p\u200b", "invisible"),
    ("theorem t (р : Prop) : р", "lookalike"),  # Cyrillic р
]


@pytest.mark.parametrize("proof,rule", REFUSED)
def test_refused(proof, rule):
    result = guard(STATEMENT, proof)
    assert not result.ok, proof
    assert result.rule == rule, (proof, result)
    assert result.message


@pytest.mark.parametrize("proof", HONEST)
def test_honest_proofs_pass(proof):
    assert guard(STATEMENT, proof).ok, guard(STATEMENT, proof)


@pytest.mark.parametrize("statement", STATEMENTS_OK)
def test_statement_ok(statement):
    assert guard_statement(statement).ok, guard_statement(statement)


@pytest.mark.parametrize("statement,rule", STATEMENTS_REFUSED)
def test_statement_refused(statement, rule):
    result = guard(statement, "by exact h")
    assert (result.ok, result.rule) == (False, rule), result


def test_enough_cases():
    assert len(REFUSED) + len(HONEST) + len(STATEMENTS_OK) + len(STATEMENTS_REFUSED) >= 100


def test_set_option_allow_list():
    config = GuardConfig(allowed_options=frozenset({"maxHeartbeats"}))
    assert guard(STATEMENT, "set_option maxHeartbeats 400000 in\nby simp", config).ok
    result = guard(STATEMENT, "set_option maxRecDepth 10 in\nby simp", config)
    assert (result.ok, result.rule) == (False, "set_option")
    assert "maxRecDepth" in result.message


def test_no_declaration_may_follow_the_proof():
    """The proof is one term or tactic block: a declaration after it is refused, and no setting
    allows it (a helper declared after the theorem could not help it anyway)."""
    assert guard(STATEMENT, "by exact h\nlemma aux : True := trivial").rule == "declaration"
    assert not hasattr(GuardConfig(), "allowed_declarations")


def test_refusal_names_the_position():
    result = guard_proof("by\n  intro h\n  exact (sorry)")
    assert "line 3" in result.message and "col 10" in result.message


def test_strip_comments():
    text = 'a -- b\n/- x /- y -/ z -/c "--" d /-- doc -/e'
    stripped = strip_comments(text)
    assert stripped.split() == ["a", "c", '"--"', "d", "e"]
    assert len(stripped) == len(text) and stripped.count("\n") == text.count("\n")


def test_guard_is_fast_enough():
    import time

    proof = "by\n" + "  intro h\n  exact ⟨h.2, h.1⟩ -- comment\n" * 50
    start = time.perf_counter()
    for _ in range(200):
        guard(STATEMENT, proof)
    assert (time.perf_counter() - start) / 200 < 0.01  # well under the cost of any check


# --- every keyword rule, systematically ------------------------------------------------------

# Where a forbidden word can hide in a proof: plain, indented in a `by` block, after `;` with and
# without spaces, in parentheses, after a focusing dot, after a comment on the line before.
SPELLINGS = [
    "by {kw}",
    "by\n  {kw}",
    "by  \t{kw}  ",
    "by intro h; {kw}",
    "by intro h;{kw}",
    "by\n  intro h\n  ({kw})",
    "by\n  constructor\n  · {kw}",
    "by -- a comment\n  {kw}",
    "by /- a /- nested -/ comment -/ {kw}",
]
# The same word where it is harmless: in comments, in a string, inside longer identifiers.
HARMLESS = [
    "by exact h -- {kw}",
    "by /- {kw} -/ exact h",
    "by /- /- {kw} -/ {kw} -/ exact h",
    "by\n  /-\n  {kw}\n  -/\n  exact h",
    'by exact (fun _ => h) "{kw}"',
    "by exact h{kw}",
    "by exact {kw}_lemma",
    "by exact my_{kw}_lemma",
    "by exact h.{kw}",
    "by exact {kw}'",
    "by exact {kw}₁",
]


@pytest.mark.parametrize("keyword", sorted(KEYWORD_RULES))
def test_every_keyword_in_every_spelling(keyword):
    wrong = [(proof, r) for proof in (s.format(kw=keyword) for s in SPELLINGS)
             if ((r := guard(STATEMENT, proof)).ok, r.rule) != (False, KEYWORD_RULES[keyword])]
    assert not wrong


@pytest.mark.parametrize("keyword", sorted(KEYWORD_RULES))
def test_every_keyword_where_it_is_harmless(keyword):
    wrong = [(proof, r) for proof in (s.format(kw=keyword) for s in HARMLESS)
             if not (r := guard(STATEMENT, proof)).ok]
    assert not wrong


def _slow_guard_proof(proof):
    """The guard without its fast path (always lexing), to check that the shortcut changes nothing."""
    from lean_env.guard import DEFAULT_CONFIG, Refused, _check_proof

    try:
        _check_proof(proof, DEFAULT_CONFIG, 0)
    except Refused as r:
        return (False, r.rule)
    return (True, "")


def test_fast_path_agrees_with_full_lexing():
    texts = [p for p, _ in REFUSED] + HONEST + [
        s.format(kw=kw) for kw in KEYWORD_RULES for s in SPELLINGS + HARMLESS] + _issue18_texts()
    for proof in texts:
        r = guard_proof(proof)
        assert (r.ok, r.rule) == _slow_guard_proof(proof), proof


# --- issue 6: each construct in «»-escaped form, after `;`, inside a nested `by`, with odd spacing --

MORE_SPELLINGS = [
    ("by «admit»", "admit"),
    ("by «native_decide»", "native_decide"),
    ("by exact h\n«axiom» x : False", "axiom"),
    ("by\n  exact h\n  «instance» : Inhabited Nat := ⟨0⟩", "instance"),
    ("by simp (config := { «decide» := true })", "kernel_bypass"),
    ("by exact h; #eval 1", "#eval"),
    ("by exact h;#exit", "#exit"),
    ("by exact h ; run_tac pure ()", "run_tac"),
    ("by simp only [foo];apply?", "apply?"),
    ("by (exact?)", "exact?"),
    ("by exact (by sorry)", "sorry"),
    ("by exact (by\n    admit)", "admit"),
    ("by exact h <;> admit", "admit"),
    ("by\n\texact h\n\tsorry", "sorry"),
    ("by exact h\n local   instance : Inhabited Nat := ⟨0⟩", "local"),
    ("by exact h\nset_option  debug.skipKernelTC true", "set_option"),
    ("by exact h;set_option maxHeartbeats 0 in simp", "set_option"),
    ("by exact h\n@[implemented_by foo] def f := 1", "attribute"),
    ("by exact h\nopaque  x : Nat", "opaque"),
    ("by exact h\n  import Mathlib", "import"),
    ("by exact h\n  lemma aux : True := trivial", "declaration"),
    ("by decide +kernel", "kernel_bypass"),
]


@pytest.mark.parametrize("proof,rule", MORE_SPELLINGS)
def test_more_spellings_are_refused(proof, rule):
    result = guard(STATEMENT, proof)
    assert (result.ok, result.rule) == (False, rule), (proof, result)


# --- issue 18: refusal by class ----------------------------------------------------------------
# Each class below was open before: at least one case of each passed the guard.

# Code inside a string literal: Lean parses the `{…}` segments of an interpolated string as terms,
# and a string is interpolated after `s!`/`m!`/`f!` and also without any `!` (`dbg_trace "…"`,
# `throwError "…"`). The class: any `{` in a string literal.
INTERPOLATED = [
    'by\n  dbg_trace "{sorry}"\n  exact h',
    'by exact dbg_trace "{h}"; h',
    'by exact (dbg_trace "x = {(by exact h : p)}"; h)',
    'by\n  exact h\n  throwError "{h}"',
    'by exact (dbgTrace "{h}" fun _ => h)',
    'by exact (fun _ => h) r"{h}"',
    'by exact (fun _ => h) "\\{"',
    'by exact (fun _ => h) "a {  } b"',
    'by exact (fun _ => h) s!"{h}"',
    'by exact (fun _ => h) f!"a{h}b"',
]


@pytest.mark.parametrize("proof", INTERPOLATED)
def test_code_inside_strings_is_refused(proof):
    result = guard(STATEMENT, proof)
    assert (result.ok, result.rule) == (False, "interpolated_string"), (proof, result)


def test_plain_strings_still_pass():
    for proof in ['by exact (fun _ => h) "no braces"', 'by exact (fun _ => h) "a } b"']:
        assert guard(STATEMENT, proof).ok, proof


# Options that skip or replace the kernel (`native`, `kernel`, `decide` in a tactic config): refused
# whatever the value is written as, in the `:=` and in the `+opt`/`-opt` flag spellings, escaped or not.
BYPASS_SPELLINGS = [
    "by decide (config := { native := Bool.true })",
    "by decide (native := (true))",
    "by simp (config := {decide := (true)})",
    "by decide (config := { kernel := !false })",
    "by decide (config := {native:=Bool.true})",
    "by decide (config := { native := Bool.true, kernel := false })",
    "by decide (config := { «kernel» := Bool.true })",
    "by decide +«native»",
    "by decide -native",
    "by decide (config := { native := id true })",
    "by decide (config := { native :=\n    true })",
]


@pytest.mark.parametrize("proof", BYPASS_SPELLINGS)
def test_kernel_bypass_options_in_any_spelling(proof):
    result = guard(STATEMENT, proof)
    assert (result.ok, result.rule) == (False, "kernel_bypass"), (proof, result)


def test_options_that_keep_the_kernel_pass():
    for proof in ["by simp (config := { zeta := true })", "by simp [decide]", "by exact decide_eq_true rfl",
                  "by simp +arith", "by omega"]:
        assert guard(STATEMENT, proof).ok, proof


# The proof is one term or tactic block; any further top-level command is refused whatever its
# keyword. Structurally: brackets balance and never close one the proof did not open; outside
# brackets no line starts at column 0, nor left of a top-level `by` block's column (Lean ends the
# term or block there and reads a new command). On the real-Lean path the proof is also sent
# inside parentheses (lean_env/lean_repl/classify.py), so Lean itself refuses a command anywhere in it.
UNLISTED_COMMANDS = [
    ("by exact h\nsimproc foo (x) := by simp", "top_level"),
    ("by exact h\ndsimproc foo (x) := by simp", "top_level"),
    ("by exact h\nunseal foo", "top_level"),
    ('by exact h\nbinder_predicate x " > " y:term => y', "top_level"),
    ('by exact h\ndeclare_simp_like_tactic simp2 "simp2 " fun c => c', "top_level"),
    ("by\n  exact h\nregister_simp_attr my_simp", "top_level"),
    ("by exact h\n\nsuppress_compilation", "top_level"),
    ("by exact h\n  unseal foo", "top_level"),      # left of the block's column: the block has ended
    ("by exact h\n   seal foo", "top_level"),
    ("fun x =>\n  x\ngrind_pattern foo => x", "top_level"),
    ("h)\n  simproc s (x) := (x", "brackets"),       # would close the parenthesis Lean gets around the proof
    ("(h))", "brackets"),
    ("⟨h, h⟩⟩", "brackets"),
    ("(h", "brackets"),
    ("⟨h, h)", "brackets"),
    ("by exact (h\n  ]", "brackets"),
]


@pytest.mark.parametrize("proof,rule", UNLISTED_COMMANDS)
def test_further_commands_are_refused_whatever_their_keyword(proof, rule):
    result = guard(STATEMENT, proof)
    assert (result.ok, result.rule) == (False, rule), (proof, result)


def test_one_block_layouts_lean_accepts_pass():
    for proof in ["by\n  exact ⟨h,\nh⟩",  # inside brackets Lean checks no column
                  "fun h =>\n  h",
                  "by\n  cases h with\n  | inl a => exact a\n  | inr b => exact b",
                  "by exact h\n  -- a comment at any column\n-- even at column 0",
                  "by\n  intro x\n  exact (by\n    exact x)",
                  "by\n  refine ⟨?_,\n    ?_⟩\n  · exact h\n  · exact h"]:
        assert guard(STATEMENT, proof).ok, (proof, guard(STATEMENT, proof))
    config = GuardConfig(allowed_options=frozenset({"maxHeartbeats"}))
    assert guard(STATEMENT, "set_option maxHeartbeats 400000 in\nby simp", config).ok  # `… in` continues


def test_the_block_column_counts_the_statement():
    """`by t` on the statement's line puts the block at a column the proof alone does not show."""
    statement = "theorem t (p : Prop) (h : p) : p"
    assert not guard(statement, "by exact h\n  exact h").ok  # Lean: the block is at column 36
    assert guard(statement, "by\n  exact h").ok


def _issue18_texts():
    """Every proof of the issue-18 classes, for the fast-path agreement test above."""
    texts = []
    for name, value in list(globals().items()):
        if name.isupper() and isinstance(value, list) and name not in ("REFUSED", "HONEST", "SPELLINGS", "HARMLESS"):
            texts += [v[0] if isinstance(v, tuple) else v for v in value if isinstance(v, (str, tuple))]
    return [t for t in texts if isinstance(t, str)]


# Search and suggestion tactics: the class is Lean's `?` mark (`exact?`, `apply?`, `rw?`, `simp?`,
# `aesop?`, `simp_all?`, `says` after a `simp?`, …), whatever the tactic; the few suggestion
# tactics without the mark (`hint`, `polyrith`, `rw_search`, `library_search`) are named.
SEARCH_TACTICS = [
    ("by rw?", "search"),
    ("by simp?", "search"),
    ("by\n  intro x\n  aesop?", "search"),
    ("by simp_all?", "search"),
    ("by field_simp?", "search"),
    ("by norm_num?", "search"),
    ("by simp?!", "search"),
    ("by simp? says simp only [h]", "search"),
    ("by exact h; rw?", "search"),
    ("by «simp?»", "search"),
    ("by first | simp? | rfl", "search"),
    ("by unknown_future_search?", "search"),
    ("by hint", "search"),
    ("by\n  intro x\n  hint", "search"),
    ("by polyrith", "search"),
    ("by rw_search", "search"),
    ("by all_goals simp?", "search"),
    ("by iterate 2 rw?", "search"),
    ("by\n  constructor <;> simp?", "search"),
    ("by apply?", "apply?"),
    ("by exact?", "exact?"),
]


@pytest.mark.parametrize("proof,rule", SEARCH_TACTICS)
def test_search_tactics_are_refused_as_a_class(proof, rule):
    result = guard(STATEMENT, proof)
    assert (result.ok, result.rule) == (False, rule), (proof, result)


def test_question_marks_that_are_not_search_pass():
    for proof in ["by\n  refine ⟨?_, ?_⟩ <;> exact h", "by exact (List.head? [h]).isSome", "by exact h.hint",
                  "by exact hint_lemma", "by refine ?a", "by exact happly?"]:
        assert guard(STATEMENT, proof).ok, (proof, guard(STATEMENT, proof))


# Meta-level code: any reference to Lean's implementation (the `Lean` namespace anywhere in a name,
# its sub-namespaces reached without the prefix, the meta monads, declaration-adding and
# option-setting functions, `debug.*` options), however spelled: «»-escaped, through `_root_`,
# after `open … in` (refused as `open`).
META_REFERENCES = [
    ("by exact (Lean.Elab.Term.elabTerm)", "meta"),
    ("by exact Lean.Meta.mkFreshExprMVar", "meta"),
    ("by exact (Lean.addDecl : _)", "meta"),
    ("by exact _root_.Lean.addDecl", "meta"),
    ("by exact «Lean».addDecl", "meta"),
    ("by exact Lean.«Elab».Command.liftTermElabM", "meta"),
    ("by exact (Lean.Environment.contains)", "meta"),
    ("by exact Elab.Term.elabTerm", "meta"),
    ("by exact (Meta.whnf)", "meta"),
    ("by exact (debug.skipKernelTC)", "meta"),
    ("by exact withOptions id h", "meta"),
    ("by exact h.addDecl", "meta"),
    ("by exact (fun (_ : TacticM Unit) => h)", "meta"),
    ("by exact (fun (_ : MetaM Unit) => h)", "meta"),
    ("by exact Environment.find?", "meta"),
    ("by exact (modifyEnv id)", "meta"),
    ("by exact Mathlib.Meta.NormNum.isNat_add", "meta"),
    ("by\n  open Lean in exact addDecl", "open"),
]


@pytest.mark.parametrize("proof,rule", META_REFERENCES)
def test_meta_level_references_are_refused_however_spelled(proof, rule):
    result = guard(STATEMENT, proof)
    assert (result.ok, result.rule) == (False, rule), (proof, result)


def test_math_names_near_meta_ones_pass():
    for proof in ["by exact ProbabilityTheory.Kernel.comp_id", "by exact Classical.em p", "by exact hLean",
                  "by exact h.elim", "by exact MetaTheorem.foo", "by exact Nat.le_refl 0", "by exact leanprover"]:
        assert guard(STATEMENT, proof).ok, (proof, guard(STATEMENT, proof))


def test_no_setting_allows_a_debug_option():
    config = GuardConfig(allowed_options=frozenset({"debug.skipKernelTC"}))
    result = guard(STATEMENT, "set_option debug.skipKernelTC true in\nby exact h", config)
    assert (result.ok, result.rule) == (False, "meta"), result
