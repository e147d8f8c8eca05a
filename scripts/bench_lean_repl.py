"""Throughput of the lean_repl pool: proofs/s in total and per worker, header import timed apart.

    python scripts/bench_lean_repl.py PROOFS.jsonl [--workers N] [--timeout S] [--header TEXT]
        [--project DIR | --command 'CMD …']

PROOFS.jsonl has lines {"id", "statement", "proof"} (the format of `python -m lean_env verify`).
The guard is not run, so every line reaches Lean. Phase 1 starts the workers and waits until each
has run the header (with Mathlib this is the ~20 s import); phase 2 checks the proofs with warm
workers. Without Lean, `--command "python tests/fakes/fake_repl.py"` measures the pool's own cost.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lean_env.lean_repl.backend import LeanReplBackend  # noqa: E402
from lean_env.verifier import Item  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("proofs", type=Path)
    parser.add_argument("--workers", type=int, default=0, help="0: the backend's default")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--header", default="")
    parser.add_argument("--project", default=None)
    parser.add_argument("--command", default=None, help="run this instead of the REPL binary")
    parser.add_argument("--limit", type=int, default=0, help="first N proofs only")
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.proofs.read_text().splitlines() if line.strip()]
    if args.limit:
        rows = rows[:args.limit]
    items = [Item(r["id"], r["statement"], r["proof"]) for r in rows]
    backend = LeanReplBackend(project=args.project, header=args.header,
                              command=shlex.split(args.command) if args.command else None,
                              max_items_per_worker=len(items) + 2)  # no recycling inside the measurement
    workers = args.workers or backend.default_workers()
    with backend:
        pool = backend.pool(workers)
        # Phase 1: one trivial item per worker makes every worker start and import the header.
        warm = [Item(f"warm{i}", "theorem warm_up : True", "trivial") for i in range(workers)]
        start = time.monotonic()
        backend.verify(warm, timeout=max(args.timeout, backend.startup_timeout), workers=workers)
        header_s = time.monotonic() - start
        started_before = pool.started

        start = time.monotonic()
        results = backend.verify(items, timeout=args.timeout, workers=workers)
        check_s = time.monotonic() - start
        restarts = pool.started - started_before

    counts = Counter(r.verdict for r in results)
    busy = sum(r.seconds for r in results)
    print(f"workers: {workers}; proofs: {len(items)}; backend version: {backend.version}")
    print(f"header import (start + header, all workers in parallel): {header_s:.2f} s")
    print(f"checking: {check_s:.2f} s -> {len(items) / max(check_s, 1e-9):.1f} proofs/s total, "
          f"{len(items) / max(check_s, 1e-9) / workers:.1f} proofs/s per worker")
    print(f"mean time per proof inside a worker: {busy / max(len(items), 1) * 1000:.1f} ms; "
          f"workers restarted during checking: {restarts}")
    print("verdicts: " + ", ".join(f"{v} {counts[v]}" for v in ("pass", "fail", "timeout", "error", "invalid")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
