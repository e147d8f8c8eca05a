"""Slurm sweeps without Slurm: the alpha_sweep composes with hydra/launcher=submitit_slurm, the
launcher config is valid for the plugin, and the shared-stages callback stands down on Slurm."""

import dataclasses
import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.callbacks import PrepareShared
from pipeline.config import register, validate

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='needs pip install -e ".[slurm]"')
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf  # noqa: E402

CONF = str(Path(__file__).resolve().parents[1] / "conf")
register()


def _compose(overrides):
    with warnings.catch_warnings():
        # our submitit_slurm.yaml replaces the plugin's config of the same name; Hydra validates it
        # against the plugin's schema and says so in a deprecation warning
        warnings.simplefilter("ignore", UserWarning)
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            return compose("config", overrides=overrides, return_hydra_config=True)


def test_alpha_sweep_composes_with_the_slurm_launcher():
    cfg = _compose(["+experiment=alpha_sweep", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"])
    validate(cfg)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.array_parallelism == 17
    assert launcher.max_num_timeout > 0  # requeued jobs resume from the artifact store
    # every field is one the plugin knows, with a value of its type
    known = {f.name for f in dataclasses.fields(SlurmQueueConf)}
    assert set(launcher) <= known
    OmegaConf.merge(OmegaConf.structured(SlurmQueueConf), OmegaConf.to_container(launcher))
    # the sweep's jobs are unchanged: one per α and baseline
    assert len(cfg.hydra.sweeper.params["+method"].split(",")) == 17


def test_a_typo_in_the_launcher_config_is_an_error():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        _compose(["+experiment=alpha_sweep", "hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_nod=2"])


def test_the_launcher_instantiates_without_slurm():
    from hydra.utils import instantiate

    cfg = _compose(["+experiment=alpha_sweep", "hydra/launcher=submitit_slurm"])
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"


def test_shared_stages_are_left_to_the_jobs_on_slurm_only():
    slurm = _compose(["+experiment=alpha_sweep", "hydra/launcher=submitit_slurm"])
    local = _compose(["+experiment=alpha_sweep"])
    assert PrepareShared().should_run(slurm) is False
    assert PrepareShared().should_run(local) is True
    assert PrepareShared(enabled=True).should_run(slurm) is True
    assert PrepareShared(enabled=False).should_run(local) is False
