"""verify_items (guard, cache, dedupe, order), the cache, the prop backend and the CLI.

The real checker (`lean_env.prop.checker`) is written separately; these tests use a stand-in
checker module with the same interface, written to a temporary directory.
"""

import json
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lean_env.cache import VerdictCache, cache_key
from lean_env.verifier import (
    VERDICTS,
    Backend,
    BackendUnavailableError,
    Item,
    Result,
    UnknownBackendError,
    get_backend,
    verify_items,
)

ROOT = Path(__file__).resolve().parents[1]
STATEMENT = "theorem t (p : Prop) (h : p) : p"

STANDIN_CHECKER = '''
"""Stand-in for lean_env.prop.checker: `exact h` passes, anything else fails."""
import time
from dataclasses import dataclass

VERSION = "standin-1"


@dataclass
class CheckResult:
    ok: bool
    message: str = ""
    line: int | None = None
    col: int | None = None
    unsupported: bool = False


def check(statement, proof):
    if "BOOM" in proof:
        raise RuntimeError("boom")
    if "HANG" in proof:
        time.sleep(60)
    if "UNSUPPORTED" in proof:
        return CheckResult(False, "tactic `omega` is outside the fragment", 2, 3, unsupported=True)
    if "exact h" in proof:
        return CheckResult(True)
    return CheckResult(False, "type mismatch", 2, 9)
'''
CHECKER = "dmvr_standin_checker"


@pytest.fixture(scope="session")
def standin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("standin")
    (d / f"{CHECKER}.py").write_text(STANDIN_CHECKER)
    return d


@pytest.fixture
def standin(standin_dir, monkeypatch):
    """Makes the stand-in checker importable here and in worker processes."""
    monkeypatch.syspath_prepend(str(standin_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(standin_dir), os.environ.get("PYTHONPATH")])))
    return standin_dir


class CountingBackend(Backend):
    """Passes proofs containing "ok"; answers `error`/`timeout` when the proof says so."""

    name = "counting"

    def __init__(self, version="1"):
        self._version = version
        self.seen: list[Item] = []
        self.calls = 0

    @property
    def version(self):
        return self._version

    def verify(self, items, *, timeout=10, workers=None, progress=False):
        self.calls += 1
        self.seen.extend(items)
        out = []
        for it in items:
            verdict = next((v for v in ("error", "timeout") if v in it.proof), None)
            verdict = verdict or ("pass" if "ok" in it.proof else "fail")
            out.append(Result(it.id, verdict, f"checked {it.proof}", 0.01))
        return out


def items_of(*proofs):
    return [Item(f"i{k}", STATEMENT, p) for k, p in enumerate(proofs)]


# --- verify_items ------------------------------------------------------------------------------


def test_order_and_ids():
    items = items_of("by ok 1", "by bad", "by ok 2", "by sorry", "by ok 3")
    results = verify_items(items, CountingBackend())
    assert [r.id for r in results] == [it.id for it in items]
    assert [r.verdict for r in results] == ["pass", "fail", "pass", "invalid", "pass"]


def test_guard_runs_before_the_backend():
    backend = CountingBackend()
    results = verify_items(items_of("by sorry", "by ok -- sorry"), backend)
    assert results[0].verdict == "invalid" and "[sorry]" in results[0].message
    assert results[1].verdict == "pass"
    assert [it.proof for it in backend.seen] == ["by ok -- sorry"]
    # guard=False hands everything over (the backend is then on its own)
    backend = CountingBackend()
    verify_items(items_of("by sorry"), backend, guard=False)
    assert len(backend.seen) == 1


