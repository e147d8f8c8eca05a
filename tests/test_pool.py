"""The worker pool, driven by tests/fakes/fake_worker.py, which hangs, crashes or babbles on command."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lean_env.pool import BlankLineJsonCodec, JsonLinesCodec, WorkerPool, default_pool_size, worker_env

FAKE = str(Path(__file__).parent / "fakes" / "fake_worker.py")


def alive(pid: int) -> bool:
    """Is `pid` a live process? A zombie (dead, not yet reaped by init) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def wait_dead(pids, within: float = 5.0) -> list[int]:
    """The pids still alive after waiting up to `within` seconds for them to go."""
    deadline = time.monotonic() + within
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def fake_pool(tmp_path, *extra, **kw) -> WorkerPool:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(exist_ok=True)
    return WorkerPool([sys.executable, FAKE, "--pid-dir", str(pid_dir), *extra], JsonLinesCodec(), **kw)


def worker_pids(tmp_path) -> list[int]:
    return [int(p.name) for p in (tmp_path / "pids").iterdir()]


def test_batch_with_bad_items_loses_nothing(tmp_path):
    timeout = 1.0
    requests = [{"op": "echo", "i": i} for i in range(1000)]
    bad = {
        100: {"op": "hang"}, 200: {"op": "crash"}, 300: {"op": "garbage"}, 400: {"op": "partial"},
        500: {"op": "alloc", "mb": 2000}, 600: {"op": "spawn", "pidfile": str(tmp_path / "grandchild")},
        700: {"op": "crash", "code": -11}, 800: {"op": "huge", "mb": 3}, 900: {"op": "hang"},
        901: {"op": "crash"}, 902: {"op": "garbage"},
    }
    for i, request in bad.items():
        requests[i] = {**request, "i": i}
    expected = {"hang": "timeout", "partial": "timeout", "spawn": "timeout", "crash": "error",
                "garbage": "error", "alloc": "error", "huge": "error"}

    start = time.monotonic()
    with fake_pool(tmp_path, size=2, memory_mb=500, max_response_bytes=1 << 20) as pool:
        outcomes = pool.run(requests, timeout=timeout)
        grandchild = int((tmp_path / "grandchild").read_text())
    elapsed = time.monotonic() - start

    assert len(outcomes) == len(requests) and all(o is not None for o in outcomes)
    for i, (request, outcome) in enumerate(zip(requests, outcomes)):
        if i in bad:
            assert outcome.status == expected[request["op"]], (request, outcome)
            assert outcome.message
        else:
            assert outcome.status == "ok" and outcome.response["i"] == i, outcome
    assert "crashing as asked" in outcomes[200].message  # the worker's stderr is quoted
    # 4 items time out on 2 workers: at most 4 timeouts back to back, plus start-ups and the rest
    n_timeouts = sum(o.status == "timeout" for o in outcomes)
    assert elapsed < n_timeouts * timeout + 10, elapsed
    assert elapsed >= n_timeouts * timeout / 2
    # nothing survives the pool, not even the grandchild of a killed worker
    assert wait_dead(worker_pids(tmp_path) + [grandchild]) == []


def test_timeout_kills_only_that_item(tmp_path):
    with fake_pool(tmp_path, size=2) as pool:
        start = time.monotonic()
        outcomes = pool.run([{"op": "hang"}, {"op": "sleep", "seconds": 0.1}, {"op": "echo"}], timeout=0.5)
        elapsed = time.monotonic() - start
    assert [o.status for o in outcomes] == ["timeout", "ok", "ok"]
    assert 0.45 < outcomes[0].seconds < 1.5
    assert elapsed < 3


def test_recycling(tmp_path):
    with fake_pool(tmp_path, size=1, max_items_per_worker=10) as pool:
        outcomes = pool.run([{"op": "echo", "i": i} for i in range(35)], timeout=10)
        assert pool.started == 4
    pids = [o.response["pid"] for o in outcomes]
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [10, 10, 10, 5]
    assert wait_dead(worker_pids(tmp_path)) == []


def test_workers_persist_between_runs_and_close_kills_them(tmp_path):
    pool = fake_pool(tmp_path, size=2)
    first = pool.run([{"op": "echo"}] * 4, timeout=10)
    second = pool.run([{"op": "echo"}] * 4, timeout=10)
    assert {o.response["pid"] for o in first} == {o.response["pid"] for o in second}
    assert pool.started == 2
    pids = pool.pids()
    pool.close()
    pool.close()  # twice is fine
    assert wait_dead(pids) == []
    with pytest.raises(RuntimeError):
        pool.run([{"op": "echo"}], timeout=1)


