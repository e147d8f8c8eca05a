"""`python -m lean_env verify --backend prop IN.jsonl OUT.jsonl`

Reads lines `{"id", "statement", "proof", …}` and writes each line back with `verdict`,
`message` and `seconds` added, in the same order. A line that cannot be checked (not UTF-8, not
JSON, a missing key, a statement or proof that is not a string, a lone surrogate, a text over the
length limit) is written out with the verdict `invalid` and a message naming the problem, and is
reported on stderr (`IN.jsonl:12: …`); the other lines are still checked.
Exit status: 0 when the command ran (whatever the verdicts), 2 when it could not run (unknown or
unavailable backend, unreadable input, cache that cannot be opened).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from lean_env.cache import VerdictCache
from lean_env.verifier import (
    DEFAULT_TIMEOUT,
    VERDICTS,
    BackendUnavailableError,
    Item,
    UnknownBackendError,
    get_backend,
    verify_items,
)

BATCH = 10_000  # lines read, checked and written at a time: bounded memory, output as we go


def default_cache_path() -> Path:
    if os.environ.get("DMVR_VERDICT_CACHE"):
        return Path(os.environ["DMVR_VERDICT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmvr" / "verdicts.sqlite"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lean_env", description="Lean-side tools of dmvr.")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check the proofs in a JSONL file",
                                 description=__doc__.split("\n\n")[1])
    verify.add_argument("input", type=Path, help="JSONL with id, statement, proof")
    verify.add_argument("output", type=Path, help="JSONL written with verdict, message, seconds added")
    verify.add_argument("--backend", default="prop", help="verifier backend (default: prop)")
    verify.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: CPUs - 1; 0 = check in this process, "
                             "without timeouts)")
    verify.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per proof, wall clock (default: {DEFAULT_TIMEOUT:g})")
    cache = verify.add_mutually_exclusive_group()
    cache.add_argument("--cache", type=Path, default=None,
                       help=f"verdict cache (default: $DMVR_VERDICT_CACHE or {default_cache_path()})")
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write a verdict cache")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    lean = verify.add_argument_group("Lean backends (lean_repl, leandojo)")
    lean.add_argument("--lean-project", metavar="DIR",
                      help="lean_repl: the Lean project to run the REPL in (default: $DMVR_LEAN_PROJECT, "
                           "else ~/.cache/dmvr/lean/project from `make lean-setup`)")
    lean.add_argument("--lean-repl", metavar="PATH", help="lean_repl: the REPL binary "
                      "(default: DIR/../repl/.lake/build/bin/repl)")
    lean.add_argument("--lean-header", metavar="TEXT", help="lean_repl: Lean text run once per worker, "
                      "e.g. 'import Mathlib' (default: none, core Lean)")
    lean.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                      help="any backend option (repeatable); VALUE is read as JSON when it parses, else "
                           "as a string: -o max_items_per_worker=500 -o lake_env_wrapper=true")
    return parser


def backend_options(args: argparse.Namespace) -> dict:
    """The backend's constructor options from `-o KEY=VALUE` and the named Lean flags."""
    options = {}
    for text in args.option:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"-o {text!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    for flag, key in (("lean_project", "project"), ("lean_repl", "repl"), ("lean_header", "header")):
        if getattr(args, flag, None) is not None:
            options[key] = getattr(args, flag)
    return options


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return verify_command(args)


