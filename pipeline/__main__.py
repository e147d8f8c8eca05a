"""Entry point: `python -m pipeline [+experiment=NAME] [stages=[...]] [key=value ...]`.

Runs the stages listed in `cfg.stages` in order. Each stage resolves its own inputs through the
artifact store, so `stages=[evaluate]` alone still builds (or reuses) everything evaluate needs.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipeline.config import register, validate
from pipeline.context import Context
from pipeline.store import ArtifactStore
from pipeline.tracking import RunLogger

register()


def build_context(cfg: DictConfig, run_dir: Path, job_type: str = "pipeline") -> Context:
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


def run_stages(ctx: Context) -> dict:
    started = time.time()
    results = {}
    for name in ctx.cfg.stages:
        module = importlib.import_module(f"pipeline.stages.{name}")
        results[name] = ctx.stage(name, module.run)
    ctx.log.finish()
    print(f"\nfinished in {time.time() - started:.1f}s; run folder: {ctx.run_dir}", file=sys.stderr)
    for name, art in results.items():
        print(f"  {name:9s} {art.path}", file=sys.stderr)
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_stages(build_context(cfg, run_dir))


if __name__ == "__main__":
    main()
