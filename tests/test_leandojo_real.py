"""The leandojo backend against the REAL `lean_dojo` package (skipped when it is not installed; the
dev extra installs it, so CI runs these).

LeanDojo cannot trace a repository here (no elan, no network), so these check what can be checked
without Lean: every name, constructor and argument the backend uses exists in the installed package
and accepts what the backend passes; the stand-in the other tests use (tests/fakes/fake_lean_dojo.py)
has the real names and signatures; and the backend drives the real `Dojo` (its pexpect protocol,
result classes, exceptions and timeouts) against a scripted Lean process.
"""

import inspect
import json
import sys
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

import pytest
from fakes.fake_lean_dojo import NAMES, make_fake_lean_dojo

from tests.test_leandojo import PROOFS, STATEMENT, VERDICTS, index  # noqa: F401 (index: a fixture)

from lean_env.leandojo.backend import LeanDojoBackend
from lean_env.verifier import Item

lean_dojo = pytest.importorskip(
    "lean_dojo", reason="lean-dojo is not installed (pip install 'dmvr[lean]'; the dev extra installs it)")

SCRIPTED_LEAN = Path(__file__).parent / "fakes" / "fake_lean_dojo_repl.py"


def _params(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_stand_in_has_the_real_names_and_signatures():
    fake = make_fake_lean_dojo()
    public = {n for n in vars(fake) if n[0].isupper()}
    assert public == set(NAMES)
    for name in NAMES:
        assert hasattr(lean_dojo, name), f"lean_dojo {lean_dojo.__version__} has no {name}"
        real, standin = getattr(lean_dojo, name), getattr(fake, name)
        assert isinstance(real, type), name
        if issubclass(standin, Exception):
            assert issubclass(real, Exception), name
            continue
        assert _params(standin) == _params(real), name
        if is_dataclass(standin):  # the result classes: same fields, so `r.error`, `state.id` mean the same
            assert is_dataclass(real), name
            assert [f.name for f in fields(standin)] == [f.name for f in fields(real) if f.init], name
    for method in ("run_tac", "__enter__", "__exit__"):
        assert _params(getattr(fake.Dojo, method)) == _params(getattr(lean_dojo.Dojo, method)), method


def test_every_name_and_argument_the_backend_uses_exists_in_the_real_package(monkeypatch, index):
    """Run every path of the backend on the stand-in, recording which module attributes it reads and
    what it passes to each constructor and to run_tac; then check them against the real package."""
    fake = make_fake_lean_dojo()
    read = set()

    class Recording(type(fake)):
        def __getattribute__(self, name):
            read.add(name)
            return super().__getattribute__(name)

    fake.__class__ = Recording
    monkeypatch.setitem(sys.modules, "lean_dojo", fake)
    backend = LeanDojoBackend(repo="https://github.com/x/y", commit="abc", theorems=index,
                              additional_imports=["Mathlib"], startup_timeout=30)
    items = [Item(i, STATEMENT, p) for i, p in enumerate(PROOFS)] + [Item("b", "theorem b : True", "by exact h")]
    results = backend.verify(items, timeout=5)
    assert [r.verdict for r in results] == VERDICTS + ["error"]
    assert backend.version.startswith("1 lean_dojo=fake")
    used = sorted(n for n in read if not n.startswith("__") and n not in ("opened", "calls"))
    assert {"Dojo", "Theorem", "LeanGitRepo", "TacticState", "ProofFinished", "LeanError", "ProofGivenUp",
            "DojoTacticTimeoutError"} <= set(used)
    missing = [n for n in used if not hasattr(lean_dojo, n)]
    assert not missing, f"the backend uses {missing}, which lean_dojo {lean_dojo.__version__} lacks"
    assert isinstance(lean_dojo.__version__, str)
    real = {"Dojo": inspect.signature(lean_dojo.Dojo), "Theorem": inspect.signature(lean_dojo.Theorem),
            "LeanGitRepo": inspect.signature(lean_dojo.LeanGitRepo),
            "run_tac": inspect.signature(lean_dojo.Dojo.run_tac)}
    assert {c[0] for c in fake.calls} == set(real)
    for name, args, kwargs in fake.calls:
        bound = real[name].bind(*((None,) if name == "run_tac" else ()), *args, **kwargs)  # TypeError: drift
        if name == "Dojo":
            assert isinstance(bound.arguments["timeout"], int)  # LeanDojo's own type: whole seconds


@dataclass(frozen=True)
class Repo:
    """In place of `LeanGitRepo`, whose constructor clones the repository (network)."""
    url: str
    commit: str


def test_the_backend_drives_the_real_dojo_against_a_scripted_lean(monkeypatch, index):
    """The real Dojo's run_tac, request/answer protocol, result classes and exceptions; only opening
    (which needs a traced repository and `lake`) is replaced: it starts the scripted Lean process as
    LeanDojo starts Lean, with pexpect and the Dojo's timeout."""
    import pexpect
    from lean_dojo.interaction import dojo as dojo_module

    opened = []

    def enter(self):
        self.proc = pexpect.spawn(f"{sys.executable} {SCRIPTED_LEAN}", timeout=self.timeout, maxread=1,
                                  encoding="utf-8", echo=False)
        opened.append(self.timeout)
        res = json.loads(self._read_next_line()[0])
        return self, lean_dojo.TacticState(self._post_process(res["tacticState"]), res["sid"])

    def leave(self, *exc):
        dojo_module.kill_descendants(self.proc.pid)
        self.proc.close(force=True)

    monkeypatch.setattr(lean_dojo.Dojo, "__enter__", enter)
    monkeypatch.setattr(lean_dojo.Dojo, "__exit__", leave)
    monkeypatch.setattr(lean_dojo, "LeanGitRepo", Repo)
    backend = LeanDojoBackend(repo="https://github.com/x/y", commit="abc", theorems=index, startup_timeout=20)
    results = backend.verify([Item(i, STATEMENT, p) for i, p in enumerate(PROOFS)], timeout=1.5)
    assert [r.verdict for r in results] == VERDICTS
    assert results[2].message == "tactic 1 of 1: unknown tactic 'nonsense'"
    assert "sorry" in results[3].message and results[4].message == "unsolved goals after the last tactic"
    assert "DojoTacticTimeoutError" in results[7].message and results[7].seconds < 10
    assert "DojoCrashError" in results[8].message
    assert opened == [20, 20, 20]  # opened with startup_timeout; reopened after the timeout and the crash
