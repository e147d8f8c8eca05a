"""The FSDP code path on CPU: two gloo processes under torchrun take one training step on the tiny
model, and the loss, gradient norm and gradients match the single-process step; gradient
accumulation takes the same step; both for objectives whose normalisation spans the whole batch.

Why gradients and not the weights after the step: AdamW's first step moves every weight by about
lr·g/(|g| + ε). Where |g| is near ε (1e-8) that is a steep function of g, so float noise of ~1e-11
in such a gradient (summation order differs between one batch and its pieces) moved a weight by
~2e-6 at lr 1e-2 although the losses and gradients agreed to 7 digits: a comparison of updated
weights tests Adam's conditioning, not the split."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from omegaconf import OmegaConf

from pipeline import distributed
from pipeline.config import TrainConfig
from pipeline.distributed import rank_share
from pipeline.model import completion_logprobs, encode_completions, encode_prompts, load, new_model, train_tokenizer
from pipeline.stages.train import optimise_step

STEP = Path(__file__).parent / "fsdp" / "step.py"
PROMPTS = ["theorem a (p q : Prop) : p ∧ q → q ∧ p := by", "theorem b (p : Prop) : p → ¬¬p := by",
           "theorem c (p q r : Prop) : (p → q) → (q → r) → p → r := by", "theorem d (p : Prop) : p → p := by"]
COMPLETIONS = ["\n  intro h\n  exact ⟨h.2, h.1⟩", " exact fun hp hnp => hnp hp", "\n  intro h1 h2 h3\n  exact h2 (h1 h3)",
               " intro h\n  exact h", " exact id", "\n  simp"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model folder and one step's rows: 4 theorems × 2 samples, scored by the model itself."""
    root = tmp_path_factory.mktemp("fsdp")
    tok = train_tokenizer(PROMPTS + COMPLETIONS * 4, 300)
    torch.manual_seed(0)
    model = new_model(SimpleNamespace(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                      max_length=256), tok)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    rows = []
    for t, prompt in enumerate(PROMPTS):
        for s in range(2):
            rows.append({"theorem_id": f"t{t}", "prompt": prompt, "completion": COMPLETIONS[(t + 3 * s) % 6],
                         "reward": float((t + s) % 2), "log_z": float(np.log(0.5))})
    df = pd.DataFrame(rows)
    df["prompt_ids"] = encode_prompts(tok, df["prompt"])
    df["token_ids"] = encode_completions(tok, df["completion"])
    with torch.no_grad():
        lp, mask = completion_logprobs(model, list(df["prompt_ids"]), list(df["token_ids"]))
    df["ref_logp"] = [lp[i, :int(mask[i].sum())].tolist() for i in range(len(df))]
    df["old_logp"] = [[x - 0.1 for x in v] for v in df["ref_logp"]]  # a proposal a little off the policy
    df.to_pickle(root / "rows.pkl")
    return root


@pytest.fixture(scope="module")
def uneven(setup):
    """A harder step: prompts of 3, 2, 2 and 1 policy samples, and DPH-RL reference rows (2 per prompt)
    on top, so micro-batches and ranks get unequal numbers of rows, prompts and tokens."""
    rows = pd.read_pickle(setup / "rows.pkl")
    extra = rows.iloc[[0]].assign(completion=COMPLETIONS[5])
    parts = []
    for t, group in rows.groupby("theorem_id", sort=False):
        policy = group.assign(is_ref_sample=0.0)
        if t == "t0":
            policy = pd.concat([policy, extra.assign(is_ref_sample=0.0)])
        if t == "t3":
            policy = policy.iloc[:1]
        ref = group.assign(is_ref_sample=1.0, reward=1.0)
        parts += [policy, ref]
    df = pd.concat(parts, ignore_index=True)
    model, tok = load(setup / "model", "cpu", "float32")
    df["token_ids"] = encode_completions(tok, df["completion"])
    with torch.no_grad():
        lp, mask = completion_logprobs(model, list(df["prompt_ids"]), list(df["token_ids"]))
    df["ref_logp"] = [lp[i, :int(mask[i].sum())].tolist() for i in range(len(df))]
    df["old_logp"] = [[x - 0.1 for x in v] for v in df["ref_logp"]]
    path = setup / "uneven.pkl"
    df.to_pickle(path)
    return path


# objectives whose loss normalises over the whole batch: by weights, tokens or two row sets
SPANNING = {
    "alpha_dpg_batch_token_mean": {"objective": "alpha_dpg", "loss_agg": "token_mean",
                                   "alpha_dpg": {"norm": "batch", "z_source": "group_is"}},
    "dph_rl_token_mean": {"objective": "dph_rl", "mode": "online", "loss_agg": "token_mean",
                          "dph_rl": {"require_all_solved": False}},
    "grpo_token_mean": {"objective": "grpo", "mode": "online", "loss_agg": "token_mean"},
    "rsft_default_scale": {"objective": "rsft"},
}


