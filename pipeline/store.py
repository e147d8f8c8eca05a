"""The artifact store: every stage's output lives in `<root>/<stage>/<key>/`, keyed by what produced it.

The key hashes the stage's own config, the keys of its inputs and the stage's code version, so
- a rerun with the same config finds the finished folder and reuses it (and says so);
- a change anywhere upstream changes every downstream key, so nothing stale is reused;
- work in progress lives in `<key>.partial/`, which survives a SIGKILL: stages write it in
  atomically-renamed shards or checkpoints and pick up from the last one on rerun;
- finishing is one `os.replace` of the partial folder onto the final name, so a folder that
  exists under its final name is complete by construction;
- a per-key file lock lets the jobs of one multirun share the store: the second job waits
  for the first and then reuses its result instead of computing it twice;
- a finished artifact is never removed or replaced: another job may be reading it.

`ArtifactStore.build` is the one get-or-build protocol every stage goes through (check done → lock →
check again → build into the work folder → commit); a stage supplies only its key and its `make`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
from filelock import FileLock

META = "meta.json"


def stable_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Artifact:
    stage: str
    key: str
    path: Path  # the final folder; exists only once the artifact is complete
    spec: dict | None = field(default=None, compare=False, repr=False)  # what the key hashes, kept for provenance

    @property
    def work(self) -> Path:
        """Folder for work in progress; kept across kills so a rerun resumes from it."""
        return self.path.with_name(self.path.name + ".partial")

    @property
    def done(self) -> bool:
        return (self.path / META).exists()

    @property
    def meta(self) -> dict:
        return json.loads((self.path / META).read_text())

    def file(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return f"{self.stage}/{self.key}"


class ArtifactStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def artifact(self, stage: str, config: Any, inputs: dict[str, Artifact] | None = None,
                 version: int = 1) -> Artifact:
        inputs = inputs or {}
        spec = {
            "stage": stage,
            "version": version,
            "config": config,
            "inputs": {name: str(a) for name, a in sorted(inputs.items())},
        }
        key = stable_hash(spec)
        return Artifact(stage, key, self.root / stage / key, spec)

    @contextmanager
    def lock(self, art: Artifact) -> Iterator[None]:
        art.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(art.path) + ".lock"):
            yield

    def build(self, stage: str, config: Any, make: Callable[[Artifact], dict], *,
              inputs: dict[str, Artifact] | None = None, version: int = 1,
              collective=None) -> tuple[Artifact, bool]:
        """Get or build the artifact of (stage, config, inputs, version): `(artifact, reused)`.

        `make(art)` writes the artifact's files into `art.work` (resuming from whatever a killed
        run left there) and returns its meta; it runs at most once per key across every process
        sharing the store: the others wait on the key's lock and reuse the result.
        `collective` (a `distributed.Dist`): the ranks of one torchrun job build together, without
        the lock (which would admit one rank), and the main rank commits.
        """
        art = self.artifact(stage, config, inputs, version)
        if art.done:
            return art, True
        if collective is not None:
            meta = make(art)
            collective.barrier()  # every rank has finished with the work folder before it is renamed
            if collective.main:
                self.commit(art, meta)
            collective.barrier()
            return art, False
        with self.lock(art):
            if art.done:  # another job finished it while we waited for the lock
                return art, True
            self.commit(art, make(art))
        return art, False

    def commit(self, art: Artifact, meta: dict) -> Artifact:
        """Publish `art.work` as the finished artifact, atomically; a finished one is never replaced."""
        # The spec (config, inputs, version) sits beside the data, so every artifact says what made it.
        meta = {"stage": art.stage, "key": art.key, "finished_at": time.time(), "spec": art.spec, **meta}
        if art.done:
            raise RuntimeError(f"{art} is already finished; refusing to replace it (another job may be reading it)")
        art.work.mkdir(parents=True, exist_ok=True)
        write_json(art.work / META, meta)
        if art.path.exists():  # a folder without meta under the final name: a leftover of an older layout
            os.replace(art.path, art.path.with_name(f"{art.path.name}.stale-{time.time_ns()}"))
        os.replace(art.work, art.path)
        return art


# ---- atomic file helpers: write to a temporary file in the same folder, then rename over the target


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def write_json(path: Path, obj: Any) -> None:
    tmp = _atomic_target(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str, ensure_ascii=False))
    os.replace(tmp, path)


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    tmp = _atomic_target(path)
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


class Shards:
    """Numbered parquet shards in a work folder: a stage writes shard i once, complete or not at all.

    On rerun `done()` tells which shards exist, so a killed stage redoes only the shard it was
    writing; `concat()` reads them back in order, so resumed and uninterrupted runs give the same table.
    """

    def __init__(self, folder: Path, prefix: str = "shard"):
        self.folder = folder
        self.prefix = prefix
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, i: int) -> Path:
        return self.folder / f"{self.prefix}-{i:05d}.parquet"

    def done(self, i: int) -> bool:
        return self.path(i).exists()

    def write(self, i: int, df: pd.DataFrame) -> None:
        write_parquet(self.path(i), df)

    def concat(self, count: int) -> pd.DataFrame:
        missing = [i for i in range(count) if not self.done(i)]
        if missing:
            raise RuntimeError(f"shards missing in {self.folder}: {missing[:10]}")
        return pd.concat([pd.read_parquet(self.path(i)) for i in range(count)], ignore_index=True)

    def remove(self) -> None:
        for p in self.folder.glob(f"{self.prefix}-*.parquet"):
            p.unlink()
