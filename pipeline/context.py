"""What every stage gets: the validated config, the artifact store, the run folder and the logger.

`build_context` makes one from a composed config; `run_stages` runs the stages a config lists.
Stages ask for their inputs by name (`ctx.stage("verify")`); `Context.stage` memoises those calls,
so within one process each stage is resolved once and announced once, whether it was asked for by
the command line or by a downstream stage. `Context.build` is the store's get-or-build protocol
with the announcement every stage makes.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

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

    def stage(self, name: str) -> Artifact:
        """The artifact of stage `name` (pipeline/stages: STAGES), built or reused once per process."""
        if name not in self._done:
            from pipeline.stages import resolve

            self._done[name] = resolve(name)(self)
        return self._done[name]

    def build(self, stage: str, config, make: Callable[[Artifact], dict], *, inputs: dict[str, Artifact] | None = None,
              version: int = 1, label: str | None = None, detail: Callable[[Artifact], str] | None = None,
              collective=None) -> Artifact:
        """The store's get-or-build protocol (ArtifactStore.build), announced as `label` (default: the
        stage) with `detail(artifact)` when given."""
        art, reused = self.store.build(stage, config, make, inputs=inputs, version=version, collective=collective)
        self.announce(label or stage, art, reused, detail(art) if detail else "")
        return art

    def announce(self, stage: str, art: Artifact, reused: bool, detail: str = "") -> None:
        what = "reused" if reused else "built"
        extra = f" ({detail})" if detail else ""
        print(f"[{stage}] {what}: {art.path}{extra}", file=sys.stderr, flush=True)
        self.log.event(stage=stage, artifact=str(art), path=str(art.path), reused=reused)


def build_context(cfg: DictConfig, run_dir: Path, job_type: str = "pipeline") -> Context:
    """Validate `cfg`, set torch's threads, write the resolved config into `run_dir`, start the logger."""
    from pipeline.config import validate

    validate(cfg)
    if int(os.environ.get("RANK", "0")) > 0:
        # under torchrun only rank 0 logs (one W&B run per training job, not one per GPU)
        cfg.logger.backend = "none"
    if cfg.threads > 0:
        import torch

        torch.set_num_threads(int(cfg.threads))
    output_dir = Path(cfg.output_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return Context(cfg=cfg, store=ArtifactStore(output_dir / "store"), run_dir=run_dir,
                   log=RunLogger(run_dir, cfg, job_type=job_type))


def run_stages(ctx: Context, names=None) -> dict[str, Artifact]:
    """Run the stages `names` (default: the config's `stages`) in order; print where their artifacts are."""
    started = time.time()
    results = {name: ctx.stage(name) for name in (names if names is not None else ctx.cfg.stages)}
    ctx.log.finish()
    print(f"\nfinished in {time.time() - started:.1f}s; run folder: {ctx.run_dir}", file=sys.stderr)
    for name, art in results.items():
        print(f"  {name:13s} {art.path}", file=sys.stderr)
    return results
