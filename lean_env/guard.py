"""The proof guard: refuse proofs that could "pass" without proving anything.

Every backend (the `prop` checker, the Lean REPL, LeanDojo) sees a proof only after
`guard(statement, proof)` accepted it; a refusal becomes the verdict `invalid` and names the rule
that fired (`GuardResult.rule`), so reports can count which escape hatch a model tried. On the
real-Lean paths the guard is the only defence against meta-level code: a proof that adds an
unchecked declaration with kernel checking switched off leaves `#print axioms` clean.

The rules are classes, not word lists (tests/test_guard.py has each class in many spellings):

* characters (`bidi`, `invisible`, `control_char`, `unassigned_char`, `non_nfc`, `lookalike`,
  `fullwidth`, `combining_mark`, `escape`): text whose reading differs from what Lean parses —
  bidi controls and invisible characters even inside comments ("Trojan Source"), look-alike
  letters and `\\u`/`\\x` escapes in the code;
* one term or tactic block (`top_level`, `brackets`): the proof's brackets balance and never
  close one it did not open; outside brackets no line starts at column 0 (after `… in` excepted),
  nor left of a top-level `by` block's first tactic: Lean would end the proof there and read a new
  command, whatever its keyword. (The keyword rules below still name the commonest commands,
  `declaration`, `#eval`, `axiom`, … for clearer messages.)
* escape hatches that elaborate without proving: `sorry`, `admit`, `stop`, and constants that
  prove anything or skip the kernel (`sorryAx`, `ofReduceBool`, `trustCompiler`, `unsafeCast`,
  `lcProof`, …) in any dotted part of a name; `native_decide`; kernel-bypass options (`native`,
  `kernel`, `decide` as `NAME := <any value>` or `±NAME`);
* code in strings (`interpolated_string`): any `{` in a string literal, any `x!"…"`: Lean parses
  the `{…}` segments of an interpolated string as terms, with or without a `!` (`dbg_trace "…"`);
* search and suggestion (`search`, `apply?`, `exact?`, `library_search`): every plain name with
  Lean's `?` mark except as the argument of `exact`/`apply`/`refine`/`use` (`exact happly?` names
  a hypothesis), and the suggestion tactics without the mark (`hint`, `polyrith`, `rw_search`);
* meta-level code (`meta`, `quotation`, `run_tac`, `elab`, …, `open`, `set_option`): a name whose
  root is one of Lean's implementation namespaces (`Lean`, `Elab`, `Meta`, `Parser`,
  `Environment`, `Mathlib`, `debug`, …) or with a part such as `Lean`, `addDecl`, `withOptions`,
  `MetaM`, `TacticM`, however spelled (`«»`-escaped, `_root_`); syntax quotations; the entry points
  that run meta code (`run_tac`, `run_cmd`, `by_elab`, `#eval`, …); `open` (which would make meta
  names reachable unqualified) and `set_option` (unless allowed, never a `debug.` option).

Tracing is allowed (`trace "…"` is honest and harmless): what a proof prints never counts as the
answer of the `#print axioms` the lean_repl worker appends (lean_env/lean_repl/classify.py).

How it reads the text: a lexer that follows Lean 4's rules for comments (`--`, nested `/- -/`),
string and char literals and identifiers (letters, digits, `_`, `'`, `!`, `?`, subscripts, Greek,
letter-like symbols, dotted parts, `«…»`); rules match whole tokens, so `sorry_free` or `hsorry`
pass while `sorry`, `(sorry)` and `;sorry` do not. Where it cannot be exact it errs towards seeing
*more* code than Lean does (`2sorry` is `2` then `sorry`): a false refusal costs one sample, a
missed `sorry` poisons a training set.

What it cannot catch without Lean, and what catches it then:
* a command placed where the guard cannot tell it from a tactic it does not know (at the block's
  column, after `;`): the lean_repl backend sends the proof as `STATEMENT :=(PROOF\\n)`, so Lean's
  own parser reads it as one term and such a command is a parse error (`fail`); the prop checker's
  grammar refuses it too;
* a kernel bypass reached some other way (a positional config structure, a header macro): Lean
  records `native_decide`-style evaluation as the axioms `Lean.ofReduceBool`/`Lean.trustCompiler`,
  and `sorry` as `sorryAx`, so `#print axioms` and the classifier's allow-list fail it;
* meta code under a name outside these namespaces (from the header's imports): only the real
  check and `#print axioms` remain; the header is the user's configuration, not the model's text.
The guard is a first line of defence, not a proof of soundness.

Where Lean's behaviour is not confirmed by a test against real Lean, the rule
takes the refusing side: a line at column 0 inside a term is refused although Lean may accept it;
`-native`/`decide := false` are refused although harmless; a `?`-marked name used as an
application argument (`f x?`) is refused.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class GuardResult:
    ok: bool
    rule: str = ""  # which rule refused the text; "" when ok
    message: str = ""


ACCEPTED = GuardResult(True)


@dataclass(frozen=True)
class GuardConfig:
    # `set_option NAME … in` is refused unless NAME is listed (e.g. "maxHeartbeats").
    allowed_options: frozenset[str] = frozenset()


DEFAULT_CONFIG = GuardConfig()


# --- the rules -------------------------------------------------------------------------------

# A whole identifier token -> the rule it breaks.
_DECLARATIONS = ("theorem", "lemma", "def", "example", "abbrev", "structure", "inductive",
                 "class", "coinductive", "constant", "irreducible_def", "alias")
_COMMANDS = ("mutual", "variable", "universe", "deriving", "export", "include", "omit",
             "initialize", "builtin_initialize", "noncomputable", "private", "protected",
             "add_decl_doc", "library_note", "register_option", "assert_not_exists")
KEYWORD_RULES: dict[str, str] = {
    "sorry": "sorry",
    "admit": "admit",
    "stop": "stop",  # `stop` is `repeat sorry`
    "apply?": "apply?",
    "exact?": "exact?",
    "library_search": "library_search",
    # suggestion tactics without Lean's `?` mark (every tactic with the mark is refused by class:
    # see `_is_search`)
    "hint": "search",
    "polyrith": "search",
    "rw_search": "search",
    "native_decide": "native_decide",
    "axiom": "axiom",
    "opaque": "opaque",
    "implemented_by": "implemented_by",
    "extern": "extern",
    "unsafe": "unsafe",
    "partial": "partial",
    "set_option": "set_option",
    "run_cmd": "run_cmd",
    "run_tac": "run_tac",
    "run_elab": "run_elab",
    "run_meta": "run_meta",
    "elab": "elab",
    "elab_rules": "elab",
    "by_elab": "elab",
    "macro": "macro",
    "macro_rules": "macro_rules",
    "syntax": "syntax",
    "declare_syntax_cat": "syntax",
    "notation": "notation",
    "infix": "infix",
    "infixl": "infix",
    "infixr": "infix",
    "prefix": "prefix",
    "postfix": "postfix",
    "instance": "instance",
    "attribute": "attribute",
    "import": "import",
    "open": "open",
    "namespace": "namespace",
    "section": "section",
    "end": "end",
    "local": "local",
    "scoped": "scoped",
    "where": "where",  # `where` introduces auxiliary declarations
    **{kw: "declaration" for kw in _DECLARATIONS},
    **{kw: "command" for kw in _COMMANDS},
}

# Constants that prove anything or skip the kernel. Matched against every dotted part of an
# identifier, so `Lean.ofReduceBool` and `@_root_.sorryAx` are caught too.
CONSTANT_RULES: dict[str, str] = {
    "sorryAx": "sorry",
    "ofReduceBool": "native_decide",
    "ofReduceNat": "native_decide",
    "reduceBool": "native_decide",
    "reduceNat": "native_decide",
    "trustCompiler": "native_decide",
    "unsafeCast": "unsafe",
    "unsafeIO": "unsafe",
    "unsafeBaseIO": "unsafe",
    "unsafeEIO": "unsafe",
    "lcProof": "unsafe",
    "lcUnreachable": "unsafe",
}

# Meta-level code: Lean's own implementation, which can add declarations without the kernel,
# switch checks off or elaborate arbitrary code. A name is refused if its root (after `_root_`) is
# one of Lean's implementation namespaces (also reachable without the `Lean.` prefix once `Lean` is
# open in a header) or Mathlib's (its tactics and meta code live under `Mathlib.`), or if any of its
# parts is `Lean`, a meta monad, or a function that changes the environment or the options. «»
# escapes are undone first, so `«Lean».addDecl` is `Lean.addDecl`.
META_ROOTS = frozenset({"Lean", "Elab", "Meta", "Parser", "PrettyPrinter", "Server", "Compiler", "IR",
                        "Environment", "Mathlib", "debug"})
META_PARTS = frozenset({"Lean", "addDecl", "addAndCompile", "withOptions", "modifyEnv", "setEnv", "skipKernelTC",
                        "CoreM", "MetaM", "TermElabM", "TacticM", "CommandElabM", "MacroM"})

# Tactic-config options that replace or skip kernel checking: refused as `NAME := anything` (any
# value, any spelling of it: `true`, `Bool.true`, `(true)`, `!false`, an expression) and as the flags
# `+NAME` / `-NAME`, the name escaped or not. Setting one to false costs an honest proof nothing
# to write differently, and a value we would have to evaluate is exactly what we cannot do.
_BYPASS_OPTIONS = frozenset({"decide", "native", "kernel"})
_HASH_RULES = {"eval": "#eval", "exit": "#exit", "print": "#print"}  # any other `#x`: "#command"
# Token texts that may break a rule; any other plain identifier or symbol is skipped quickly.
_WATCHED = frozenset(KEYWORD_RULES) | frozenset(CONSTANT_RULES) | _BYPASS_OPTIONS | META_ROOTS | META_PARTS \
    | {":=", "#", "@[", "`(", "`[", "+", "-"}
# Every rule needs one of these substrings: a watched word, or a character that starts a
# comment, string, «name», command, attribute, quotation or escape, or `:=` at column 0. Text
# without any of them cannot be refused by a token rule, so lexing it can be skipped: most
# honest proofs take this path, and the lexer is the guard's main cost.
_SUSPECT = re.compile("|".join(
    [re.escape(w) for w in sorted(_WATCHED - {":=", "+", "-"}, key=len, reverse=True)]
    + ["--", "/-", '"', "«", "#", "@", "`", r"\\", "\n:=", r"'(?:\\.|[^\\'\n])'", r"[\w'!]\?"]))

# --- characters ------------------------------------------------------------------------------

_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Zero-width and other invisible or odd space characters (category Cf is checked separately).
_INVISIBLE = re.compile("[\u00a0\u00ad\u034f\u115f\u1160\u180e\u2000-\u200d\u2028-\u202f"
                        "\u205f-\u2064\u3000\u3164\ufeff\uffa0]")
_ALLOWED_CONTROLS = frozenset("\n\t\r")
_ASCII_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NON_ASCII = re.compile("[^\x00-\x7f]")
_FULLWIDTH = re.compile("[\uff01-\uff60\uffe0-\uffe6]")
# Letters that look Latin: all of Cyrillic, Armenian and Cherokee; the Greek capitals that are
# drawn like Latin ones and omicron. Other Greek (α, β, ι, λ, σ, …) is ordinary Lean.
_LOOKALIKE = re.compile("[\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f"
                        "\u0530-\u058f\u13a0-\u13ff\uab70-\uabbf"
                        "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1"
                        "\u03a4\u03a5\u03a7\u03bf\u037f\u03f2\u03f3\u03f9"
                        "\u01c3\u02d0\u2024\u2236\ua789]")  # ǃ ː ․ ∶ ꞉ look like ! : . : :
_ESCAPE = re.compile(r"\\[uUxX]")

# --- the lexer -------------------------------------------------------------------------------

# Lean's `isLetterLike` (Greek without λ Π Σ, Coptic, Greek extended, letter-like symbols, some
# mathematical alphanumerics) and `isSubScriptAlnum`, as regex character-class bodies.
_LETTERLIKE = ("\u03b1-\u03ba\u03bc-\u03c9\u0391-\u039f\u03a1\u03a2\u03a4-\u03a9"
               "\u03ca-\u03fb\u1f00-\u1ffe\u2100-\u214f\U0001d49c-\U0001d59f")
_SUBSCRIPT = "\u2080-\u2089\u2090-\u209c\u1d62-\u1d6a"
_ID_START = f"A-Za-z_{_LETTERLIKE}"
_ID_REST = f"A-Za-z0-9_'!?{_LETTERLIKE}{_SUBSCRIPT}"
_ID_PART = f"(?:«[^»]*»|[{_ID_START}][{_ID_REST}]*)"

_ID = f"{_ID_PART}(?:\\.{_ID_PART})*"

# One alternative per kind of lexeme, tried in this order after skipping whitespace;
# `m.lastgroup` says which one matched. Order matters: comments before symbols, raw strings
# before identifiers.
_LEXEME = re.compile(
    r"\s*(?:"
    r"(?P<line_comment>--[^\n]*)"
    r"|(?P<block_comment>/-)"
    r'|(?P<string>"(?:[^"\\]|\\.)*")'
    r'|(?P<raw_string>r(?P<hashes>#*)".*?"(?P=hashes))'
    r'|(?P<open_string>r#*"|")'
    r"|(?P<char>'(?:\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)|[^\\'\n])')"
    f"|(?P<ident>{_ID})"
    r"|(?P<open_ident>«)"
    r"|(?P<number>0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|[0-9]+)"
    r"|(?P<symbol>:=|@\[|`\(|`\[|.)"
    r"|(?P<end>\Z))",
    re.S,
)
_COMMENT_EDGE = re.compile(r"-/|/-")


class Token(NamedTuple):
    kind: str  # "ident", "string", "char", "number" or "symbol"
    text: str
    start: int  # offset in the text
    end: int


_new_token = tuple.__new__  # skips NamedTuple's slower keyword-handling constructor


def ident_parts(name: str) -> list[str]:
    """Dotted parts of an identifier, «» removed: `Lean.«ofReduceBool»` -> [Lean, ofReduceBool]."""
    if "«" not in name:
        return name.split(".")
    return [p.strip("«»") for p in re.findall(_ID_PART, name)]


# Where a `?`-marked name is a term, not a tactic: the argument of these (`exact happly?`).
_TERM_HEADS = frozenset({"exact", "apply", "refine", "refine'", "use", "exists", ":="})


def _is_search(name: str, prev: Token | None) -> bool:
    """A plain (undotted) name with Lean's `?` mark — `exact?`, `rw?`, `simp?!`, `aesop?`, … the
    convention for tactics that search or suggest — anywhere but as the argument of a term-taking
    tactic (`exact happly?` names a hypothesis). Dotted names (`List.head?`) are functions."""
    return "?" in name and "." not in name and (prev is None or prev.text not in _TERM_HEADS)


def _plain(name: str) -> str:
    """The name an identifier token denotes: dotted parts with «» removed, joined by dots."""
    return ".".join(ident_parts(name))


class Refused(Exception):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
        self.message = message


def tokenize(text: str) -> tuple[list[Token], str]:
    """Tokens of `text` without comments, and the text with comments replaced by spaces.

    Newlines inside comments are kept, so lines and columns in the stripped text match the
    original. Raises `Refused` on an unterminated comment, string or «identifier»: Lean would run
    it to the end of the file and swallow whatever a backend appends after the proof.
    """
    tokens: list[Token] = []
    comments: list[tuple[int, int]] = []
    pos: int | None = 0
    while pos is not None:
        pos = _scan(text, pos, tokens, comments)
    return tokens, _blank_spans(text, comments)


_TOKEN_KINDS = {"ident": "ident", "symbol": "symbol", "number": "number", "string": "string",
                "raw_string": "string", "char": "char"}


def _scan(text: str, pos: int, tokens: list[Token], comments: list[tuple[int, int]]) -> int | None:
    """Lex from `pos` up to the end (returns None) or past the next block comment (returns its end).

    `finditer` drives the loop in C, which matters: the guard runs on every sample. It cannot
    skip text, because the `symbol` alternative matches any character.
    """
    for m in _LEXEME.finditer(text, pos):
        kind = m.lastgroup
        token_kind = _TOKEN_KINDS.get(kind)
        if token_kind is not None:
            tokens.append(_new_token(Token, (token_kind, m.group(kind), m.start(kind), m.end())))
        elif kind == "line_comment":
            comments.append(m.span(kind))
        elif kind == "block_comment":
            start = m.start(kind)
            end = _block_comment_end(text, start)  # nesting is beyond a regex
            comments.append((start, end))
            return end
        elif kind == "open_string":
            raise Refused("unterminated_string", f"unterminated string literal at {_at(text, m.start(kind))}")
        elif kind == "open_ident":
            raise Refused("unterminated_ident", f"unterminated «identifier» at {_at(text, m.start(kind))}")
    return None


def _at(text: str, offset: int) -> str:
    """`line L, col C` (1-based) of an offset, for messages."""
    line = text.count("\n", 0, offset)
    return f"line {line + 1}, col {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


def _blank_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the given spans replaced by spaces, newlines kept."""
    if not spans:
        return text
    pieces, prev = [], 0
    for start, end in spans:
        pieces.append(text[prev:start])
        pieces.append(re.sub(r"[^\n]", " ", text[start:end]))
        prev = end
    pieces.append(text[prev:])
    return "".join(pieces)


