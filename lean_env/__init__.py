"""Lean side of dmvr: statements, proofs and the verifiers that check them.

`pipeline` talks to this package only through the names below; see docs/architecture.md.
(The guard function stays at `lean_env.guard.guard`: re-exporting it here would hide the
`lean_env.guard` module behind the function of the same name.)
"""

from lean_env.cache import VerdictCache
from lean_env.guard import GuardConfig, GuardResult
from lean_env.verifier import (
    VERDICTS,
    Backend,
    BackendUnavailableError,
    Item,
    Result,
    UnknownBackendError,
    get_backend,
    register_backend,
    verify_items,
)

__all__ = [
    "VERDICTS", "Backend", "BackendUnavailableError", "GuardConfig", "GuardResult", "Item",
    "Result", "UnknownBackendError", "VerdictCache", "get_backend", "register_backend",
    "verify_items",
]
