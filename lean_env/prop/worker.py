"""The `prop` backend's worker process: `python -m lean_env.prop.worker [--checker MODULE]`.

JSON lines on stdin and stdout (`lean_env.pool.JsonLinesCodec`), one answer per request:

    {"statement": "theorem t …", "proof": "by …"}
 -> {"ok": false, "message": "…", "line": 2, "col": 3, "unsupported": false, "seconds": 0.0004}

    {"hello": true}            (the pool's start-up handshake)
 -> {"hello": true, "version": "<checker.VERSION>", "pid": 1234}

A request the worker cannot serve (bad JSON, missing field, the checker raised) is answered with
{"error": "…"}, which the backend reports as the verdict `error`, never as pass or fail.
`--checker` names a module with `VERSION` and `check(statement, proof)`; tests point it at a
stand-in.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from types import ModuleType

DEFAULT_CHECKER = "lean_env.prop.checker"


def handle(checker: ModuleType, request: object) -> dict:
    """The answer to one decoded request. Shared with the backend's in-process mode."""
    if not isinstance(request, dict):
        return {"error": "request is not a JSON object"}
    if request.get("hello"):
        return {"hello": True, "version": str(checker.VERSION), "pid": os.getpid()}
    statement, proof = request.get("statement"), request.get("proof")
    if not isinstance(statement, str) or not isinstance(proof, str):
        return {"error": "request needs string fields 'statement' and 'proof'"}
    start = time.perf_counter()
    try:
        r = checker.check(statement, proof)
    except Exception as e:  # `check` promises not to raise; if it does, that is our failure
        return {"error": f"checker raised {type(e).__name__}: {e}"}
    return {"ok": bool(r.ok), "message": str(r.message or ""), "line": r.line, "col": r.col,
            "unsupported": bool(r.unsupported), "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checker", default=DEFAULT_CHECKER)
    args = parser.parse_args(argv)

    # File descriptor 1 belongs to the protocol. Point everything else that might print (a
    # debugging print in the checker, a warning) at stderr, where it cannot corrupt the stream.
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    checker = importlib.import_module(args.checker)  # an ImportError here fails the handshake
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError as e:
            answer = {"error": f"bad request: {e}"}
        else:
            answer = handle(checker, request)
            if isinstance(request, dict) and "seq" in request:
                answer["seq"] = request["seq"]  # lets the pool match answers to requests
        protocol.write(json.dumps(answer, ensure_ascii=True).encode("ascii") + b"\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
