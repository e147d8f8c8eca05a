"""`LeanReplBackend`: proofs checked by a warm pool of Lean REPL processes.

Why a pool of REPLs: `import Mathlib` takes tens of seconds and gigabytes; a REPL does it once
(the *header*, e.g. `import Mathlib\\nset_option maxHeartbeats 400000\\nopen Real`) and then checks
each proof as one command in that environment, in about a second. The pool
(`lean_env.pool.WorkerPool`) gives every worker its own process group, a wall-clock timeout per
proof, replacement of a worker that hangs, dies, prints garbage or floods its output, recycling
after `max_items_per_worker` proofs (each command leaves a new environment in the REPL's memory),
an address-space limit, and a stripped environment.

Per worker: start-up request `{"cmd": header}` -> `{"env": N}` (refused if the header has an
error — a missing Mathlib must not turn into a million `fail`s — or uses `sorry`), then per proof
`{"cmd": "<statement> :=(<proof>\\n)\\n\\n#print axioms NAME", "env": N}`, judged by
`lean_env.lean_repl.classify`. A reply without `env` (`{"message": "Unknown environment."}`)
makes the item an `error` and the worker is replaced.

What workers run: see `lean_env.lean_repl.setup` (the REPL binary in a Lean project, in the
environment `lake env` sets there, or any `command` speaking the protocol). Parent death: each
worker gets SIGKILL from the kernel when our process dies. By default the worker *is* the REPL
(not `lake env <repl>`, whose REPL child the signal would miss, see `setup`), so no REPL
outlives us, even when we are killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lean_env.lean_repl.classify import (DEFAULT_ALLOWED_AXIOMS, HARMLESS_SEVERITIES, USES_SORRY, Command,
                                         build_command, classify, is_env, needs_restart)
from lean_env.lean_repl.setup import resolve
from lean_env.pool import DEFAULT_ENV_KEEP, BlankLineJsonCodec, Outcome, WorkerPool, default_pool_size, worker_env
from lean_env.verifier import DEFAULT_TIMEOUT, Backend, Item, Result, item_problem

VERSION = 2  # bump when the command sent or the classification changes


class ReplCodec(BlankLineJsonCodec):
    """The REPL protocol, plus the header as start-up command and its environment in every request."""

    def __init__(self, header: str):
        self.header_request = {"cmd": header}  # no "env": the REPL starts a fresh environment
        super().__init__(startup=[self.header_request])
        self.env: int | None = None

    def encode(self, request, seq: int) -> bytes:
        if request is self.header_request:
            return super().encode(request, seq)
        # Every worker runs the same header first, so every REPL numbers its environment alike
        # (0 for the real REPL); `check_startup` makes sure of it.
        return super().encode({**request, "env": self.env}, seq)

    def check_startup(self, response) -> None:
        messages = [m for m in response.get("messages") or [] if isinstance(m, dict)]
        # The classifier's rules: any severity but info/warning is an error.
        errors = [m for m in messages if m.get("severity") not in HARMLESS_SEVERITIES]
        if errors:
            first = errors[0]
            raise ValueError(f"the header failed in Lean: {str(first.get('data', ''))[:500]} "
                             "(check the header, e.g. `import Mathlib` needs a project with Mathlib built)")
        # A header that proves something with `sorry` is only a warning in Lean, but every proof
        # checked after it could rest on that declaration: no verdict of such a worker is trusted.
        sorry = [m for m in messages if USES_SORRY.search(str(m.get("data", "")))]
        if response.get("sorries") or sorry:
            where = str(sorry[0].get("data", "")) if sorry else "a `sorries` entry"
            raise ValueError(f"the header uses sorry ({where[:200]}): every proof checked after it could rest on it")
        env = response.get("env")
        if not is_env(env):
            raise ValueError(f"the header reply has no environment: {str(response)[:200]}")
        if self.env is not None and env != self.env:
            raise ValueError(f"the header gave environment {env}, other workers {self.env}")
        self.env = env

    def retire_after(self, response) -> bool:
        return needs_restart(response)


class LeanReplBackend(Backend):
    """Options (config `verifier.lean_repl.*`, see conf/verifier/lean_repl.yaml):

    project, repl, command – where the REPL is (lean_env.lean_repl.setup);
    lake_env_wrapper       – True: each worker is `lake env <repl>`; False (default): the REPL
                             itself, in the environment `lake env` prints once. Why: with the
                             wrapper, a parent killed by SIGKILL leaves the REPLs running until
                             they next read their input (lean_env.lean_repl.setup);
    header                 – Lean text run once per worker (imports, options, `open`s);
    allowed_axioms         – what `#print axioms` may list (sorryAx never passes);
    max_items_per_worker   – recycle a REPL after this many proofs;
    memory_limit_mb        – address-space limit per worker (0: none);
    worker_memory_mb       – expected resident memory per worker, caps the default pool size;
    startup_timeout        – seconds for a worker to start and run the header.

    `workers` in `verify`: None or 0 for the default (CPUs - 1, capped by available memory /
    `worker_memory_mb`), n for n REPLs. There is no in-process mode: Lean is another program.
    """

    name = "lean_repl"

    def __init__(self, *, project: str | None = None, repl: str | None = None,
                 command: str | Sequence[str] | None = None, header: str = "",
                 allowed_axioms: Sequence[str] = DEFAULT_ALLOWED_AXIOMS, max_items_per_worker: int = 200,
                 memory_limit_mb: int = 16384, worker_memory_mb: int = 6144, startup_timeout: float = 600.0,
                 max_response_bytes: int = 16 << 20, env_keep: Sequence[str] = DEFAULT_ENV_KEEP,
                 lake_env_wrapper: bool = False):
        self.env_keep = tuple(env_keep)
        # Raises LeanSetupError (a BackendUnavailableError) now, with what is missing and how
        # to fix it, rather than failing every item later. This also runs `lake env` once, with
        # the stripped environment, for the workers' environment (see lean_env.lean_repl.setup).
        self.worker = resolve(project, repl, list(command) if command and not isinstance(command, str) else command,
                              lake_env_wrapper=lake_env_wrapper, env=worker_env(self.env_keep),
                              lake_timeout=startup_timeout)
        self.header = header
        self.allowed_axioms = tuple(allowed_axioms)
        self.max_items_per_worker = max_items_per_worker
        self.memory_limit_mb = memory_limit_mb or None
        self.worker_memory_mb = worker_memory_mb
        self.startup_timeout = startup_timeout
        self.max_response_bytes = max_response_bytes
        self._pool: WorkerPool | None = None

    @property
    def version(self) -> str:
        header = hashlib.sha256(self.header.encode()).hexdigest()[:12]
        return (f"{VERSION} {self.worker.description} header={header} "
                f"axioms={','.join(sorted(self.allowed_axioms))}")

    def default_workers(self) -> int:
        """CPUs - 1, but no more REPLs than the available memory holds."""
        by_memory = available_memory_mb() // max(1, self.worker_memory_mb) if self.worker_memory_mb else None
        size = default_pool_size()
        return max(1, min(size, by_memory) if by_memory is not None else size)

    def verify(self, items: Sequence[Item], *, timeout: float = DEFAULT_TIMEOUT,
               workers: int | None = None, progress: bool = False) -> list[Result]:
        commands: list[Command | None] = []
        requests = []
        results = []
        for item in items:
            # verify_items has refused such items already; a direct caller may not have, and one
            # text that cannot go out as UTF-8 must not stop the batch
            problem = item_problem(item)
            results.append(Result(item.id, "invalid", problem) if problem else
                           Result(item.id, "error", "statement does not start with `theorem NAME`"))
            try:
                command = None if problem else build_command(item.statement, item.proof)
            except ValueError:  # the guard normally refuses such statements first
                command = None
            commands.append(command)
            requests.append(None if command is None else {"cmd": command.text})
        todo = [i for i, r in enumerate(requests) if r is not None]
        outcomes = self.pool(workers).run([requests[i] for i in todo], timeout=timeout, progress=progress)
        for i, outcome in zip(todo, outcomes):
            results[i] = self._result(items[i], commands[i], outcome)
        return results

    def _result(self, item: Item, command: Command, outcome: Outcome) -> Result:
        if outcome.status != "ok":  # the pool's timeout or a dead/garbled worker
            return Result(item.id, outcome.status, outcome.message, outcome.seconds)
        v = classify(outcome.response, command, self.allowed_axioms)
        return Result(item.id, v.verdict, v.message, outcome.seconds)

    def pool(self, workers: int | None = None) -> WorkerPool:
        """The pool of the requested size; kept between calls so that headers are imported once."""
        size = workers or self.default_workers()
        if self._pool is not None and self._pool.size != size:
            self.close()
        if self._pool is None:
            # The `lake env` environment when there is one (it was made from the same stripped one).
            env = self.worker.env if self.worker.env is not None else worker_env(self.env_keep)
            self._pool = WorkerPool(
                self.worker.argv, ReplCodec(self.header), size=size,
                max_items_per_worker=self.max_items_per_worker, startup_timeout=self.startup_timeout,
                env=env, cwd=self.worker.cwd, memory_mb=self.memory_limit_mb,
                max_response_bytes=self.max_response_bytes, desc="lean_repl")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def available_memory_mb() -> int:
    """MemAvailable from /proc/meminfo (Linux); elsewhere a large number, i.e. no cap."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 30