def _block_comment_end(text: str, start: int) -> int:
    """End offset of the nested `/- … -/` comment opening at `start` (Lean's finishCommentBlock)."""
    depth, i = 1, start + 2
    while m := _COMMENT_EDGE.search(text, i):
        depth += 1 if m.group() == "/-" else -1
        i = m.end()
        if depth == 0:
            return i
    raise Refused("unterminated_comment", f"unterminated /- comment starting at {_at(text, start)}")


def strip_comments(text: str) -> str:
    """`text` with every comment replaced by spaces (newlines kept); strings are left alone."""
    return tokenize(text)[1]


# --- checks ----------------------------------------------------------------------------------


def _check_characters(text: str) -> None:
    """Characters refused anywhere, comments included."""
    if m := _ASCII_CONTROL.search(text):
        raise Refused("control_char", f"control character U+{ord(m.group()):04X} at {_at(text, m.start())}")
    if text.isascii():
        return
    if m := _BIDI.search(text):
        raise Refused("bidi", f"bidirectional control U+{ord(m.group()):04X} at {_at(text, m.start())}")
    if m := _INVISIBLE.search(text):
        raise Refused("invisible", f"invisible character U+{ord(m.group()):04X} at {_at(text, m.start())}")
    for ch in sorted(set(_NON_ASCII.findall(text)), key=text.index):
        cat = unicodedata.category(ch)
        if cat == "Cc":
            raise Refused("control_char", f"control character U+{ord(ch):04X} at {_at(text, text.index(ch))}")
        if cat == "Cf" or cat in ("Zs", "Zl", "Zp"):
            raise Refused("invisible", f"invisible character U+{ord(ch):04X} at {_at(text, text.index(ch))}")
        if cat in ("Cn", "Co", "Cs"):
            raise Refused("unassigned_char",
                          f"unassigned or private-use character U+{ord(ch):04X} at {_at(text, text.index(ch))}")
    if not unicodedata.is_normalized("NFC", text):
        raise Refused("non_nfc", "text is not in Unicode normal form NFC")


