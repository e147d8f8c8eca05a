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
    """Records its arguments; sample i of a prompt is tokens [10+i, 20+i, EOS=2] (or cut at max_tokens).

    Token log-probs are -0.5, -1.0, ...; an `honest` engine instead scores its tokens by teacher forcing
    under the Hugging Face model in the folder it was started on (what a correct engine reports)."""
    kwargs: dict
    honest: bool = False
    calls: list = field(default_factory=list)
    rpcs: list = field(default_factory=list)
    shut_down: bool = False

    def __post_init__(self):
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=self._shutdown))

    def _shutdown(self):
        self.shut_down = True

    def _token_logprobs(self, prompt, toks):
        if not self.honest:
            return [-0.5 * (k + 1) for k in range(len(toks))]
        from pipeline.model import completion_logprobs, encode_prompts, load

        if not hasattr(self, "_scorer"):
            self._scorer = load(self.kwargs["model"], "cpu", "float32")
        model, tok = self._scorer
        lp, _ = completion_logprobs(model, encode_prompts(tok, [prompt]), [toks])
        return lp[0, :len(toks)].tolist()

    def generate(self, prompts, params, use_tqdm=True):
        assert not self.shut_down, "generate() on an engine that was shut down"
        self.calls.append((list(prompts), params))
        outs = []
        for p, (prompt, sp) in enumerate(zip(prompts, params)):
            comps = []
            for i in range(sp.n):
                toks = [10 + i, 20 + i, 2][:sp.max_tokens]
                tlp = self._token_logprobs(prompt, toks)
                # the sampled token is not always the most likely one: a rank-1 rival is listed too
                lps = [{t: Logprob(tlp[k], rank=2, decoded_token="x"), 99: Logprob(-0.1, rank=1)}
                       for k, t in enumerate(toks)]
                comps.append(CompletionOutput(index=i, text=f"{prompt}|{i}", token_ids=toks,
                                              cumulative_logprob=sum(tlp), logprobs=lps,
                                              finish_reason="stop" if toks[-1] == 2 else "length"))
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
    """A fake `vllm`; `module.cpu` says where its engine runs (vllm.platforms.current_platform)."""
    module = types.ModuleType("vllm")
    module.engines = []
    module.honest = False
    module.cpu = False

    def make_llm(**kwargs):
        engine = FakeLLM(kwargs, honest=module.honest)
        module.engines.append(engine)
        return engine

    module.LLM = make_llm
    module.SamplingParams = SamplingParams
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: module.cpu)
    module.platforms = platforms
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
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


# --- the CPU settings, the head-size check, the per-round reload and its check -----------------


