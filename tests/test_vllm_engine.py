"""sampler=vllm against the REAL vLLM engine (opt-in: `make test-vllm`, which builds vLLM's CPU build in
.venv-vllm and runs `pytest -m vllm` there; skipped wherever vllm is not importable).

The model is the embedded tiny_prop Llama at a size vLLM's CPU attention takes (head size 32; the
smoke model's 16 is refused), pretrained once by the pipeline's own `pretrain` stage. With
DMVR_VLLM_TEST_STORE set (the make target sets it) the pretrained model persists between runs, so
the pretraining is paid once; every sample, evaluation and training run is made afresh in a
temporary store.

Covered: the CPU settings the sampler chooses; seeded samples independent of the rest of the batch;
recorded log-probs equal teacher forcing; pass@k equal to the `hf` sampler's within sampling noise on
a fixed subset; vLLM's own in-place reload caught by the log-prob check; and a 3-round online α-DPG
run whose policy really changes, with the engine re-created and checked every round.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
vllm = pytest.importorskip(
    "vllm", reason="vLLM is not installed here: `make test-vllm` builds vLLM's CPU build in .venv-vllm and runs these")

ROOT = Path(__file__).resolve().parents[1]
# tiny_prop's shape at head size 32 (hidden 64 / 2 heads), pretrained briefly: enough to prove some
# eval and train theorems, so pass@k and the online rewards are not all zero.
MODEL = ["model.hidden_size=64", "model.intermediate_size=192", "model.num_layers=2", "model.num_heads=2",
         "pretrain.steps=3000"]
EVAL = ["dataset.eval_limit=40", "eval.samples_per_prompt=32"]  # no eval.ks: it follows samples_per_prompt


def run_pipeline(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("DMVR_FAULT", None)
    cmd = [sys.executable, "-m", "pipeline", f"output_dir={out}", "progress=false", "logger.backend=none",
           "threads=1", "sampler.num_threads=1", *overrides]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-6000:])
    return done


def artifact(done: subprocess.CompletedProcess, stage: str) -> Path:
    """The artifact folder a run printed for `stage` ("  <stage>  <path>" in its closing lines)."""
    for line in done.stderr.splitlines()[::-1]:
        parts = line.split()
        if len(parts) == 2 and parts[0] == stage:
            return Path(parts[1])
    raise AssertionError(f"no {stage} artifact in the run's output:\n{done.stderr[-2000:]}")


def run_folder(done: subprocess.CompletedProcess) -> Path:
    line = next(ln for ln in done.stderr.splitlines() if "run folder:" in ln)
    return Path(line.split("run folder:")[1].strip())


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> str:
    """The pretrained model; only it is kept in DMVR_VLLM_TEST_STORE (every test samples afresh)."""
    given = os.environ.get("DMVR_VLLM_TEST_STORE")
    done = run_pipeline(Path(given) if given else tmp_path_factory.mktemp("pretrain"), "stages=[pretrain]", *MODEL)
    return str(artifact(done, "pretrain") / "model")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A fresh artifact store for this session's samples, evaluations and training."""
    return tmp_path_factory.mktemp("vllm-store")


def _cfg(*overrides):
    from hydra import compose, initialize_config_dir

    from pipeline.config import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="module")
def prompts():
    from pipeline.data import load_theorems
    from pipeline.prompts import build_prompts

    cfg = _cfg()
    return build_prompts(cfg, load_theorems(cfg.dataset.eval_path, 20))


@pytest.fixture(scope="module")
def engine(base_model):
    from pipeline.sampling.vllm import VLLMSampler

    cfg = _cfg("sampler=vllm")  # the shipped sampler config: the CPU settings are the sampler's own choice
    sampler = VLLMSampler(base_model, cfg.sampler, cfg.model)
    yield sampler
    sampler.close()


def test_the_sampler_chooses_the_cpu_settings(engine):
    assert engine.on_cpu and engine.reload == "recreate"
    assert engine.kwargs["enable_chunked_prefill"] is False
    assert engine.kwargs["kv_cache_memory_bytes"] == 2 * 2**30


