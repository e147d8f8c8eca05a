"""The `power` sampler: samples from the power distribution π(y) ∝ p(y)^γ of the base model by
block-wise Metropolis–Hastings (Karan & Du 2025, "Reasoning with Sampling: Your Base Model is Smarter
Than You Think", arXiv:2510.14901, Algorithm 1 "power sampling for autoregressive models"). The paper
calls the exponent α; here it is γ, so that it does not clash with α-DPG's α.

Why not just sample at temperature 1/γ? Low temperature sharpens each *next-token* distribution,
p(y_t | y_<t)^γ / Σ_v p(v | y_<t)^γ, which is not the same as sharpening whole sequences: the power
distribution also weighs a token by how likely its continuations are. The paper's two-token example
(tests/test_power_sampler.py): a first token that leads to one very likely continuation can be
preferred by p^γ although low-temperature sampling prefers the other first token.

The algorithm, for each prompt independently (chains of one batch run in lockstep):

    y = ()                                             # the generated tokens so far
    for k = 1 .. K:                                    # blocks of B tokens (the last one shorter)
        end = min(k·B, max_new_tokens)
        extend y with tokens from the proposal q up to length `end` (or EOS)
        repeat mcmc_steps times:                       # MH at the intermediate target p(y_{<end})^γ
            t ~ Uniform{0, …, |y|-1}                   # a position in the generated part
            y' = y_{<t} + a fresh suffix from q (up to length `end` or EOS)
            log A = γ·[log p(y'_{≥t}) − log p(y_{≥t})] + [log q(y_{≥t}) − log q(y'_{≥t})]
                    + log |y| − log |y'|
            accept y' with probability min(1, exp(log A))
        stop this chain when y ends with EOS

Here log p is the base model's own log-prob (temperature 1) of the suffix given the shared prefix
y_{<t}, and log q the proposal's log-prob of it (the base model at `proposal_temperature`, 1/γ by
default as in the paper). Both come per token from the decode loop, so a MH step costs one proposal
and no re-scoring: the current state's per-token numbers are kept beside its tokens. This is the
standard MH acceptance min{1, π(y')q(y|y') / π(y)q(y'|y)} with π = p^γ, as in the paper's
algorithm; checked against the authors' code (aakaran/reasoning-with-sampling,
llm_experiments/power_samp_utils.py, `mcmc_power_samp`), which accepts with exactly
γ·Δlog p − Δlog q over the resampled suffix. Three deliberate differences from that code:

- the position t is drawn uniformly from the current state's generated tokens, so when an EOS makes
  y and y' differ in length the proposal is not symmetric in t; the factor |y| / |y'| (the
  probability of picking t from y' over that of picking it from y) makes the chain exactly
  reversible for p^γ. Without EOS inside a block (|y| = |y'|) it is 1, as in the paper.
  (tests/test_power_sampler.py checks π K = π exactly by enumeration, and that it fails without
  the factor.)
- the current suffix is compared in full (the authors' code compares it only up to the proposal's
  length when the proposal stops early at an EOS).
- a proposal always runs to the block's end (or an EOS); the authors' code caps it at the current
  length, which after an early EOS can leave a state that is neither finished nor a full block.

Token cost. Every proposal token is counted, rejected ones included (`generated_tokens` per sample);
plain sampling generates exactly `num_tokens` per sample, so sum(generated_tokens) / sum(num_tokens)
is the extra sampling cost (×1 for plain sampling).

Engines. The chains only need a `ProposalEngine`: given token prefixes and per-row budgets, extend
each prefix by sampling from q and return per-token log-probs under p (temperature 1) and under q.
`HFProposal` does it with the `hf` sampler's KV-cache decode loop. A vLLM engine would implement the
same `extend`: one `SamplingParams(temperature=τ, top_p=…, max_tokens=limit_i, logprobs=0)` per row
on `TokensPrompt(prompt_token_ids=prefix_i)`; vLLM reports the sampled token's log-prob under either
the raw or the processed distribution (`logprobs_mode`), so the other one needs a second pass
(e.g. scoring the suffix with `prompt_logprobs`), unless the proposal temperature is 1 (p = q).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch

from pipeline.model import decode_completion, encode_prompts


@dataclass
class Extension:
    """What a proposal engine drew for one prefix."""
    tokens: list[int]
    logp: list[float]           # per token, under the base model at temperature 1 (p)
    proposal_logp: list[float]  # per token, under the distribution sampled from (q)
    finished: bool              # ended with EOS


class ProposalEngine(Protocol):
    def extend(self, prefixes: Sequence[Sequence[int]], limits: Sequence[int]) -> list[Extension]:
        """For each prefix (prompt + generated tokens), sample up to limits[i] >= 1 new tokens from
        q, stopping after an EOS. Rows are independent."""
        ...


class HFProposal:
    """The proposal q = a transformers causal LM at `temperature` (and `top_p`), through the `hf`
    sampler's decode loop (per-row token budgets, per-token log-probs)."""

    def __init__(self, model, tokenizer, *, temperature: float, top_p: float = 1.0, batch_size: int = 256,
                 generator: torch.Generator):
        if temperature <= 0:
            raise ValueError("the proposal temperature must be > 0 (MH needs q > 0 where p > 0)")
        self.model, self.tokenizer = model, tokenizer
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.batch_size = int(batch_size)
        self.generator = generator

    @torch.no_grad()
    def extend(self, prefixes, limits):
        from pipeline.sampling.hf import _sample_loop

        out: list[Extension] = []
        for start in range(0, len(prefixes), self.batch_size):
            rows = list(range(start, min(len(prefixes), start + self.batch_size)))
            budget = [int(limits[i]) for i in rows]
            # _sample_loop prefills each distinct prefix once; here every row is its own "prompt".
            done = _sample_loop(self.model, self.tokenizer, [list(prefixes[i]) for i in rows],
                                [(j, 0) for j in range(len(rows))], temperature=self.temperature,
                                top_p=self.top_p, max_new_tokens=max(budget), generator=self.generator,
                                limits=budget, per_token=True)
            out += [Extension(toks, lp, slp, fin) for toks, lp, slp, fin in done]
        return out


