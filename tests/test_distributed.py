"""The FSDP code path on CPU: two gloo processes under torchrun take one training step on the tiny
model, and the loss, gradient norm and updated weights match the single-process step."""

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


def step(root, out, strategy, grad_accum, nproc=1):
    """One step: in this process for nproc=1, else under torchrun with nproc gloo processes."""
    if nproc == 1:
        return local_step(root, strategy, grad_accum)
    args = [str(root / "model"), str(root / "rows.pkl"), str(out), strategy, str(grad_accum)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--standalone", str(STEP), *args]
    repo = Path(__file__).resolve().parents[1]
    # the checkout under test first on the path (a script's own folder is what Python adds)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=repo, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return torch.load(out, weights_only=False)


def local_step(root, strategy, grad_accum):
    tcfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                           {"strategy": strategy, "grad_accum": int(grad_accum), "lr": 1e-2})
    model, _ = load(root / "model", "cpu", "float32")
    model = distributed.prepare(model, tcfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr)
    metrics = optimise_step(model, optimizer, pd.read_pickle(root / "rows.pkl"), tcfg, distributed.Dist())
    return {"loss": metrics["loss"], "grad_norm": metrics["grad_norm"], "state": model.state_dict(), "world": 1}


def test_two_process_fsdp_step_matches_the_single_process_step(setup):
    single = step(setup, setup / "single.pt", "none", 1)
    sharded = step(setup, setup / "fsdp.pt", "fsdp", 1, nproc=2)
    assert sharded["world"] == 2
    assert sharded["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-6)
    assert sharded["grad_norm"] == pytest.approx(single["grad_norm"], rel=1e-4)
    assert single["state"].keys() == sharded["state"].keys()
    for name, value in single["state"].items():
        torch.testing.assert_close(sharded["state"][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_accumulation_takes_the_same_step(setup):
    one = step(setup, setup / "acc1.pt", "none", 1)
    two = step(setup, setup / "acc2.pt", "none", 2)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    for name, value in one["state"].items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_rank_share_deals_prompts_and_weights_them_to_the_whole_batch():
    groups = [np.arange(0, 2), np.arange(2, 5), np.arange(5, 6)]
    shares = [rank_share(groups, r, 2, 2) for r in range(2)]
    rows = sorted(int(i) for share in shares for idx, w in share if w > 0 for i in idx)
    assert rows == list(range(6))  # every row once
    # weights: each piece's share of the 6 rows, times world=2 (FSDP averages over ranks)
    assert sum(w for share in shares for _, w in share) == pytest.approx(2.0)
    assert all(len(s) == 2 for s in shares)  # same number of micro-batches on every rank
    assert shares[1][1][1] == 0.0  # rank 1 has one prompt: its second micro-batch is a weight-0 filler


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