def test_cpu_settings_are_chosen_on_cpu_and_overridable(fake_vllm, monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    fake_vllm.cpu = True
    sampler_vllm.VLLMSampler("org/model", SCFG)
    kw = fake_vllm.engines[-1].kwargs
    # seeded sampling with chunked prefill kills vLLM's CPU engine; RAM is not reserved by fraction
    assert kw["enable_chunked_prefill"] is False and kw["kv_cache_memory_bytes"] == 2 * 2**30
    cfg = OmegaConf.merge(SCFG, {"enable_chunked_prefill": True, "kv_cache_gib": 0.5})
    sampler_vllm.VLLMSampler("org/model", cfg)
    kw = fake_vllm.engines[-1].kwargs
    assert kw["enable_chunked_prefill"] is True and kw["kv_cache_memory_bytes"] == 2**29
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")  # vLLM's own setting, which vLLM then reads itself
    sampler_vllm.VLLMSampler("org/model", SCFG)
    assert "kv_cache_memory_bytes" not in fake_vllm.engines[-1].kwargs
    fake_vllm.cpu = False  # on a GPU: vLLM's defaults, memory by gpu_memory_utilization
    engine = sampler_vllm.VLLMSampler("org/model", SCFG)
    kw = fake_vllm.engines[-1].kwargs
    assert "enable_chunked_prefill" not in kw and "kv_cache_memory_bytes" not in kw
    assert engine.reload == "inplace"


def _model_folder(path, hidden, heads):
    from types import SimpleNamespace

    from pipeline.model import new_model, train_tokenizer

    tok = train_tokenizer(["theorem t (p : Prop) (h : p) : p := by exact h"] * 20, 300)
    model = new_model(SimpleNamespace(hidden_size=hidden, intermediate_size=64, num_layers=1, num_heads=heads,
                                      max_length=64), tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_an_unsupported_head_size_is_refused_on_cpu_before_the_engine_starts(fake_vllm, tmp_path):
    fake_vllm.cpu = True
    smoke = _model_folder(tmp_path / "smoke", hidden=32, heads=2)  # the smoke experiment's shape: head size 16
    with pytest.raises(ValueError, match=r"head size 16 .*supported: 32, 64.*model.num_heads=1"):
        sampler_vllm.VLLMSampler(smoke, SCFG)
    assert fake_vllm.engines == []
    sampler_vllm.VLLMSampler(_model_folder(tmp_path / "ok", hidden=32, heads=1), SCFG)  # head size 32
    fake_vllm.cpu = False  # GPU attention takes 16
    sampler_vllm.VLLMSampler(smoke, SCFG)
    assert len(fake_vllm.engines) == 2


def test_on_cpu_each_reload_starts_a_fresh_engine_on_the_new_weights(fake_vllm, tmp_path):
    fake_vllm.cpu = True
    engine = sampler_vllm.VLLMSampler("org/model", SCFG)
    assert engine.reload == "recreate"
    engine.load_weights(str(tmp_path / "round-1"))
    first, second = fake_vllm.engines
    assert first.shut_down and not second.shut_down and first.rpcs == []
    assert second.kwargs == {**first.kwargs, "model": str(tmp_path / "round-1")}
    assert engine.sample(["a"], n=1, max_new_tokens=3)[0]["token_ids"] == [10, 20, 2]
    inplace = sampler_vllm.VLLMSampler("org/model", OmegaConf.merge(SCFG, {"weight_reload": "inplace"}))
    assert inplace.reload == "inplace"
    with pytest.raises(ValueError, match="weight_reload='sometimes'"):
        sampler_vllm.VLLMSampler("org/model", OmegaConf.merge(SCFG, {"weight_reload": "sometimes"}))


def test_check_logprobs_accepts_the_models_own_logprobs_and_stops_on_others(tmp_path):
    import torch

    from pipeline.model import completion_logprobs, encode_prompts, load

    model, tok = load(_model_folder(tmp_path / "m", hidden=32, heads=1), "cpu", "float32")
    prompt_ids = encode_prompts(tok, ["theorem t (p : Prop) (h : p) : p := by", "theorem u : True := by"])
    completions = [[5, 9, 2], [7, 2]]
    with torch.no_grad():
        lp, mask = completion_logprobs(model, prompt_ids, completions)
    rows = [{"prompt_ids": p, "token_ids": c, "logp": float((lp[i] * mask[i]).sum())}
            for i, (p, c) in enumerate(zip(prompt_ids, completions))]
    assert sampler_vllm.check_logprobs(model, rows, tol=1e-4) < 1e-4
    stale = [dict(rows[0]), {**rows[1], "logp": rows[1]["logp"] - 0.5}]  # 0.25 nats per token off
    with pytest.raises(sampler_vllm.WeightReloadError, match=r"up to 0\.25 nats per token"):
        sampler_vllm.check_logprobs(model, stale, tol=0.01)
    with pytest.raises(sampler_vllm.WeightReloadError):
        sampler_vllm.check_logprobs(model, [{**rows[0], "logp": math.nan}], tol=0.01)
    assert sampler_vllm.reload_check_tol(SCFG, "bfloat16") == 0.1
    assert sampler_vllm.reload_check_tol(OmegaConf.merge(SCFG, {"reload_check_tol": 0.5}), "float32") == 0.5


def _online_vllm_run(out, *overrides):
    """The smoke experiment up to an online train stage with sampler=vllm, in this process."""
    from hydra import compose, initialize_config_dir

    from pipeline.__main__ import build_context, run_stages

    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose("config", overrides=[
            "+experiment=smoke", f"output_dir={out}", "progress=false", "logger.backend=none", "sampler=vllm",
            "stages=[train]", "model.num_heads=1", "sampler.samples_per_prompt=2", "sampler.max_new_tokens=3",
            "train.mode=online", "train.rounds=2", "train.prompts_per_round=4", "pretrain.steps=10",
            "dataset.train_limit=8", *overrides])
    return run_stages(build_context(cfg, Path(out) / "run"))


@pytest.mark.slow
def test_online_training_checks_the_engine_against_the_policy_every_round(fake_vllm, tmp_path):
    fake_vllm.cpu, fake_vllm.honest = True, True  # a correct engine, re-created each round (CPU)
    _online_vllm_run(tmp_path)
    work = next((tmp_path / "store" / "train").glob("*/round-0001.parquet")).parent
    train_engines = [e for e in fake_vllm.engines if e.kwargs["model"].endswith("policy-for-sampler")]
    assert len(train_engines) == 2 and train_engines[0].shut_down  # one engine per round
    assert (work / "round-0000.parquet").exists()
    # a stale engine (weights never reach it; the policy moves by weight decay) is stopped at round 1,
    # before that round's data is saved
    fake_vllm.engines.clear()
    with pytest.raises(sampler_vllm.WeightReloadError, match="does not sample from the policy's current weights"):
        _online_vllm_run(tmp_path, "sampler.weight_reload=inplace", "train.skip_empty_steps=false",
                         "train.weight_decay=0.5", "train.lr=0.05")
    stale_work = [p for p in (tmp_path / "store" / "train").iterdir() if p != work and p.is_dir()]
    assert stale_work and (stale_work[0] / "round-0000.parquet").exists()
    assert not (stale_work[0] / "round-0001.parquet").exists()
