"""Run logging: every metric goes to `<run_dir>/metrics.jsonl` and, when enabled, to W&B.

W&B is configured by the `logger` group (project, entity, group = the sweep, job_type = the stage)
and honours WANDB_MODE; with no mode set anywhere it runs offline, so nothing is ever sent from a
machine that was not asked to. `logger.backend=none` turns W&B off; metrics.jsonl is always written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class RunLogger:
    def __init__(self, run_dir: Path, cfg=None, job_type: str = "pipeline"):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wandb = None
        if cfg is not None and cfg.logger.backend == "wandb":
            self._wandb = _start_wandb(cfg, run_dir, job_type)

    def log(self, metrics: dict[str, Any], step: int | None = None, stage: str | None = None) -> None:
        row = {"time": time.time(), **({"stage": stage} if stage else {}), **({"step": step} if step is not None else {}), **metrics}
        with self.path.open("a") as f:
            f.write(json.dumps(row, default=float) + "\n")
        if self._wandb is not None:
            prefix = f"{stage}/" if stage else ""
            self._wandb.log({prefix + k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    def event(self, **fields: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"time": time.time(), "event": True, **fields}, default=str) + "\n")

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb is not None:
            for k, v in values.items():
                self._wandb.summary[k] = v

    @property
    def wandb_run(self):
        return self._wandb

    def finish(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def wandb_mode(cfg) -> str:
    return cfg.logger.mode or os.environ.get("WANDB_MODE") or "offline"


def _start_wandb(cfg, run_dir: Path, job_type: str):
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return None
    import wandb
    from omegaconf import OmegaConf

    return wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity or None,
        group=cfg.logger.group or cfg.experiment,
        job_type=job_type,
        mode=mode,
        dir=str(run_dir),
        config=OmegaConf.to_container(cfg, resolve=True),
        reinit="finish_previous",
    )