def _check_code_characters(text: str) -> None:
    """Characters refused outside comments (`text` has its comments blanked out)."""
    if m := _ESCAPE.search(text):
        raise Refused("escape", f"escape sequence {m.group()!r} at {_at(text, m.start())}")
    if text.isascii():
        return
    if m := _FULLWIDTH.search(text):
        raise Refused("fullwidth", f"fullwidth character {m.group()!r} at {_at(text, m.start())}")
    if m := _LOOKALIKE.search(text):
        raise Refused("lookalike", f"character {m.group()!r} (U+{ord(m.group()):04X}) looks like a Latin one, at {_at(text, m.start())}")
    for ch in sorted(set(_NON_ASCII.findall(text)), key=text.index):
        if unicodedata.category(ch) in ("Mn", "Me"):
            raise Refused("combining_mark", f"combining mark U+{ord(ch):04X} at {_at(text, text.index(ch))}")


def _check_tokens(text: str, tokens: list[Token], config: GuardConfig, where: str, skip: int = 0) -> None:
    """Keyword and pattern rules over the tokens from index `skip` on."""
    for k in range(skip, len(tokens)):
        tok = tokens[k]
        if tok.text not in _WATCHED and tok.kind in ("symbol", "number", "char"):
            continue  # fast path: most tokens are `(`, `⟨`, `h.1`, …
        if tok.kind == "ident" and tok.text not in _WATCHED and "." not in tok.text and "«" not in tok.text \
                and "?" not in tok.text:
            continue
        found = _rule_at(text, tokens, k, config)
        if found:
            rule, offence = found
            raise Refused(rule, f"{offence} at {where} {_at(text, tokens[k].start)}")


