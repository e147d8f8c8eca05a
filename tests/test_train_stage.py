"""The train stage's data handling: log Ẑ over decided samples (issue 17 item 7) and the temperature
at which each objective reads the model's log-probs (item 8)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from pipeline import distributed
from pipeline.config import TrainConfig
from pipeline.model import completion_logprobs, encode_completions, encode_prompts, new_model, train_tokenizer
from pipeline.stages.train import _decided, _log_pass_rate, objective_loss, optimise_step
from test_budget import FakeTrainer, _compose


def test_log_z_is_the_pass_rate_over_the_samples_training_keeps():
    """A verifier `error` is neither pass nor fail: training drops it (`_decided`), so log Ẑ must too."""
    verdicts = pd.DataFrame({"theorem_id": ["a"] * 4 + ["b"] * 2 + ["c"] * 3,
                             "verdict": ["pass", "fail", "error", "error", "error", "error", "pass", "timeout", "fail"]})
    log_z = _log_pass_rate(verdicts)
    assert log_z["a"] == pytest.approx(math.log(1 / 2))  # not log(1/4)
    assert "b" not in log_z  # nothing decided: no estimate (the loss falls back to the in-batch one)
    assert log_z["c"] == pytest.approx(math.log(1 / 3))  # a timeout is a failure, as in training
    kept = _decided(verdicts)
    assert kept.groupby("theorem_id")["reward"].mean().apply(math.log).to_dict() == pytest.approx(log_z)


@pytest.mark.parametrize("method,reads_at_sampler_temperature", [
    ("grpo", True), ("grpo_authors", True), ("mara", True), ("dph_rl", True), ("dpg_a05", False), ("rsft", False),
    ("alpha_dpg_paper", False)])
def test_each_objective_reads_log_probs_where_the_registry_says(tmp_path, method, reads_at_sampler_temperature):
    cfg = _compose([f"+method={method}", "sampler.temperature=0.7"])
    trainer = FakeTrainer(cfg, tmp_path)
    assert trainer.temperature == (0.7 if reads_at_sampler_temperature else 1.0)


def test_on_policy_grpo_ratio_is_one_at_the_sampling_temperature():
    """Samples drawn at T = 0.7 and π_old scored at T = 0.7: the policy must be read at 0.7 too, or
    the PPO ratio of an on-policy step is not 1 (and clipping bites on nothing)."""
    prompts = ["theorem a (p : Prop) : p → p := by", "theorem b (p q : Prop) : p ∧ q → p := by"]
    completions = [" exact id", "\n  intro h\n  exact h.1", " intro h\n  exact h", " exact fun h => h.1"]
    tok = train_tokenizer(prompts + completions * 4, 300)
    torch.manual_seed(0)
    model = new_model(SimpleNamespace(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                      max_length=128), tok)
    rows = pd.DataFrame({"theorem_id": ["a", "a", "b", "b"], "reward": [1.0, 0.0, 1.0, 0.0], "log_z": [0.0] * 4,
                         "prompt": [prompts[0]] * 2 + [prompts[1]] * 2, "completion": completions})
    rows["prompt_ids"] = encode_prompts(tok, rows["prompt"])
    rows["token_ids"] = encode_completions(tok, rows["completion"])
    with torch.no_grad():
        lp_t, mask = completion_logprobs(model, list(rows["prompt_ids"]), list(rows["token_ids"]), temperature=0.7)
        lp_1, _ = completion_logprobs(model, list(rows["prompt_ids"]), list(rows["token_ids"]))
    rows["old_logp"] = [lp_t[i, :int(mask[i].sum())].tolist() for i in range(4)]
    rows["ref_logp"] = [lp_1[i, :int(mask[i].sum())].tolist() for i in range(4)]
    tcfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), {"objective": "grpo", "mode": "online", "lr": 0.0})
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    at_t = optimise_step(model, opt, rows, tcfg, distributed.Dist(), loss_fn=objective_loss(tcfg), temperature=0.7)
    assert at_t["ratio_mean"] == pytest.approx(1.0, abs=1e-5) and at_t["clip_frac"] == 0.0
    at_1 = optimise_step(model, opt, rows, tcfg, distributed.Dist(), loss_fn=objective_loss(tcfg), temperature=1.0)
    assert abs(at_1["ratio_mean"] - 1.0) > 1e-3  # the mismatch item 8 describes
    assert np.isfinite(at_t["loss"])
