"""The verifier interface: what `pipeline` sees of Lean.

    backend = get_backend("prop")
    results = verify_items(items, backend, cache=VerdictCache(path))

Verdicts (`VERDICTS`):

* `pass`    – the backend checked the proof and it proves the statement;
* `fail`    – the backend checked it and it does not (message: the first error, `line:col: …`);
* `invalid` – refused by the guard (`lean_env.guard`) before any checker saw it;
* `timeout` – no answer within the time limit;
* `error`   – the verifier itself failed (a worker crashed, the toolchain is missing, a bug).
  An `error` says nothing about the proof: it must never be counted as a pass *or* a fail
  (drop it from rewards and pass rates, and report how many there were).

`timeout` and `error` are never cached: a rerun on a quieter machine may well decide them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lean_env.cache import CACHEABLE, VerdictCache, cache_key
from lean_env.guard import GuardConfig, guard as run_guard

VERDICTS = ("pass", "fail", "invalid", "timeout", "error")
DEFAULT_TIMEOUT = 30.0  # seconds per item, wall clock
# Texts longer than this are not checked at all (their own `invalid` verdict): no honest proof or
# statement comes near them, and a multi-megabyte text costs the guard and Lean seconds to minutes
# and the cache its size.
MAX_PROOF_CHARS = 100_000
MAX_STATEMENT_CHARS = 20_000


@dataclass(frozen=True)
class Item:
    id: str | int
    statement: str  # `theorem NAME … : TYPE`, without `:=`
    proof: str  # what follows `:=`


@dataclass
class Result:
    id: str | int
    verdict: str  # one of VERDICTS
    message: str = ""
    seconds: float = 0.0  # checking time now (shared by duplicates); 0 for answers from the cache or the guard


class Backend(ABC):
    """Something that checks proofs. Subclasses set `name` and implement `version` and `verify`."""

    name: str = ""

    @property
    @abstractmethod
    def version(self) -> str:
        """Changes whenever verdicts might change; part of the cache key."""

    @abstractmethod
    def verify(self, items: Sequence[Item], *, timeout: float = DEFAULT_TIMEOUT,
               workers: int | None = None, progress: bool = False) -> list[Result]:
        """One Result per item, in the same order. The guard has already run.

        `workers`: None for the backend's default, 0 to check in this process (where the backend
        supports it), n for n parallel workers. Must not raise because one item is bad.
        """

    def close(self) -> None:
        """Release workers and other resources; the backend may be used again afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the registry ----------------------------------------------------------------------------


class UnknownBackendError(ValueError):
    pass


class BackendUnavailableError(RuntimeError):
    """The backend is known but cannot run in this build or on this machine."""


# name -> "module:Class", imported on first use, so that naming a backend costs nothing and a
# backend's heavy dependencies (LeanDojo) are only imported by those who use it.
_REGISTRY: dict[str, str | Callable[..., Backend]] = {
    "prop": "lean_env.prop.backend:PropBackend",
    "lean_repl": "lean_env.lean_repl.backend:LeanReplBackend",
    "leandojo": "lean_env.leandojo.backend:LeanDojoBackend",
}
_NEEDS = {
    "lean_repl": "a Lean 4 toolchain (elan, lake) and the Lean REPL",
    "leandojo": "a Lean 4 toolchain and the `lean` extra (pip install 'dmvr[lean]')",
}


def register_backend(name: str, target: str | Callable[..., Backend]) -> None:
    """Register a backend class (or factory), or its "module:Class" path to import lazily."""
    _REGISTRY[name] = target


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def describe_backends() -> str:
    """`prop (not in this build: lean_repl, leandojo)`, for error messages."""
    ready = [n for n in backend_names() if _in_build(n)]
    missing = [n for n in backend_names() if not _in_build(n)]
    text = ", ".join(ready) or "none"
    return text + (f" (not in this build: {', '.join(missing)})" if missing else "")


