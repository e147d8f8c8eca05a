"""What the Lean REPL's reply to one proof means: `pass`, `fail`, `timeout` or `error`.

A proof is sent to the REPL as one command in the worker's header environment (see
`build_command`: the parentheses make the proof one term, so no command can hide in it):

    theorem NAME (binders) : TYPE :=(PROOF
    )

    #print axioms NAME

and the REPL answers with a JSON object (leanprover-community/repl, `REPL/JSON.lean`):

    {"env": 7,
     "messages": [{"severity": "error" | "warning" | "info",
                   "pos": {"line": 1, "column": 40}, "endPos": {...} or null,
                   "data": "unsolved goals ..."}],
     "sorries": [{"goal": "...", "pos": ..., "endPos": ..., "proofState": 0}]}

(empty `messages` / `sorries` lists are left out), or, when the request itself could not be served,
with `{"message": "Unknown environment."}` and no `env`.

`classify` passes a proof only when *all* of these hold:

* no message whose severity is anything but `info`/`information`/`warning` (an unknown or
  misspelt severity is an error);
* no `sorries`, and no message, at any severity, saying "declaration uses 'sorry'" (older Lean) or
  "declaration uses `sorry`" (newer Lean);
* exactly one `#print axioms` answer, at the line of the `#print axioms` we appended, naming our
  theorem (so the theorem was declared under the name we gave, with the statement we gave: Lean
  refuses a second declaration of the same name), and listing only allowed axioms; `sorryAx` is
  never allowed. Text shaped like an answer anywhere else fails the proof: a proof may print
  (`trace "…"` is allowed), but what it prints never counts as the answer.

Lean's own timeout messages (the heartbeat limit's "(deterministic) timeout …, maximum number of
heartbeats …" and the kernel's "(kernel) deterministic timeout") are `timeout`; a reply that
is not about the proof (a top-level `message`, no `env`, no `#print axioms` answer) is `error`, and
`Verdict.restart` asks for the worker to be replaced, since its state can no longer be trusted.

Where Lean's behaviour is not confirmed by a test against real Lean, the choice
is the refusing side: `(PROOF)` is taken to elaborate as `PROOF` does (true for terms and `by`
blocks; a proof relying on declaration syntax after its term — `termination_by`, `decreasing_by`,
`where` — becomes a parse error, `fail`); the REPL's unused "trace" severity counts as an error;
an error whose text only embeds a timeout message is `fail`, not `timeout`.

Positions in `fail` messages are `line:col` *in the proof text* (line 1-based, column 0-based,
like Lean and the `prop` checker), so a model's training signal points into what it wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from lean_env.guard import tokenize

# Lean's three standard axioms. Everything Mathlib proves needs no others.
DEFAULT_ALLOWED_AXIOMS = ("propext", "Classical.choice", "Quot.sound")
NEVER_ALLOWED = frozenset({"sorryAx"})  # a `sorry` that slipped through any other check
# The REPL writes Lean's `information` as "info" (REPL/JSON.lean); its `Severity` also has "trace",
# which no Lean message maps to: like any other spelling, it counts as an error (the safe side).
HARMLESS_SEVERITIES = frozenset({"info", "information", "warning"})
MAX_MESSAGE_CHARS = 2000

# "'t' depends on axioms: [propext, Classical.choice]" and "'t' does not depend on any axioms".
# Lean may break a long list over several lines, hence `\s` and DOTALL.
_DEPENDS = re.compile(r"^'(?P<name>.+?)' depends on axioms: \[(?P<axioms>.*)\]\s*$", re.S)
_NO_AXIOMS = re.compile(r"^'(?P<name>.+?)' does not depend on any axioms\s*$", re.S)
# "declaration uses 'sorry'" (Lean up to 2024) and "declaration uses `sorry`" (later).
USES_SORRY = re.compile(r"declaration uses ['`]sorry['`]")
# Lean's own timeout messages, and only them: the elaborator's heartbeat limit
#   "(deterministic) timeout at `whnf`, maximum number of heartbeats (200000) has been reached …"
#   (older: "(deterministic) timeout, maximum number of heartbeats …")
# and the kernel's "(kernel) deterministic timeout". A message that merely mentions heartbeats or
# maxHeartbeats (an unknown identifier, a type mismatch) is an ordinary error: `fail`.
_HEARTBEATS = re.compile(r"\s*(?:\(deterministic\) timeout\b.*maximum number of heartbeats"
                         r"|\(kernel\) deterministic timeout\b)", re.S)


@dataclass(frozen=True)
class Command:
    """The text sent to the REPL for one proof, and where its parts sit in that text."""

    text: str
    theorem: str  # the theorem's name as written in the statement
    proof_line: int  # 1-based line of the command on which the proof starts
    proof_col: int  # 0-based column (in code points, as Lean counts) where the proof starts
    axioms_line: int  # line of `#print axioms`


@dataclass(frozen=True)
class Verdict:
    verdict: str  # pass | fail | timeout | error
    message: str = ""
    restart: bool = False  # the worker that gave this reply should be replaced


def theorem_name(statement: str) -> str:
    """NAME in `theorem NAME …` (the guard has checked the statement has this form)."""
    tokens, _ = tokenize(statement)
    if len(tokens) < 2 or tokens[0].text != "theorem" or tokens[1].kind != "ident":
        raise ValueError(f"statement does not start with `theorem NAME`: {statement[:80]!r}")
    return tokens[1].text


def build_command(statement: str, proof: str) -> Command:
    """`STATEMENT :=(PROOF` and `)` on a line of its own, a blank line, then `#print axioms NAME`.

    The parentheses make the proof one term for Lean's own parser: a command anywhere in the proof
    (whatever its keyword, indented or after `;`) is then a parse error, never a command run after
    the theorem. The guard has checked that the proof's brackets balance, so it cannot close ours.
    `(` takes the place of the space after `:=`, so every column in the proof is the one Lean would
    report for `STATEMENT := PROOF`, and `)` sits at column 0, where it ends any tactic block.
    """
    name = theorem_name(statement)
    head = f"{statement} :=("
    proof_line = head.count("\n") + 1
    proof_col = len(head) - (head.rfind("\n") + 1)
    # A blank line first, so that `#print` cannot be read as part of the proof's last term.
    text = f"{head}{proof}\n)\n\n#print axioms {name}"
    axioms_line = proof_line + proof.count("\n") + 3
    return Command(text, name, proof_line, proof_col, axioms_line)


def needs_restart(response: object) -> bool:
    """True when a reply is not the result of running a command (no integer `env`): the worker is
    out of step with us (it lost the header environment, or answered something else) and is replaced."""
    return not isinstance(response, dict) or not is_env(response.get("env"))


def is_env(value: object) -> bool:
    """An environment number: an int, and not a bool (which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def classify(response: object, command: Command,
             allowed_axioms: Iterable[str] = DEFAULT_ALLOWED_AXIOMS) -> Verdict:
    """The verdict for `response`, the REPL's decoded reply to `command`."""
    if not isinstance(response, dict):
        return Verdict("error", f"REPL reply is not a JSON object: {response!r:.200}", restart=True)
    if "env" not in response:
        # `{"message": "Unknown environment."}` and the like: the REPL did not run the command.
        text = response.get("message", response)
        return Verdict("error", f"REPL refused the command: {_clip(str(text))}", restart=True)
    if not is_env(response["env"]):
        # Not a reply the REPL gives to a command it ran: a protocol error, whatever else it says.
        return Verdict("error", f"REPL reply with a non-integer env {response['env']!r:.50}: protocol error",
                       restart=True)

    messages = response.get("messages") or []
    sorries = response.get("sorries") or []
    if not isinstance(messages, list) or not isinstance(sorries, list) or \
            not all(isinstance(m, dict) for m in messages):
        return Verdict("error", f"malformed REPL reply: {str(response):.200}", restart=True)

    # Any severity but the known harmless ones is an error: a new or misspelt one must not be ignored.
    errors = [m for m in messages if m.get("severity") not in HARMLESS_SEVERITIES]
    timeouts = [m for m in errors if _HEARTBEATS.match(str(m.get("data", "")))]
    if timeouts:
        return Verdict("timeout", _describe(timeouts[0], command))
    if errors:
        return Verdict("fail", _describe(errors[0], command))
    if sorries:
        return Verdict("fail", _describe({"pos": sorries[0].get("pos"), "data": "proof contains `sorry`"}, command))
    for m in messages:  # at every severity
        if USES_SORRY.search(str(m.get("data", ""))):
            return Verdict("fail", _describe(m, command))
    return _check_axioms(messages, command, allowed_axioms)


def _check_axioms(messages: list[dict], command: Command, allowed_axioms: Iterable[str]) -> Verdict:
    """The answer of the `#print axioms` the worker appended — an info message on its line — must
    name our theorem and list only allowed axioms. A proof may print messages (`trace`), so text
    shaped like an answer anywhere else is the proof's own, and fails it."""
    reports = []
    for m in messages:
        data = str(m.get("data", "")).strip()
        found = _DEPENDS.match(data) or _NO_AXIOMS.match(data)
        if not found:
            continue
        line = _line_of(m)
        if m.get("severity") not in ("info", "information") or line != command.axioms_line:
            where = f"line {line}" if line is not None else "no position"
            return Verdict("fail", f"a message shaped like a `#print axioms` answer at {where}, not at the "
                                   f"appended `#print axioms` (line {command.axioms_line}): the proof printed it")
        reports.append(found)
    if not reports:
        # Without it we cannot tell what the proof rests on: not a pass, and not the proof's fault.
        return Verdict("error", "the REPL reply has no `#print axioms` answer")
    if len(reports) > 1:
        return Verdict("fail", f"{len(reports)} `#print axioms` answers: the proof added commands")
    report = reports[0]
    if _lean_name(report["name"]) != _lean_name(command.theorem):
        return Verdict("fail", f"the REPL declared {report['name']!r}, not the theorem "
                               f"{command.theorem!r} with the given statement")
    axioms = _axiom_list(report.groupdict().get("axioms") or "")
    if axioms is None:
        return Verdict("fail", f"unreadable axiom list in the `#print axioms` answer: {_clip(report.group(0))}")
    # Each printed name must be, as printed, one of the allowed names as Lean prints them.
    allowed = {_lean_name(a) for a in allowed_axioms} - {_lean_name(a) for a in NEVER_ALLOWED}
    bad = [a for a in axioms if a not in allowed]
    if bad:
        return Verdict("fail", f"depends on axioms outside the allow-list: {', '.join(bad)}")
    return Verdict("pass")


# One name part as Lean prints it without escaping (anything else is printed in «»).
_PLAIN_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_'!?]*\Z")
_PRINTED_NAME = re.compile(r"(?:«[^»\n]*»|[A-Za-z_][A-Za-z0-9_'!?]*)(?:\.(?:«[^»\n]*»|[A-Za-z_][A-Za-z0-9_'!?]*))*\Z")


def _axiom_list(text: str) -> list[str] | None:
    """The names in `#print axioms`' list, exactly as printed, or None if the list does not read as
    `name, name, …`. Lean escapes a name part that is not an identifier in «», so a comma or a dot
    inside «…» belongs to the part: `«propext, Quot.sound»` is one name."""
    if not text.strip():
        return []
    names, current, i = [], [], 0
    while i < len(text):
        if text[i] == "«":
            end = text.find("»", i)
            if end < 0:
                return None
            current.append(text[i:end + 1])
            i = end + 1
        elif text[i] == ",":
            names.append("".join(current).strip())
            current, i = [], i + 1
        else:
            current.append(text[i])
            i += 1
    names.append("".join(current).strip())
    return names if all(_PRINTED_NAME.match(n) for n in names) else None


def _lean_name(name: str) -> str:
    """`name` as Lean prints it: each part bare when it is an identifier, else in «» (so an allow-list
    may write `«foo».bar` for `foo.bar`, and `«foo.bar»` stays one part)."""
    parts = re.findall(r"«[^»]*»|[^.«»]+", name.strip())
    out = []
    for part in parts:
        inner = part[1:-1] if part.startswith("«") else part
        out.append(inner if _PLAIN_PART.match(inner) else f"«{inner}»")
    return ".".join(out)


def _line_of(message: dict) -> int | None:
    pos = message.get("pos")
    line = pos.get("line") if isinstance(pos, dict) else None
    return line if isinstance(line, int) and not isinstance(line, bool) else None


def _describe(message: dict, command: Command) -> str:
    """`line:col: text`, the position relative to the proof where it lies inside the proof."""
    data = _clip(str(message.get("data", "")).strip())
    pos = message.get("pos")
    if not isinstance(pos, dict) or not isinstance(pos.get("line"), int):
        return data
    line, col = pos["line"], pos.get("column") or 0
    if (line, col) < (command.proof_line, command.proof_col):
        return f"statement {line}:{col}: {data}"
    if line >= command.axioms_line:
        return f"after the proof: {data}"
    if line > command.axioms_line - 3:  # the line of our closing `)`, or the blank one after it
        return f"at the end of the proof: {data}"
    rel_line = line - command.proof_line + 1
    rel_col = col - command.proof_col if line == command.proof_line else col
    return f"{rel_line}:{rel_col}: {data}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"
