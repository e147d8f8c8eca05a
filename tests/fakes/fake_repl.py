"""A stand-in for the Lean REPL (leanprover-community/repl) that misbehaves on command.

    python tests/fakes/fake_repl.py [--pid-dir DIR] [--start-delay S] [--old-sorry] [--lean-4-19-json]

Protocol, as the real REPL: a request is the lines up to a blank line; the answer is
pretty-printed JSON followed by a blank line; end of input ends the process; a request that is
not JSON kills it (the real REPL throws).

A request without "env" is the header: answered {"env": N} with a fresh N, or with an error
message if the header contains `import Missing`, a `sorries` entry and the sorry warning if it
contains `sorry`, a message of severity "Error" if it contains `fake_header_severity`. A request with an unknown "env" gets
{"message": "Unknown environment."}. Otherwise the command text decides, by the first of these
words it contains:

    fake_hang        never answer
    fake_crash       exit with status 3 after a line on stderr
    fake_garbage     answer with text that is not JSON
    fake_flood       write output without end, never a blank line
    fake_alloc       allocate and touch 1 GiB, then answer (a memory limit makes this a crash)
    fake_spawn       start a grandchild that sleeps, write its pid to DIR/grandchild-<pid>, hang
    fake_sleep       sleep 0.2 s, then answer as for a correct proof
    fake_unknown_env answer {"message": "Unknown environment."}
    fake_heartbeat   a Lean heartbeat-timeout error
    fake_error       an error message at the position of the word
    fake_axiom       `#print axioms` lists an extra axiom
    sorry            a `sorries` entry and the "declaration uses `sorry`" warning
                     (`'sorry'` with --old-sorry)
and anything else is a correct proof: only the `#print axioms` info message.
--pid-dir: write an empty file named after our pid there, so tests can find every worker.
--lean-4-19-json: read requests as Lean's JSON parser did before v4.20 (lean4 issue #5445, fixed by
PR #8080): a `\\uD835\\uDD5C`-style escaped surrogate pair becomes two NUL characters (UTF-8 text is
read correctly); a command containing NUL gets an "unexpected character" error.
"""

import json
import os
import re
import subprocess
import sys
import time

MARKERS = ("fake_hang", "fake_crash", "fake_garbage", "fake_flood", "fake_alloc", "fake_spawn", "fake_sleep",
           "fake_unknown_env", "fake_heartbeat", "fake_error", "fake_axiom", "sorry")


def read_request(stdin):
    """Bytes of the lines up to a blank one; None at end of input."""
    lines = []
    for line in stdin:
        if not line.strip():
            if lines:
                return b"".join(lines)
            continue
        lines.append(line)
    return b"".join(lines) if lines else None


_ESCAPED_PAIR = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def position(text, offset):
    line = text.count("\n", 0, offset) + 1
    return {"line": line, "column": offset - (text.rfind("\n", 0, offset) + 1)}


