"""`LeanDojoBackend`: check proofs of theorems that live in a repository traced with LeanDojo.

How: for each theorem, `lean_dojo.Dojo(Theorem(LeanGitRepo(url, commit), file_path, full_name))`
opens the theorem's file at the theorem, with its real context (the file's imports, `open`s,
variables and earlier lemmas), and hands back the initial `TacticState`. A proof `by t1; t2 …` is
split into its top-level tactics (`split_tactics`) and run with `dojo.run_tac(state, tactic)`,
one after the other:

* `ProofFinished` after the last tactic -> `pass`;
* `LeanError` -> `fail`, with Lean's message;
* `ProofGivenUp` (the proof used `sorry`) -> `fail`;
* goals left after the last tactic, or the proof finished before it -> `fail`;
* `DojoTacticTimeoutError` (the proof ran out of time) -> `timeout`;
* `DojoCrashError` (Lean died, e.g. out of memory), `DojoInitError` -> `error`, and the Dojo is reopened
  for the next proof of the same theorem.

Written for, and checked against, the API of lean-dojo 4.20.0 (the `lean` extra asks for >= 4.20;
tests/test_leandojo_real.py checks every name and argument used here against the installed package).

Time limits. LeanDojo has one limit, `Dojo(..., timeout=)`: how long it waits for each answer of
its Lean process (pexpect's read timeout), opening the file included. Opening a file elaborates
everything before the theorem (seconds to minutes with Mathlib), far longer than a proof may take,
so the Dojo is opened with `startup_timeout` and, once open, each proof's remaining time is given
to the running process (`dojo.proc.timeout`) before each tactic: `timeout` is per proof, as for
the other backends.

All candidate proofs of one theorem share one Dojo (each starts again from the initial state,
which LeanDojo keeps), so the file is elaborated once per theorem, not once per proof.

Which theorem: the statement's name is looked up in the `theorems` index, a JSONL file with one
line per theorem: `{"name", "full_name", "file_path", "statement"}` (as written by a LeanDojo
tracing script; `name` is the name in our statements). The item's statement must equal the
indexed one (up to whitespace), so a model cannot prove an easier statement under the same name.

When to choose it, and its limits (check them against the LeanDojo version you install):
* choose it for theorems that only make sense inside their repository (Mathlib's own lemmas, a
  project's files), where a REPL header cannot reproduce the context; for standalone
  competition-style statements (`import Mathlib` + statement) `lean_repl` is much faster;
* tracing a repository is a one-off cost of hours for Mathlib (LeanDojo builds it and extracts
  its ASTs) and tens of GB of disk; it needs the exact Lean version the repository pins;
* LeanDojo supports Lean 4 repositories whose toolchain its release supports (roughly v4.3 and
  later for LeanDojo 2.x; each release's docs list them), not the `lean4` repo itself, and not
  repositories with FFI;
* tactic proofs only: a term proof (`fun h => h`, `⟨hp, hq⟩`) is answered `error` (not
  checked), never `fail`;
* it reports `sorry` but does not print the axioms of the finished proof: `native_decide`
  and other kernel bypasses are only stopped by the proof guard, which runs before every backend;
* one Lean process per open Dojo, driven from this process, so `workers` is ignored: run several
  verify jobs to use more cores.

`lean_dojo` is imported only when the backend is created; without it, creating the backend
raises `BackendUnavailableError` saying how to install it.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from lean_env.lean_repl.classify import theorem_name
from lean_env.verifier import DEFAULT_TIMEOUT, Backend, BackendUnavailableError, Item, Result

VERSION = 1

INSTALL_HINT = ("the leandojo backend needs the `lean_dojo` package and its prerequisites (git, elan, "
                "a traced repository): pip install 'dmvr[lean]' (or pip install lean-dojo), then trace the "
                "repository once (see README \"Real Lean\"). For standalone statements use --backend lean_repl.")


def import_lean_dojo() -> ModuleType:
    try:
        import lean_dojo
    except ImportError as e:
        raise BackendUnavailableError(f"{INSTALL_HINT} (import failed: {e})") from None
    return lean_dojo


def split_tactics(proof: str) -> list[str] | None:
    """The top-level tactics of a `by` proof, each dedented; None for a term proof.

    A line indented deeper than the block, or starting with `|`, `<;>` or a closing bracket,
    continues the tactic before it (`cases h with` and its `| inl h => …` arms are one tactic).
    `by t1; t2` on one line stays one step: LeanDojo runs tactic sequences too.
    """
    text = proof.strip()
    m = re.match(r"by(?=\s|$)", text)
    if not m:
        return None
    body = text[m.end():]
    first, _, rest = body.partition("\n")
    lines = ([first.strip()] if first.strip() else []) + [ln for ln in rest.split("\n") if ln.strip()]
    if not lines:
        return []
    indents = [len(ln) - len(ln.lstrip()) for ln in rest.split("\n") if ln.strip()]
    block = min(indents) if indents else 0
    steps: list[list[str]] = []
    for k, line in enumerate(lines):
        is_first_line = k == 0 and first.strip()
        indent = 0 if is_first_line else len(line) - len(line.lstrip())
        stripped = line.strip()
        continues = steps and not is_first_line and (
            indent > block or stripped.startswith(("|", "<;>", ")", "]", "}", "⟩")))
        if continues:
            steps[-1].append(line[block:] if indent >= block else stripped)
        else:
            steps.append([stripped])
    return ["\n".join(s) for s in steps]


class LeanDojoBackend(Backend):
    name = "leandojo"

    def __init__(self, *, repo: str = "", commit: str = "", theorems: str = "",
                 additional_imports: Sequence[str] = (), startup_timeout: float = 600.0):
        self.dojo = import_lean_dojo()  # fails first, with the install hint
        if not repo or not commit:
            raise BackendUnavailableError(
                "the leandojo backend needs the traced repository's URL and commit: set "
                "verifier.leandojo.repo and verifier.leandojo.commit (CLI: -o repo=URL -o commit=SHA)")
        if not theorems or not Path(theorems).expanduser().is_file():
            raise BackendUnavailableError(
                f"the leandojo backend needs a theorem index (JSONL: name, full_name, file_path, statement) "
                f"at verifier.leandojo.theorems (CLI: -o theorems=PATH); got {theorems!r}")
        self.repo_url, self.commit = repo, commit
        self.additional_imports = list(additional_imports)
        self.startup_timeout = float(startup_timeout)
        self.index = load_index(Path(theorems).expanduser())
        self._repo = None

    @property
    def version(self) -> str:
        lib = getattr(self.dojo, "__version__", "?")
        return f"{VERSION} lean_dojo={lib} repo={self.repo_url}@{self.commit}"

    def verify(self, items: Sequence[Item], *, timeout: float = DEFAULT_TIMEOUT,
               workers: int | None = None, progress: bool = False) -> list[Result]:
        results: dict[int, Result] = {}
        by_theorem: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            try:
                name = theorem_name(item.statement)
            except ValueError as e:
                results[i] = Result(item.id, "error", str(e))
                continue
            entry = self.index.get(name)
            if entry is None:
                results[i] = Result(item.id, "error", f"theorem {name!r} is not in the LeanDojo index")
            elif _squash(entry["statement"]) != _squash(item.statement):
                results[i] = Result(item.id, "fail", "statement differs from the traced theorem's")
            elif split_tactics(item.proof) is None:
                results[i] = Result(item.id, "error", "leandojo checks tactic proofs (`by …`) only")
            else:
                by_theorem.setdefault(name, []).append(i)
        for name, indices in by_theorem.items():
            for i, result in zip(indices, self._check_theorem(self.index[name], [items[i] for i in indices], timeout)):
                results[i] = result
        return [results[i] for i in range(len(items))]

    # -- one theorem, many proofs -----------------------------------------------------------

    def _theorem(self, entry: dict):
        if self._repo is None:
            self._repo = self.dojo.LeanGitRepo(self.repo_url, self.commit)
        return self.dojo.Theorem(self._repo, entry["file_path"], entry["full_name"])

    def _open(self, entry: dict):
        kwargs = {"timeout": max(1, math.ceil(self.startup_timeout))}  # an int in LeanDojo's signature
        if self.additional_imports:
            kwargs["additional_imports"] = list(self.additional_imports)
        return self.dojo.Dojo(self._theorem(entry), **kwargs)

    def _check_theorem(self, entry: dict, items: list[Item], timeout: float) -> list[Result]:
        """Every proof of one theorem; the Dojo is reopened after a crash or a timeout."""
        out: list[Result] = []
        pending = list(items)
        while pending:
            in_hand = True  # an exception now is charged to pending[0] (opening failed, say)
            try:
                with self._open(entry) as (dojo, initial):
                    while pending:
                        in_hand = True
                        result = self.check_one(dojo, initial, pending[0], timeout)
                        out.append(result)
                        pending.pop(0)
                        in_hand = False
                        if result.verdict in ("error", "timeout"):
                            break  # the Lean process may be dead or stuck: start afresh
            except Exception as e:  # DojoInitError, a crash outside a tactic, a failure on exit
                if in_hand and pending:
                    out.append(Result(pending.pop(0).id, *self._exception_verdict(e)))
        return out

    def check_one(self, dojo, initial, item: Item, timeout: float) -> Result:
        start = time.monotonic()
        tactics = split_tactics(item.proof) or []
        state = initial
        try:
            for k, tactic in enumerate(tactics):
                _limit_next_answer(dojo, start + timeout - time.monotonic())
                r = dojo.run_tac(state, tactic)
                verdict = self._tactic_verdict(r, k, len(tactics))
                if verdict is not None:
                    return Result(item.id, *verdict, time.monotonic() - start)
                state = r
        except Exception as e:
            return Result(item.id, *self._exception_verdict(e), time.monotonic() - start)
        return Result(item.id, "fail", "unsolved goals after the last tactic", time.monotonic() - start)

    def _tactic_verdict(self, r, k: int, n: int) -> tuple[str, str] | None:
        """None to go on with the next tactic from state `r`, else (verdict, message)."""
        d = self.dojo
        where = f"tactic {k + 1} of {n}"
        if isinstance(r, d.ProofFinished):
            return ("pass", "") if k == n - 1 else ("fail", f"{where}: no goals left for the remaining tactics")
        if isinstance(r, d.ProofGivenUp):
            return "fail", f"{where}: proof contains `sorry`"
        if isinstance(r, d.LeanError):
            return "fail", f"{where}: {r.error}"
        if isinstance(r, d.TacticState):
            return None
        return "error", f"{where}: unexpected LeanDojo result {type(r).__name__}"

    def _exception_verdict(self, e: Exception) -> tuple[str, str]:
        if isinstance(e, self.dojo.DojoTacticTimeoutError):
            return "timeout", f"LeanDojo timed out: {type(e).__name__}: {e}"
        return "error", f"LeanDojo failed: {type(e).__name__}: {e}"


def _limit_next_answer(dojo, seconds: float) -> None:
    """Wait at most `seconds` for the Lean process's next answer (see "Time limits" above)."""
    proc = getattr(dojo, "proc", None)  # LeanDojo's pexpect child; its `timeout` bounds each read
    if proc is not None:
        proc.timeout = max(0.05, seconds)


def load_index(path: Path) -> dict[str, dict]:
    index = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [k for k in ("name", "full_name", "file_path", "statement") if k not in row]
        if missing:
            raise BackendUnavailableError(f"{path}:{n}: theorem index line lacks {missing}")
        index[row["name"]] = row
    return index


def _squash(text: str) -> str:
    return " ".join(text.split())