def step(root, out, strategy, grad_accum, nproc=1, rows="rows.pkl", overrides=None):
    """One step: in this process for nproc=1, else under torchrun with nproc gloo processes."""
    overrides = overrides or {}
    if nproc == 1:
        return local_step(root, strategy, grad_accum, rows, overrides)
    args = [str(root / "model"), str(root / rows), str(out), strategy, str(grad_accum), json.dumps(overrides)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--standalone", str(STEP), *args]
    repo = Path(__file__).resolve().parents[1]
    # the checkout under test first on the path (a script's own folder is what Python adds)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=repo, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return torch.load(out, weights_only=False)


def local_step(root, strategy, grad_accum, rows="rows.pkl", overrides=None):
    tcfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                           {"strategy": strategy, "grad_accum": int(grad_accum), "lr": 1e-2, **(overrides or {})})
    model, _ = load(root / "model", "cpu", "float32")
    model = distributed.prepare(model, tcfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr)
    metrics = optimise_step(model, optimizer, pd.read_pickle(root / rows), tcfg, distributed.Dist())
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return {"loss": metrics["loss"], "grad_norm": metrics["grad_norm"], "grads": grads, "world": 1}


def assert_same_step(a, b):
    """Same loss, gradient norm and (clipped) gradient of every parameter, to float32 summation noise."""
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-7)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    assert a["grads"].keys() == b["grads"].keys()
    scale = max(float(g.abs().max()) for g in a["grads"].values())
    for name, value in a["grads"].items():
        torch.testing.assert_close(b["grads"][name], value, rtol=1e-4, atol=1e-6 * scale, msg=name)


def test_two_process_fsdp_step_matches_the_single_process_step(setup):
    single = step(setup, setup / "single.pt", "none", 1)
    sharded = step(setup, setup / "fsdp.pt", "fsdp", 1, nproc=2)
    assert sharded["world"] == 2
    assert_same_step(single, sharded)


def test_two_process_fsdp_step_is_the_whole_batch_step_when_the_loss_spans_the_batch(setup, uneven):
    """DPH-RL with token-mean scaling: the RL and divergence terms each divide by their own rows'
    token count over the WHOLE batch, which two ranks holding different rows cannot know alone."""
    overrides = SPANNING["dph_rl_token_mean"]
    single = step(setup, setup / "single_dph.pt", "none", 1, rows=uneven.name, overrides=overrides)
    sharded = step(setup, setup / "fsdp_dph.pt", "fsdp", 1, nproc=2, rows=uneven.name, overrides=overrides)
    assert sharded["world"] == 2
    assert_same_step(single, sharded)


def test_gradient_accumulation_takes_the_same_step(setup):
    one = step(setup, setup / "acc1.pt", "none", 1)
    two = step(setup, setup / "acc2.pt", "none", 2)
    assert_same_step(one, two)


@pytest.mark.parametrize("case", sorted(SPANNING))
@pytest.mark.parametrize("micro_batches", [2, 3])
def test_a_batch_step_does_not_depend_on_how_it_is_split(setup, uneven, case, micro_batches):
    """issue 17 item 10: batch-normalised weights, token_mean, DPH-RL's two terms: the loss and the
    gradient of a batch are the same however many micro-batches it is cut into."""
    one = step(setup, None, "none", 1, rows=uneven.name, overrides=SPANNING[case])
    split = step(setup, None, "none", micro_batches, rows=uneven.name, overrides=SPANNING[case])
    assert_same_step(one, split)


def test_rank_share_deals_whole_prompts_to_ranks_and_micro_batches():
    groups = [np.arange(0, 2), np.arange(2, 5), np.arange(5, 6)]
    shares = [rank_share(groups, r, 2, 2) for r in range(2)]
    rows = sorted(int(i) for share in shares for idx, live in share if live for i in idx)
    assert rows == list(range(6))  # every row once
    for share in shares:
        for idx, live in share:  # a prompt is never cut
            assert not live or all(set(g) <= set(idx) or not set(g) & set(idx) for g in map(set, groups))
    assert all(len(s) == 2 for s in shares)  # same number of micro-batches on every rank
    assert shares[1][1][1] is False  # rank 1 has one prompt: its second micro-batch is a filler


@pytest.mark.parametrize("skip", [True, False])
def test_a_step_without_signal_leaves_the_weights_alone_only_when_skipped(setup, skip):
    """After one informative step Adam has momentum; a batch with no accepted proof (zero gradient)
    would still move every weight on it. train.skip_empty_steps (default) does not take that step."""
    tcfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), {"lr": 1e-2, "skip_empty_steps": skip})
    model, _ = load(setup / "model", "cpu", "float32")
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr)
    rows = pd.read_pickle(setup / "rows.pkl")
    first = optimise_step(model, optimizer, rows, tcfg, distributed.Dist())
    assert first["grad_norm"] > 0 and not first["skipped"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    empty = optimise_step(model, optimizer, rows.assign(reward=0.0), tcfg, distributed.Dist())
    assert empty["grad_norm"] == 0.0 and empty["skipped"] == skip
    moved = max(float((model.state_dict()[k] - v).abs().max()) for k, v in before.items())
    assert (moved == 0.0) == skip