def _in_build(name: str) -> bool:
    target = _REGISTRY[name]
    if not isinstance(target, str):
        return True
    try:
        return importlib.util.find_spec(target.partition(":")[0]) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def backend_class(name: str) -> Callable[..., Backend]:
    """The class (or factory) registered as `name`, its module imported on first use."""
    if name not in _REGISTRY:
        raise UnknownBackendError(
            f"unknown backend {name!r}; available backends: {describe_backends()}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # Only "the backend's own module is missing" means "not in this build"; a missing
            # dependency *inside* a backend that exists is a real error and keeps its traceback.
            if e.name is None or not module_name.startswith(e.name):
                raise
            needs = _NEEDS.get(name, "code that is not in this build")
            raise BackendUnavailableError(
                f"backend {name!r} is not available in this build: it needs {needs}, and its module "
                f"{module_name} is missing from this build. Use --backend prop, or run on a build that ships it."
            ) from None
        target = getattr(module, class_name)
    return target


def backend_option_defaults(name: str) -> dict:
    """A backend's options and their defaults. A backend's options are its constructor's keyword
    arguments, so a new backend declares them in one place (the pipeline's config section
    `verifier.<name>.*` is made from them; the CLI passes them with `-o KEY=VALUE`)."""
    params = inspect.signature(backend_class(name)).parameters.values()
    return {p.name: p.default for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty}


def get_backend(name: str, **options) -> Backend:
    """A new backend instance; `options` go to its constructor."""
    return backend_class(name)(**options)


# --- verify_items ----------------------------------------------------------------------------


def verify_items(items: Sequence[Item], backend: Backend, *, cache: VerdictCache | None = None,
                 guard: bool | GuardConfig = True, timeout: float = DEFAULT_TIMEOUT,
                 workers: int | None = None, progress: bool = False) -> list[Result]:
    """Guard → cache → backend → cache, for a batch. Results come back in input order.

    Identical (statement, proof) pairs in the batch are checked once. A backend that raises
    turns its items into `error` results instead of losing the batch.
    """
    results: list[Result | None] = [None] * len(items)
    guard_config = guard if isinstance(guard, GuardConfig) else None
    version = backend.version

    # Group the items by what is actually checked; each group is decided once. An item that cannot
    # be checked at all (not text, not encodable, too long) gets its own `invalid` verdict here and
    # goes no further: one bad row never costs the rest of the batch.
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        problem = item_problem(item)
        if problem is None:
            try:
                key = cache_key(backend.name, version, item.statement, item.proof)
            except Exception as e:  # anything else that stops it being hashed
                problem = f"cannot be hashed: {type(e).__name__}: {e}"
        if problem is not None:
            results[i] = Result(item.id, "invalid", problem)
            continue
        groups.setdefault(key, []).append(i)

    decided: dict[str, tuple[str, str, float]] = {}  # key -> (verdict, message, seconds)
    if guard is not False:
        for key, members in groups.items():
            first = items[members[0]]
            g = run_guard(first.statement, first.proof, guard_config)
            if not g.ok:
                decided[key] = ("invalid", f"[{g.rule}] {g.message}", 0.0)

    if cache is not None:
        wanted = [k for k in groups if k not in decided]
        for key, hit in cache.get_many(wanted).items():
            decided[key] = (hit.verdict, hit.message, 0.0)

    todo = [k for k in groups if k not in decided]
    fresh = _run_backend(backend, [items[groups[k][0]] for k in todo], timeout, workers, progress)
    decided.update(zip(todo, fresh))

    if cache is not None:
        cache.put_many((k, *fresh_one) for k, fresh_one in zip(todo, fresh) if fresh_one[0] in CACHEABLE)

    for key, members in groups.items():
        verdict, message, seconds = decided[key]
        for i in members:
            results[i] = Result(items[i].id, verdict, message, seconds)
    return results


def item_problem(item: Item) -> str | None:
    """Why `item` cannot be checked at all, or None: its statement and proof must be strings of
    valid Unicode (no lone UTF-16 surrogate, which has no UTF-8 encoding) within the length limits."""
    for field, limit in (("statement", MAX_STATEMENT_CHARS), ("proof", MAX_PROOF_CHARS)):
        value = getattr(item, field)
        if not isinstance(value, str):
            return f"{field} must be a string, got {type(value).__name__}"
        if len(value) > limit:
            return f"{field} longer than {limit} characters ({len(value)})"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            return (f"{field} is not valid Unicode text: lone surrogate U+{ord(value[e.start]):04X} "
                    f"at character {e.start}")
    return None


def _run_backend(backend: Backend, items: list[Item], timeout: float, workers: int | None,
                 progress: bool) -> list[tuple[str, str, float]]:
    """(verdict, message, seconds) per item; a failing backend yields `error`s, never verdicts."""
    if not items:
        return []
    start = time.monotonic()
    try:
        results = backend.verify(items, timeout=timeout, workers=workers, progress=progress)
    except Exception as e:  # the verifier failed, not the proofs
        message = f"backend {backend.name!r} failed: {type(e).__name__}: {e}"
        return [("error", message, 0.0)] * len(items)
    if len(results) != len(items):
        message = f"backend {backend.name!r} returned {len(results)} results for {len(items)} items"
        return [("error", message, (time.monotonic() - start) / len(items))] * len(items)
    out = []
    for item, r in zip(items, results):
        if r.verdict not in VERDICTS:
            out.append(("error", f"backend returned unknown verdict {r.verdict!r}", r.seconds))
        elif r.id != item.id:
            out.append(("error", f"backend answered item {r.id!r} in the place of {item.id!r}", r.seconds))
        else:
            out.append((r.verdict, r.message, r.seconds))
    return out
