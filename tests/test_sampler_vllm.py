"""sampler=vllm without vLLM: a fake `vllm` module in sys.modules whose outputs have the shape of
vLLM's own (RequestOutput.outputs -> CompletionOutput with index, text, token_ids, cumulative_logprob,
logprobs = one {token_id: Logprob(logprob, rank, decoded_token)} dict per generated token, finish_reason).
Checks the records, the log-prob sums, the engine and sampling settings taken from the config, the
per-worker weight reload, and the error when vLLM is missing."""

import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.stages import sample as sample_stage
from pipeline.sampling import vllm as sampler_vllm
from pipeline.context import Context
from pipeline.store import ArtifactStore
from pipeline.tracking import RunLogger


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list
    outputs: list
    finished: bool = True


class SamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


@dataclass
class FakeLLM:
    """Records its arguments; sample i of a prompt is tokens [10+i, 20+i, EOS=2] (or cut at max_tokens)."""
    kwargs: dict
    calls: list = field(default_factory=list)
    rpcs: list = field(default_factory=list)

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((list(prompts), params))
        outs = []
        for p, (prompt, sp) in enumerate(zip(prompts, params)):
            comps = []
            for i in range(sp.n):
                toks = [10 + i, 20 + i, 2][:sp.max_tokens]
                # the sampled token is not always the most likely one: a rank-1 rival is listed too
                lps = [{t: Logprob(-0.5 * (k + 1), rank=2, decoded_token="x"), 99: Logprob(-0.1, rank=1)}
                       for k, t in enumerate(toks)]
                comps.append(CompletionOutput(index=i, text=f"{prompt}|{i}", token_ids=toks,
                                              cumulative_logprob=sum(-0.5 * (k + 1) for k in range(len(toks))),
                                              logprobs=lps, finish_reason="stop" if toks[-1] == 2 else "length"))
            outs.append(RequestOutput(str(p), prompt, [1], comps[::-1]))  # index order is not list order
        return outs

    def collective_rpc(self, method, args=(), kwargs=None):
        worker = types.SimpleNamespace(model_runner=types.SimpleNamespace(model=types.SimpleNamespace(
            load_weights=lambda weights: {name for name, _ in weights})))
        result = [method(worker, *args)]
        self.rpcs.append(result)
        return result

    def reset_prefix_cache(self):
        return True


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.engines = []

    def make_llm(**kwargs):
        engine = FakeLLM(kwargs)
        module.engines.append(engine)
        return engine

    module.LLM = make_llm
    module.SamplingParams = SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


SCFG = OmegaConf.create({"name": "vllm", "seed": 3, "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
                         "max_model_len": 4096})


def test_records_match_the_hf_sampler_layout_and_sum_the_sampled_tokens(fake_vllm):
    engine = sampler_vllm.VLLMSampler("some/model", SCFG, OmegaConf.create({"dtype": "bfloat16"}))
    records = engine.sample(["a", "b"], n=3, temperature=1.0, top_p=1.0, max_new_tokens=3, seed=7)
    assert [(r["prompt_idx"], r["sample_idx"]) for r in records] == [(p, s) for p in range(2) for s in range(3)]
    assert set(records[0]) == {"prompt_idx", "sample_idx", "completion", "token_ids", "logp", "sample_logp",
                               "num_tokens", "finished"}
    r = records[4]  # prompt 1, sample 1
    assert r["token_ids"] == [11, 21, 2] and r["num_tokens"] == 3 and r["finished"] is True
    assert r["completion"] == "b|1"
    assert r["logp"] == pytest.approx(-0.5 - 1.0 - 1.5)  # the sampled tokens, not the rank-1 rival
    assert r["sample_logp"] == r["logp"]  # temperature 1, top-p 1: the sampling distribution is the model's