def _rule_at(text: str, tokens: list[Token], k: int, config: GuardConfig) -> tuple[str, str] | None:
    """(rule, offence) if the token at `k` breaks a rule, else None."""
    tok = tokens[k]
    nxt = tokens[k + 1] if k + 1 < len(tokens) else None
    prev = tokens[k - 1] if k > 0 else None
    if tok.kind == "ident":
        return _ident_rule(tok, prev, nxt, config)
    adjacent = nxt is not None and nxt.start == tok.end
    if tok.kind == "string":
        # Lean parses the `{…}` segments of an interpolated string as terms, and a string literal is
        # interpolated after `s!`/`m!`/`f!` and also without any `!` (`dbg_trace "…"`,
        # `throwError "…"`): so any `{` in a string literal, and any `x!"…"`, is refused.
        if prev is not None and prev.kind == "ident" and prev.text.endswith("!"):
            return "interpolated_string", f'interpolated string {prev.text}"…"'
        if "{" in tok.text:
            return "interpolated_string", "a `{` in a string literal (code, if the string is interpolated)"
        return None
    if tok.text == ":=" and tok.start > 0 and text[tok.start - 1] == "\n":
        return "top_level", "`:=` at column 0 (the start of another declaration)"
    if tok.text == "#" and adjacent and nxt.kind == "ident":
        return _HASH_RULES.get(nxt.text, "#command"), f"command #{nxt.text}"
    if tok.text == "@[":
        return "attribute", "attribute @[…]"
    if tok.text in ("`(", "`["):
        return "quotation", f"syntax quotation {tok.text}"
    if tok.text in ("+", "-") and adjacent and nxt.kind == "ident" and _plain(nxt.text) in _BYPASS_OPTIONS:
        return "kernel_bypass", f"option {tok.text}{nxt.text}"
    return None


