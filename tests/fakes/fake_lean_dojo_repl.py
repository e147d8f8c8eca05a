"""A scripted stand-in for the Lean process LeanDojo drives (its `Lean4Repl` tactic), for
tests/test_leandojo_real.py: the real `lean_dojo.Dojo` talks to it through pexpect exactly as to Lean.

Protocol (lean-dojo 4.20, lean_dojo/interaction/dojo.py): each answer is one line
`REPL> {"sid": N, "tacticState": "...", "error": null|"..."}`, the first one the initial state; each
request is one line `{"sid": N, "cmd": "<tactic>"}`. Tactics: `exact h…` closes the goal, `intro…`
leaves it, `sorry` is refused as LeanDojo's REPL does, `slow` never answers, `crash` exits,
anything else is an error.
"""

import json
import sys
import time

GOAL = "p : Prop\nh : p\n⊢ p"


def answer(sid, state=None, error=None):
    print("REPL> " + json.dumps({"sid": sid, "tacticState": state, "error": error}), flush=True)


def main():
    answer(0, GOAL)
    sid = 0
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        sid += 1
        if cmd.startswith("exact h"):
            answer(sid, "no goals")
        elif cmd.startswith("intro"):
            answer(sid, GOAL)
        elif cmd == "sorry":
            answer(sid, error="The proof contains `sorry`")  # what LeanDojo reports as ProofGivenUp
        elif cmd == "slow":
            time.sleep(60)
        elif cmd == "crash":
            sys.exit(3)
        else:
            answer(sid, error=f"unknown tactic '{cmd}'")


if __name__ == "__main__":
    main()