def test_seeded_samples_do_not_depend_on_the_rest_of_the_batch(engine, prompts):
    """20 prompts × 8 seeded samples (the batch size at which chunked prefill killed the engine), the
    first three alone, and the first two beside other prompts: a prompt's samples are the same."""
    kw = dict(n=8, temperature=1.0, top_p=1.0, max_new_tokens=160, seed=5)
    full = engine.sample(prompts, **kw)
    alone = engine.sample(prompts[:3], **kw)
    mixed = engine.sample(prompts[:2] + prompts[10:20], **kw)
    key = lambda recs, k: [r["token_ids"] for r in recs if r["prompt_idx"] < k]  # noqa: E731
    assert key(full, 3) == key(alone, 3)
    assert key(full, 2) == key(mixed, 2)
    other_seed = engine.sample(prompts[:3], **{**kw, "seed": 6})
    assert key(other_seed, 3) != key(alone, 3)  # the seed matters: the samples are not constant
    assert len({tuple(r["token_ids"]) for r in full}) > 100  # 160 samples, nearly all distinct


def test_recorded_logprobs_equal_teacher_forcing(engine, base_model, prompts):
    import torch

    from pipeline.model import completion_logprobs, encode_prompts, load
    from pipeline.sampling.vllm import check_logprobs

    records = engine.sample(prompts, n=8, temperature=1.0, max_new_tokens=160, seed=11)
    model, tok = load(base_model, "cpu", "float32")
    ids = encode_prompts(tok, prompts)
    with torch.no_grad():
        lp, mask = completion_logprobs(model, [ids[r["prompt_idx"]] for r in records],
                                       [r["token_ids"] for r in records])
    tf = (lp.double() * mask).sum(1).numpy()
    engine_logp = np.array([r["logp"] for r in records])
    per_token = np.abs(engine_logp - tf) / np.array([r["num_tokens"] for r in records])
    print(f"\n[vllm] {len(records)} samples: |engine - teacher forcing| per token max {per_token.max():.2e}, "
          f"per sample max {np.abs(engine_logp - tf).max():.2e} nats")
    assert per_token.max() < 1e-3
    rows = [{**r, "prompt_ids": ids[r["prompt_idx"]]} for r in records]
    assert check_logprobs(model, rows, tol=0.01) < 1e-3


def test_pass_at_k_agrees_with_the_hf_sampler(store, base_model):
    """The two samplers draw from the same model at temperature 1: on a fixed subset (40 eval theorems,
    32 samples each) their pass@1 differ by sampling noise only."""
    results = {}
    for name in ("hf", "vllm"):
        done = run_pipeline(store, "stages=[evaluate]", "train=none", f"sampler={name}", f"model.path={base_model}",
                            *MODEL, *EVAL)
        ev = artifact(done, "evaluate")
        results[name] = (json.loads((ev / "summary.json").read_text()), pd.read_parquet(ev / "per_theorem.parquet"))
    (s_hf, t_hf), (s_vllm, t_vllm) = results["hf"], results["vllm"]
    speed = {}
    for meta_file in (store / "store" / "sample").glob("*/meta.json"):
        m = json.loads(meta_file.read_text())
        if m.get("split") == "eval" and m.get("n") == 32 and m.get("num_theorems") == 40:
            speed[m["sampler"]] = m["tokens_per_s"]
    assert sorted(k for k in s_hf if k.startswith("pass@")) == [f"pass@{k}" for k in (1, 16, 2, 32, 4, 8)]
    p = (t_hf.set_index("theorem_id")["c"] + t_vllm.set_index("theorem_id")["c"]) / (2 * 32)
    # standard error of the difference of two independent means of per-theorem pass rates
    se = math.sqrt(2 * float((p * (1 - p) / 32).sum())) / len(p)
    diff = s_vllm["pass@1"] - s_hf["pass@1"]
    print(f"\n[vllm] pass@1 hf {s_hf['pass@1']:.4f} vllm {s_vllm['pass@1']:.4f} (diff {diff:+.4f}, se {se:.4f}); "
          f"pass@32 hf {s_hf['pass@32']:.3f} vllm {s_vllm['pass@32']:.3f}; "
          f"tokens/s (when sampled) hf {speed.get('hf', 0):.0f} vllm {speed.get('vllm', 0):.0f}")
    assert s_hf["pass@1"] > 0 and s_vllm["pass@1"] > 0
    assert abs(diff) <= 4 * se