def _ident_rule(tok: Token, prev: Token | None, nxt: Token | None, config: GuardConfig) -> tuple[str, str] | None:
    parts = ident_parts(tok.text)
    name = ".".join(parts)
    rule = KEYWORD_RULES.get(name)
    if rule == "set_option":
        option = nxt.text if nxt is not None and nxt.kind == "ident" else "?"
        if option in config.allowed_options:
            return None
        return "set_option", f"set_option {option} (not in the allowed options)"
    if rule:
        return rule, f"`{tok.text}`"
    if _is_search(name, prev):
        return "search", f"search tactic `{tok.text}` (Lean's `?` mark: it searches or suggests)"
    for part in parts:
        if part in CONSTANT_RULES:
            return CONSTANT_RULES[part], f"constant `{tok.text}`"
    root = parts[1] if parts[0] == "_root_" and len(parts) > 1 else parts[0]
    if root in META_ROOTS or any(part in META_PARTS for part in parts):
        return "meta", f"`{tok.text}` refers to Lean's implementation (meta-level code)"
    if name in _BYPASS_OPTIONS and nxt is not None and nxt.text == ":=":
        return "kernel_bypass", f"option {name} := …"
    return None


def _lex(text: str) -> list[Token]:
    """Tokens of `text`, after the character checks."""
    _check_characters(text)
    tokens, code = tokenize(text)
    _check_code_characters(code)
    return tokens