def test_identical_pairs_are_checked_once():
    backend = CountingBackend()
    items = items_of("by ok", "by ok", "by bad", "by ok", "by bad")
    results = verify_items(items, backend)
    assert sorted(it.proof for it in backend.seen) == ["by bad", "by ok"]
    assert [r.id for r in results] == ["i0", "i1", "i2", "i3", "i4"]
    assert [r.verdict for r in results] == ["pass", "pass", "fail", "pass", "fail"]
    # same proof, different statement: a different pair
    backend = CountingBackend()
    verify_items([Item(1, STATEMENT, "by ok"), Item(2, STATEMENT.replace("t ", "u "), "by ok")], backend)
    assert len(backend.seen) == 2


def test_cache_hits_skip_the_backend():
    cache = VerdictCache(None)
    items = items_of("by ok", "by bad", "by sorry")
    first = verify_items(items, CountingBackend(), cache=cache)
    backend = CountingBackend()
    second = verify_items(items, backend, cache=cache)
    assert backend.calls == 0 and backend.seen == []
    assert [(r.verdict, r.message) for r in second] == [(r.verdict, r.message) for r in first]
    assert len(cache) == 2  # guard verdicts are recomputed, not cached


def test_new_backend_version_misses_the_cache():
    cache = VerdictCache(None)
    verify_items(items_of("by ok"), CountingBackend("1"), cache=cache)
    backend = CountingBackend("2")
    verify_items(items_of("by ok"), backend, cache=cache)
    assert len(backend.seen) == 1


def test_error_and_timeout_are_never_cached():
    cache = VerdictCache(None)
    items = items_of("by ok", "by error", "by timeout", "by bad")
    verify_items(items, CountingBackend(), cache=cache)
    assert len(cache) == 2
    backend = CountingBackend()
    results = verify_items(items, backend, cache=cache)
    assert sorted(it.proof for it in backend.seen) == ["by error", "by timeout"]
    assert [r.verdict for r in results] == ["pass", "error", "timeout", "fail"]
    # and the cache refuses them even when asked directly
    assert cache.put_many([("k1", "error", "", 0.0), ("k2", "timeout", "", 0.0)]) == 0


def test_a_failing_backend_gives_errors_not_verdicts():
    class Broken(CountingBackend):
        def verify(self, items, **kw):
            raise RuntimeError("toolchain missing")

    cache = VerdictCache(None)
    results = verify_items(items_of("by ok", "by sorry"), Broken(), cache=cache)
    assert [r.verdict for r in results] == ["error", "invalid"]
    assert "toolchain missing" in results[0].message
    assert len(cache) == 0


def test_a_backend_that_miscounts_gives_errors():
    class Short(CountingBackend):
        def verify(self, items, **kw):
            return super().verify(items)[:-1]

    results = verify_items(items_of("by ok", "by ok 2"), Short())
    assert {r.verdict for r in results} == {"error"}


def test_cache_on_disk_is_shared_and_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "verdicts.sqlite"
    with VerdictCache(path) as cache:
        assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cache.put_many([(cache_key("b", "1", "s", "p"), "pass", "", 0.5)])
    with VerdictCache(path) as cache:
        hit = cache.get_many([cache_key("b", "1", "s", "p"), "missing"])
    assert list(hit.values())[0].verdict == "pass" and len(hit) == 1


def _write_rows(path, start):
    with VerdictCache(path) as cache:
        for k in range(start, start + 200, 20):
            cache.put_many([(f"key{j}", "fail", "m", 0.0) for j in range(k, k + 20)])


