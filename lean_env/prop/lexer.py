"""The lexer of the `prop` fragment: which characters and tokens exist, and how each is spelled.

Every position is a 1-based line and a 0-based column counted in code points, as Lean reports them,
in the full text Lean checks (`statement + " := " + proof`); `Origin` places a lexed segment in it.

The lexer refuses everything outside a whitelist of characters and operator runs (look-alike
letters, zero-width spaces, tabs, comments, strings, numbers, `#` commands, `@`) instead of guessing
how Lean would read it.  It rewrites no token into another: where Lean has two spellings of one
token (`->` and `→`, `↦` and `=>`, `λ` and `fun`, `·` and `.`), each keeps its text and the parser
accepts it only where Lean's grammar does (docs/prop_fragment.md, "Spellings").
"""

from __future__ import annotations

import re
import unicodedata

class ProofError(Exception):
    """A proof Lean would reject, or one outside the fragment (`unsupported=True`)."""

    def __init__(self, message: str, tok: "Token | None" = None, unsupported: bool = False):
        super().__init__(message)
        self.message = message
        self.line = tok.line if tok is not None else None
        self.col = tok.col if tok is not None else None
        self.unsupported = unsupported


def unsupported(what: str, tok: "Token | None") -> ProofError:
    return ProofError(f"unsupported construct: {what}", tok, unsupported=True)


# --------------------------------------------------------------------------------------------------
# tokens


class Token:
    """kind: "id", "sym", "proj" (`.1`, `.left` written without a space before), "eof"."""

    __slots__ = ("kind", "text", "line", "col", "nl", "ws")

    def __init__(self, kind: str, text: str, line: int, col: int, nl: bool, ws: bool):
        self.kind = kind
        self.text = text
        self.line = line
        self.col = col
        self.nl = nl  # first token on its line
        self.ws = ws  # whitespace (or a line break) right before it

    def __repr__(self) -> str:
        return f"Token({self.kind}, {self.text!r}, {self.line}:{self.col})"


# Every character outside printable ASCII, the newline and these symbols is refused before lexing:
# look-alike letters (Cyrillic `р`), look-alike operators, zero-width spaces, tabs and `\r` included.
_BAD_CHAR = re.compile(r"[^\n\x20-\x7e¬∧∨→↔⟨⟩·λ↦₀-₉]")

_ID_REST = r"[A-Za-z0-9_'!?₀-₉]*"
# One match per lexeme, with the whitespace before it in group 1; `m.lastgroup` names the lexeme.
# Lean's identifiers may also contain `!` and `?` (that is how `exact?` and `simp!` are single
# tokens); we lex them the same way and refuse them.
_LEX = re.compile(
    r"([ \n]*)(?:"
    rf"(?P<id>[A-Za-z_]{_ID_REST}(?:\.[A-Za-z_]{_ID_REST})*)"
    r"|(?P<sym>[()⟨⟩,¬∧∨→↔·λ↦])"
    rf"|(?P<proj>\.(?:[0-9]+|[A-Za-z_]{_ID_REST}))"
    r"|(?P<hole>\?_)"
    r"|(?P<comment>--|/-)"
    r"|(?P<op>[!#$%&*+\-./:;<=>?@\\^|~]+)"
    r"|(?P<num>[0-9]+)"
    r"|(?P<other>.)"
    r"|(?P<end>\Z))"
)
# Runs of ASCII operator characters we accept, each exactly one Lean token, kept as written (`->` is
# not turned into `→`: the parser accepts each spelling where Lean's grammar does). Any other run
# (`|>.`, `<|`, `::`, `..`, `@[`, `#eval`, `<->`, `/\`, ...) is refused, which also protects us
# from Lean reading a run as a longer token than we would.
_OPS = frozenset({":=", "=>", "->", "<;>", ":", ";", "|", "."})


class Origin:
    """Where a lexed segment starts in the full text: its first line keeps `col0` extra columns."""

    __slots__ = ("line", "col0")

    def __init__(self, line: int = 1, col0: int = 0):
        self.line = line
        self.col0 = col0

    def position(self, text: str, offset: int) -> tuple[int, int]:
        newlines = text.count("\n", 0, offset)
        if newlines == 0:
            return self.line, self.col0 + offset
        return self.line + newlines, offset - (text.rfind("\n", 0, offset) + 1)


def _lex_error(text: str, origin: Origin, start: int, message: str) -> ProofError:
    line, col = origin.position(text, start)
    return ProofError(message, Token("sym", "", line, col, False, False), unsupported=True)


def _describe_other(text: str, start: int, lexeme: str) -> str:
    if lexeme == '"':
        return "unsupported construct: string literal"
    if lexeme == "'":
        return "unsupported construct: character literal"
    return f"unsupported construct: token {lexeme!r}"


def _describe_op(text: str, start: int, run: str) -> str:
    if run.startswith("#"):
        m = re.match(r"#[A-Za-z_]*", text[start:])
        return f"unsupported construct: {m.group() if m else '#'} command"
    if text.startswith("@[", start):
        return "unsupported construct: attribute @[...]"
    if run.startswith("@"):
        return "unsupported construct: @ (explicit arguments)"
    return f"unsupported construct: operator {run!r}"


def lex(text: str, origin: Origin | None = None) -> list[Token]:
    """Tokens of `text`, ending with an "eof" token. Raises ProofError on anything we refuse.

    `origin` places `text` inside a larger text (positions and the first line's columns shift);
    by default `text` starts at line 1, column 0.
    """
    origin = origin or Origin()
    bad = _BAD_CHAR.search(text)
    if bad is not None:
        ch = bad.group()
        name = unicodedata.name(ch, "control character")
        raise _lex_error(text, origin, bad.start(), f"unsupported character U+{ord(ch):04X} ({name})")
    tokens: list[Token] = []
    append = tokens.append
    line = origin.line
    line_start = -origin.col0  # columns are offsets from here, on the first line too
    at_line_start = origin.col0 == 0  # a text that starts mid-line has no token at a line start
    for m in _LEX.finditer(text):
        ws_start, start = m.span(1)
        kind = m.lastgroup
        nl = at_line_start
        at_line_start = False
        ws = ws_start != start
        if ws:
            k = text.rfind("\n", ws_start, start)
            if k >= 0:
                line += text.count("\n", ws_start, start)
                line_start = k + 1
                nl = True
        if kind == "end":
            append(Token("eof", "", line, start - line_start, True, True))
            break
        lexeme = m.group(kind)
        if kind == "id":
            if "!" in lexeme or "?" in lexeme:
                raise _lex_error(text, origin, start, f"unsupported construct: {lexeme}")
        elif kind in ("sym", "proj"):
            pass
        elif kind == "op":
            if lexeme not in _OPS:
                raise _lex_error(text, origin, start, _describe_op(text, start, lexeme))
            kind = "sym"
        elif kind == "hole":
            kind = "sym"
        elif kind == "comment":
            raise _lex_error(text, origin, start, "unsupported construct: comment")
        elif kind == "num":
            raise _lex_error(text, origin, start, f"unsupported construct: number literal {lexeme}")
        else:
            raise _lex_error(text, origin, start, _describe_other(text, start, lexeme))
        append(Token(kind, lexeme, line, start - line_start, nl, ws))
    return tokens
