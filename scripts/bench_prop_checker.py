"""Throughput of the `prop` checker: proofs per second, one process, no verdict cache.

    python scripts/bench_prop_checker.py                          # eval split: 8 generator proofs per theorem
    python scripts/bench_prop_checker.py --data proofs.jsonl --proofs-per-theorem 8
    python scripts/bench_prop_checker.py --profile                # where the time goes

`--data` is a jsonl of rows with `statement` and either `proof` (one string) or `proofs` (a list);
`--proofs-per-theorem K` takes at most K proofs of each statement from the file (default: all).
`--generated K` (default 8) replaces the file's proofs by K proofs per theorem from the proof
generator (`lean_env.propgen.sample_proofs`, fixed seed), i.e. the multi-line proofs in every
style that the pipeline actually checks; `--generated 0` uses the file's own proofs.
When the file is missing the script falls back on a small built-in set of typical proofs, so it
runs on any checkout. Rates are CPU time (`time.process_time`, the best of `--repeat` passes) and
wall time; the CPU figure is the per-core throughput and is not distorted by other processes.
The checker keeps two memos between calls, as it does in a worker: parsed statements (a workload
checks many proofs of one theorem) and unfolded formulas. Neither is a verdict cache; `--cold`
clears both before every proof, for the worst case.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lean_env.prop import checker, syntax  # noqa: E402
from lean_env.prop.checker import VERSION, check  # noqa: E402

DEFAULT_DATA = ROOT / "lean_env" / "data" / "prop_eval.jsonl"

# Used when no data file exists: proofs of 3–15 tactic lines in the common styles.
_BUILTIN = [
    ("theorem prop_bench_1 (p q r : Prop) : (p → q) ∧ (q → r) → p ∨ r → r ∨ q",
     "by\n  intro h1 h2\n  obtain ⟨h3, h4⟩ := h1\n  cases h2 with\n  | inl hp =>\n    left\n"
     "    exact h4 (h3 hp)\n  | inr hr =>\n    left\n    exact hr"),
    ("theorem prop_bench_2 (p q : Prop) : p ∧ q → q ∧ p",
     "by\n  intro h\n  constructor\n  · exact h.2\n  · exact h.1"),
    ("theorem prop_bench_3 (p q r : Prop) : (p ∨ q) ∧ r → p ∧ r ∨ q ∧ r",
     "by\n  intro h\n  rcases h with ⟨hp | hq, hr⟩\n  · left\n    exact ⟨hp, hr⟩\n  · right\n"
     "    exact ⟨hq, hr⟩"),
    ("theorem prop_bench_4 (p q : Prop) : (p ↔ q) → (¬p ↔ ¬q)",
     "by\n  intro h\n  constructor\n  · intro hnp hq\n    exact hnp (h.mpr hq)\n  · intro hnq hp\n"
     "    exact hnq (h.mp hp)"),
    ("theorem prop_bench_5 (p q : Prop) : ¬(p ∨ q) → ¬p ∧ ¬q",
     "by\n  intro h\n  refine ⟨?_, ?_⟩\n  · intro hp\n    apply h\n    exact Or.inl hp\n"
     "  · intro hq\n    apply h\n    exact Or.inr hq"),
    ("theorem prop_bench_6 (p : Prop) : ¬¬p → p",
     "by\n  intro h\n  cases Classical.em p with\n  | inl hp => exact hp\n  | inr hnp => exact absurd hnp h"),
    ("theorem prop_bench_7 (p q r : Prop) : (p → q → r) → p ∧ q → r",
     "by\n  intro f h\n  have hp : p := h.1\n  have hq : q := h.2\n  show r\n  exact f hp hq"),
    ("theorem prop_bench_8 (p q r : Prop) : p ∧ (q ∨ r) → (p ∧ q) ∨ (p ∧ r)",
     "fun ⟨hp, hqr⟩ => Or.elim hqr (fun hq => Or.inl ⟨hp, hq⟩) (fun hr => Or.inr ⟨hp, hr⟩)"),
]


def load(path: Path, per_theorem: int | None) -> list[tuple[str, str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            proofs = row.get("proofs") if isinstance(row.get("proofs"), list) else [row["proof"]]
            groups[row["statement"]].extend(proofs)
    items = []
    for statement, proofs in groups.items():
        for proof in proofs[:per_theorem] if per_theorem else proofs:
            items.append((statement, proof))
    return items


def generated(items: list[tuple[str, str]], per_theorem: int, seed: int = 0) -> list[tuple[str, str]]:
    import random

    from lean_env.propgen import sample_proofs

    rng = random.Random(seed)
    statements = list(dict.fromkeys(s for s, _ in items))
    return [(s, p) for s in statements for p in sample_proofs(s, per_theorem, rng)]


def check_cold(statement: str, proof: str):
    syntax.parse_statement.cache_clear()
    checker._NF.clear()
    return check(statement, proof)


def measure(items: list[tuple[str, str]], repeat: int, cold: bool = False) -> tuple[float, float, int]:
    """(best CPU seconds per pass, best wall seconds per pass, proofs that pass)."""
    run = check_cold if cold else check
    best_cpu = best_wall = float("inf")
    passed = 0
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        passed = sum(run(s, p).ok for s, p in items)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall, passed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--proofs-per-theorem", type=int, default=None)
    ap.add_argument("--generated", type=int, default=8, help="generator proofs per theorem (0: the file's proofs)")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many proofs")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="clear the checker's memos before every proof")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)

    if args.data.exists():
        items, source = load(args.data, args.proofs_per_theorem), str(args.data)
        if args.generated:
            items = generated(items, args.generated)
            source += f" ({args.generated} generator proofs per theorem)"
    else:
        items, source = list(_BUILTIN), f"built-in sample ({args.data} not found)"
    if args.limit:
        items = items[:args.limit]
    if not items:
        print("no proofs to check", file=sys.stderr)
        return 1
    lines = sum(p.count("\n") + 1 for _, p in items) / len(items)
    print(f"checker {VERSION}: {len(items)} proofs from {source}, {lines:.1f} lines on average")

    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(measure, items, 1, args.cold)
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        return 0

    cpu, wall, passed = measure(items, args.repeat, args.cold)
    print(f"passed: {passed}/{len(items)}")
    mode = "cold memos" if args.cold else "warm memos"
    print(f"{len(items) / cpu:.0f} proofs/s (CPU time, one core, {mode}); {len(items) / wall:.0f} proofs/s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
