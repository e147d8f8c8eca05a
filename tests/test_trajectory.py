"""Training trajectories: the policy evaluated on the validation split before training and after
every `eval.trajectory_every` rounds (and the last), kept across a kill, reported by the sweep report."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import register
from pipeline.context import build_context
from tests.faults import Killed, kill_at

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["dataset.train_limit=16", "sampler.samples_per_prompt=4", "train.rounds=3", "train.prompts_per_round=8",
         "train.batch_size=16", "dataset.valid_limit=8", "eval.trajectory_samples=4", "threads=1",
         "logger.backend=none", "progress=false", "train.checkpoint_every_steps=1"]


def _ctx(tmp_path, *overrides):
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"output_dir={tmp_path}", "+method=grpo", *SMALL, *overrides])
    return build_context(cfg, tmp_path / "run")


def test_the_trajectory_has_a_point_per_round_from_the_base_model_on(tmp_path):
    art = _ctx(tmp_path).stage("train")
    points = art.meta["trajectory"]
    assert [p["round"] for p in points] == [0, 1, 2, 3]
    assert [p["steps"] for p in points] == [0, 2, 4, 6]  # 8 prompts × 4 samples a round: 2 steps of 16
    for p in points:
        assert p["k"] == 4 and 0 <= p["pass@1"] <= p["pass@4"] <= 1
    assert points[0]["pass@4"] > 0  # the shipped model proves some validation theorems
    every = _ctx(tmp_path / "b", "eval.trajectory_every=2").stage("train").meta["trajectory"]
    assert [p["round"] for p in every] == [0, 2, 3]  # every second round, and the last
    assert every[0] == points[0]  # round 0 is the base model: the same draws, the same numbers


def test_a_killed_run_keeps_its_points_and_ends_with_the_same_trajectory(tmp_path, monkeypatch):
    from pipeline.stages import train

    reference = _ctx(tmp_path / "a").stage("train").meta["trajectory"]

    kill_at(monkeypatch, train, "train", "step", 2)
    with pytest.raises(Killed):
        _ctx(tmp_path / "b").stage("train")
    monkeypatch.undo()
    resumed = _ctx(tmp_path / "b").stage("train").meta["trajectory"]
    assert [p["round"] for p in resumed] == [0, 1, 2, 3]
    assert resumed == reference


def test_no_trajectory_keeps_the_train_key_it_always_had(tmp_path):
    from pipeline.stages.train import trajectory_settings

    ctx = _ctx(tmp_path, "eval.trajectory_samples=0")
    assert trajectory_settings(ctx.cfg) is None
    with_it = _ctx(tmp_path / "b")
    assert trajectory_settings(with_it.cfg)["n"] == 4
