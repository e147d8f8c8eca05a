"""The leandojo backend, with a stand-in `lean_dojo` module (the real one is not installed here).

The stand-in has the names and shapes of LeanDojo's API (`Dojo` as a context manager yielding
`(dojo, initial_state)`, `run_tac`, `TacticState`, `ProofFinished`, `LeanError`, `ProofGivenUp`,
`DojoCrashError`, `DojoTacticTimeoutError`, `DojoInitError`, `LeanGitRepo`, `Theorem`), so these
tests check our mapping to verdicts, not LeanDojo itself.
"""

import json
import sys
import types
from dataclasses import dataclass

import pytest

from lean_env.leandojo.backend import LeanDojoBackend, split_tactics
from lean_env.verifier import BackendUnavailableError, Item, get_backend

STATEMENT = "theorem t (p : Prop) (h : p) : p"


def make_fake_lean_dojo():
    m = types.ModuleType("lean_dojo")
    m.__version__ = "fake"
    m.opened = []

    @dataclass(frozen=True)
    class TacticState:
        pp: str
        id: int = 0

    @dataclass(frozen=True)
    class ProofFinished:
        tactic_state_id: int = 0

    @dataclass(frozen=True)
    class LeanError:
        error: str

    class ProofGivenUp:
        pass

    class DojoCrashError(Exception):
        pass

    class DojoTacticTimeoutError(Exception):
        pass

    class DojoInitError(Exception):
        pass

    @dataclass
    class LeanGitRepo:
        url: str
        commit: str

    @dataclass
    class Theorem:
        repo: LeanGitRepo
        file_path: str
        full_name: str

    class Dojo:
        def __init__(self, theorem, hard_timeout=None):
            self.theorem = theorem
            if theorem.full_name == "broken":
                raise DojoInitError("cannot locate the theorem")

        def __enter__(self):
            m.opened.append(self.theorem.full_name)
            return self, TacticState("p : Prop\nh : p\n⊢ p", 0)

        def __exit__(self, *exc):
            return False

        def run_tac(self, state, tactic):
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


@pytest.fixture
def fake_dojo(monkeypatch):
    module = make_fake_lean_dojo()
    monkeypatch.setitem(sys.modules, "lean_dojo", module)
    return module


@pytest.fixture
def index(tmp_path):
    path = tmp_path / "theorems.jsonl"
    rows = [{"name": "t", "full_name": "Foo.t", "file_path": "Foo.lean", "statement": STATEMENT},
            {"name": "b", "full_name": "broken", "file_path": "Foo.lean", "statement": "theorem b : True"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def backend(index):
    return LeanDojoBackend(repo="https://github.com/x/y", commit="abc", theorems=index)


def test_missing_lean_dojo_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lean_dojo", None)  # makes `import lean_dojo` fail
    with pytest.raises(BackendUnavailableError, match="pip install 'dmvr\\[lean\\]'"):
        get_backend("leandojo")


def test_missing_repo_or_index_is_a_clear_error(fake_dojo, tmp_path):
    with pytest.raises(BackendUnavailableError, match="verifier.leandojo.repo"):
        get_backend("leandojo")
    with pytest.raises(BackendUnavailableError, match="theorem index"):
        get_backend("leandojo", repo="u", commit="c", theorems=str(tmp_path / "none.jsonl"))


def test_verdicts(fake_dojo, index):
    proofs = ["by exact h", "by\n  intro x\n  exact h", "by nonsense", "by sorry", "by\n  intro x",
              "by\n  exact h\n  intro x", "fun x => x", "by slow", "by crash", "by exact h"]
    items = [Item(i, STATEMENT, p) for i, p in enumerate(proofs)]
    results = backend(index).verify(items, timeout=5)
    got = [(r.id, r.verdict) for r in results]
    assert got == [(0, "pass"), (1, "pass"), (2, "fail"), (3, "fail"), (4, "fail"), (5, "fail"),
                   (6, "error"), (7, "timeout"), (8, "error"), (9, "pass")]
    assert results[2].message == "tactic 1 of 1: unknown tactic 'nonsense'"
    assert "sorry" in results[3].message
    assert results[4].message == "unsolved goals after the last tactic"
    assert "tactic proofs" in results[6].message
    # one Dojo for the first proofs, a fresh one after the timeout and after the crash
    assert fake_dojo.opened == ["Foo.t", "Foo.t", "Foo.t"]


def test_statement_must_match_the_index(fake_dojo, index):
    results = backend(index).verify([Item("a", "theorem t (p : Prop) : p ∨ True", "by exact h"),
                                     Item("b", "theorem zz : True", "by exact h"),
                                     Item("c", "theorem b  :  True", "by exact h")], timeout=5)
    assert [(r.verdict, r.message) for r in results][:2] == [
        ("fail", "statement differs from the traced theorem's"),
        ("error", "theorem 'zz' is not in the LeanDojo index")]
    assert results[2].verdict == "error" and "DojoInitError" in results[2].message


def test_split_tactics():
    assert split_tactics("by exact h") == ["exact h"]
    assert split_tactics("fun h => h") is None
    assert split_tactics("by\n  constructor\n  · exact hp\n  · exact hq") == ["constructor", "· exact hp", "· exact hq"]
    assert split_tactics("by\n  cases h with\n  | inl a => exact a\n  | inr b =>\n    exact b") == [
        "cases h with\n| inl a => exact a\n| inr b =>\n  exact b"]
    assert split_tactics("by intro x\n   exact x") == ["intro x", "exact x"]
    assert split_tactics("by\n  refine ⟨?_,\n    ?_⟩ <;> simp") == ["refine ⟨?_,\n  ?_⟩ <;> simp"]
