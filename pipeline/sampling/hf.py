"""The `hf` sampler: batched sampling from a transformers causal LM with the KV cache.

`sample(model, tokenizer, prompts, n=..., ...)` draws `n` completions per prompt and returns one
record per sample, in (prompt, sample) order:

    prompt_idx, sample_idx, completion (decoded text, special tokens removed), token_ids,
    logp         summed log-prob of the generated tokens under the model at temperature 1,
    sample_logp  summed log-prob under the distribution actually sampled from (after temperature
                 and top-p; 0 for greedy decoding at temperature 0),
    num_tokens   generated tokens, the EOS included when there is one,
    finished     the sample ended with EOS within `max_new_tokens`.

`logp` and `sample_logp` cover exactly the `num_tokens` generated tokens, EOS included, so
`model.completion_logprobs(prompt_ids, token_ids)` summed over the mask equals `logp`.

Three implementations, same records, chosen by `method`:

- `"fast"`: the lean Llama decoder of pipeline/sampling/fast.py (fused matmuls, a time-major KV
  cache, the prompt's cache shared by all its samples, each distinct prefix of the samples decoded
  once, inverse-CDF sampling), for models it covers
  (`fast.supports`: transformers Llama, float32);
- `"loop"`: a hand-written decode loop over the transformers model's `past_key_values` that
  prefills each distinct prompt once, copies its cache to its samples and drops finished rows from
  the batch as it goes (any causal LM);
- `"generate"`: `model.generate`.

`"auto"` (the default) is `"fast"` where it covers the model and `"loop"` otherwise; the fast
path is several times quicker on the tiny model on CPU (scripts/bench_sampler.py prints both).
All are deterministic given `seed` (a private torch.Generator; the global RNG is left alone by
`fast` and `loop`); `fast` draws tokens another way than `loop`, so the same seed gives other samples.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch

from pipeline.model import decode_completion, encode_prompts, pack_left, position_ids_from_mask


def eos_ids(model, tokenizer) -> list[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update(int(x) for x in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]))
    if not ids:
        raise ValueError("the tokenizer has no EOS token")
    return sorted(ids)


def _pad_id(model, tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(eos_ids(model, tokenizer)[0])


METHODS = ("auto", "fast", "loop", "generate")


def resolve_method(model, method: str = "auto") -> str:
    """The decode path `method` means for `model`: "auto" is "fast" where it covers the model, else "loop"."""
    from pipeline.sampling import fast

    if method not in METHODS:
        raise ValueError(f"sampler method {method!r}: expected one of {METHODS}")
    if method == "auto":
        return "fast" if fast.supports(model) is None else "loop"
    if method == "fast" and (why := fast.supports(model)) is not None:
        raise ValueError(f"sampler method 'fast' does not cover this model: {why}; use 'auto' or 'loop'")
    return method


def decode_chunks(model, method: str = "auto"):
    """The batch decoder for `model` under `method` ("generate" excluded): a function
    (model, tokenizer, prompt_ids, chunks, *, temperature, top_p, max_new_tokens, generator,
    batch_size=None, limits=None, per_token=False, on_done=None) returning, per chunk (a list of
    (prompt index, sample index) rows), `_sample_loop`'s results for it. `limits`: per-row token
    budgets, one list per chunk; `on_done(i)` is called as chunk i finishes. The fast path decodes
    the chunks as one stream (continuous batching), the loop one chunk after another."""
    from pipeline.sampling import fast

    name = resolve_method(model, method)
    if name == "generate":
        raise ValueError("decode_chunks: 'generate' has no per-row budgets or per-token log-probs")
    if name == "fast":
        return fast.sample_chunks

    def loop(model, tokenizer, prompt_ids, chunks, *, temperature, top_p, max_new_tokens, generator,
             batch_size=None, limits=None, per_token=False, on_done=None):  # noqa: ARG001 - one chunk at a time
        outs = []
        for i, chunk in enumerate(chunks):
            outs.append(_sample_loop(model, tokenizer, prompt_ids, chunk, temperature=temperature, top_p=top_p,
                                     max_new_tokens=max_new_tokens, generator=generator,
                                     limits=None if limits is None else limits[i], per_token=per_token))
            if on_done is not None:
                on_done(i)
        return outs

    return loop


def chunk_work(n_prompts: int, n: int, batch_size: int, by_prompt: bool) -> list[list[tuple[int, int]]]:
    """The (prompt, sample) rows in (prompt, sample) order, cut into chunks of at most `batch_size`.

    `by_prompt` (the fast path): a chunk never mixes prompts when a prompt has more than half a
    batch of samples, so each chunk shares one prompt's cache; smaller groups are packed whole."""
    work = [(p, s) for p in range(n_prompts) for s in range(n)]
    if not by_prompt:
        return [work[start:start + batch_size] for start in range(0, len(work), batch_size)]
    if 2 * n > batch_size:
        return [work[p * n + start:p * n + min(n, start + batch_size)]
                for p in range(n_prompts) for start in range(0, n, batch_size)]
    per = batch_size // n
    return [work[start * n:(start + per) * n] for start in range(0, n_prompts, per)]