def test_engine_and_sampling_settings_come_from_the_config(fake_vllm):
    engine = sampler_vllm.VLLMSampler("some/model", SCFG, OmegaConf.create({"dtype": "bfloat16"}))
    kw = fake_vllm.engines[0].kwargs
    assert kw["model"] == "some/model" and kw["tensor_parallel_size"] == 2 and kw["gpu_memory_utilization"] == 0.5
    assert kw["max_model_len"] == 4096 and kw["seed"] == 3 and kw["dtype"] == "bfloat16"
    assert kw["logprobs_mode"] == "raw_logprobs"
    engine.sample(["a", "b", "c"], n=4, temperature=0.7, top_p=0.9, max_new_tokens=50, seed=7)
    engine.sample(["b"], n=4, temperature=0.7, top_p=0.9, max_new_tokens=50, seed=7)
    (_, params), (_, alone) = fake_vllm.engines[0].calls
    sp = params[1]
    assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.logprobs) == (4, 0.7, 0.9, 50, 0)
    seeds = [p.seed for p in params]
    # each prompt its own seed, far apart (vLLM seeds sample i with seed + i)
    assert len(set(seeds)) == 3 and min(abs(a - b) for a in seeds for b in seeds if a != b) > 4
    assert alone[0].seed == sampler_vllm.prompt_seed(7, 0)


def test_processed_sampling_has_no_free_sample_logp_and_greedy_scores_zero(fake_vllm):
    engine = sampler_vllm.VLLMSampler("m", SCFG)
    hot = engine.sample(["a"], n=1, temperature=0.7, max_new_tokens=2, seed=0)[0]
    assert math.isnan(hot["sample_logp"]) and hot["logp"] == pytest.approx(-1.5)
    assert hot["finished"] is False and hot["num_tokens"] == 2  # cut by max_tokens, no EOS
    greedy = engine.sample(["a"], n=1, temperature=0.0, max_new_tokens=3, seed=0)[0]
    assert greedy["sample_logp"] == 0.0


def test_missing_logprobs_are_an_error():
    with pytest.raises(ValueError, match="logprobs"):
        sampler_vllm.token_logp_sum([1, 2], None)
    with pytest.raises(ValueError, match="2 logprob entries for 3 tokens"):
        sampler_vllm.token_logp_sum([1, 2, 3], [{1: Logprob(0.0)}, {2: Logprob(0.0)}])


def test_fresh_weights_are_loaded_into_every_worker_from_a_saved_checkpoint(fake_vllm, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"layer.weight": torch.ones(2, 2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"lm_head.weight": torch.ones(2)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    engine = sampler_vllm.VLLMSampler("m", SCFG)
    engine.load_weights(str(tmp_path))
    assert fake_vllm.engines[0].rpcs == [[2]]  # both tensors, from both shards, reached the worker's model


def test_the_sample_stage_dispatches_to_vllm(fake_vllm, tmp_path):
    cfg = OmegaConf.create({
        "model": {"name": "m", "dtype": "bfloat16", "device": "cuda", "prompt_style": "prop"},
        "dataset": {"prompt_template": "{statement} := by", "proof_prefix": "by", "header": ""},
        "sampler": {**OmegaConf.to_container(SCFG)},
        "progress": False,
    })
    ctx = Context(cfg=cfg, store=ArtifactStore(tmp_path / "store"), run_dir=tmp_path / "run",
                  log=RunLogger(tmp_path / "run"))
    store = ArtifactStore(tmp_path / "models")
    model_art = store.commit(store.artifact("pretrain", {"m": 1}), {"external_path": "org/prover"})
    theorems = pd.DataFrame({"id": ["t0", "t1", "t2"], "statement": ["theorem a : True", "theorem b : True",
                                                                     "theorem c : True"]})
    art = sample_stage.generate_samples(ctx, model_art, theorems, split="train", n=2, temperature=1.0, top_p=1.0,
                                        max_new_tokens=3, seed=0, batch_size=8, prompts_per_shard=2)
    df = pd.read_parquet(art.file("samples.parquet"))
    assert list(df.columns) == sample_stage.COLUMNS and len(df) == 6
    assert df["completion"].iloc[3] == "theorem b : True := by|1"
    assert (df["proof"] == "by" + df["completion"]).all()
    assert fake_vllm.engines[0].kwargs["model"] == "org/prover"


def test_without_vllm_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[gpu\]"'):
        sampler_vllm.VLLMSampler("m", SCFG)
