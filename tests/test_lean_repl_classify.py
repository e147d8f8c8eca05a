"""The REPL reply classifier, on fixtures shaped like the real REPL's replies (tests/data/lean_repl)."""

import json
from pathlib import Path

import pytest

from lean_env.lean_repl.classify import build_command, classify, theorem_name

FIXTURES = sorted((Path(__file__).parent / "data" / "lean_repl").glob("*.json"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_fixtures_for_every_case_the_issue_names():
    names = {p.stem for p in FIXTURES}
    for needed in ("pass_no_axioms", "error_type_mismatch", "sorry_old_spelling", "sorry_new_spelling_warning_only",
                   "heartbeat_timeout", "unknown_environment", "pass_standard_axioms", "extra_axiom"):
        assert needed in names


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture(path):
    case = _load(path)
    command = build_command(case["statement"], case["proof"])
    v = classify(case["response"], command)
    expected = case["expected"]
    assert v.verdict == expected["verdict"], v
    if "message" in expected:
        assert v.message == expected["message"]
    if "message_startswith" in expected:
        assert v.message.startswith(expected["message_startswith"]), v.message
    assert v.restart == expected.get("restart", False)
    if v.verdict != "pass":
        assert v.message  # every non-pass says why


def test_build_command_positions():
    statement = "theorem t (p : Prop)\n    (h : p) : p"
    c = build_command(statement, "by\n  exact h")
    assert c.text == "theorem t (p : Prop)\n    (h : p) : p :=(by\n  exact h\n)\n\n#print axioms t"
    assert (c.proof_line, c.proof_col) == (2, len("    (h : p) : p := "))
    lines = c.text.split("\n")
    assert lines[c.axioms_line - 1] == "#print axioms t"
    assert lines[c.proof_line - 1][c.proof_col:] == "by"
    assert lines[c.axioms_line - 3] == ")"


# The proof goes to Lean inside parentheses that only the command closes: a command hidden in the
# proof (any keyword, indented at the block's column or after `;`, where the guard cannot tell it
# from a tactic it does not know) is then a parse error in Lean instead of a command run after the
# theorem. The guard's bracket rule makes sure the proof cannot close the parenthesis itself.
HIDDEN_COMMANDS = [
    "by exact h; simproc foo (x) := by simp",
    "by\n  exact h\n  simproc foo (x) := by simp",
    "by\n  exact h\n  unseal foo",
    "fun x => x unseal foo",
]


@pytest.mark.parametrize("proof", HIDDEN_COMMANDS)
def test_a_hidden_command_stays_inside_the_parenthesised_proof(proof):
    from lean_env.guard import _CLOSER, _OPENER, guard

    statement = "theorem t (p : Prop) (h : p) : p"
    c = build_command(statement, proof)
    assert c.text.startswith(statement + " :=(" + proof + "\n)\n")
    # the bracket the command opens closes at its own `)`, after the whole proof
    depth, closed_at = 0, None
    for i, ch in enumerate(c.text):
        if ch in _CLOSER:
            depth += 1
        elif ch in _OPENER:
            depth -= 1
            if depth == 0 and i > len(statement):
                closed_at = i
                break
    assert closed_at == len(statement) + len(" :=(") + len(proof) + 1
    # and a proof that would close it itself is refused before it is sent
    assert guard(statement, "h)\n  " + proof.removeprefix("by").strip() + " (x").rule == "brackets"


def test_error_position_is_relative_to_a_multiline_statement():
    statement = "theorem t (p : Prop)\n    (h : p) : p"
    c = build_command(statement, "by\n  exact hx")
    reply = {"env": 3, "messages": [
        {"severity": "error", "pos": {"line": 3, "column": 8}, "endPos": None, "data": "unknown identifier 'hx'"},
        {"severity": "info", "pos": {"line": 5, "column": 0}, "data": "'t' depends on axioms: [sorryAx]"}]}
    assert classify(reply, c).message == "2:8: unknown identifier 'hx'"


def test_first_error_wins_and_any_heartbeat_timeout_is_a_timeout():
    c = build_command("theorem t : True", "by\n  simp\n  trivial")
    first = {"severity": "error", "pos": {"line": 2, "column": 2}, "data": "simp made no progress"}
    second = {"severity": "error", "pos": {"line": 3, "column": 2}, "data": "no goals"}
    assert classify({"env": 1, "messages": [first, second]}, c).message == "2:2: simp made no progress"
    hb = {"severity": "error", "pos": {"line": 3, "column": 2},
          "data": "(deterministic) timeout at `isDefEq`, maximum number of heartbeats (400000) has been reached"}
    assert classify({"env": 1, "messages": [first, hb]}, c).verdict == "timeout"


def test_allow_list_is_configurable_but_never_admits_sorryax():
    c = build_command("theorem t : True", "trivial")
    reply = {"env": 1, "messages": [{"severity": "info", "pos": {"line": c.axioms_line, "column": 0},
                                     "data": "'t' depends on axioms: [propext, Classical.choice]"}]}
    assert classify(reply, c).verdict == "pass"
    assert classify(reply, c, allowed_axioms=["propext"]).verdict == "fail"
    sorry = {"env": 1, "messages": [{"severity": "info", "pos": {"line": c.axioms_line, "column": 0},
                                     "data": "'t' depends on axioms: [sorryAx]"}]}
    assert classify(sorry, c, allowed_axioms=["sorryAx", "propext"]).verdict == "fail"


def test_guillemet_names_match():
    c = build_command("theorem «my thm» : True", "trivial")
    assert c.theorem == "«my thm»"
    reply = {"env": 1, "messages": [{"severity": "info", "pos": {"line": c.axioms_line, "column": 0},
                                     "data": "'«my thm»' does not depend on any axioms"}]}
    assert classify(reply, c).verdict == "pass"


def test_malformed_replies_are_errors_not_passes():
    c = build_command("theorem t : True", "trivial")
    for reply in ([], "ok", None, {"env": 1, "messages": "x"}, {"env": 1, "messages": ["x"]}):
        v = classify(reply, c)
        assert (v.verdict, v.restart) == ("error", True), reply


def test_theorem_name():
    assert theorem_name("theorem foo.bar (p : Prop) : p → p") == "foo.bar"
    with pytest.raises(ValueError):
        theorem_name("lemma x : True")


def test_needs_restart_exactly_when_the_reply_is_not_a_command_result():
    from lean_env.lean_repl.classify import needs_restart

    assert needs_restart({"message": "Unknown environment."})
    assert needs_restart("garbage") and needs_restart({"env": "1"})
    assert not needs_restart({"env": 4, "messages": []})


# --- issue 18: the classifier --------------------------------------------------------------------

def _info(line, data, column=0):
    return {"severity": "info", "pos": {"line": line, "column": column}, "endPos": None, "data": data}


def test_the_axioms_answer_counts_only_at_the_appended_command():
    """Tracing is allowed in a proof (`trace "…"` prints an info message at its own position), so
    the one answer that counts is the one at the line of the `#print axioms` the worker appended."""
    c = build_command("theorem t : True", "by\n  trace \"'t' does not depend on any axioms\"\n  exact sorry")
    assert c.axioms_line == 6
    forged_only = {"env": 1, "messages": [_info(2, "'t' does not depend on any axioms", 2)]}
    v = classify(forged_only, c)
    assert v.verdict != "pass", v
    assert v.verdict == "fail" and "line 2" in v.message, v
    # the real answer at its line, and a forged clean one elsewhere: never the forged one
    both = {"env": 1, "messages": [_info(2, "'t' does not depend on any axioms", 2),
                                   _info(6, "'t' depends on axioms: [sorryAx]")]}
    assert classify(both, c).verdict == "fail"
    forged_after = {"env": 1, "messages": [_info(6, "'t' depends on axioms: [sorryAx]"),
                                           _info(7, "'t' does not depend on any axioms")]}
    assert classify(forged_after, c).verdict == "fail"
    no_position = {"env": 1, "messages": [{"severity": "info", "data": "'t' does not depend on any axioms"}]}
    assert classify(no_position, c).verdict != "pass"
    honest = {"env": 1, "messages": [_info(2, "hello", 2), _info(6, "'t' does not depend on any axioms")]}
    assert classify(honest, c).verdict == "pass"


def test_axiom_names_are_matched_exactly_with_lean_escaping():
    """Lean prints a name part that is not an identifier in «»: `«propext, Quot.sound»` is ONE user
    axiom, and `«Classical.choice»` is a one-part name, not `Classical.choice`."""
    c = build_command("theorem t : True", "trivial")

    def verdict(axioms, **kw):
        reply = {"env": 1, "messages": [_info(c.axioms_line, f"'t' depends on axioms: [{axioms}]")]}
        return classify(reply, c, **kw).verdict

    for forged in ["«propext, Quot.sound»", "«Classical.choice»", "propext, «Quot.sound»", "«propext»",
                   "Classical.«choice»", "Classical.choice.«x»", "«propext", "propext»", "propext, ,",
                   "propext Quot.sound", "Classical . choice"]:
        assert verdict(forged) == "fail", forged
    assert verdict("propext, Classical.choice, Quot.sound") == "pass"
    assert verdict("propext,\n Classical.choice,\n Quot.sound") == "pass"  # Lean breaks long lists
    assert verdict("«my axiom»", allowed_axioms=["«my axiom»"]) == "pass"
    assert verdict("foo.«a b»", allowed_axioms=["«foo».«a b»"]) == "pass"  # allow-list written escaped
    assert verdict("«foo.bar»", allowed_axioms=["foo.bar"]) == "fail"


def test_unknown_severities_are_errors_and_sorry_counts_at_any_severity():
    c = build_command("theorem t : True", "trivial")
    clean = _info(c.axioms_line, "'t' does not depend on any axioms")

    def verdict(*messages):
        return classify({"env": 1, "messages": [*messages, clean]}, c).verdict

    assert verdict() == "pass"
    for severity in ("Error", "ERROR", "fatal", "trace", "", None, 3, "errors"):
        m = {"severity": severity, "pos": {"line": 1, "column": 0}, "data": "type mismatch"}
        assert verdict(m) == "fail", severity
    assert verdict({"pos": {"line": 1, "column": 0}, "data": "no severity at all"}) == "fail"
    for severity in ("info", "information", "warning"):
        assert verdict({"severity": severity, "pos": {"line": 1, "column": 0}, "data": "note"}) == "pass"
        sorry = {"severity": severity, "pos": {"line": 1, "column": 8}, "data": "declaration uses 'sorry'"}
        assert verdict(sorry) == "fail", severity


def test_a_reply_whose_env_is_not_an_integer_is_a_protocol_error():
    from lean_env.lean_repl.classify import needs_restart

    c = build_command("theorem t : True", "trivial")
    clean = _info(c.axioms_line, "'t' does not depend on any axioms")
    for env in ("1", 1.0, True, False, None, [1], {"id": 1}, -1.5):
        reply = {"env": env, "messages": [clean]}
        v = classify(reply, c)
        assert (v.verdict, v.restart) == ("error", True), env
        assert needs_restart(reply), env
    assert classify({"env": 0, "messages": [clean]}, c).verdict == "pass"


def test_only_leans_own_timeout_messages_are_timeouts():
    c = build_command("theorem t : True", "trivial")
    clean = _info(c.axioms_line, "'t' does not depend on any axioms")

    def verdict(data):
        err = {"severity": "error", "pos": {"line": 1, "column": 20}, "data": data}
        return classify({"env": 1, "messages": [err, clean]}, c).verdict

    for real in ["(deterministic) timeout at `whnf`, maximum number of heartbeats (200000) has been reached\n"
                 "Use `set_option maxHeartbeats <num>` to set the limit.",
                 "(deterministic) timeout at `isDefEq`, maximum number of heartbeats (400000) has been reached",
                 "(deterministic) timeout, maximum number of heartbeats (200000) has been reached",
                 "(kernel) deterministic timeout"]:
        assert verdict(real) == "timeout", real
    for ordinary in ["unknown identifier 'maxHeartbeats'", "type mismatch: h uses maxHeartbeats",
                     "maximum number of heartbeats", "the proof says (deterministic) timeout here",
                     "unsolved goals\n⊢ (deterministic) timeout", "(kernel) declaration has metavariables 't'"]:
        assert verdict(ordinary) == "fail", ordinary


# --- the REPL's own recorded replies (tests/data/repl_recorded) ---------------------------------

RECORDED = Path(__file__).parent / "data" / "repl_recorded" / "pairs.jsonl"


def _recorded():
    return [json.loads(line) for line in RECORDED.read_text(encoding="utf-8").splitlines() if line.strip()]


def _command_for(request: dict):
    """A Command as if the worker had sent this `cmd` with its `#print axioms` appended."""
    import re

    from lean_env.lean_repl.classify import Command

    text = request["cmd"]
    m = re.match(r"\s*theorem\s+(\S+)", text)
    return Command(text, m.group(1) if m else "none", 1, 0, text.count("\n") + 4)


def test_the_recorded_pairs_are_many_and_varied():
    rows = _recorded()
    assert len(rows) >= 200
    replies = [json.loads(r["reply_text"], strict=False) for r in rows]
    assert sum(any(m.get("severity") == "error" for m in x.get("messages", [])) for x in replies) >= 20
    assert sum(bool(x.get("sorries")) for x in replies) >= 50
    assert any("env" not in x for x in replies)


def test_the_reader_splits_and_decodes_every_recorded_reply():
    """The replies as one stream, the way the REPL prints them (JSON, blank line; sometimes extra
    newlines), read back by the backend's codec: the same objects, in order, nothing left over."""
    from lean_env.pool import BlankLineJsonCodec

    rows = _recorded()
    stream = b"".join(r["reply_text"].encode("utf-8") + (b"\n\n\n" if k % 3 == 0 else b"\n\n")
                      for k, r in enumerate(rows))
    codec, got = BlankLineJsonCodec(), []
    while True:
        frame, stream = codec.split(stream)
        if frame is None:
            break
        got.append(codec.decode(frame, 0))
    assert stream.strip() == b""
    assert got == [json.loads(r["reply_text"], strict=False) for r in rows]


def _expected(reply: dict) -> str:
    """What each recorded reply must be, read off the reply itself: not a command result -> error;
    an error message or a sorry -> fail; else error, since none of them answers our `#print axioms`."""
    if not isinstance(reply.get("env"), int):
        return "error"
    messages = reply.get("messages", [])
    if any(m["severity"] == "error" for m in messages) or reply.get("sorries") or \
            any("declaration uses" in m["data"] and "sorry" in m["data"] for m in messages):
        return "fail"
    return "error"


@pytest.mark.parametrize("row", _recorded(), ids=lambda r: r["source"])
def test_every_recorded_reply_is_classified_right(row):
    reply = json.loads(row["reply_text"], strict=False)
    command = _command_for(row["request"])
    v = classify(reply, command)
    assert v.verdict == _expected(reply), (v, reply)
    assert v.restart == ("env" not in reply)
    # with the answer to our `#print axioms` added where the worker's would be: pass exactly when
    # nothing else is wrong, and never with sorryAx
    if _expected(reply) == "error" and "env" in reply and command.theorem != "none":
        for axioms, verdict in (("propext, Quot.sound", "pass"), ("propext, sorryAx", "fail")):
            answer = _info(command.axioms_line, f"'{command.theorem}' depends on axioms: [{axioms}]")
            with_answer = {**reply, "messages": [*reply.get("messages", []), answer]}
            assert classify(with_answer, command).verdict == verdict, (axioms, reply)