def process_logits(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Log-probs of the sampling distribution after temperature and top-p (-inf outside the nucleus)."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logprobs = torch.log_softmax(logits, -1)
    if top_p < 1.0:
        sorted_lp, order = logprobs.sort(-1, descending=True)
        cum = sorted_lp.exp().cumsum(-1)
        # drop a token when the tokens ranked above it already reach top_p; the top one always stays
        drop_sorted = (cum - sorted_lp.exp()) >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logprobs = torch.log_softmax(logprobs.masked_fill(drop, float("-inf")), -1)
    return logprobs


def _draw(sample_lp: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # Gumbel-max: argmax(logp - log(-log U)) is a draw from softmax(logp); one uniform per entry.
    u = torch.rand(sample_lp.shape, generator=generator, device=sample_lp.device)
    u = u.clamp_(min=1e-20)
    return (sample_lp - torch.log(-torch.log(u))).argmax(-1)


@torch.no_grad()
def sample(model, tokenizer, prompts: Sequence[str], *, n: int = 1, temperature: float = 1.0,
           top_p: float = 1.0, max_new_tokens: int = 128, batch_size: int = 256, seed: int = 0,
           progress: bool = False, method: str = "auto", desc: str = "sample", bar=None,
           num_threads: int = 0) -> list[dict]:
    """`n` samples of each prompt, as records in (prompt, sample) order (see the module docstring).

    `progress` shows a tqdm bar; `bar` is an existing tqdm bar to advance instead (the sample stage
    keeps one bar over all its shards). `num_threads` > 0 sets torch's CPU threads for the call (and
    restores them after): a decode step of a tiny model is a few hundred small ops, and with more than
    one thread on a busy CPU every op waits for the slowest thread (measurements: docs/results.md)."""
    if n < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("n, max_new_tokens and batch_size must be >= 1")
    if temperature < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"temperature={temperature} must be >= 0 and top_p={top_p} in (0, 1]")
    prompt_ids = encode_prompts(tokenizer, prompts)
    name = resolve_method(model, method)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    records: list[dict] = []
    threads_before = torch.get_num_threads()
    if num_threads and num_threads != threads_before:
        torch.set_num_threads(int(num_threads))
    own_bar = bar is None and progress
    if own_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(prompts) * n, desc=desc, unit="sample", dynamic_ncols=True)
    chunks = chunk_work(len(prompts), n, batch_size, by_prompt=name == "fast")
    try:
        if name == "generate":
            outs = []
            for chunk in chunks:
                outs.append(_sample_generate(model, tokenizer, prompt_ids, chunk, temperature=temperature,
                                             top_p=top_p, max_new_tokens=max_new_tokens, generator=generator))
                if bar is not None:
                    bar.update(len(chunk))
        else:
            done = (lambda i: bar.update(len(chunks[i]))) if bar is not None else None
            outs = decode_chunks(model, name)(model, tokenizer, prompt_ids, chunks, temperature=temperature,
                                              top_p=top_p, max_new_tokens=max_new_tokens, generator=generator,
                                              batch_size=batch_size, on_done=done)
        for chunk, out in zip(chunks, outs):
            for (p, s), (toks, logp, slp, finished) in zip(chunk, out):
                records.append({
                    "prompt_idx": p, "sample_idx": s,
                    "completion": decode_completion(tokenizer, toks),
                    "token_ids": toks, "logp": logp, "sample_logp": slp,
                    "num_tokens": len(toks), "finished": finished,
                })
    finally:
        if own_bar:
            bar.close()
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
    return records


