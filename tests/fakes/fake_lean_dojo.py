"""A stand-in `lean_dojo` module for the leandojo backend's tests (no Lean, no traced repository).

It has the names, constructor signatures and result shapes of lean-dojo 4.20's API that
lean_env/leandojo/backend.py uses; tests/test_leandojo_real.py checks it against the installed
package (every name it defines exists there, every signature binds the same arguments), so the two
cannot drift. Every constructor and `run_tac` call is recorded in `module.calls` as
(name, args, kwargs), so that test can also bind what the backend really passed to the real API.

Behaviour of the stand-in `Dojo`: the theorem `broken` fails to open (DojoInitError); tactics
starting `exact h` finish the proof, `intro`/`cases` leave a goal, `sorry` gives up, `crash` raises
DojoCrashError, `slow` raises DojoTacticTimeoutError, anything else is a LeanError.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


def make_fake_lean_dojo() -> types.ModuleType:
    m = types.ModuleType("lean_dojo")
    m.__version__ = "fake"
    m.opened = []  # full names of the theorems whose Dojo was entered
    m.calls = []  # (name, args, kwargs) of every constructor and run_tac call

    def recorded(name):
        def wrap(fn):
            @functools.wraps(fn)
            def inner(self, *args, **kwargs):
                m.calls.append((name, args, kwargs))
                return fn(self, *args, **kwargs)
            return inner
        return wrap

    @dataclass(frozen=True)
    class TacticState:
        pp: str
        id: int = field(compare=False)
        message: Optional[str] = field(default=None, compare=False)

    @dataclass(frozen=True)
    class ProofFinished:
        tactic_state_id: int
        message: Optional[str] = field(default=None, compare=False)

    @dataclass(frozen=True)
    class ProofGivenUp:
        pass

    @dataclass(frozen=True)
    class LeanError:
        error: str

    class DojoCrashError(Exception):
        pass

    class DojoTacticTimeoutError(Exception):
        pass

    class DojoInitError(Exception):
        pass

    class LeanGitRepo:
        @recorded("LeanGitRepo")
        def __init__(self, url: str, commit: str) -> None:
            self.url, self.commit = url, commit

    class Theorem:
        @recorded("Theorem")
        def __init__(self, repo: LeanGitRepo, file_path: Path, full_name: str) -> None:
            self.repo, self.file_path, self.full_name = repo, Path(file_path), full_name

    class Dojo:
        @recorded("Dojo")
        def __init__(self, entry, timeout: int = 600, additional_imports: list = [],  # noqa: B006 - as LeanDojo
                     build_deps: bool = True):
            self.entry, self.timeout = entry, timeout
            self.proc = types.SimpleNamespace(timeout=timeout)  # LeanDojo's pexpect child: timeout per answer
            self.tactic_timeouts = []  # proc.timeout at each run_tac
            if entry.full_name == "broken":
                raise DojoInitError("cannot locate the theorem")

        def __enter__(self):
            m.opened.append(self.entry.full_name)
            return self, TacticState("p : Prop\nh : p\n⊢ p", 0)

        def __exit__(self, exc_type, exc_val, exc_tb):
            return None

        @recorded("run_tac")
        def run_tac(self, state: TacticState, tactic: str):
            self.tactic_timeouts.append(self.proc.timeout)
            if tactic.startswith("exact h"):
                return ProofFinished(state.id + 1)
            if tactic.startswith("intro") or tactic.startswith("cases"):
                return TacticState("⊢ p", state.id + 1)
            if tactic == "sorry":
                return ProofGivenUp()
            if tactic == "crash":
                raise DojoCrashError("OOM")
            if tactic == "slow":
                raise DojoTacticTimeoutError()
            return LeanError(f"unknown tactic {tactic!r}")

    for cls in (TacticState, ProofFinished, LeanError, ProofGivenUp, DojoCrashError, DojoTacticTimeoutError,
                DojoInitError, LeanGitRepo, Theorem, Dojo):
        setattr(m, cls.__name__, cls)
    return m


# The public names above: what tests/test_leandojo_real.py checks against the real package.
NAMES = ("TacticState", "ProofFinished", "LeanError", "ProofGivenUp", "DojoCrashError", "DojoTacticTimeoutError",
         "DojoInitError", "LeanGitRepo", "Theorem", "Dojo")