def test_stray_output_replaces_the_worker(tmp_path):
    with fake_pool(tmp_path, size=1) as pool:
        outcomes = pool.run([{"op": "extra"}, {"op": "echo"}], timeout=10)
    assert outcomes[0].status == "ok"
    # The doubled answer must never pass for the answer to the next request: either it arrived
    # while the worker was idle (worker replaced, next item fine) or it was refused by its number.
    second = outcomes[1]
    assert (second.status == "ok" and second.response["op"] == "echo"
            and second.response["pid"] != outcomes[0].response["pid"]) \
        or (second.status == "error" and "not to request" in second.message), second


def test_environment_is_stripped(tmp_path, monkeypatch):
    monkeypatch.setenv("DMVR_TEST_SECRET_TOKEN", "hunter2")
    with fake_pool(tmp_path, size=1) as pool:
        env = pool.run([{"op": "env"}], timeout=10)[0].response["env"]
    assert "DMVR_TEST_SECRET_TOKEN" not in env
    assert env.get("PATH") == os.environ.get("PATH")
    assert "FOO" in worker_env(extra={"FOO": "1"}) and "DMVR_TEST_SECRET_TOKEN" not in worker_env()


def test_startup_handshake(tmp_path):
    codec = JsonLinesCodec(startup=[{"hello": 1}, {"hello": 2}])
    with WorkerPool([sys.executable, FAKE], codec, size=2) as pool:
        outcomes = pool.run([{"op": "echo", "i": i} for i in range(6)], timeout=10)
        assert all(len(w.startup_responses) == 2 for w in pool.workers)
    assert [o.response["i"] for o in outcomes] == list(range(6))


def test_workers_that_cannot_start_fail_every_item_quickly(tmp_path):
    codec = JsonLinesCodec(startup=[{"hello": 1}])
    start = time.monotonic()
    with WorkerPool([sys.executable, FAKE, "--die-on-start"], codec, size=2) as pool:
        outcomes = pool.run([{"op": "echo"}] * 50, timeout=10)
        assert pool.started <= 4
    assert {o.status for o in outcomes} == {"error"}
    assert "refusing to start" in outcomes[0].message
    assert time.monotonic() - start < 5


def test_slow_start_times_out(tmp_path):
    codec = JsonLinesCodec(startup=[{"hello": 1}])
    with WorkerPool([sys.executable, FAKE, "--start-delay", "30"], codec, size=1,
                    startup_timeout=0.5, max_start_failures=2) as pool:
        outcomes = pool.run([{"op": "echo"}], timeout=10)
    assert outcomes[0].status == "error" and "did not start" in outcomes[0].message


def test_missing_executable():
    with WorkerPool(["/nonexistent/worker"], size=2) as pool:
        outcomes = pool.run([{"op": "echo"}] * 3, timeout=1)
    assert {o.status for o in outcomes} == {"error"}
    assert "cannot start" in outcomes[0].message


def test_workers_die_with_their_parent(tmp_path):
    """A parent killed with SIGKILL runs no atexit; PR_SET_PDEATHSIG still takes the workers down."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from lean_env.pool import WorkerPool
        pool = WorkerPool([sys.executable, {FAKE!r}], size=2)
        pool.run([{{"op": "echo"}}] * 2, timeout=10)
        print(*pool.pids(), flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_dead(pids) == []


def test_blank_line_codec_frames():
    codec = BlankLineJsonCodec()
    assert codec.encode({"cmd": "x"}, 7) == b'{"cmd": "x"}\n\n'
    frame, rest = codec.split(b'{"env":\n 0}\n\n{"en')
    assert codec.decode(frame, 7) == {"env": 0} and rest == b'{"en'
    assert codec.split(b'\n{"env": 1}')[0] is None
    frame, rest = codec.split(b'\n{"env": 1}\n\n')
    assert codec.decode(frame, 8) == {"env": 1} and rest == b""


def test_json_lines_codec_numbers_requests():
    codec = JsonLinesCodec()
    assert codec.encode({"x": 1}, 5) == b'{"x": 1, "seq": 5}\n'
    assert codec.decode(b'{"y": 2, "seq": 5}', 5) == {"y": 2}
    for bad in (b'{"y": 2, "seq": 4}', b'{"y": 2}', b"[1]", b"nope", b"\xff"):
        with pytest.raises(ValueError):
            codec.decode(bad, 5)


def test_default_size():
    assert default_pool_size() >= 1


def test_throughput_trivial_worker(tmp_path):
    """Pool overhead per item with a worker that does nothing: should be far below a check's cost."""
    with fake_pool(tmp_path, size=2) as pool:
        pool.run([{"op": "echo"}] * 10, timeout=10)  # start-up not counted
        start = time.monotonic()
        pool.run([{"op": "echo"}] * 2000, timeout=10)
        rate = 2000 / (time.monotonic() - start)
    print(f"pool throughput with a trivial worker, 2 workers: {rate:.0f} items/s")
    assert rate > 500