def verify_command(args: argparse.Namespace) -> int:
    try:
        options = backend_options(args)
    except ValueError as e:
        return _cannot_run(str(e))
    try:
        backend = get_backend(args.backend, **options)
        version = backend.version  # loads the checker: fail now rather than after reading input
    except (UnknownBackendError, BackendUnavailableError) as e:
        return _cannot_run(str(e))
    except TypeError as e:  # an option the backend does not take
        return _cannot_run(f"backend {args.backend!r} does not take these options {sorted(options)}: {e}")
    except Exception as e:
        return _cannot_run(f"backend {args.backend!r} cannot be loaded: {type(e).__name__}: {e}")
    if not args.input.is_file():
        return _cannot_run(f"input file {args.input} does not exist")
    if args.output.resolve() == args.input.resolve():
        return _cannot_run("the output file must not be the input file")
    try:
        cache = None if args.no_cache else VerdictCache(args.cache or default_cache_path())
    except Exception as e:
        return _cannot_run(f"cannot open the verdict cache: {e} (use --cache PATH or --no-cache)")

    counts: Counter = Counter()
    start = time.monotonic()
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with backend, open(args.input, "rb") as src, open(args.output, "w", encoding="utf-8") as out:
            for batch in _batches(src, str(args.input)):
                _verify_batch(batch, backend, cache, args, out, counts)
    except OSError as e:
        return _cannot_run(str(e))
    finally:
        if cache is not None:
            cache.close()
    elapsed = time.monotonic() - start
    total = sum(counts[v] for v in VERDICTS)
    per_verdict = ", ".join(f"{v} {counts[v]}" for v in VERDICTS)
    print(f"{args.backend} {version}: {total} proofs in {elapsed:.2f} s "
          f"({total / max(elapsed, 1e-9):.1f} proofs/s): {per_verdict}"
          + (f"; {counts['malformed']} malformed lines" if counts["malformed"] else ""),
          file=sys.stderr)
    return 0


def _cannot_run(message: str) -> int:
    print(f"python -m lean_env verify: error: {message}", file=sys.stderr)
    return 2


def _batches(src, name: str):
    """Lists of (record, item or None, error message or None), BATCH lines at a time."""
    batch = []
    for lineno, raw in enumerate(src, start=1):
        if not raw.strip():
            continue  # blank lines (a trailing newline, say) are not records
        batch.append(parse_line(raw, name, lineno))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def parse_line(raw: bytes, name: str, lineno: int) -> tuple[dict, Item | None, str | None]:
    """The record to write back, the Item to check, and the error that stops it being checked."""
    where = f"{name}:{lineno}"
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return {"id": None}, None, f"{where}: not UTF-8 ({e.reason} at byte {e.start})"
    except ValueError as e:
        return {"id": None}, None, f"{where}: bad JSON: {e}"
    if not isinstance(record, dict):
        return {"id": None}, None, f"{where}: expected a JSON object, got {type(record).__name__}"
    for key in ("id", "statement", "proof"):
        if key not in record:
            return record, None, f"{where}: missing key {key!r}"
    if isinstance(record["id"], bool) or not isinstance(record["id"], (str, int)):
        return record, None, f"{where}: 'id' must be a string or an integer"
    for key in ("statement", "proof"):
        if not isinstance(record[key], str):
            return record, None, f"{where}: {key!r} must be a string, got {type(record[key]).__name__}"
    return record, Item(record["id"], record["statement"], record["proof"]), None


def _verify_batch(batch, backend, cache, args, out, counts: Counter) -> None:
    items = [item for _, item, _ in batch if item is not None]
    results = iter(verify_items(items, backend, cache=cache, timeout=args.timeout,
                                workers=args.workers, progress=not args.no_progress))
    for record, item, error in batch:
        if item is None:
            print(error, file=sys.stderr)
            counts["malformed"] += 1
            verdict, message, seconds = "invalid", error, 0.0
            record = {"id": None, **record}  # every output row has an id, if only null
        else:
            r = next(results)
            verdict, message, seconds = r.verdict, r.message, r.seconds
        counts[verdict] += 1
        row = {**record, "verdict": verdict, "message": message, "seconds": round(seconds, 6)}
        out.write(_json_line(row))
    out.flush()


def _json_line(row: dict) -> str:
    """The row as one JSON line: UTF-8 text, or `\\uXXXX` escapes where a string holds a lone
    surrogate (which has no UTF-8 form), so the row is written back exactly as it was read."""
    line = json.dumps(row, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row)
    return line + "\n"


if __name__ == "__main__":
    sys.exit(main())