@dataclass
class Chain:
    """One MH chain: the current state (generated tokens with their per-token log-probs) and its counters."""
    tokens: list[int] = field(default_factory=list)
    logp: list[float] = field(default_factory=list)
    proposal_logp: list[float] = field(default_factory=list)
    finished: bool = False
    generated_tokens: int = 0  # every proposal token, rejected ones included
    proposals: int = 0         # MH steps taken
    accepted: int = 0

    def replace_from(self, t: int, ext: Extension) -> None:
        self.tokens = self.tokens[:t] + list(ext.tokens)
        self.logp = self.logp[:t] + list(ext.logp)
        self.proposal_logp = self.proposal_logp[:t] + list(ext.proposal_logp)
        self.finished = ext.finished


def log_acceptance(gamma: float, current: Chain, t: int, proposal: Extension) -> float:
    """log of the MH ratio π(y')q(y|y') / π(y)q(y'|y) for replacing the suffix of `current` from
    position t by `proposal` (π = p^γ; see the module docstring). The shared prefix cancels."""
    new_len = t + len(proposal.tokens)
    return (gamma * (math.fsum(proposal.logp) - math.fsum(current.logp[t:]))
            + math.fsum(current.proposal_logp[t:]) - math.fsum(proposal.proposal_logp)
            + math.log(len(current.tokens)) - math.log(new_len))


