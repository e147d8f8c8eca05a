"""LeanReplBackend end to end against the fake REPL (tests/fakes/fake_repl.py): verdicts, timeouts,
restarts, recycling, process-group cleanup, a 1,000-item batch with misbehaving items.

No Lean here: the fake speaks the REPL's protocol; the classifier's fidelity to the real REPL's
replies is tested on fixtures in tests/test_lean_repl_classify.py. The test at the end runs real
Lean when a project is configured, and skips with the reason otherwise.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lean_env.lean_repl.backend import LeanReplBackend
from lean_env.lean_repl.setup import LeanSetupError, find_lake
from lean_env.verifier import Item, get_backend, verify_items
from tests.test_pool import alive, wait_dead

FAKE = str(Path(__file__).parent / "fakes" / "fake_repl.py")
FAKE_LAKE = str(Path(__file__).parent / "fakes" / "fake_lake.py")
STATEMENT = "theorem t (p : Prop) (h : p) : p"


def fake_backend(tmp_path, *extra, **kw) -> LeanReplBackend:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(exist_ok=True)
    kw.setdefault("startup_timeout", 10.0)
    return LeanReplBackend(command=[sys.executable, FAKE, "--pid-dir", str(pid_dir), *extra], **kw)


def worker_pids(tmp_path) -> list[int]:
    return [int(p.name) for p in (tmp_path / "pids").iterdir() if p.name.isdigit()]


def all_pids(tmp_path) -> list[int]:
    return [int(p.name.split("-")[-1]) for p in (tmp_path / "pids").iterdir()]


def items(*proofs):
    return [Item(i, STATEMENT, proof) for i, proof in enumerate(proofs)]


def test_verdicts_from_the_fake(tmp_path):
    with fake_backend(tmp_path) as backend:
        results = backend.verify(items("by exact h", "by fake_error", "by sorry", "by fake_heartbeat",
                                       "by fake_axiom", "by fake_unknown_env"), timeout=5, workers=2)
    got = [(r.verdict, r.message) for r in results]
    assert got[0] == ("pass", "")
    assert got[1] == ("fail", "1:3: unknown identifier 'fake_error'")
    assert got[2][0] == "fail" and "sorry" in got[2][1]
    assert got[3][0] == "timeout" and got[3][1].startswith("1:3: (deterministic) timeout")
    assert got[4] == ("fail", "depends on axioms outside the allow-list: fake.axiom")
    assert got[5] == ("error", "REPL refused the command: Unknown environment.")
    assert wait_dead(worker_pids(tmp_path)) == []


def test_old_sorry_spelling_and_multiline_positions(tmp_path):
    with fake_backend(tmp_path, "--old-sorry") as backend:
        r = backend.verify(items("by\n  intro x\n  (sorry)", "by\n  exact\n    fake_error"), timeout=5, workers=1)
    assert r[0].verdict == "fail" and r[0].message == "3:3: proof contains `sorry`"
    assert (r[1].verdict, r[1].message) == ("fail", "3:4: unknown identifier 'fake_error'")


def test_hang_crash_garbage_flood_each_lose_only_their_item(tmp_path):
    bad = ["by fake_hang", "by fake_crash", "by fake_garbage", "by fake_flood"]
    with fake_backend(tmp_path, max_response_bytes=1 << 20) as backend:
        results = backend.verify(items(*bad, "by exact h"), timeout=1.0, workers=2)
    assert [r.verdict for r in results] == ["timeout", "error", "error", "error", "pass"]
    assert "no answer within 1 s" in results[0].message
    assert "worker died" in results[1].message and "crashing as asked" in results[1].message
    assert "unparseable response" in results[2].message
    assert "response longer than" in results[3].message
    assert wait_dead(worker_pids(tmp_path)) == []


def test_unknown_environment_replaces_the_worker(tmp_path):
    with fake_backend(tmp_path) as backend:
        results = backend.verify(items("by fake_unknown_env", "by exact h", "by exact h"), timeout=5, workers=1)
        assert [r.verdict for r in results] == ["error", "pass", "pass"]
        assert backend.pool().started == 2  # the worker that lost its environment was replaced


def test_recycling_after_max_items(tmp_path):
    with fake_backend(tmp_path, max_items_per_worker=3) as backend:
        results = backend.verify(items(*["by exact h"] * 10), timeout=5, workers=1)
        assert [r.verdict for r in results] == ["pass"] * 10
        assert backend.pool().started == 4  # 3 + 3 + 3 + 1
    assert wait_dead(worker_pids(tmp_path)) == []


def test_memory_limit_turns_a_runaway_proof_into_an_error(tmp_path):
    with fake_backend(tmp_path, memory_limit_mb=400) as backend:
        results = backend.verify(items("by fake_alloc", "by exact h"), timeout=10, workers=1)
    assert [r.verdict for r in results] == ["error", "pass"]
    assert "MemoryError" in results[0].message


def test_grandchildren_are_killed_with_the_worker(tmp_path):
    with fake_backend(tmp_path) as backend:
        results = backend.verify(items("by fake_spawn"), timeout=1.0, workers=1)
    assert results[0].verdict == "timeout"
    pids = all_pids(tmp_path)
    assert len(pids) == 2  # the worker and its grandchild
    assert wait_dead(pids) == []


def test_header_error_fails_every_item_with_the_reason(tmp_path):
    with fake_backend(tmp_path, header="import Missing") as backend:
        start = time.monotonic()
        results = backend.verify(items("by exact h", "by exact h"), timeout=5, workers=2)
    assert {r.verdict for r in results} == {"error"}
    assert "the header failed in Lean: unknown module prefix 'Missing'" in results[0].message
    assert time.monotonic() - start < 10


def test_workers_stay_warm_between_calls(tmp_path):
    with fake_backend(tmp_path) as backend:
        backend.verify(items("by exact h"), timeout=5, workers=1)
        backend.verify(items("by exact h"), timeout=5, workers=1)
        assert backend.pool().started == 1


def test_batch_of_1000_with_misbehaviour_loses_no_verdict(tmp_path):
    """Hangs, crashes, garbage and floods in the middle of 1,000 items: every item gets a verdict,
    no process is left, and the run takes about what the timeouts explain."""
    timeout, workers = 0.5, 2
    proofs = []
    for i in range(1000):
        if i % 100 == 50:
            proofs.append("by fake_hang")
        elif i % 100 == 60:
            proofs.append("by fake_crash")
        elif i % 100 == 70:
            proofs.append("by fake_garbage")
        elif i % 250 == 80:
            proofs.append("by fake_flood")
        elif i % 10 == 3:
            proofs.append("by fake_error")
        else:
            proofs.append("by exact h")
    start = time.monotonic()
    with fake_backend(tmp_path, max_items_per_worker=100, max_response_bytes=1 << 20) as backend:
        results = backend.verify(items(*proofs), timeout=timeout, workers=workers)
    elapsed = time.monotonic() - start
    assert [r.id for r in results] == list(range(1000))
    expected = {"fake_hang": "timeout", "fake_crash": "error", "fake_garbage": "error", "fake_flood": "error",
                "fake_error": "fail", "exact h": "pass"}
    for proof, r in zip(proofs, results):
        assert r.verdict == expected[proof.removeprefix("by ")], (proof, r)
    # 10 hangs cost one timeout each, spread over `workers`; everything else is quick. The bound
    # leaves room for ~30 worker start-ups of a Python fake on a loaded 2-core machine.
    hangs = sum(p == "by fake_hang" for p in proofs)
    assert elapsed < hangs * timeout / workers + 15, elapsed
    assert wait_dead(worker_pids(tmp_path)) == []


def test_verify_items_runs_the_guard_first(tmp_path):
    with fake_backend(tmp_path) as backend:
        results = verify_items(items("by exact h", "by sorry", "by native_decide"), backend, timeout=5, workers=1)
    assert [r.verdict for r in results] == ["pass", "invalid", "invalid"]


def test_version_changes_with_header_and_axioms(tmp_path):
    a = fake_backend(tmp_path)
    b = fake_backend(tmp_path, header="import Foo")
    c = fake_backend(tmp_path, allowed_axioms=["propext"])
    assert len({a.version, b.version, c.version}) == 3


def test_default_pool_size_is_capped_by_memory(tmp_path, monkeypatch):
    import lean_env.lean_repl.backend as module

    monkeypatch.setattr(module, "available_memory_mb", lambda: 10_000)
    monkeypatch.setattr(module, "default_pool_size", lambda: 15)
    assert fake_backend(tmp_path, worker_memory_mb=4000).default_workers() == 2
    assert fake_backend(tmp_path, worker_memory_mb=100).default_workers() == 15
    monkeypatch.setattr(module, "available_memory_mb", lambda: 1000)
    assert fake_backend(tmp_path, worker_memory_mb=4000).default_workers() == 1


# --- the default set-up: the REPL binary in the environment `lake env` prints -------------------


def fake_lean_project(tmp_path, monkeypatch, mode: str = "") -> Path:
    """A Lean project folder, the fake lake on PATH, and `tmp_path/repl`: a "REPL binary" that
    execs the fake REPL (same pid) with a pid dir, as `repl=` for the backend."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "lakefile.toml").write_text('name = "p"\n')
    (project / "lean-toolchain").write_text("leanprover/lean4:v4.19.0\n")
    if mode:
        (project / "fake-lake-mode").write_text(mode)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lake").write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_LAKE} "$@"\n')
    (bin_dir / "lake").chmod(0o755)
    (tmp_path / "pids").mkdir()
    (tmp_path / "repl").write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} --pid-dir {tmp_path / "pids"}\n')
    (tmp_path / "repl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return project


def proc_environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = [e.decode().partition("=") for e in f.read().split(b"\0") if e]
    return {k: v for k, _, v in entries}


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")


@linux_only
def test_lake_env_is_asked_once_and_each_worker_is_the_repl_itself(tmp_path, monkeypatch):
    project = fake_lean_project(tmp_path, monkeypatch)
    monkeypatch.setenv("DMVR_TEST_SECRET", "hunter2")
    with LeanReplBackend(project=str(project), repl=str(tmp_path / "repl"), startup_timeout=10.0) as backend:
        assert backend.worker.argv == [str((tmp_path / "repl").resolve())]  # no `lake env` in front
        results = backend.verify(items("by exact h", "by fake_error", "by exact h"), timeout=5, workers=2)
        assert [r.verdict for r in results] == ["pass", "fail", "pass"]
        pids = backend.pool(2).pids()
        # The pool's workers are the REPL processes (what the parent-death signal reaches), not lakes.
        assert sorted(pids) == sorted(worker_pids(tmp_path)) and len(pids) == 2
        for pid in pids:
            env = proc_environ(pid)
            assert env["FAKE_LAKE"] == "1"
            assert env["LEAN_PATH"].endswith(f"{project}/.lake/build/lib")
            assert env["LEAN_SRC_PATH"] == f"{project}/.lake/packages/mathlib:{project}"
            assert env["PATH"].startswith(f"{project}/fake-toolchain/bin{os.pathsep}{tmp_path / 'bin'}")
            assert "DMVR_TEST_SECRET" not in env  # lake was run with the stripped environment
    assert (project / "fake-lake.log").read_text() == "env env -0\n"  # once, for all workers
    assert wait_dead(pids) == []


@linux_only
def test_no_repl_survives_a_parent_killed_with_sigkill(tmp_path, monkeypatch):
    """The parent dies (SIGKILL: no atexit, no close) while every REPL is busy with a command. Under
    `lake env` only lake would get the parent-death signal, and the busy REPLs would run on until
    they next read their input; started directly, they die with the parent."""
    project = fake_lean_project(tmp_path, monkeypatch)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from lean_env.lean_repl.backend import LeanReplBackend
        from lean_env.verifier import Item
        backend = LeanReplBackend(project={str(project)!r}, repl={str(tmp_path / "repl")!r}, startup_timeout=10.0)
        results = backend.verify([Item(i, {STATEMENT!r}, "by exact h") for i in range(2)], timeout=10, workers=2)
        assert [r.verdict for r in results] == ["pass", "pass"], results
        print(*backend.pool(2).pids(), flush=True)
        backend.verify([Item(i, {STATEMENT!r}, "by fake_hang") for i in range(2)], timeout=600, workers=2)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        time.sleep(0.5)  # the hanging commands reach the REPLs
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert sorted(worker_pids(tmp_path)) == sorted(pids)  # every REPL started was a pool worker
    assert wait_dead(pids) == []


def test_old_lake_env_wrapper_still_works(tmp_path, monkeypatch):
    project = fake_lean_project(tmp_path, monkeypatch)
    with LeanReplBackend(project=str(project), repl=str(tmp_path / "repl"), startup_timeout=10.0,
                         lake_env_wrapper=True) as backend:
        assert backend.worker.argv[1:] == ["env", str((tmp_path / "repl").resolve())]
        assert backend.worker.env is None
        assert not (project / "fake-lake.log").exists()  # nothing asked at start-up
        results = backend.verify(items("by exact h", "by fake_error"), timeout=5, workers=1)
    assert [r.verdict for r in results] == ["pass", "fail"]
    assert wait_dead(worker_pids(tmp_path)) == []


@pytest.mark.parametrize("mode, message", [
    ("fail", r"lake env env -0` in .* failed with exit status 1: error: lakefile.toml: unknown package 'mathlib'; "
             r"check that the project is set up .*lake_env_wrapper=true"),
    ("garbage", r"did not print an environment .*'info: downloading toolchain\\nthis is not"),
    ("empty", r"printed no environment; .*lake_env_wrapper"),
    ("no-lean-path", r"printed no LEAN_PATH"),
])
def test_lake_env_without_an_environment_is_a_clear_setup_error(tmp_path, monkeypatch, mode, message):
    project = fake_lean_project(tmp_path, monkeypatch, mode)
    with pytest.raises(LeanSetupError, match=message):
        LeanReplBackend(project=str(project), repl=str(tmp_path / "repl"))


# --- set-up errors ---------------------------------------------------------------------------


def test_missing_project_is_a_clear_setup_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DMVR_LEAN_PROJECT", raising=False)
    monkeypatch.setattr("lean_env.lean_repl.setup.DEFAULT_LEAN_DIR", tmp_path / "nowhere")
    with pytest.raises(LeanSetupError, match="needs a Lean project.*--lean-project.*verifier.lean_repl.project"):
        get_backend("lean_repl")
    with pytest.raises(LeanSetupError, match="does not exist.*make lean-setup"):
        get_backend("lean_repl", project=str(tmp_path / "missing"))
    (tmp_path / "notlean").mkdir()
    with pytest.raises(LeanSetupError, match="no lakefile"):
        get_backend("lean_repl", project=str(tmp_path / "notlean"))


def test_missing_lake_or_repl_is_a_clear_setup_error(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "lakefile.toml").write_text('name = "p"\n')
    (project / "lean-toolchain").write_text("leanprover/lean4:v4.19.0\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("ELAN_HOME", str(tmp_path / "no-elan"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(LeanSetupError, match="needs `lake`.*elan"):
        get_backend("lean_repl", project=str(project))
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    (bin_dir / "lake").write_text("#!/bin/sh\n")
    (bin_dir / "lake").chmod(0o755)
    with pytest.raises(LeanSetupError, match="REPL binary .* does not exist.*--lean-repl"):
        get_backend("lean_repl", project=str(project))


def test_missing_command_is_a_clear_setup_error():
    with pytest.raises(LeanSetupError, match="not an executable"):
        LeanReplBackend(command=["/no/such/repl"])


# --- real Lean, where there is one ----------------------------------------------------------

REAL_PROJECT = os.environ.get("DMVR_LEAN_PROJECT")


@pytest.mark.lean
@pytest.mark.skipif(not REAL_PROJECT or find_lake() is None,
                    reason="needs a Lean project with a built REPL ($DMVR_LEAN_PROJECT, see `make lean-setup`) "
                           "and `lake`; none on this machine")
def test_real_lean_repl():
    with LeanReplBackend(project=REAL_PROJECT, header="") as backend:
        results = backend.verify(items("by exact h", "by exact hx", "by sorry"), timeout=120, workers=1)
    assert [r.verdict for r in results] == ["pass", "fail", "fail"]
    assert results[1].message.startswith("1:9:")


# --- the command line ------------------------------------------------------------------------


def test_cli_verify_with_the_fake_repl(tmp_path):
    import json
    import subprocess

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [{"id": 1, "statement": STATEMENT, "proof": "by exact h"},
            {"id": 2, "statement": STATEMENT, "proof": "by fake_error"},
            {"id": 3, "statement": STATEMENT, "proof": "by sorry"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    command = json.dumps([sys.executable, FAKE])
    proc = subprocess.run([sys.executable, "-m", "lean_env", "verify", "--backend", "lean_repl", str(src), str(out),
                           "--no-cache", "--no-progress", "--workers", "1", "--timeout", "5",
                           "-o", f"command={command}", "--lean-header", "import Core"],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=60)
    assert proc.returncode == 0, proc.stderr
    verdicts = [json.loads(line)["verdict"] for line in out.read_text().splitlines()]
    assert verdicts == ["pass", "fail", "invalid"]  # the guard refuses `sorry` before the REPL sees it
    assert "lean_repl" in proc.stderr and "pass 1, fail 1, invalid 1" in proc.stderr


def test_cli_bad_option_syntax(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "lean_env", "verify", "--backend", "lean_repl", "in", "out",
                           "-o", "novalue"], capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=60)
    assert proc.returncode == 2 and "expected KEY=VALUE" in proc.stderr and "Traceback" not in proc.stderr


# --- issue 18: what goes to the REPL ----------------------------------------------------------------

OUTSIDE_BMP = "theorem t (𝕜 : Prop) (h𝓝 : 𝕜) : 𝕜"  # U+1D55C, U+1D4DD: Mathlib-style letters


def test_requests_go_to_the_repl_as_utf8_and_round_trip():
    """Lean's JSON parser joins escaped surrogate pairs only from v4.20 (lean4 PR #8080); the pinned
    v4.19 read `\\ud835\\udd5c` as two NULs. Raw UTF-8 is read right by every version."""
    import json

    from lean_env.lean_repl.backend import ReplCodec
    from lean_env.lean_repl.classify import build_command

    codec = ReplCodec("import Mathlib")
    codec.env = 0
    request = {"cmd": build_command(OUTSIDE_BMP, "by exact h𝓝").text}
    wire = codec.encode(request, 1)
    assert "𝕜".encode("utf-8") in wire and "𝓝".encode("utf-8") in wire
    assert b"\\ud8" not in wire.lower() and b"\\udd" not in wire.lower()
    assert wire.endswith(b"\n\n") and b"\n\n" not in wire[:-2]  # the frame stays one request
    assert json.loads(wire.decode("utf-8")) == {**request, "env": 0}
    # control characters and quotes stay escaped, so the request is still one JSON line
    tricky = {"cmd": 'a\n\tb "c" \\ \u2028 \x00'}
    assert json.loads(codec.encode(tricky, 2).decode("utf-8")) == {**tricky, "env": 0}


def test_characters_outside_the_bmp_reach_a_lean_4_19_repl_intact(tmp_path):
    with fake_backend(tmp_path, "--lean-4-19-json") as backend:
        results = backend.verify([Item(0, OUTSIDE_BMP, "by exact h𝓝")], timeout=5, workers=1)
    assert (results[0].verdict, results[0].message) == ("pass", "")


def test_a_text_that_cannot_go_out_as_utf8_does_not_stop_the_batch(tmp_path):
    with fake_backend(tmp_path) as backend:
        results = backend.verify([Item(0, STATEMENT, "by exact h\ud800"), Item(1, STATEMENT, "by exact h")],
                                 timeout=5, workers=1)
    assert [r.verdict for r in results] == ["invalid", "pass"] and "surrogate" in results[0].message


@pytest.mark.parametrize("header,reason", [
    ("theorem cheat : False := sorry", "sorry"),
    ("axiom x : True\ntheorem cheat : False := by sorry", "sorry"),
    ("-- fake_header_severity", "something went wrong"),
])
def test_a_header_whose_reply_carries_sorry_or_an_unknown_severity_is_refused(tmp_path, header, reason):
    """A header proved with `sorry` (only a warning in Lean) would let every proof rest on it: the
    worker does not start, and every item says why."""
    with fake_backend(tmp_path, header=header) as backend:
        results = backend.verify(items("by exact h", "by exact h"), timeout=5, workers=2)
    assert {r.verdict for r in results} == {"error"}, results
    assert "header" in results[0].message and reason in results[0].message, results[0].message