def test_vllms_own_in_place_reload_on_cpu_is_caught_by_the_logprob_check(base_model, prompts, tmp_path):
    """vLLM's CPU backend repacks its linear layers at start-up: the model's load_weights fails and
    vLLM's reload_weights runs but then samples from neither model. The check must say so."""
    import torch

    from pipeline.model import encode_prompts, load
    from pipeline.sampling.vllm import VLLMSampler, WeightReloadError, check_logprobs

    new, tok = load(base_model, "cpu", "float32")
    torch.manual_seed(0)
    with torch.no_grad():
        for w in new.parameters():
            w.add_(0.05 * torch.randn_like(w))
    new.save_pretrained(tmp_path / "new")
    tok.save_pretrained(tmp_path / "new")
    cfg = _cfg("sampler=vllm", "sampler.weight_reload=inplace")
    sampler = VLLMSampler(base_model, cfg.sampler, cfg.model)
    try:
        with pytest.raises(Exception, match=r"into parameter \(torch.Size\(\[0\]\)\)"):
            sampler.load_weights(str(tmp_path / "new"))  # our in-place route fails loudly on CPU
        sampler.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(tmp_path / "new")})
        sampler.llm.reset_prefix_cache()
        records = sampler.sample(prompts[:4], n=2, max_new_tokens=60, seed=0)
    finally:
        sampler.close()
    ids = encode_prompts(tok, prompts[:4])
    rows = [{**r, "prompt_ids": ids[r["prompt_idx"]]} for r in records]
    with pytest.raises(WeightReloadError, match="does not sample from the policy's current weights"):
        check_logprobs(new, rows, tol=0.01)


def test_three_online_rounds_recreate_the_engine_and_check_it_each_round(store, base_model):
    """Online α-DPG for 3 rounds with sampler=vllm: rewards are not all zero, the policy moves, and each
    round's engine (re-created on the CPU) samples from that round's policy (checked by the stage)."""
    done = run_pipeline(store, "stages=[train]", "sampler=vllm", f"model.path={base_model}", *MODEL,
                        "dataset.train_limit=64", "train.mode=online", "train.rounds=3", "train.prompts_per_round=32",
                        "sampler.samples_per_prompt=8", "train.batch_size=64", "train.lr=3e-4")
    work = artifact(done, "train")
    rounds = [pd.read_parquet(work / f"round-{r:04d}.parquet") for r in range(3)]
    rewards = [float(d["reward"].mean()) for d in rounds]
    assert sum(rewards) > 0, rewards
    metrics = [json.loads(line) for line in (run_folder(done) / "metrics.jsonl").read_text().splitlines()]
    gaps = [m["sampler_logp_gap"] for m in metrics if "sampler_logp_gap" in m]
    reloads = [m for m in metrics if "sampler_reload_s" in m]
    samples = [m for m in metrics if m.get("stage") == "train" and "round" in m]  # one row per round's data
    assert len(gaps) == 3 and max(gaps) < 0.01, gaps
    assert [m["sampler_reload"] for m in reloads] == ["recreate"] * 3
    steps_taken = [m for m in metrics if m.get("stage") == "train" and m.get("grad_norm", 0) > 0]
    assert steps_taken, "every optimiser step was skipped (no gradient signal)"
    from safetensors.torch import load_file

    before = load_file(str(Path(base_model) / "model.safetensors"))
    after = load_file(str(work / "model" / "model.safetensors"))
    moved = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert moved > 1e-4, moved
    # the cost of a fresh engine per round, against the rest of the round's data (sample, verify, score)
    rest = [a["time"] - r["time"] for r, a in zip(reloads, samples)]
    print(f"\n[vllm] online rounds: rewards {[round(r, 4) for r in rewards]}, logp gaps {[f'{g:.1e}' for g in gaps]}, "
          f"engine start per round {[round(m['sampler_reload_s'], 1) for m in reloads]} s, then sampling + "
          f"verifying + scoring {[round(t, 1) for t in rest]} s for {[m['samples'] for m in samples]} samples; "
          f"{len(steps_taken)} steps with a gradient; weights moved by up to {moved:.3g}")