def run_chains(engine: ProposalEngine, prefixes: Sequence[Sequence[int]], *, gamma: float, block_size: int,
               mcmc_steps: int, max_new_tokens: int, rng: np.random.Generator) -> list[Chain]:
    """One power-sampling chain per prefix (prompt token ids), all following one block schedule."""
    if gamma <= 0 or block_size < 1 or mcmc_steps < 0 or max_new_tokens < 1:
        raise ValueError("need gamma > 0, block_size >= 1, mcmc_steps >= 0, max_new_tokens >= 1")
    chains = [Chain() for _ in prefixes]
    for end in range(block_size, max_new_tokens + block_size, block_size):
        end = min(end, max_new_tokens)
        # chains stopped by an EOS in an earlier block are final
        live = [i for i, c in enumerate(chains) if not c.finished]
        if not live:
            break
        exts = engine.extend([list(prefixes[i]) + chains[i].tokens for i in live],
                             [end - len(chains[i].tokens) for i in live])
        for i, ext in zip(live, exts):
            c = chains[i]
            c.generated_tokens += len(ext.tokens)
            c.replace_from(len(c.tokens), ext)
        for _ in range(mcmc_steps):
            # the positions and acceptance uniforms are drawn for every live chain every step, so a
            # chain's randomness does not depend on which other chains share its batch
            ts = rng.integers(0, [len(chains[i].tokens) for i in live]).tolist()
            log_u = np.log(rng.random(len(live)))
            exts = engine.extend([list(prefixes[i]) + chains[i].tokens[:t] for i, t in zip(live, ts)],
                                 [end - t for t in ts])
            for i, t, lu, ext in zip(live, ts, log_u, exts):
                c = chains[i]
                c.generated_tokens += len(ext.tokens)
                c.proposals += 1
                if lu < log_acceptance(gamma, c, t, ext):
                    c.accepted += 1
                    c.replace_from(t, ext)
    return chains


def resolve_proposal_temperature(gamma: float, proposal_temperature: float) -> float:
    """The proposal's temperature: as configured, or 1/γ (the paper's choice) when 0."""
    return float(proposal_temperature) if proposal_temperature > 0 else 1.0 / float(gamma)


@torch.no_grad()
def sample(model, tokenizer, prompts: Sequence[str], *, n: int = 1, gamma: float = 4.0, block_size: int = 16,
           mcmc_steps: int = 4, proposal_temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 128,
           batch_size: int = 256, seed: int = 0, bar=None, num_threads: int = 0,
           engine: ProposalEngine | None = None) -> list[dict]:
    """`n` power samples of each prompt, as the `hf` sampler's records (pipeline/sampling/hf.py) plus
    `generated_tokens` (proposal tokens spent on the sample, rejected ones included),
    `mh_proposals` and `mh_accepted`. `sample_logp` is the summed log-prob of the final tokens under
    the proposal draws that produced them (the power distribution itself has no tractable
    normaliser). `engine` defaults to `HFProposal` on `model`; deterministic given `seed`."""
    if n < 1 or batch_size < 1:
        raise ValueError("n and batch_size must be >= 1")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    rng = np.random.default_rng([int(seed) % 2**32, 1])  # MH decisions: a stream apart from the proposal's
    if engine is None:
        engine = HFProposal(model, tokenizer, temperature=resolve_proposal_temperature(gamma, proposal_temperature),
                            top_p=top_p, batch_size=batch_size, generator=generator)
    prompt_ids = encode_prompts(tokenizer, prompts)
    work = [(p, s) for p in range(len(prompts)) for s in range(n)]
    threads_before = torch.get_num_threads()
    if num_threads and num_threads != threads_before:
        torch.set_num_threads(int(num_threads))
    records: list[dict] = []
    try:
        for start in range(0, len(work), batch_size):
            chunk = work[start:start + batch_size]
            chains = run_chains(engine, [prompt_ids[p] for p, _ in chunk], gamma=gamma, block_size=block_size,
                                mcmc_steps=mcmc_steps, max_new_tokens=max_new_tokens, rng=rng)
            records += [chain_record(tokenizer, p, s, c) for (p, s), c in zip(chunk, chains)]
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
    return records


def chain_record(tokenizer, prompt_idx: int, sample_idx: int, chain: Chain) -> dict:
    return {
        "prompt_idx": prompt_idx, "sample_idx": sample_idx,
        "completion": decode_completion(tokenizer, chain.tokens), "token_ids": list(chain.tokens),
        "logp": math.fsum(chain.logp), "sample_logp": math.fsum(chain.proposal_logp),
        "num_tokens": len(chain.tokens), "finished": chain.finished,
        "generated_tokens": chain.generated_tokens, "mh_proposals": chain.proposals, "mh_accepted": chain.accepted,
    }


def token_cost(records: Sequence[dict]) -> float:
    """Proposal tokens generated per token of the returned samples (plain sampling: 1)."""
    kept = sum(r["num_tokens"] for r in records)
    return sum(r["generated_tokens"] for r in records) / kept if kept else float("nan")
