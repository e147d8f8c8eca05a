"""What every stage gets: the validated config, the artifact store, the run folder and the logger.

Stages ask for their inputs by calling the upstream stage's `run(ctx)`. `Context.stage` memoises
those calls, so within one process each stage is resolved once and announced once, whether it was
asked for by the command line or by a downstream stage.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from pipeline.store import Artifact, ArtifactStore
from pipeline.tracking import RunLogger


@dataclass
class Context:
    cfg: DictConfig
    store: ArtifactStore
    run_dir: Path
    log: RunLogger
    _done: dict[str, Artifact] = field(default_factory=dict)

    @property
    def output_dir(self) -> Path:
        return self.store.root.parent

    def stage(self, name: str, fn: Callable[["Context"], Artifact]) -> Artifact:
        if name not in self._done:
            self._done[name] = fn(self)
        return self._done[name]

    def announce(self, stage: str, art: Artifact, reused: bool, detail: str = "") -> None:
        what = "reused" if reused else "built"
        extra = f" ({detail})" if detail else ""
        print(f"[{stage}] {what}: {art.path}{extra}", file=sys.stderr, flush=True)
        self.log.event(stage=stage, artifact=str(art), path=str(art.path), reused=reused)
