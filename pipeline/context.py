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


# glibc's malloc returns a freed block above its mmap threshold (or a heap top above its trim
# threshold) to the system, so the next tensor of that size page-faults on first touch; on the CPU a
# training step frees and reallocates activations of a few MB every step. Raised thresholds keep that
# memory for reuse (a process keeps its peak footprint instead). 32 MiB is glibc's largest mmap threshold.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


def keep_freed_memory() -> bool:
    """Raise glibc malloc's thresholds in this process (mallopt) and, through GLIBC_TUNABLES, in the
    processes it starts (sampling workers, data-parallel helpers, sweep jobs). Nothing happens when
    GLIBC_TUNABLES is already set, with DMVR_KEEP_FREED_MEMORY=0, or without glibc. True when set."""
    if os.environ.get("DMVR_KEEP_FREED_MEMORY", "1") == "0" or "GLIBC_TUNABLES" in os.environ:
        return False
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        if not (libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30)):
            return False
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
    return True


def build_context(cfg: DictConfig, run_dir: Path, job_type: str = "pipeline") -> Context:
    """Validate `cfg`, set torch's threads and the allocator, write the resolved config into
    `run_dir`, start the logger."""
    from pipeline.config import validate

    validate(cfg)
    keep_freed_memory()
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
