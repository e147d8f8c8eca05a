"""The verdict cache: checking a proof twice is wasted work, and RL sampling repeats proofs a lot.

One SQLite table, keyed by the sha256 of (backend name, backend version, statement, proof), so a
new checker version never answers from an old one's verdicts. WAL mode lets several processes
(e.g. sampling jobs on one node) read while one writes; writers wait for each other through
SQLite's busy timeout instead of failing.

Only final verdicts belong here: `verify_items` never stores `error` or `timeout` (they say
something about the machine, not the proof), and `put_many` drops them as well to be safe.
Open one `VerdictCache` per process; a connection must not cross a `fork`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Verdicts a cache may hold; `error` and `timeout` are never cached.
CACHEABLE = frozenset({"pass", "fail", "invalid"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    verdict TEXT NOT NULL,
    message TEXT NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID
"""
_CHUNK = 500  # keys per SELECT; stays below SQLite's limit on bound parameters


@dataclass(frozen=True)
class CachedVerdict:
    verdict: str
    message: str
    seconds: float  # how long the original check took


def cache_key(backend: str, version: str, statement: str, proof: str) -> str:
    # JSON framing keeps the four fields apart: ("a", "bc") and ("ab", "c") hash differently.
    blob = json.dumps([backend, version, statement, proof], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class VerdictCache:
    """`VerdictCache(path)` on disk, or `VerdictCache(None)` in memory (tests, one-off runs)."""

    def __init__(self, path: str | os.PathLike | None = None, *, busy_timeout_s: float = 60.0):
        self.path = None if path is None or str(path) == ":memory:" else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is one transaction.
        self._db = sqlite3.connect(str(self.path or ":memory:"), timeout=busy_timeout_s,
                                   isolation_level=None)
        if self.path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commits
        self._db.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedVerdict]:
        """The cached verdicts among `keys`; keys not in the cache are simply absent."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, CachedVerdict] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, verdict, message, seconds FROM verdicts WHERE key IN ({marks})", chunk)
            for key, verdict, message, seconds in rows:
                found[key] = CachedVerdict(verdict, message, seconds)
        return found

    def put_many(self, rows: Iterable[tuple[str, str, str, float]]) -> int:
        """Store (key, verdict, message, seconds) rows; returns how many were cacheable."""
        now = time.time()
        rows = [(k, v, m, float(s), now) for k, v, m, s in rows if v in CACHEABLE]
        if rows:
            # BEGIN IMMEDIATE takes the write lock up front, so two writers queue instead of
            # deadlocking on a lock upgrade.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> VerdictCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