@functools.lru_cache(maxsize=4096)  # a batch holds many samples of few statements
def guard_statement(statement: str, config: GuardConfig = DEFAULT_CONFIG) -> GuardResult:
    """The statement must be one `theorem NAME … : TYPE` header, with no `:=`."""
    try:
        tokens = _lex(statement)
        if len(tokens) < 2 or tokens[0].text != "theorem":
            raise Refused("statement", "statement must start with `theorem NAME`")
        name = tokens[1]
        if name.kind != "ident" or ".".join(ident_parts(name.text)) in KEYWORD_RULES:
            raise Refused("statement", f"`{name.text}` is not a theorem name")
        if any(t.text == ":=" for t in tokens):
            raise Refused("statement", "statement must not contain `:=`")
        if not _has_top_level_colon(tokens[2:]):
            raise Refused("statement", "statement has no `: TYPE` after its binders")
        _check_tokens(statement, tokens, config, "statement", skip=1)
    except Refused as r:
        return GuardResult(False, r.rule, r.message)
    return ACCEPTED


def _has_top_level_colon(tokens: list[Token]) -> bool:
    depth = 0
    for t in tokens:
        if t.text in ("(", "[", "{", "⟨", "⦃"):
            depth += 1
        elif t.text in (")", "]", "}", "⟩", "⦄"):
            depth -= 1
        elif t.text == ":" and depth == 0:
            return True
    return False


