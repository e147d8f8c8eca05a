"""Equal budgets: every method of the α-sweep takes the optimiser steps and the policy samples that
conf/experiment/alpha_sweep.yaml states (issue 17 item 1), and the paper preset takes one step per
batch of fresh rollouts (item 3), with the warm-up its config asks for (item 5).

The real train loop (`Trainer.fit`: rounds, parts, epochs, batches, DPH-RL's base rows, the round
files it counts samples from) runs on each method's composed config; only what needs a model is
faked: sampling and verifying (k rows per prompt, seeded verdicts), scoring and the optimiser step,
which records the rows it was given. Seconds for the whole sweep."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import register, validate
from pipeline.stages.train import Trainer, _decided

CONF = Path(__file__).resolve().parents[1] / "conf"
SWEEP = (CONF / "experiment" / "alpha_sweep.yaml").read_text()
SWEEP_METHODS = re.search(r"\+method:\s*(\S+)", SWEEP).group(1).split(",")

register()


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    validate(cfg)
    return cfg


class Log:
    def log(self, *args, **kwargs):
        pass


class FakeTrainer(Trainer):
    """The train loop with the model parts replaced; `events` records what happened in order."""

    def __init__(self, cfg, work: Path, n_theorems: int = 512):
        self._init_state(SimpleNamespace(cfg=cfg, log=Log()), SimpleNamespace(work=work))
        self.theorems = pd.DataFrame({"id": [f"t{i:04d}" for i in range(n_theorems)],
                                      "statement": [f"s{i}" for i in range(n_theorems)]})
        self.events: list[tuple] = []
        self.rng = np.random.default_rng(0)

    def _samples(self, theorems: pd.DataFrame, by: str) -> pd.DataFrame:
        k = self.cfg.sampler.samples_per_prompt  # the `sample` stage draws the base rows with the same k
        ids = np.repeat(theorems["id"].to_numpy(), k)
        verdicts = self.rng.choice(["pass", "fail"], size=len(ids), p=[0.3, 0.7])
        return _decided(pd.DataFrame({"theorem_id": ids, "sample_idx": np.tile(np.arange(k), len(theorems)),
                                      "verdict": verdicts})).assign(sampled_by=by)

    def _online_samples(self, theorems, rnd, part):
        self.events.append(("sample", len(theorems)))
        return self._samples(theorems, "policy")

    def _offline_samples(self, theorems):
        return self._samples(theorems, "base")

    def _score(self, data):
        return data.reset_index(drop=True)

    def _optimise(self, rows, lr):
        ref = int((rows["is_ref_sample"] > 0.5).sum()) if "is_ref_sample" in rows else 0
        self.events.append(("step", len(rows) - ref, ref, lr))
        return {"tokens": 0, "loss": 0.0}

    def _resume(self):
        pass

    def _trajectory_point(self, rnd, final=False):  # the validation split is no budget: not drawn here
        pass

    def _checkpoint(self):
        pass

    def _save_policy(self, folder):
        pass


def stated_budget() -> tuple[int, int]:
    """(policy samples, optimiser steps) as alpha_sweep.yaml's comment states them."""
    samples = re.search(r"= ([\d,]+) training samples per method", SWEEP).group(1)
    steps = re.search(r"\((\d+) steps\)", SWEEP).group(1)
    return int(samples.replace(",", "")), int(steps)


def test_every_method_of_the_sweep_takes_the_same_steps_on_the_same_policy_samples(tmp_path):
    base = _compose(["+experiment=alpha_sweep"])
    t, k = base.train, base.sampler.samples_per_prompt
    samples = t.rounds * t.prompts_per_round * k
    steps = t.rounds * t.epochs_per_round * t.prompts_per_round * k // t.batch_size
    assert (samples, steps) == stated_budget() == (6144, 96)
    assert len(SWEEP_METHODS) >= 17 and "dph_rl" in SWEEP_METHODS and "grpo_authors" in SWEEP_METHODS
    seen = {}
    for method in SWEEP_METHODS:
        cfg = _compose(["+experiment=alpha_sweep", f"+method={method}"])
        trainer = FakeTrainer(cfg, tmp_path / method)
        stats = trainer.fit()
        step_rows = [e[1] for e in trainer.events if e[0] == "step"]
        assert step_rows == [t.batch_size] * steps, method  # every step: batch_size policy samples
        assert sum(step_rows) == stats["train_samples"]
        seen[method] = (stats["steps"], stats["train_samples"], stats["planned_steps"])
        if trainer.spec.needs_base_samples:  # DPH-RL: the base rows ride along, 8 per prompt, not budget
            assert stats["reference_samples"] == samples
            assert [e[2] for e in trainer.events if e[0] == "step"] == [t.batch_size] * steps
        else:
            assert stats["reference_samples"] == 0
    assert set(seen.values()) == {(steps, samples, steps)}, seen


def test_the_paper_preset_takes_one_step_per_batch_of_fresh_rollouts_on_the_same_budget(tmp_path):
    cfg = _compose(["+experiment=alpha_sweep", "+method=alpha_dpg_paper"])
    trainer = FakeTrainer(cfg, tmp_path / "paper")
    stats = trainer.fit()
    assert (stats["steps"], stats["train_samples"]) == stated_budget()[::-1]
    steps = stated_budget()[1]
    kinds = [e[0] for e in trainer.events]
    assert kinds == ["sample", "step"] * steps  # sample → step → sample → step: no step on stale samples
    per_step = cfg.train.batch_size // cfg.sampler.samples_per_prompt
    assert [e[1] for e in trainer.events if e[0] == "sample"] == [per_step] * steps
    # 5 % warm-up of 96 steps: 5 steps rising to lr (lr/5, 2lr/5, …), then lr
    lr, warm = cfg.train.lr, round(0.05 * steps)
    assert warm == 5
    expected = [lr * (i + 1) / warm for i in range(warm)] + [lr, lr]
    assert [e[3] for e in trainer.events if e[0] == "step"][:warm + 2] == pytest.approx(expected)
    assert len(list((tmp_path / "paper").glob("round-*-part-*.parquet"))) == steps


def test_a_method_with_rounds_samples_once_per_round_and_warm_up_is_off_by_default(tmp_path):
    cfg = _compose(["+experiment=alpha_sweep", "+method=dpg_a05"])
    trainer = FakeTrainer(cfg, tmp_path / "a05")
    trainer.fit()
    kinds = [e[0] for e in trainer.events]
    rounds, steps = cfg.train.rounds, stated_budget()[1]
    assert kinds == (["sample"] + ["step"] * (steps // rounds)) * rounds
    assert {e[3] for e in trainer.events if e[0] == "step"} == {cfg.train.lr}
