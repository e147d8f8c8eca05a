"""The `fast` decode path of the `hf` sampler: a lean hand-written decoder for Llama-architecture
models, in plain torch, reading the transformers model's own weights.

Why it exists: for a small model on a CPU a decode step through transformers is mostly overhead that
is not matrix multiplication: hundreds of tiny ops per step (masks, rotary tables, cache bookkeeping)
and CPU scaled-dot-product attention with one query per row, which costs more than all the matmuls
(see docs/results.md, "Throughput"). Here a decode step is, per layer, one fused QKV matmul, rotary
embedding from a precomputed table, attention as two batched matmuls, one output projection, one
fused gate/up matmul and one down projection; the sampler draws a token by inverse-CDF sampling
(one uniform per row instead of one per vocabulary entry).

Prompt-prefix sharing: when every row of a chunk continues the same prompt (the evaluation: 256
samples of one theorem), the prompt's keys and values are stored once and its attention scores are
one [rows × prompt] matmul per head instead of a copy of the prompt cache per row. The generated
tokens' keys and values live in a dense cache grown a block at a time (`GenCache`).

Continuous batching: the chunks of a call are decoded as one stream (`sample_chunks`); a chunk
starts once the rows in flight leave room, so the few long samples at the end of one chunk share
their steps with the next chunk's rows instead of paying a step's per-op overhead for a handful of
rows. The matmuls run over every row in flight; attention runs per chunk.

Which path runs: `supports(model)` says whether this decoder covers the model (a transformers Llama
with the default rotary embedding, SiLU MLP and no biases); `pipeline.sampling.hf.sample` with
`method="auto"` uses it then and falls back to the transformers decode loop otherwise (any other
architecture, rope scaling, ...). Numbers: the same model in float32 gives the same per-token
log-probs as transformers' teacher-forced forward up to float rounding (tests/test_fast_sampler.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supports(model) -> str | None:
    """None when the fast decoder covers `model`, else the reason it does not (the caller falls back)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama":
        return f"model_type={getattr(cfg, 'model_type', None)!r} (only 'llama' has a fast path)"
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        return f"rope {rope!r} (only the default rotary embedding has a fast path)"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act={cfg.hidden_act!r}"
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        return "attention or MLP biases"
    if getattr(cfg, "pretraining_tp", 1) not in (None, 1):
        return "pretraining_tp > 1"
    if not hasattr(model, "model") or not hasattr(model, "lm_head"):
        return "not a LlamaForCausalLM"
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        return f"dtype {dtype} (the fast path is float32 only)"
    return None


