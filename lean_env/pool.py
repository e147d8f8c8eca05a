"""A pool of worker subprocesses that answer one request at a time, with a wall-clock timeout each.

Every backend that checks in parallel uses this: the `prop` backend runs
`python -m lean_env.prop.worker`, later backends will run a Lean REPL. Why subprocesses and not
threads or `multiprocessing`: a checker can hang or blow up its memory, and the only reliable
cure is to kill the process (and its children) and start a new one. So:

* each worker is started with `start_new_session=True`, making it the leader of its own process
  group, and is always killed with `os.killpg(SIGKILL)`, children included;
* a worker that misses its deadline, dies, or prints something the codec cannot parse is killed
  and replaced; its item gets `timeout` or `error`, all other items go on;
* a worker is retired after `max_items_per_worker` items, which bounds slow leaks (Lean's
  environment in a REPL grows with every command);
* no worker outlives the pool: `close()` (also run by `with` and `atexit`) kills them all, and on
  Linux each worker asks the kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), which
  covers a parent killed by SIGKILL or the OOM killer where `atexit` never runs;
* workers get a stripped environment (no API keys or tokens), see `DEFAULT_ENV_KEEP`, and
  optionally an address-space limit (`memory_mb`), so a runaway check fails alone instead of
  waking the OOM killer.

The wire protocol is a `Codec`: how a request is framed, how a response is cut out of the
bytes read so far, and what to send right after start-up (a Lean REPL's `import Mathlib`
header). `JsonLinesCodec` is one JSON object per line, numbered (`"seq"`) so that a worker that
answers twice cannot have its extra answer taken for the next item's; `BlankLineJsonCodec` is the
Lean REPL's "JSON then a blank line".

The pool keeps one request in flight per worker and waits on all of them with one `select`
loop in the calling thread, so there are no threads to reason about.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import resource
import selectors
import signal
import subprocess
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

# Variables a worker may see. Everything else (tokens, keys, cloud credentials) stays with us.
DEFAULT_ENV_KEEP = (
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ",
    "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV",
    "ELAN_HOME", "LEAN_PATH", "LEAN_SRC_PATH",
)

_STARTUP = -1  # `_Worker.task` while a start-up request is in flight
_READ_SIZE = 1 << 16


def default_pool_size() -> int:
    """CPUs this process may use, minus one for the parent; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))  # honours taskset and container CPU sets
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def worker_env(keep: Sequence[str] = DEFAULT_ENV_KEEP, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker: the `keep` variables of ours, plus `extra`."""
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(extra or {})
    return env


# --- codecs ----------------------------------------------------------------------------------


class Codec:
    """How to talk to one kind of worker. Subclass and override what differs."""

    def startup_requests(self) -> list[Any]:
        """Requests sent (one at a time) as soon as a worker starts, before any item."""
        return []

    def encode(self, request: Any, seq: int) -> bytes:
        """The bytes to send. `seq` numbers the requests a pool sends; a protocol that can carry
        it should, so that `decode` can tell a late or doubled answer from the awaited one."""
        raise NotImplementedError

    def split(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        """(one complete response frame, the bytes after it), or (None, buffer) if incomplete."""
        raise NotImplementedError

    def decode(self, frame: bytes, seq: int) -> Any:
        """The response in `frame` to request `seq`; raises ValueError if it is not that."""
        raise NotImplementedError

    def check_startup(self, response: Any) -> None:
        """Raise ValueError if a start-up answer shows the worker is unusable (wrong version, …)."""

    def retire_after(self, response: Any) -> bool:
        """True if the worker that gave this (decoded) answer must be replaced after it: its
        answer is still returned, but its state can no longer be trusted (a Lean REPL that
        forgot its environment, say)."""
        return False


class JsonCodec(Codec):
    """JSON objects, each followed by `separator`.

    With `seq_key`, each request object gets `{seq_key: seq}` and the worker must echo it in its
    answer; an answer with another number (a worker that answered twice) is refused instead of
    being taken for the answer to the next request.
    """

    def __init__(self, separator: bytes = b"\n", startup: Sequence[Any] = (), seq_key: str | None = None,
                 ascii_only: bool = True):
        self.separator = separator
        self.startup = list(startup)
        self.seq_key = seq_key
        self.ascii_only = ascii_only

    def startup_requests(self) -> list[Any]:
        return list(self.startup)

    def encode(self, request: Any, seq: int) -> bytes:
        if self.seq_key is not None:
            request = {**request, self.seq_key: seq}
        if self.ascii_only:
            # the bytes on the wire are ASCII whatever the workers' locale is (our own workers)
            return json.dumps(request, ensure_ascii=True).encode("ascii") + self.separator
        # UTF-8 for a reader that decodes UTF-8 but not every `\\u` escape (see BlankLineJsonCodec).
        # Control characters, quotes and backslashes are still escaped, so a request stays one frame.
        return json.dumps(request, ensure_ascii=False).encode("utf-8") + self.separator

    def split(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        end = buffer.find(self.separator)
        if end < 0:
            return None, buffer
        return buffer[:end], buffer[end + len(self.separator):]

    def decode(self, frame: bytes, seq: int) -> Any:
        response = json.loads(frame.decode("utf-8"))  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if not isinstance(response, dict):
            raise ValueError("response is not a JSON object")
        if self.seq_key is not None and response.pop(self.seq_key, None) != seq:
            raise ValueError(f"answer is not to request {self.seq_key}={seq}")
        return response


class JsonLinesCodec(JsonCodec):
    """One JSON object per line, numbered in the field "seq" (the prop worker)."""

    def __init__(self, startup: Sequence[Any] = (), seq_key: str | None = "seq"):
        super().__init__(b"\n", startup, seq_key)


class BlankLineJsonCodec(JsonCodec):
    """JSON followed by a blank line, both ways (the Lean REPL; its answers span several lines).

    Requests go out as UTF-8, not `\\u` escapes: Lean's JSON parser reads UTF-8 in every version,
    but joins an escaped surrogate pair (a character outside the BMP: 𝕜, 𝓝, 𝔼, 𝟙, common in Mathlib
    statements) only from Lean v4.20 (lean4 PR #8080); v4.19, which scripts/setup_lean_repl.sh pins,
    read one as two NUL characters (lean4 issue #5445), so correct proofs came back `fail`."""

    def __init__(self, startup: Sequence[Any] = ()):
        super().__init__(b"\n\n", startup, ascii_only=False)  # the REPL has no field to echo a number in

    def split(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        # The REPL may end a previous answer with extra newlines; they belong to no frame.
        return super().split(buffer.lstrip(b"\n"))


# --- the pool --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one request."""

    status: str  # "ok" (response holds the worker's answer), "timeout" or "error"
    response: Any = None
    message: str = ""
    seconds: float = 0.0


@dataclass(eq=False)  # compared by identity
class _Worker:
    proc: subprocess.Popen
    stderr: Any  # temporary file holding the worker's stderr, quoted when it dies
    startup: deque  # start-up requests still to send
    task: int | None = None  # index of the request in flight, _STARTUP, or None when idle
    seq: int = 0  # the pool-wide number of the request in flight
    sent_at: float = 0.0
    deadline: float = 0.0
    served: int = 0
    inbox: bytes = b""
    outbox: bytes = b""
    startup_responses: list = field(default_factory=list)


_LIVE_POOLS: weakref.WeakSet = weakref.WeakSet()


class WorkerPool:
    """Run requests on a pool of worker processes; see the module docstring.

    with WorkerPool([sys.executable, "-m", "my.worker"], JsonLinesCodec(), size=4) as pool:
        outcomes = pool.run([{"x": 1}, {"x": 2}], timeout=10)

    Workers start lazily and stay up between `run` calls (a Lean REPL is slow to start).
    Create and use a pool from one long-lived thread: Linux's parent-death signal fires when the
    *thread* that started a worker exits.
    """

    def __init__(self, argv: Sequence[str], codec: Codec | None = None, *, size: int | None = None,
                 max_items_per_worker: int | None = 1000, startup_timeout: float = 60.0,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 memory_mb: int | None = None, max_response_bytes: int = 64 << 20,
                 max_start_failures: int = 3, desc: str = "verifying"):
        self.argv = list(argv)
        self.codec = codec or JsonLinesCodec()
        self.size = size if size is not None else default_pool_size()
        if self.size < 1:
            raise ValueError("a pool needs at least one worker")
        self.max_items_per_worker = max_items_per_worker
        self.startup_timeout = startup_timeout
        self.env = worker_env() if env is None else dict(env)
        self.cwd = cwd
        self.memory_mb = memory_mb
        self.max_response_bytes = max_response_bytes
        self.max_start_failures = max_start_failures
        self.desc = desc
        self.workers: list[_Worker] = []
        self.started = 0  # workers started over the pool's life (tests and stats read it)
        self._selector = selectors.DefaultSelector()
        self._start_failures = 0  # in a row; reset by a worker that finishes its start-up
        self._start_error = ""
        self._seq = 0
        self._closed = False
        self._results: list[Outcome | None] = []
        self._bar: tqdm | None = None
        _LIVE_POOLS.add(self)

    # -- public ----------------------------------------------------------------------------

    def run(self, requests: Sequence[Any], *, timeout: float, progress: bool = False) -> list[Outcome]:
        """One Outcome per request, in order. Never raises because of a worker."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        self._results = [None] * len(requests)
        self._start_failures = 0  # a new batch gives a broken set-up another few tries
        todo = deque(range(len(requests)))
        self._bar = tqdm(total=len(requests), desc=self.desc, unit="item", disable=not progress,
                         dynamic_ncols=True)
        try:
            while todo or self._busy():
                self._fill(todo, requests, timeout)
                if not self.workers:  # none running and none can be started
                    self._give_up(todo)
                    break
                self._wait()
        except BaseException:
            # Interrupted (Ctrl-C, say): busy workers would answer into the next run. Drop them.
            for w in [w for w in self.workers if w.task is not None]:
                self._retire(w)
            raise
        finally:
            self._bar.close()
            self._bar = None
        results, self._results = self._results, []
        return results

    def close(self) -> None:
        """Kill every worker (and its children). Safe to call twice."""
        for w in list(self.workers):
            self._retire(w)
        if not self._closed:
            self._selector.close()
        self._closed = True

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    # -- handing out work ------------------------------------------------------------------

    def _busy(self) -> bool:
        return any(w.task is not None for w in self.workers)

    def _fill(self, todo: deque, requests: Sequence[Any], timeout: float) -> None:
        """Start workers up to what the remaining work needs, and give each idle one an item."""
        wanted = min(self.size, len(todo) + sum(w.task is not None for w in self.workers))
        while len(self.workers) < wanted and self._start_failures < self.max_start_failures:
            self._spawn()
        for w in list(self.workers):  # a copy: a failed send retires the worker
            if todo and w.task is None:
                index = todo.popleft()
                self._send(w, index, requests[index], timeout)

    def _give_up(self, todo: deque) -> None:
        """Workers keep failing to start: answer every remaining item with an error."""
        message = f"no worker could be started: {self._start_error}"
        while todo:
            self._finish(todo.popleft(), Outcome("error", message=message))

    def _send(self, w: _Worker, task: int, request: Any, timeout: float) -> None:
        w.task, w.sent_at = task, time.monotonic()
        w.deadline = w.sent_at + timeout
        self._seq += 1
        w.seq = self._seq
        w.outbox += self.codec.encode(request, w.seq)
        self._flush(w)

    # -- starting and stopping workers ------------------------------------------------------

    def _spawn(self) -> None:
        stderr = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                env=self.env, cwd=self.cwd, bufsize=0, close_fds=True,
                start_new_session=True, preexec_fn=_child_setup(os.getpid(), self.memory_mb))
        except OSError as e:  # e.g. the executable does not exist: retrying will not help
            stderr.close()
            self._start_failures = self.max_start_failures
            self._start_error = f"cannot start {self.argv[0]!r}: {e}"
            return
        self.started += 1
        os.set_blocking(proc.stdin.fileno(), False)  # a stuck worker must not block our writes
        w = _Worker(proc, stderr, deque(self.codec.startup_requests()))
        self.workers.append(w)
        self._selector.register(proc.stdout, selectors.EVENT_READ, w)
        self._next_startup(w)

    def _next_startup(self, w: _Worker) -> None:
        """Send the next start-up request, or mark the worker ready."""
        if w.startup:
            self._send(w, _STARTUP, w.startup.popleft(), self.startup_timeout)
        else:
            w.task = None
            self._start_failures = 0

    def _retire(self, w: _Worker) -> int | None:
        """Kill the worker's whole process group and reap it; returns its exit status."""
        if w not in self.workers:
            return w.proc.returncode
        self.workers.remove(w)
        for pipe in (w.proc.stdout, w.proc.stdin):
            try:
                self._selector.unregister(pipe)
            except (KeyError, ValueError):
                pass
        try:
            # Killing the group before reaping the leader: once reaped, its pid (= the group id)
            # could be reused by an unrelated process.
            os.killpg(w.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            w.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # stuck in the kernel (D state); nothing more we can do
            pass
        for pipe in (w.proc.stdin, w.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        w.stderr.close()
        return w.proc.returncode

    def _fail(self, w: _Worker, status: str, message: str) -> None:
        """The worker misbehaved: its request gets `status`, the worker is replaced."""
        tail = _tail(w.stderr)
        code = self._retire(w)
        if code is not None and code != -signal.SIGKILL:
            message += f" (exit status {code})"
        if tail:
            message += f"; stderr: {tail}"
        if w.task == _STARTUP:
            self._start_failures += 1
            self._start_error = message
        elif w.task is not None:
            self._finish(w.task, Outcome(status, message=message, seconds=time.monotonic() - w.sent_at))

    # -- the event loop ---------------------------------------------------------------------

    def _wait(self) -> None:
        """Wait for output or the nearest deadline, then handle what happened."""
        deadlines = [w.deadline for w in self.workers if w.task is not None]
        if not deadlines:
            return
        wait = max(0.0, min(deadlines) - time.monotonic())
        for key, events in self._selector.select(wait):
            w = key.data
            if w not in self.workers:
                continue  # retired earlier in this round
            if events & selectors.EVENT_WRITE:
                self._flush(w)
            if events & selectors.EVENT_READ and w in self.workers:
                self._read(w)
        now = time.monotonic()
        for w in [w for w in self.workers if w.task is not None and now >= w.deadline]:
            if w.task == _STARTUP:
                self._fail(w, "error", f"worker did not start within {self.startup_timeout:g} s")
            else:
                self._fail(w, "timeout", f"no answer within {w.deadline - w.sent_at:g} s")

    def _flush(self, w: _Worker) -> None:
        """Write as much of the outbox as the pipe takes; wait for writability for the rest."""
        try:
            written = os.write(w.proc.stdin.fileno(), w.outbox)
        except BlockingIOError:
            written = 0
        except (BrokenPipeError, OSError):
            self._fail(w, "error", "worker closed its input")
            return
        w.outbox = w.outbox[written:]
        registered = w.proc.stdin in self._selector.get_map()
        if w.outbox and not registered:
            self._selector.register(w.proc.stdin, selectors.EVENT_WRITE, w)
        elif not w.outbox and registered:
            self._selector.unregister(w.proc.stdin)

    def _read(self, w: _Worker) -> None:
        try:
            data = os.read(w.proc.stdout.fileno(), _READ_SIZE)
        except OSError as e:
            data, why = b"", f" ({e})"
        else:
            why = ""
        if not data:
            self._fail(w, "error", "worker died" + why)
            return
        w.inbox += data
        while w in self.workers:
            frame, w.inbox = self.codec.split(w.inbox)
            if frame is None:
                break
            self._answer(w, frame)
        if w in self.workers and len(w.inbox) > self.max_response_bytes:
            self._fail(w, "error", f"response longer than {self.max_response_bytes} bytes")

    def _answer(self, w: _Worker, frame: bytes) -> None:
        """A complete frame arrived from `w`."""
        if w.task is None:
            # Output nobody asked for: the worker is out of step with the protocol.
            self._fail(w, "error", f"unexpected output: {_excerpt(frame)}")
            return
        try:
            response = self.codec.decode(frame, w.seq)
        except ValueError as e:
            self._fail(w, "error", f"unparseable response ({e}): {_excerpt(frame)}")
            return
        if w.task == _STARTUP:
            try:
                self.codec.check_startup(response)
            except ValueError as e:
                self._fail(w, "error", f"unusable worker: {e}")
                return
            w.startup_responses.append(response)
            self._next_startup(w)
            return
        self._finish(w.task, Outcome("ok", response, seconds=time.monotonic() - w.sent_at))
        w.task = None
        w.served += 1
        if self.codec.retire_after(response) or (
                self.max_items_per_worker and w.served >= self.max_items_per_worker):
            self._retire(w)  # recycled; `_fill` starts a fresh one when there is work

    def _finish(self, index: int, outcome: Outcome) -> None:
        self._results[index] = outcome
        if self._bar is not None:
            self._bar.update(1)


# --- helpers ---------------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1
try:
    # Loaded here, in the parent: the child should do as little as possible between fork and exec.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _child_setup(parent_pid: int, memory_mb: int | None):
    """The `preexec_fn` run in the worker between fork and exec."""

    def setup() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before the prctl took effect
                os._exit(1)
        if memory_mb:
            limit = memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return setup


def _tail(f, limit: int = 800) -> str:
    """The end of a worker's stderr, on one line."""
    try:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        text = f.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    return " | ".join(line for line in text.strip().splitlines() if line.strip())


def _excerpt(frame: bytes, limit: int = 200) -> str:
    text = frame.decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "…")


@atexit.register
def _close_all_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()