def answer_command(cmd, old_sorry):
    """The reply to a command run in a known environment, or None for no reply."""
    m = re.search(r"^#print axioms (\S+)\s*$", cmd, re.M)
    axioms_at = position(cmd, m.start()) if m else {"line": 1, "column": 0}
    name = m.group(1) if m else "?"
    marker = next((w for w in MARKERS if w in cmd), None)
    messages, sorries = [], []
    axioms = ["propext"]
    if "\x00" in cmd:
        at = position(cmd, cmd.index("\x00"))
        messages.append({"severity": "error", "pos": at, "endPos": None, "data": "unexpected character"})
        axioms.append("sorryAx")
    elif marker == "fake_hang":
        time.sleep(3600)
    elif marker == "fake_crash":
        print("fake repl: crashing as asked", file=sys.stderr, flush=True)
        os._exit(3)
    elif marker == "fake_garbage":
        sys.stdout.write("PANIC at Lean.Expr: this is not json\n\n")
        sys.stdout.flush()
        return None
    elif marker == "fake_flood":
        chunk = "x" * 65536
        while True:
            sys.stdout.write(chunk)
            sys.stdout.flush()
    elif marker == "fake_alloc":
        block = bytearray(1 << 30)
        block[::4096] = b"x" * len(block[::4096])
    elif marker == "fake_spawn":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(os.path.join(os.environ["FAKE_REPL_PID_DIR"], f"grandchild-{child.pid}"), "w"):
            pass
        time.sleep(3600)
    elif marker == "fake_sleep":
        time.sleep(0.2)
    elif marker == "fake_unknown_env":
        return {"message": "Unknown environment."}
    elif marker == "fake_heartbeat":
        at = position(cmd, cmd.index(marker))
        messages.append({"severity": "error", "pos": at, "endPos": at,
                         "data": "(deterministic) timeout at `whnf`, maximum number of heartbeats (200000) "
                                 "has been reached\nUse `set_option maxHeartbeats <num>` to set the limit."})
        axioms.append("sorryAx")
    elif marker == "fake_error":
        at = position(cmd, cmd.index(marker))
        messages.append({"severity": "error", "pos": at, "endPos": None, "data": "unknown identifier 'fake_error'"})
        axioms.append("sorryAx")
    elif marker == "fake_axiom":
        axioms.append("fake.axiom")
    elif marker == "sorry":
        at = position(cmd, cmd.index("sorry"))
        sorries.append({"goal": "⊢ True", "proofState": 0, "pos": at, "endPos": at})
        spelling = "'sorry'" if old_sorry else "`sorry`"
        messages.append({"severity": "warning", "pos": {"line": 1, "column": 8}, "endPos": None,
                         "data": f"declaration uses {spelling}"})
        axioms.append("sorryAx")
    if m:
        messages.append({"severity": "info", "pos": axioms_at, "endPos": axioms_at,
                         "data": f"'{name}' depends on axioms: [{', '.join(axioms)}]"})
    reply = {"env": None}  # filled in by the caller
    if messages:
        reply["messages"] = messages
    if sorries:
        reply["sorries"] = sorries
    return reply


def main():
    args = sys.argv[1:]
    pid_dir = args[args.index("--pid-dir") + 1] if "--pid-dir" in args else None
    if pid_dir:
        os.environ["FAKE_REPL_PID_DIR"] = pid_dir
        open(os.path.join(pid_dir, str(os.getpid())), "w").close()
    if "--start-delay" in args:
        time.sleep(float(args[args.index("--start-delay") + 1]))
    old_sorry = "--old-sorry" in args
    old_json = "--lean-4-19-json" in args
    envs = 0
    while (query := read_request(sys.stdin.buffer)) is not None:
        if old_json:
            query = _ESCAPED_PAIR.sub(rb"\\u0000\\u0000", query)
        request = json.loads(query.decode("utf-8"))  # like the real REPL: bad JSON ends the process
        cmd = request.get("cmd", "")
        if "env" not in request or request["env"] is None:
            if "import Missing" in cmd:
                reply = {"env": envs, "messages": [{"severity": "error", "pos": {"line": 1, "column": 0},
                                                     "endPos": {"line": 1, "column": 14},
                                                     "data": "unknown module prefix 'Missing'"}]}
            elif "sorry" in cmd:  # a header that declares something with `sorry`: only a warning
                at = position(cmd, cmd.index("sorry"))
                reply = {"env": envs, "sorries": [{"goal": "⊢ False", "proofState": 0, "pos": at, "endPos": at}],
                         "messages": [{"severity": "warning", "pos": {"line": 1, "column": 0}, "endPos": None,
                                       "data": "declaration uses `sorry`"}]}
            elif "fake_header_severity" in cmd:  # a message of a severity the REPL does not document
                reply = {"env": envs, "messages": [{"severity": "Error", "pos": {"line": 1, "column": 0},
                                                     "endPos": None, "data": "something went wrong"}]}
            else:
                reply = {"env": envs}
            envs += 1
        elif not isinstance(request["env"], int) or not 0 <= request["env"] < envs:
            reply = {"message": "Unknown environment."}
        else:
            reply = answer_command(cmd, old_sorry)
            if reply is None:
                continue
            if "env" in reply:
                reply["env"] = envs
                envs += 1
        sys.stdout.write(json.dumps(reply, ensure_ascii=False, indent=1) + "\n\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
