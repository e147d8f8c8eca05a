"""Entry point: `python -m pipeline [+experiment=NAME] [stages=[...]] [key=value ...]`.

Runs the stages listed in `cfg.stages` in order (pipeline/stages: STAGES). Each stage resolves its
own inputs through the artifact store, so `stages=[evaluate]` alone still builds (or reuses)
everything evaluate needs.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.config import register
from pipeline.context import build_context, run_stages

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stages(build_context(cfg, Path(HydraConfig.get().runtime.output_dir)))


if __name__ == "__main__":
    main()
