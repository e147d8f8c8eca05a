import json

from omegaconf import OmegaConf

from pipeline.config import RootConfig
from pipeline.tracking import RunLogger, wandb_mode


def _cfg(**logger):
    cfg = OmegaConf.structured(RootConfig)
    cfg.model.name = "x"
    for k, v in logger.items():
        cfg.logger[k] = v
    return cfg


def test_metrics_jsonl_is_always_written(tmp_path):
    log = RunLogger(tmp_path, _cfg(backend="none"))
    log.log({"loss": 1.5}, step=3, stage="train")
    log.event(stage="sample", reused=True)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss"] == 1.5 and rows[0]["step"] == 3 and rows[0]["stage"] == "train"
    assert rows[1]["event"] and rows[1]["reused"]


def test_wandb_mode_follows_config_then_env(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(_cfg()) == "offline"  # never online unless asked
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(_cfg()) == "disabled"
    assert wandb_mode(_cfg(mode="offline")) == "offline"


def test_wandb_offline_run_writes_local_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = RunLogger(tmp_path, _cfg(backend="wandb", group="sweep-1"), job_type="train")
    run = log.wandb_run
    assert run is not None and run.group == "sweep-1" and run.job_type == "train"
    log.log({"loss": 0.5}, step=1, stage="train")
    log.summary({"pass@1": 0.3})
    log.finish()
    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert offline_runs and list(offline_runs[0].glob("*.wandb"))