# --- structure: one term or tactic block ------------------------------------------------------

_CLOSER = {"(": ")", "[": "]", "{": "}", "⟨": "⟩", "⦃": "⦄", "⟦": "⟧"}
_OPENER = {v: k for k, v in _CLOSER.items()}
# a bracket, or the first non-blank character of a line
_STRUCTURE = re.compile(r"[()\[\]{}⟨⟩⦃⦄⟦⟧]|\n[ \t\r]*(?=[^ \t\r\n])")
_LEADING_BY = re.compile(r"\s*by(?![A-Za-z0-9_'!?])\s*")
_ENDS_WITH_IN = re.compile(r"(?<![A-Za-z0-9_'!?.])in\s*\Z")


def _check_structure(proof: str, code: str, col0: int) -> None:
    """The proof must be one term or tactic block, so that nothing after it is a new command.

    `code` is the proof with comments, strings, char literals and «names» blanked out (same length).
    Structural, keyword-free rules (Lean starts a new command wherever the term or block ends):
    * brackets balance, and no closing bracket closes one the proof did not open;
    * outside brackets, no line starts at column 0 (a term cannot continue there), except right
      after `… in`, whose term may start anywhere;
    * if the proof is a `by` block, outside brackets no line starts left of the block's first tactic
      (Lean ends the block there). `col0` is the column where the proof starts in the full text.
    """
    stack: list[tuple[str, int]] = []
    block_col = None
    if m := _LEADING_BY.match(code):
        start = m.end()
        if start < len(code):
            newline = code.rfind("\n", 0, start)
            block_col = col0 + start if newline < 0 else start - newline - 1
    for m in _STRUCTURE.finditer(code):
        ch = m.group()
        if ch in _CLOSER:
            stack.append((ch, m.start()))
        elif ch in _OPENER:
            if not stack or stack[-1][0] != _OPENER[ch]:
                raise Refused("brackets", f"`{ch}` closes a bracket the proof did not open, at {_at(proof, m.start())}")
            stack.pop()
        elif not stack:  # a line start outside brackets
            at = m.end()
            col = at - m.start() - 1
            if _ENDS_WITH_IN.search(code, 0, m.start()):
                continue
            if col == 0:
                raise Refused("top_level", f"a line starts at column 0 outside brackets, at {_at(proof, at)}: "
                                           "the proof would end there and a new command begin")
            if block_col is not None and col < block_col:
                raise Refused("top_level", f"a line starts left of the proof's tactic block (column {block_col}), "
                                           f"at {_at(proof, at)}: the block would end there and a new command begin")
    if stack:
        ch, at = stack[-1]
        raise Refused("brackets", f"`{ch}` is never closed, at {_at(proof, at)}")


