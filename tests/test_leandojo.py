"""The leandojo backend, with a stand-in `lean_dojo` module (tests/fakes/fake_lean_dojo.py).

The stand-in has the names and shapes of LeanDojo's API (`Dojo` as a context manager yielding
`(dojo, initial_state)`, `run_tac`, `TacticState`, `ProofFinished`, `LeanError`, `ProofGivenUp`,
`DojoCrashError`, `DojoTacticTimeoutError`, `DojoInitError`, `LeanGitRepo`, `Theorem`), so these
tests check our mapping to verdicts, not LeanDojo itself; tests/test_leandojo_real.py checks the
stand-in and the backend against the real package when it is installed.
"""

import json
import sys

import pytest
from fakes.fake_lean_dojo import make_fake_lean_dojo

from lean_env.leandojo.backend import LeanDojoBackend, split_tactics
from lean_env.verifier import BackendUnavailableError, Item, get_backend

STATEMENT = "theorem t (p : Prop) (h : p) : p"
# Proofs that exercise every path of the backend, and their verdicts (tests/test_leandojo_real.py
# runs the same against the real package).
PROOFS = ["by exact h", "by\n  intro x\n  exact h", "by nonsense", "by sorry", "by\n  intro x",
          "by\n  exact h\n  intro x", "fun x => x", "by slow", "by crash", "by exact h"]
VERDICTS = ["pass", "pass", "fail", "fail", "fail", "fail", "error", "timeout", "error", "pass"]


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
    items = [Item(i, STATEMENT, p) for i, p in enumerate(PROOFS)]
    results = backend(index).verify(items, timeout=5)
    assert [(r.id, r.verdict) for r in results] == list(enumerate(VERDICTS))
    assert results[2].message == "tactic 1 of 1: unknown tactic 'nonsense'"
    assert "sorry" in results[3].message
    assert results[4].message == "unsolved goals after the last tactic"
    assert "tactic proofs" in results[6].message
    # one Dojo for the first proofs, a fresh one after the timeout and after the crash
    assert fake_dojo.opened == ["Foo.t", "Foo.t", "Foo.t"]


def test_files_open_under_the_startup_limit_and_proofs_run_under_their_own(fake_dojo, index):
    """LeanDojo has one read timeout: the Dojo opens with startup_timeout, then each tactic may wait
    only for what is left of its proof's `timeout`."""
    b = LeanDojoBackend(repo="https://github.com/x/y", commit="abc", theorems=index, startup_timeout=90.5,
                        additional_imports=["Mathlib"])
    dojos = []
    original = fake_dojo.Dojo.__enter__

    def enter(self):
        dojos.append(self)
        return original(self)

    fake_dojo.Dojo.__enter__ = enter
    results = b.verify([Item(0, STATEMENT, "by\n  intro x\n  exact h")], timeout=5)
    assert results[0].verdict == "pass"
    (_, args, kwargs), = [c for c in fake_dojo.calls if c[0] == "Dojo"]
    assert kwargs == {"timeout": 91, "additional_imports": ["Mathlib"]}
    assert len(dojos[0].tactic_timeouts) == 2 and all(0 < t <= 5 for t in dojos[0].tactic_timeouts)
    assert dojos[0].tactic_timeouts[1] <= dojos[0].tactic_timeouts[0]  # what is left of the proof's 5 s


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