def test_cache_with_concurrent_writers(tmp_path):
    path = tmp_path / "verdicts.sqlite"
    VerdictCache(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_rows, args=(path, 1000 * n)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with VerdictCache(path) as cache:
        assert len(cache) == 600


def test_cache_key_separates_fields():
    assert cache_key("b", "1", "ab", "c") != cache_key("b", "1", "a", "bc")
    assert cache_key("b", "1", "s", "p") != cache_key("b", "2", "s", "p")


def test_many_keys_in_one_lookup():
    cache = VerdictCache(None)
    cache.put_many((f"k{i}", "pass", "", 0.0) for i in range(1500))
    assert len(cache.get_many(f"k{i}" for i in range(0, 3000))) == 1500


# --- the registry ------------------------------------------------------------------------------


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(UnknownBackendError, match="prop"):
        get_backend("nope")


# Without Lean (lean_repl) or lean_dojo (leandojo) the backends refuse to start, saying what is
# missing and how to set it up. lean_dojo may be installed (the dev extra installs it), so these
# tests hide it; tests/test_lean_repl.py and tests/test_leandojo.py test each missing piece separately.
SETUP_HINTS = {"lean_repl": "make lean-setup", "leandojo": "pip install 'dmvr[lean]'"}


def hide_lean_dojo(folder: Path) -> str:
    """A folder that, put first on PYTHONPATH, makes `import lean_dojo` fail as if it were not installed."""
    (folder / "lean_dojo").mkdir(parents=True)
    (folder / "lean_dojo" / "__init__.py").write_text('raise ImportError("lean_dojo hidden by the test")\n')
    return str(folder)


@pytest.mark.parametrize("name", ["lean_repl", "leandojo"])
def test_lean_backends_say_what_is_missing(name, monkeypatch, tmp_path):
    monkeypatch.delenv("DMVR_LEAN_PROJECT", raising=False)
    monkeypatch.setattr("lean_env.lean_repl.setup.DEFAULT_LEAN_DIR", tmp_path / "nowhere")
    monkeypatch.setitem(sys.modules, "lean_dojo", None)  # `import lean_dojo` fails, installed or not
    with pytest.raises(BackendUnavailableError, match=re.escape(SETUP_HINTS[name])):
        get_backend(name)


# --- the prop backend, with the stand-in checker ----------------------------------------------


def test_prop_backend_in_process_and_in_workers_agree(standin):
    proofs = ["by exact h", "by simp", "by UNSUPPORTED", "by BOOM", "by exact h -- again"]
    items = items_of(*proofs)
    with get_backend("prop", checker=CHECKER) as backend:
        assert backend.version == "standin-1"
        here = verify_items(items, backend, workers=0)
        there = verify_items(items, backend, workers=2, timeout=20)
    assert [r.verdict for r in here] == ["pass", "fail", "fail", "error", "pass"]
    assert [(r.verdict, r.message) for r in here] == [(r.verdict, r.message) for r in there]
    assert here[1].message == "2:9: type mismatch"
    assert here[2].message.startswith("2:3: unsupported:")
    assert "boom" in here[3].message


def test_prop_backend_times_out_a_hanging_check(standin):
    with get_backend("prop", checker=CHECKER) as backend:
        results = verify_items(items_of("by HANG", "by exact h"), backend, workers=2, timeout=1)
    assert [r.verdict for r in results] == ["timeout", "pass"]


def test_prop_backend_refuses_workers_with_another_checker_version(standin, monkeypatch):
    with get_backend("prop", checker=CHECKER) as backend:
        backend.checker.VERSION  # import it here, then pretend ours is newer than the workers'
        monkeypatch.setattr(backend.checker, "VERSION", "standin-2")
        results = verify_items(items_of("by exact h"), backend, workers=1)
    assert results[0].verdict == "error" and "version" in results[0].message


# --- the CLI -----------------------------------------------------------------------------------


def run_cli(args, env_path=None, register_standin=False):
    """Run `python -m lean_env …` in a subprocess, optionally with the stand-in as backend `standin`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env_path]))}
    if register_standin:
        code = textwrap.dedent(f"""
            import functools, sys
            from lean_env.verifier import register_backend
            from lean_env.prop.backend import PropBackend
            register_backend("standin", functools.partial(PropBackend, checker={CHECKER!r}))
            from lean_env.__main__ import main
            sys.exit(main(sys.argv[1:]))
        """)
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = [sys.executable, "-m", "lean_env", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_cli_end_to_end_with_malformed_lines(tmp_path, standin):
    src, out, cache = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "cache.sqlite"
    good = {"id": "a", "statement": STATEMENT, "proof": "by exact h", "extra": 1}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"id": "b", "statement": STATEMENT}),
        json.dumps({"id": "c", "statement": STATEMENT, "proof": 3}),
        "",
        json.dumps([1, 2]),
        json.dumps({"id": 7, "statement": STATEMENT, "proof": "by simp"}),
        json.dumps({"id": "s", "statement": STATEMENT, "proof": "by sorry"}),
        json.dumps({"id": "d", "statement": STATEMENT, "proof": "by exact h"}),
    ]
    src.write_text("\n".join(lines) + "\n")
    args = ["verify", "--backend", "standin", str(src), str(out), "--workers", "2",
            "--cache", str(cache), "--no-progress"]
    proc = run_cli(args, str(standin), register_standin=True)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", None, "b", "c", None, 7, "s", "d"]
    assert [r["verdict"] for r in rows] == ["pass", "invalid", "invalid", "invalid", "invalid", "fail", "invalid", "pass"]
    assert rows[0]["extra"] == 1 and rows[0]["message"] == "" and rows[0]["seconds"] >= 0
    for lineno, row in [(2, rows[1]), (3, rows[2]), (4, rows[3]), (6, rows[4])]:
        assert f"in.jsonl:{lineno}:" in row["message"]
        assert f"in.jsonl:{lineno}:" in proc.stderr
    assert "missing key 'proof'" in rows[2]["message"] and "must be a string" in rows[3]["message"]
    assert "pass 2, fail 1, invalid 5, timeout 0, error 0" in proc.stderr
    assert "proofs/s" in proc.stderr

    # second run: answers come from the cache, same output
    proc = run_cli(args, str(standin), register_standin=True)
    assert proc.returncode == 0
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["verdict"] for r in again] == [r["verdict"] for r in rows]
    with VerdictCache(cache) as c:
        assert len(c) == 2  # pass (deduplicated) and fail; no error, no invalid


def test_cli_in_process_without_cache(tmp_path, standin):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"id": 1, "statement": STATEMENT, "proof": "by exact h"}) + "\n")
    proc = run_cli(["verify", "--backend", "standin", str(src), str(out), "--workers", "0",
                    "--no-cache", "--no-progress"], str(standin), register_standin=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["verdict"] == "pass"


def test_cli_unknown_backend(tmp_path):
    (tmp_path / "in.jsonl").write_text("")
    proc = run_cli(["verify", "--backend", "nope", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")])
    assert proc.returncode == 2
    assert "unknown backend 'nope'" in proc.stderr and "prop" in proc.stderr


@pytest.mark.parametrize("name", ["lean_repl", "leandojo"])
def test_cli_lean_backends_exit_2_and_write_nothing(tmp_path, name):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "statement": STATEMENT, "proof": "by exact h"}) + "\n")
    proc = run_cli(["verify", "--backend", name, str(src), str(tmp_path / "out.jsonl"), "--no-cache",
                    "--lean-project" if name == "lean_repl" else "-o", str(tmp_path / "no-project")
                    if name == "lean_repl" else "repo=x"], env_path=hide_lean_dojo(tmp_path / "hidden"))
    assert proc.returncode == 2
    assert SETUP_HINTS[name] in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_missing_input(tmp_path, standin):
    proc = run_cli(["verify", "--backend", "standin", str(tmp_path / "none.jsonl"),
                    str(tmp_path / "out.jsonl"), "--no-cache"], str(standin), register_standin=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_cli_with_the_real_prop_checker(tmp_path):
    pytest.importorskip("lean_env.prop.checker")
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [{"id": 1, "statement": "theorem t1 (p q : Prop) : p ∧ q → q ∧ p", "proof": "by\n  intro h\n  exact ⟨h.2, h.1⟩"},
            {"id": 2, "statement": "theorem t2 (p q : Prop) : p ∧ q → q ∧ p", "proof": "by\n  intro h\n  exact h"},
            {"id": 3, "statement": "theorem t3 (p : Prop) : p", "proof": "by sorry"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_cli(["verify", "--backend", "prop", str(src), str(out), "--workers", "1",
                    "--no-cache", "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    verdicts = [json.loads(line)["verdict"] for line in out.read_text().splitlines()]
    assert verdicts == ["pass", "fail", "invalid"]


def test_verdict_names():
    assert VERDICTS == ("pass", "fail", "invalid", "timeout", "error")


# --- issue 18: one bad row never costs the batch -------------------------------------------------

BAD_ROWS = [
    ("lone surrogate in the proof", Item("s1", STATEMENT, "by exact h\ud800"), "surrogate"),
    ("lone surrogate in the statement", Item("s2", STATEMENT + " \udfff", "by exact h"), "surrogate"),
    ("statement not a string", Item("s3", None, "by exact h"), "statement"),
    ("statement a number", Item("s4", 3, "by exact h"), "statement"),
    ("proof not a string", Item("s5", STATEMENT, b"by exact h"), "proof"),
    ("10 MB proof", Item("s6", STATEMENT, "by exact h " + "x" * 10_000_000), "longer than"),
]


@pytest.mark.parametrize("with_cache", [False, True], ids=["no_cache", "cache"])
@pytest.mark.parametrize("guard_on", [True, False], ids=["guard", "no_guard"])
def test_a_bad_row_gets_its_own_invalid_verdict(with_cache, guard_on):
    backend = CountingBackend()
    good = [Item("g1", STATEMENT, "ok 1"), Item("g2", STATEMENT, "fail 2")]
    items = [good[0]] + [item for _, item, _ in BAD_ROWS] + [good[1]]
    cache = VerdictCache(None) if with_cache else None
    results = verify_items(items, backend, cache=cache, guard=guard_on)
    assert [r.id for r in results] == [it.id for it in items]
    assert (results[0].verdict, results[-1].verdict) == ("pass", "fail")
    for (what, item, word), r in zip(BAD_ROWS, results[1:-1]):
        assert r.verdict == "invalid", (what, r)
        assert word in r.message, (what, r.message)
    assert [it.id for it in backend.seen] == ["g1", "g2"]  # nothing bad reached the backend
    if cache is not None:
        assert len(cache) == 2  # the two checked rows; an invalid row has no key to cache under


def test_the_cli_survives_every_kind_of_bad_line(tmp_path, standin):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        json.dumps({"id": "a", "statement": STATEMENT, "proof": "by exact h"}).encode(),
        b'{"id": "s", "statement": "' + STATEMENT.encode() + b'", "proof": "by exact h\\ud800"}',
        b'{"id": "u", "statement": "' + STATEMENT.encode() + b'", "proof": "by exact h\xff\xfe"}',
        json.dumps({"id": "n", "statement": 12, "proof": "by exact h"}).encode(),
        json.dumps({"id": "big", "statement": STATEMENT, "proof": "by exact h " + "y" * 10_000_000}).encode(),
        json.dumps({"id": "b", "statement": STATEMENT, "proof": "by exact h"}).encode(),
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    for cache_args in (["--no-cache"], ["--cache", str(tmp_path / "cache.sqlite")]):
        proc = run_cli(["verify", "--backend", "standin", str(src), str(out), "--workers", "1", "--no-progress",
                        *cache_args], str(standin), register_standin=True)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [r["id"] for r in rows] == ["a", "s", None, "n", "big", "b"]
        assert [r["verdict"] for r in rows] == ["pass", "invalid", "invalid", "invalid", "invalid", "pass"]
        assert "surrogate" in rows[1]["message"] and "not UTF-8" in rows[2]["message"]
        assert "in.jsonl:3:" in rows[2]["message"] and "must be a string" in rows[3]["message"]
        assert "longer than" in rows[4]["message"]
        assert rows[1]["proof"] == "by exact h\ud800"  # written back as it was read