def _buffer_layer_class():
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A full-attention cache layer preallocated to `capacity` positions: appending writes in
        place instead of concatenating (DynamicLayer copies the whole cache every step)."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self.length = 0

        def lazy_initialization(self, key_states, value_states):
            self.dtype, self.device = key_states.dtype, key_states.device
            b, h, _, dk = key_states.shape
            self.buf_k = key_states.new_empty((b, h, self.capacity, dk))
            self.buf_v = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
            self.keys, self.values = self.buf_k[:, :, :0], self.buf_v[:, :, :0]
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[-2]
            if self.length + n > self.capacity:
                raise RuntimeError(f"cache capacity {self.capacity} exceeded")
            self.buf_k[:, :, self.length:self.length + n] = key_states
            self.buf_v[:, :, self.length:self.length + n] = value_states
            self.length += n
            self.keys, self.values = self.buf_k[:, :, :self.length], self.buf_v[:, :, :self.length]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError

        def batch_select_indices(self, indices) -> None:
            if self.is_initialized:
                self.buf_k, self.buf_v = (self._select(b, indices) for b in (self.buf_k, self.buf_v))
                self.keys, self.values = self.buf_k[:, :, :self.length], self.buf_v[:, :, :self.length]

        def _select(self, buf, indices):
            out = buf.new_empty((len(indices),) + tuple(buf.shape[1:]))
            out[:, :, :self.length] = buf[:, :, :self.length].index_select(0, indices)
            return out

    return BufferLayer


def new_cache(model, capacity: int):
    """A preallocated KV cache when every layer is plain full attention, else transformers' DynamicCache."""
    from transformers import DynamicCache
    from transformers.cache_utils import Cache, get_layer_types_and_kwargs

    config = model.config.get_text_config(decoder=True)
    try:
        layer_types, _ = get_layer_types_and_kwargs(config)
    except Exception:  # noqa: BLE001 - an unusual config: the library's own cache knows best
        layer_types = None
    if layer_types and all(t == "full_attention" for t in layer_types):
        layer = _buffer_layer_class()
        return Cache(layers=[layer(capacity) for _ in layer_types])
    return DynamicCache(config=model.config)