class LlamaDecoder:
    """A snapshot of a Llama's weights laid out for decoding (fused QKV and gate/up matrices).

    Built per `sample()` call, so a policy trained between calls is always decoded with its current
    weights."""

    def __init__(self, model):
        cfg = model.config
        self.hidden = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or self.hidden // self.heads
        self.eps = float(cfg.rms_norm_eps)
        inner = model.model
        self.embed = inner.embed_tokens.weight.detach()
        self.head = model.lm_head.weight.detach()
        self.final_norm = inner.norm.weight.detach()
        self.layers = []
        for layer in inner.layers:
            at, mlp = layer.self_attn, layer.mlp
            self.layers.append((
                layer.input_layernorm.weight.detach(),
                torch.cat([at.q_proj.weight, at.k_proj.weight, at.v_proj.weight]).detach(),
                at.o_proj.weight.detach(),
                layer.post_attention_layernorm.weight.detach(),
                torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach(),
                mlp.down_proj.weight.detach(),
            ))
        self.intermediate = self.layers[0][4].shape[0] // 2 if self.layers else 0
        self.scale = getattr(model.model.layers[0].self_attn, "scaling", None) or self.head_dim ** -0.5
        rope = getattr(cfg, "rope_parameters", None) or {}
        self.theta = float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
        self.device, self.dtype = self.embed.device, self.embed.dtype
        self._cos = self._sin = None

    # ---- rotary embedding

    def rope_tables(self, length: int):
        """cos and signed sin [length, head_dim] for positions 0..length-1, computed as transformers
        does (float32 frequencies, cat(freqs, freqs)); the sign folds rotate_half's negation in."""
        if self._cos is None or self._cos.shape[0] < length:
            d = self.head_dim
            inv_freq = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.int64).to(
                device=self.device, dtype=torch.float) / d))
            freqs = torch.arange(length, device=self.device).float()[:, None] * inv_freq[None, :]
            emb = torch.cat((freqs, freqs), -1)
            sin = emb.sin()
            self._cos = emb.cos().to(self.dtype)
            self._sin = torch.cat((-sin[:, : d // 2], sin[:, d // 2:]), -1).to(self.dtype)
        return self._cos, self._sin

    def _rotate(self, x, cos, sin):
        """x [..., heads, head_dim] rotated at the positions whose cos/sin [..., 1, head_dim] are given."""
        half = self.head_dim // 2
        swapped = torch.cat((x[..., half:], x[..., :half]), -1)
        return torch.addcmul(x * cos, swapped, sin)

    def _norm(self, x, weight):
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    # ---- prefill: the distinct prompts, left-padded

    def prefill(self, ids, mask, pos):
        """Run the prompts [G, P] (left-padded, `mask` 1 on real tokens, `pos` their position ids).

        Returns the last position's logits [G, V] and, per layer, the prompts' keys and values
        [G, kv_heads, P, head_dim] (rotary applied; keys of padding are excluded by `key_bias`)."""
        g, p = ids.shape
        h, kh, d = self.heads, self.kv_heads, self.head_dim
        cos_t, sin_t = self.rope_tables(int(pos.max()) + 1)
        cos, sin = cos_t[pos][:, :, None, :], sin_t[pos][:, :, None, :]  # [G, P, 1, d]
        real = mask.bool()
        causal = torch.ones(p, p, dtype=torch.bool, device=ids.device).tril()
        # a query may see real keys at or before it; a padding query sees itself too, so that no
        # row is all -inf (its output is never used, but a NaN would reach the next layer's keys)
        allowed = causal[None] & (real[:, None, :] | torch.eye(p, dtype=torch.bool, device=ids.device)[None])
        bias = torch.zeros(g, 1, p, p, dtype=self.dtype, device=ids.device).masked_fill_(~allowed[:, None], float("-inf"))
        x = self.embed[ids]
        caches = []
        for w_in, w_qkv, w_o, w_post, w_gu, w_down in self.layers:
            qkv = self._norm(x, w_in) @ w_qkv.T
            q, k, v = qkv.split([h * d, kh * d, kh * d], -1)
            q = self._rotate(q.view(g, p, h, d), cos, sin).transpose(1, 2)
            k = self._rotate(k.view(g, p, kh, d), cos, sin).transpose(1, 2).contiguous()
            v = v.view(g, p, kh, d).transpose(1, 2).contiguous()
            caches.append((k, v))
            kk, vv = (k, v) if kh == h else (k.repeat_interleave(h // kh, 1), v.repeat_interleave(h // kh, 1))
            att = torch.softmax((q * self.scale) @ kk.transpose(-1, -2) + bias, -1) @ vv
            x = x + att.transpose(1, 2).reshape(g, p, h * d) @ w_o.T
            gu = self._norm(x, w_post) @ w_gu.T
            gate, up = gu.split(self.intermediate, -1)
            x = x + (F.silu(gate) * up) @ w_down.T
        last = self._norm(x[:, -1], self.final_norm)
        return last @ self.head.T, caches

    # ---- one decode step for every row of every batch in flight

    def step(self, cohorts) -> list:
        """Logits [b, V] of the next token for each cohort (`_Cohort`: its rows' last tokens `tok`
        at positions `pos`, its prompts' cache and its generated tokens' cache, to which this step's
        keys and values are appended). The matmuls run over the rows of all cohorts at once;
        attention is per cohort, over its own prompt and generated tokens."""
        sizes = [c.tok.shape[0] for c in cohorts]
        tok = cohorts[0].tok if len(cohorts) == 1 else torch.cat([c.tok for c in cohorts])
        pos = cohorts[0].pos if len(cohorts) == 1 else torch.cat([c.pos for c in cohorts])
        b = tok.shape[0]
        h, kh, d = self.heads, self.kv_heads, self.head_dim
        cos, sin = self._cos[pos][:, None, :], self._sin[pos][:, None, :]  # [B, 1, d]
        x = self.embed[tok]
        for i, (w_in, w_qkv, w_o, w_post, w_gu, w_down) in enumerate(self.layers):
            qkv = self._norm(x, w_in) @ w_qkv.T
            qk = self._rotate(qkv[:, : (h + kh) * d].view(b, h + kh, d), cos, sin)  # q and k rotated together
            q, k = qk[:, :h] * self.scale, qk[:, h:]
            v = qkv[:, (h + kh) * d:].view(b, kh, d)
            if len(cohorts) == 1:
                att = self._attend(cohorts[0], i, q, k, v)
            else:
                att = x.new_empty((b, h * d))
                start = 0
                for c, n in zip(cohorts, sizes):
                    att[start:start + n] = self._attend(c, i, q[start:start + n], k[start:start + n], v[start:start + n])
                    start += n
            x = x + att @ w_o.T
            gu = self._norm(x, w_post) @ w_gu.T
            gate, up = gu.split(self.intermediate, -1)
            x = x + (F.silu(gate).mul_(up)) @ w_down.T
        for c in cohorts:
            c.cache.advance()
        logits = self._norm(x, self.final_norm) @ self.head.T
        return [logits] if len(cohorts) == 1 else list(logits.split(sizes))

    def _attend(self, c, layer: int, q, k, v):
        """Attention output [b, heads * head_dim] of cohort `c`'s rows at `layer` (q [b, heads, d]
        scaled and rotated, contiguous)."""
        b = q.shape[0]
        h, kh, d = self.heads, self.kv_heads, self.head_dim
        rep = h // kh
        kg, vg = c.cache.append(layer, k, v)
        qg = q.view(b, kh, rep, d)  # queries grouped by key head
        pk, pv = c.prompt_kv[layer]
        if c.shared:  # one prompt: per key head, one matmul over every row [kh, b*rep, d] @ [kh, d, P]
            sp = torch.bmm(qg.permute(1, 0, 2, 3).reshape(kh, b * rep, d), pk)
            sp = sp.view(kh, b, rep, -1).permute(1, 0, 2, 3).reshape(b, h, -1)
        else:  # a prompt per row: pk [b, kh, d, P]
            sp = (qg @ pk).view(b, h, -1) + c.key_bias
        n_g = kg.shape[-2]
        sg = torch.bmm(q.view(b * kh, rep, d), kg.view(b * kh, n_g, d).transpose(1, 2)).view(b, h, n_g)
        c.cache.mask(sg)
        probs = torch.softmax(torch.cat((sp, sg), -1), -1)
        n_p = sp.shape[-1]
        pp = probs[..., :n_p].view(b, kh, rep, n_p)
        att = torch.bmm(probs[..., n_p:].reshape(b * kh, rep, n_g), vg.view(b * kh, n_g, d)).view(b, kh, rep, d)
        if c.shared:
            att += torch.bmm(pp.permute(1, 0, 2, 3).reshape(kh, b * rep, n_p), pv).view(kh, b, rep, d).permute(1, 0, 2, 3)
        else:
            att += pp @ pv
        return att.view(b, h * d)


class GenCache:
    """Keys and values of the generated tokens, per layer, dense: a buffer [B, kh, cap, d] with cap
    a multiple of BLOCK, filled in place; when it is full, a new one BLOCK positions longer takes
    its contents (one copy per BLOCK steps). Attention reads the whole buffer, the positions not yet
    written masked out (`mask`).

    Why this layout (measured on the CPU, docs/results.md "Throughput"): batched matmul over a
    slice [:, :, :t] of a buffer of the full capacity (rows of its matrices not adjacent) runs
    several times slower than over a dense tensor, and over fewer than ~16 positions it takes a
    slow small-matrix path; a dense buffer of at least BLOCK positions avoids both."""

    BLOCK = 16

    def __init__(self, layers: int, b: int, kh: int, d: int, dtype, device):
        # zeros, not empty: masked positions must hold finite numbers (0 × NaN is NaN)
        self.k = [torch.zeros((b, kh, self.BLOCK, d), dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros((b, kh, self.BLOCK, d), dtype=dtype, device=device) for _ in range(layers)]
        # row r: 0 on a block's positions 0..r, -inf after
        self.bias_table = torch.zeros((self.BLOCK, self.BLOCK), dtype=dtype, device=device).masked_fill_(
            torch.ones((self.BLOCK, self.BLOCK), dtype=torch.bool, device=device).triu(1), float("-inf"))
        self.length = 0  # positions written by earlier steps

    def append(self, layer: int, k, v):
        """Write this step's k, v [B, kh, d] of `layer`; returns the keys and values [B, kh, cap, d]
        to attend to (this step's included)."""
        kb, vb = self.k[layer], self.v[layer]
        kb[:, :, self.length] = k
        vb[:, :, self.length] = v
        return kb, vb

    def mask(self, scores) -> None:
        """Mask, in place, the scores [..., cap] of positions not yet written."""
        r = self.length % self.BLOCK
        if r < self.BLOCK - 1:
            scores[..., self.length - r:].add_(self.bias_table[r])

    def advance(self) -> None:
        self.length += 1
        if self.length == self.k[0].shape[2]:
            for buffers in (self.k, self.v):
                for i, old in enumerate(buffers):
                    b, kh, cap, d = old.shape
                    new = old.new_zeros((b, kh, cap + self.BLOCK, d))
                    new[:, :, :cap] = old
                    buffers[i] = new

    def select(self, idx) -> None:
        """Keep rows `idx` only (finished rows dropped)."""
        for buffers in (self.k, self.v):
            for i, old in enumerate(buffers):
                buffers[i] = old.index_select(0, idx)


def draw(logits, generator, temperature: float, top_p: float):
    """Sample one token per row of `logits` [B, V]: (token [B], log-prob at temperature 1 [B],
    log-prob under the sampling distribution [B], 0 for greedy).

    Inverse-CDF sampling: one uniform per row, located in the cumulative sum of the unnormalised
    probabilities. The chosen token's log-probs come from one log-sum-exp per row, not a full
    log_softmax."""
    from pipeline.sampling.hf import process_logits

    logits = logits.float()
    m = logits.amax(-1, keepdim=True)
    if temperature == 0:
        tok = logits.argmax(-1)
        lse = (logits - m).exp_().sum(-1).log_().add_(m.squeeze(-1))
        lp = logits.gather(-1, tok[:, None]).squeeze(-1) - lse
        return tok, lp, torch.zeros_like(lp)
    plain = temperature == 1.0 and top_p >= 1.0
    if plain:
        e = (logits - m).exp_()
    else:  # the processed distribution, with -inf outside the nucleus
        sample_lp = process_logits(logits, temperature, top_p)
        e = sample_lp.exp()
    cdf = e.cumsum(-1)
    total = cdf[:, -1:]
    u = torch.rand((logits.shape[0], 1), generator=generator, device=logits.device, dtype=cdf.dtype) * total
    # rand < 1, but u = rand × total can round up to total; keep it strictly below
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    tok = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max_(logits.shape[-1] - 1)
    chosen = logits.gather(-1, tok[:, None]).squeeze(-1)
    if plain:
        lp = chosen - m.squeeze(-1) - e.sum(-1).log_()
        return tok, lp, lp
    lse = (logits - m).exp_().sum(-1).log_().add_(m.squeeze(-1))
    return tok, chosen - lse, sample_lp.gather(-1, tok[:, None]).squeeze(-1)


class _Cohort:
    """One chunk of the work in flight: its prompts' cache (shared by all rows when they continue
    one prompt), its generated tokens' cache, and what it has drawn so far."""

    def __init__(self, dec: LlamaDecoder, index: int, chunk, prompt_ids, *, pad: int, max_new_tokens: int,
                 limits=None):
        from pipeline.model import pack_left, position_ids_from_mask

        device = dec.device
        self.index, self.max_new_tokens = index, max_new_tokens
        # distinct prompts by content: rows of equal prompts share one cache
        distinct = sorted({tuple(prompt_ids[p]) for p, _ in chunk})
        row_of = {ids: i for i, ids in enumerate(distinct)}
        ids, mask = pack_left([list(x) for x in distinct], pad, device)
        pos0 = position_ids_from_mask(mask)
        logits, self.prompt_kv = dec.prefill(ids, mask, pos0)
        key_bias = torch.zeros(mask.shape, dtype=dec.dtype, device=device).masked_fill_(mask == 0, float("-inf"))
        self.key_bias = key_bias[:, None, :]  # [G, 1, P]
        expand = torch.tensor([row_of[tuple(prompt_ids[p])] for p, _ in chunk], device=device)
        # keys transposed [.., kh, d, P] for the score products; values [.., kh, P, d]
        self.prompt_kv = [(k.transpose(-1, -2), v) for k, v in self.prompt_kv]
        self.shared = len(distinct) == 1
        if self.shared:  # one prompt, hence no padding: its cache is shared by every row
            self.prompt_kv = [(k[0].contiguous(), v[0]) for k, v in self.prompt_kv]
        else:  # each row gets its own copy of its prompt's cache
            self.prompt_kv = [(k.index_select(0, expand), v.index_select(0, expand)) for k, v in self.prompt_kv]
            self.key_bias = self.key_bias.index_select(0, expand)
        self.logits = logits.index_select(0, expand)
        self.pos = pos0[:, -1].index_select(0, expand)  # advanced to the next position by record()
        self.tok = None
        b = len(chunk)
        self.cache = GenCache(len(dec.layers), b, dec.kv_heads, dec.head_dim, dec.dtype, device)
        self.tokens = torch.full((b, max_new_tokens), pad, dtype=torch.long, device=device)
        self.lp_tok = torch.zeros((b, max_new_tokens), dtype=torch.float32, device=device)
        self.slp_tok = torch.zeros((b, max_new_tokens), dtype=torch.float32, device=device)
        self.length = torch.zeros(b, dtype=torch.long, device=device)
        self.finished = torch.zeros(b, dtype=torch.bool, device=device)
        self.limit = None
        if limits is not None:
            self.limit = torch.as_tensor(list(limits), dtype=torch.long, device=device).clamp(1, max_new_tokens)
        self.rows = torch.arange(b, device=device)  # the chunk row of each row still in the batch
        self.live = torch.ones(b, dtype=torch.bool, device=device)  # rows in the batch still decoding
        self.step = 0  # tokens drawn so far by every live row
        self.n_live = b

    def record(self, tok, lp, slp, eos) -> None:
        """Take this step's draws for the rows in the batch (finished rows' draws are ignored)."""
        live, rows, step = self.live, self.rows, self.step
        r = rows[live] if self.n_live < len(rows) else rows
        self.tokens[r, step] = tok[live]
        self.lp_tok[r, step] = lp[live]
        self.slp_tok[r, step] = slp[live]
        self.length[r] += 1
        done = torch.isin(tok, eos) & live
        self.finished[rows[done]] = True
        live &= ~done
        if self.limit is not None:  # rows that used up their own budget stop, unfinished
            live &= self.length[rows] < self.limit[rows]
        self.n_live = int(live.sum())
        self.step += 1
        self.tok, self.pos = tok, self.pos + 1

    @property
    def done(self) -> bool:
        return self.n_live == 0 or self.step == self.max_new_tokens

    def compact(self) -> None:
        # finished rows ride along (outputs ignored) until a quarter of the batch is done:
        # compacting copies the caches, which costs more than a few wasted rows per step
        if self.n_live > 0.75 * len(self.rows):
            return
        idx = self.live.nonzero().squeeze(-1)
        self.rows, self.live, self.tok, self.pos = self.rows[idx], self.live[idx], self.tok[idx], self.pos[idx]
        self.cache.select(idx)
        if not self.shared:
            self.prompt_kv = [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in self.prompt_kv]
            self.key_bias = self.key_bias.index_select(0, idx)

    def results(self, per_token: bool) -> list[tuple]:
        tokens, length, finished = self.tokens.cpu(), self.length.cpu(), self.finished.cpu()
        lp_tok, slp_tok = self.lp_tok.double().cpu(), self.slp_tok.double().cpu()
        b = len(tokens)
        if per_token:
            return [(tokens[i, :length[i]].tolist(), lp_tok[i, :length[i]].tolist(),
                     slp_tok[i, :length[i]].tolist(), bool(finished[i])) for i in range(b)]
        lp_sum, slp_sum = lp_tok.sum(1), slp_tok.sum(1)
        return [(tokens[i, :length[i]].tolist(), float(lp_sum[i]), float(slp_sum[i]), bool(finished[i]))
                for i in range(b)]


# Continuous batching: the next chunk starts decoding once the rows in flight (finished ones that
# still ride along included) and its own fit in ADMIT × the batch size, so that the long tail of a
# chunk (a few samples far longer than the rest) shares its steps with the next chunk's rows instead
# of running alone, where a step costs the same per-op overhead for a handful of rows.
ADMIT = 1.5
MAX_COHORTS = 4  # attention is per chunk in flight: more chunks, more small ops per step


def sample_chunks(model, tokenizer, prompt_ids, chunks, *, temperature, top_p, max_new_tokens, generator,
                  batch_size: int | None = None, limits=None, per_token=False, on_done=None) -> list[list[tuple]]:
    """Decode every chunk (a list of (prompt index, sample index) rows) with continuous batching;
    returns, per chunk, `pipeline.sampling.hf._sample_loop`'s results for it. `limits`: per-row
    token budgets, one list per chunk. `on_done(i)` is called when chunk i is finished. The draws
    depend only on the chunks, the settings and the generator's state: deterministic."""
    from collections import deque

    from pipeline.sampling.hf import _pad_id, eos_ids

    out: list[list[tuple] | None] = [None] * len(chunks)
    with torch.inference_mode():
        dec = LlamaDecoder(model)
        pad = _pad_id(model, tokenizer)
        eos = torch.tensor(eos_ids(model, tokenizer), device=dec.device)
        longest = max(len(prompt_ids[p]) for chunk in chunks for p, _ in chunk)
        dec.rope_tables(longest + max_new_tokens + 1)
        budget = int(batch_size or max(len(c) for c in chunks))
        pending = deque(range(len(chunks)))
        active: list[_Cohort] = []
        while pending or active:
            in_flight = sum(len(c.rows) for c in active)
            while pending and (not active or (len(active) < MAX_COHORTS
                                              and in_flight + len(chunks[pending[0]]) <= ADMIT * budget)):
                i = pending.popleft()
                active.append(_Cohort(dec, i, chunks[i], prompt_ids, pad=pad, max_new_tokens=max_new_tokens,
                                      limits=None if limits is None else limits[i]))
                in_flight += len(chunks[i])
            logits = active[0].logits if len(active) == 1 else torch.cat([c.logits for c in active])
            tok, lp, slp = draw(logits, generator, temperature, top_p)
            start = 0
            for c in active:
                n = c.logits.shape[0]
                c.record(tok[start:start + n], lp[start:start + n], slp[start:start + n], eos)
                start += n
            for c in [c for c in active if c.done]:
                out[c.index] = c.results(per_token)
                active.remove(c)
                if on_done is not None:
                    on_done(c.index)
            for c in active:
                c.compact()
            if active:
                for c, lg in zip(active, dec.step(active)):
                    c.logits = lg
    return out


def sample_loop(model, tokenizer, prompt_ids, chunk, *, temperature, top_p, max_new_tokens, generator,
                limits=None, per_token=False):
    """`pipeline.sampling.hf._sample_loop`'s contract (same arguments, same return values) on the
    lean decoder, for one chunk."""
    return sample_chunks(model, tokenizer, prompt_ids, [chunk], temperature=temperature, top_p=top_p,
                         max_new_tokens=max_new_tokens, generator=generator,
                         limits=None if limits is None else [limits], per_token=per_token)[0]
