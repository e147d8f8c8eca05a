"""The `prop` backend: the propositional checker (`lean_env.prop.checker`) behind the verifier.

`workers=0` checks in this process: no start-up cost, which is what tests and throughput
measurements want, but no timeout either (the checker is a fast, total decision procedure, so
that is a fair trade there). Any other `workers` runs a `WorkerPool` of
`python -m lean_env.prop.worker` processes, which can be timed out and killed.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

from lean_env.pool import DEFAULT_ENV_KEEP, JsonLinesCodec, Outcome, WorkerPool, default_pool_size, worker_env
from lean_env.prop import worker
from lean_env.verifier import DEFAULT_TIMEOUT, Backend, Item, Result

# The directory holding the `lean_env` package; workers need it on their PYTHONPATH even when
# dmvr is not installed.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class _HandshakeCodec(JsonLinesCodec):
    """JSON lines, plus a `hello` at start-up that proves the worker runs the same checker as we do."""

    def __init__(self, version: str):
        super().__init__(startup=[{"hello": True}])
        self.version = version

    def check_startup(self, response) -> None:
        if response.get("version") != self.version:
            raise ValueError(f"worker runs checker version {response.get('version')!r}, "
                             f"this process {self.version!r}")


class PropBackend(Backend):
    name = "prop"

    def __init__(self, *, checker: str = worker.DEFAULT_CHECKER, max_items_per_worker: int | None = 10_000,
                 memory_mb: int | None = None, env_keep: Sequence[str] = DEFAULT_ENV_KEEP,
                 startup_timeout: float = 60.0):
        self.checker_module = checker
        self.max_items_per_worker = max_items_per_worker
        self.memory_mb = memory_mb
        self.env_keep = tuple(env_keep)
        self.startup_timeout = startup_timeout
        self._checker: ModuleType | None = None
        self._pool: WorkerPool | None = None

    @property
    def checker(self) -> ModuleType:
        if self._checker is None:
            self._checker = importlib.import_module(self.checker_module)
        return self._checker

    @property
    def version(self) -> str:
        return str(self.checker.VERSION)

    def verify(self, items: Sequence[Item], *, timeout: float = DEFAULT_TIMEOUT,
               workers: int | None = None, progress: bool = False) -> list[Result]:
        requests = [{"statement": it.statement, "proof": it.proof} for it in items]
        if workers == 0:
            outcomes = self._check_here(requests, progress)
        else:
            outcomes = self._get_pool(workers).run(requests, timeout=timeout, progress=progress)
        return [to_result(item, outcome) for item, outcome in zip(items, outcomes)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _check_here(self, requests: list[dict], progress: bool) -> list[Outcome]:
        outcomes = []
        for request in tqdm(requests, desc="verifying", unit="item", disable=not progress):
            start = time.perf_counter()
            answer = worker.handle(self.checker, request)
            outcomes.append(Outcome("ok", answer, seconds=time.perf_counter() - start))
        return outcomes

    def _get_pool(self, workers: int | None) -> WorkerPool:
        """The pool of the requested size; kept between calls so workers start once."""
        size = workers or default_pool_size()
        if self._pool is not None and self._pool.size != size:
            self.close()
        if self._pool is None:
            path = os.pathsep.join(p for p in (_PROJECT_ROOT, os.environ.get("PYTHONPATH")) if p)
            self._pool = WorkerPool(
                [sys.executable, "-m", "lean_env.prop.worker", "--checker", self.checker_module],
                _HandshakeCodec(self.version), size=size,
                max_items_per_worker=self.max_items_per_worker, startup_timeout=self.startup_timeout,
                env=worker_env(self.env_keep, {"PYTHONPATH": path}), cwd=_PROJECT_ROOT,
                memory_mb=self.memory_mb)
        return self._pool


def to_result(item: Item, outcome: Outcome) -> Result:
    """A worker's answer (or the pool's timeout/error) as a verdict."""
    if outcome.status != "ok":
        return Result(item.id, outcome.status, outcome.message, outcome.seconds)
    answer = outcome.response
    if "error" in answer:
        return Result(item.id, "error", str(answer["error"]), outcome.seconds)
    if not isinstance(answer.get("ok"), bool):
        return Result(item.id, "error", f"malformed worker answer: {answer!r:.200}", outcome.seconds)
    if answer["ok"]:
        return Result(item.id, "pass", "", outcome.seconds)
    message = str(answer.get("message", ""))
    if answer.get("unsupported"):
        # Outside the fragment the checker can decide: not verified, so not a pass. It is a
        # fail and not an error because a rerun cannot change it.
        message = f"unsupported: {message}"
    if answer.get("line") is not None:
        message = f"{answer['line']}:{answer.get('col') if answer.get('col') is not None else 0}: {message}"
    return Result(item.id, "fail", message, outcome.seconds)