def _cache_keyword(model) -> str:
    """The forward() argument that takes the KV cache: `cache` in recent transformers 5.x releases,
    which deprecate `past_key_values` (a warning at every step otherwise), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _sample_loop(model, tokenizer, prompt_ids, chunk, *, temperature, top_p, max_new_tokens, generator,
                 limits=None, per_token=False):
    """Decode one batch by hand: shared prefill per distinct prompt, finished rows dropped each step.

    Returns one (token ids, logp, sample_logp, finished) per row of `chunk`. Two options serve the
    power sampler (pipeline/sampling/power.py): `limits` gives each row its own budget of new tokens
    (at most `max_new_tokens`; a row stops at its limit without EOS, unfinished), and `per_token`
    returns logp and sample_logp as per-token lists instead of sums."""
    device = next(model.parameters()).device
    pad = _pad_id(model, tokenizer)
    eos = torch.tensor(eos_ids(model, tokenizer), device=device)
    distinct = sorted({p for p, _ in chunk})
    row_of = {p: i for i, p in enumerate(distinct)}
    ids, mask = pack_left([prompt_ids[p] for p in distinct], pad, device)
    pos = position_ids_from_mask(mask)
    padded = bool((mask == 0).any())  # without padding no mask is needed (plain causal attention)
    cache = new_cache(model, ids.shape[1] + max_new_tokens)
    cache_arg = _cache_keyword(model)
    out = model(input_ids=ids, attention_mask=mask if padded else None, position_ids=pos, **{cache_arg: cache},
                use_cache=True, logits_to_keep=1)
    expand = torch.tensor([row_of[p] for p, _ in chunk], device=device)
    # the model fills `cache` in place; it is ours and is passed back in at every step
    cache.batch_select_indices(expand)
    logits = out.logits[:, -1, :][expand]
    mask = mask[expand]
    next_pos = pos[expand, -1] + 1

    b = len(chunk)
    tokens = torch.full((b, max_new_tokens), pad, dtype=torch.long, device=device)
    lp_sum = torch.zeros(b, dtype=torch.float64, device=device)
    slp_sum = torch.zeros(b, dtype=torch.float64, device=device)
    length = torch.zeros(b, dtype=torch.long, device=device)
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    if per_token:  # per-token log-probs kept beside the sums
        lp_tok = torch.zeros((b, max_new_tokens), dtype=torch.float64, device=device)
        slp_tok = torch.zeros((b, max_new_tokens), dtype=torch.float64, device=device)
    limit = None
    if limits is not None:
        limit = torch.as_tensor(list(limits), dtype=torch.long, device=device).clamp(1, max_new_tokens)
    rows = torch.arange(b, device=device)  # the batch row of each row still in the cache
    live = torch.ones(b, dtype=torch.bool, device=device)  # rows in the cache that are still decoding
    for step in range(max_new_tokens):
        raw = torch.log_softmax(logits.float(), -1)
        if temperature == 0:
            tok = raw.argmax(-1)
            slp = torch.zeros_like(raw[:, 0])
        else:
            sample_lp = raw if (temperature == 1.0 and top_p >= 1.0) else process_logits(logits, temperature, top_p)
            tok = _draw(sample_lp, generator)
            slp = sample_lp.gather(-1, tok[:, None]).squeeze(-1)
        r = rows[live]
        tokens[r, step] = tok[live]
        lp = raw.gather(-1, tok[:, None]).squeeze(-1)[live].double()
        lp_sum[r] += lp
        slp_sum[r] += slp[live].double()
        if per_token:
            lp_tok[r, step] = lp
            slp_tok[r, step] = slp[live].double()
        length[r] += 1
        done = torch.isin(tok, eos) & live
        finished[rows[done]] = True
        live &= ~done
        if limit is not None:  # rows that used up their own budget stop, unfinished
            live &= length[rows] < limit[rows]
        n_live = int(live.sum())
        if step == max_new_tokens - 1 or n_live == 0:
            break
        # Finished rows stay in the batch (their outputs ignored) until a quarter of it is finished:
        # dropping them copies the whole cache, which costs more than a few wasted rows per step.
        if n_live <= 0.75 * len(rows):
            idx = live.nonzero().squeeze(-1)
            rows, live, tok, mask, next_pos = rows[idx], live[idx], tok[idx], mask[idx], next_pos[idx]
            cache.batch_select_indices(idx)
        if padded:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
        out = model(input_ids=tok[:, None], attention_mask=mask if padded else None,
                    position_ids=next_pos[:, None], **{cache_arg: cache}, use_cache=True)
        logits = out.logits[:, -1, :]
        next_pos = next_pos + 1

    tokens, length, lp_sum, slp_sum, finished = (x.cpu() for x in (tokens, length, lp_sum, slp_sum, finished))
    if per_token:
        lp_tok, slp_tok = lp_tok.cpu(), slp_tok.cpu()
        return [(tokens[i, :length[i]].tolist(), lp_tok[i, :length[i]].tolist(), slp_tok[i, :length[i]].tolist(),
                 bool(finished[i])) for i in range(b)]
    return [(tokens[i, :length[i]].tolist(), float(lp_sum[i]), float(slp_sum[i]), bool(finished[i]))
            for i in range(b)]


def _sample_generate(model, tokenizer, prompt_ids, chunk, *, temperature, top_p, max_new_tokens, generator):
    """Decode one batch with model.generate (seeded from `generator`; uses the global torch RNG)."""
    device = next(model.parameters()).device
    pad = _pad_id(model, tokenizer)
    eos = eos_ids(model, tokenizer)
    ids, mask = pack_left([prompt_ids[p] for p, _ in chunk], pad, device)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
    greedy = temperature == 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=not greedy,
            temperature=None if greedy else temperature, top_p=None if greedy else top_p, top_k=0,
            max_new_tokens=max_new_tokens, min_new_tokens=0, eos_token_id=eos, pad_token_id=pad,
            output_logits=True, output_scores=True, return_dict_in_generate=True,
            num_return_sequences=1)
    gen = out.sequences[:, ids.shape[1]:]
    raw = torch.log_softmax(torch.stack(out.logits, 1).float(), -1)  # [B, T, V]
    lp = raw.gather(-1, gen[..., None]).squeeze(-1)
    if greedy:
        slp = torch.zeros_like(lp)
    else:
        scores = torch.stack(out.scores, 1).float()  # processed logits (after temperature/top-p)
        slp = torch.log_softmax(scores, -1).gather(-1, gen[..., None]).squeeze(-1)
    is_eos = torch.isin(gen, torch.tensor(eos, device=device))
    # tokens up to and including the first EOS; generate pads after it
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(is_eos[:, 0], gen.shape[1], dtype=torch.long))
    steps = torch.arange(gen.shape[1], device=device)[None, :]
    valid = steps < first[:, None]
    lp = (lp * valid).double().sum(1)
    slp = (slp.masked_fill(~valid, 0.0)).double().sum(1)
    finished = is_eos.any(1)
    gen, first, lp, slp, finished = (x.cpu() for x in (gen, first, lp, slp, finished))
    return [(gen[i, :first[i]].tolist(), float(lp[i]), float(slp[i]), bool(finished[i])) for i in range(len(chunk))]
