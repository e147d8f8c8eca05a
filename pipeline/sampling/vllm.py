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

Fresh weights for online training. Each round the policy is saved with `save_pretrained` and every
vLLM worker loads those files into its live model with the model's own `load_weights` (through
`LLM.collective_rpc`), which shards them for tensor parallelism as at start-up. The engine, its KV
cache, CUDA graphs and compiled kernels stay; re-creating the engine each round would redo memory
profiling, graph capture and compilation (tens of seconds to minutes for a 7B model). Passing a
function to `collective_rpc` needs `VLLM_ALLOW_INSECURE_SERIALIZATION=1` in vLLM's multiprocess
mode; it is set before the engine starts (the function is ours, not user input).
"""

from __future__ import annotations

import math
import os
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


class VLLMSampler:
    """One offline vLLM engine for a model folder or hub name, kept warm across calls."""

    def __init__(self, model_path: str, sampler_cfg, model_cfg=None):
        vllm = import_vllm()
        self.cfg = sampler_cfg
        dtype = getattr(model_cfg, "dtype", "auto") if model_cfg is not None else "auto"
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        kwargs = dict(
            model=str(model_path), tensor_parallel_size=int(sampler_cfg.tensor_parallel_size),
            gpu_memory_utilization=float(sampler_cfg.gpu_memory_utilization), seed=int(sampler_cfg.seed),
            dtype=dtype, logprobs_mode="raw_logprobs", enable_prefix_caching=True,
        )
        if int(sampler_cfg.max_model_len) > 0:
            kwargs["max_model_len"] = int(sampler_cfg.max_model_len)
        self.llm = vllm.LLM(**kwargs)
        self._sampling_params = vllm.SamplingParams

    def load_weights(self, folder: str) -> None:
        """Replace the engine's weights with the checkpoint in `folder` (a save_pretrained folder)."""
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

    def close(self) -> None:
        del self.llm


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