_BLANKED_KINDS = frozenset({"string", "char"})


def _blank_literals(code: str, tokens: list[Token]) -> str:
    """`code` with string and char literals and «names» replaced by `x`s (their brackets and line
    breaks are not the proof's structure)."""
    spans = [(t.start, t.end) for t in tokens if t.kind in _BLANKED_KINDS or (t.kind == "ident" and "«" in t.text)]
    if not spans:
        return code
    pieces, prev = [], 0
    for start, end in spans:
        pieces.append(code[prev:start])
        pieces.append("x" * (end - start))
        prev = end
    pieces.append(code[prev:])
    return "".join(pieces)


def _check_proof(proof: str, config: GuardConfig, col0: int) -> None:
    """Every rule, on the lexed proof (raises `Refused`)."""
    _check_characters(proof)
    tokens, code = tokenize(proof)
    _check_code_characters(code)
    _check_tokens(proof, tokens, config, "proof")
    _check_structure(proof, _blank_literals(code, tokens), col0)


def guard_proof(proof: str, config: GuardConfig = DEFAULT_CONFIG, col0: int = 0) -> GuardResult:
    """Refuse a proof (the text after `:=`) that uses a forbidden construct or is more than one
    term or tactic block. `col0`: the column where the proof starts in the text Lean checks."""
    try:
        if _SUSPECT.search(proof):
            _check_proof(proof, config, col0)
        else:  # see _SUSPECT: no comments, strings, char literals or «names», so the code is the text
            _check_characters(proof)
            _check_code_characters(proof)
            _check_structure(proof, proof, col0)
    except Refused as r:
        return GuardResult(False, r.rule, r.message)
    return ACCEPTED


def guard(statement: str, proof: str, config: GuardConfig | None = None) -> GuardResult:
    """Check the statement, then the proof; the first refusal wins."""
    config = config or DEFAULT_CONFIG
    result = guard_statement(statement, config)
    if not result.ok:
        return result
    # The proof starts after `statement + " := "` (the lean_repl path sends ` :=(` in its place).
    return guard_proof(proof, config, len(statement) - (statement.rfind("\n") + 1) + len(" := "))
