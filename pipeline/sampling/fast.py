"""The `fast` decode path of the `hf` sampler: a lean hand-written decoder for Llama-architecture
models, in plain torch, reading the transformers model's own weights.

Why it exists: for a small model on a CPU a decode step through transformers is mostly overhead that
is not matrix multiplication: hundreds of tiny ops per step (masks, rotary tables, cache bookkeeping)
and CPU scaled-dot-product attention with one query per row, which costs more than all the matmuls
(see docs/results.md, "Throughput"). Here a decode step is, per layer, one fused QKV matmul, rotary
embedding from a precomputed table, attention as two batched matmuls, one output projection, one
fused gate/up matmul and one down projection; the sampler draws a token by inverse-CDF sampling
(one uniform per row instead of one per vocabulary entry).

Prefix sharing: when every row of a chunk continues the same prompt (the evaluation: 256 samples
of one theorem), the prompt's keys and values are stored once and its attention scores are one
[rows × prompt] matmul per head instead of a copy of the prompt cache per row. Beyond the prompt,
rows that have drawn the same tokens so far are decoded once: a step runs per distinct prefix (a
slot, `_Cohort`), and each row draws its own token from its slot's distribution, so the samples are
those of decoding every row alone (the same random numbers, the same tokens). The generated tokens'
keys and values live in a time-major cache (`GenCache`) that attention reads to its exact length
without a copy, and to which a branching prefix adds a slot.

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
        """Logits [b, V] of the next token for each cohort's slots (`_Cohort`: its slots' last
        tokens `tok` at positions `pos`, its prompts' cache and its generated tokens' cache, to which
        this step's keys and values are appended). The matmuls run over the slots of all cohorts at
        once; attention is per cohort, over its own prompt and generated tokens."""
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
        kg, vg = c.cache.append(layer, k, v)  # [b * kh, d, n_g] and [b * kh, n_g, d]
        qg = q.view(b, kh, rep, d)  # queries grouped by key head
        pk, pv = c.prompt_kv[layer]
        if c.shared:  # one prompt: per key head, one matmul over every row [kh, b*rep, d] @ [kh, d, P]
            sp = torch.bmm(qg.permute(1, 0, 2, 3).reshape(kh, b * rep, d), pk)
            sp = sp.view(kh, b, rep, -1).permute(1, 0, 2, 3).reshape(b, h, -1)
        else:  # a prompt per row: pk [b, kh, d, P]
            sp = (qg @ pk).view(b, h, -1) + c.key_bias
        n_g = kg.shape[-1]
        sg = torch.bmm(q.view(b * kh, rep, d), kg).view(b, h, n_g)
        c.cache.mask(sg)
        probs = torch.softmax(torch.cat((sp, sg), -1), -1)
        n_p = sp.shape[-1]
        pp = probs[..., :n_p].view(b, kh, rep, n_p)
        att = torch.bmm(probs[..., n_p:].reshape(b * kh, rep, n_g), vg).view(b, kh, rep, d)
        if c.shared:
            att += torch.bmm(pp.permute(1, 0, 2, 3).reshape(kh, b * rep, n_p), pv).view(kh, b, rep, d).permute(1, 0, 2, 3)
        else:
            att += pp @ pv
        return att.view(b, h * d)


class GenCache:
    """Keys and values of the generated tokens, per layer, time-major: a buffer [cap, slots, kh, d]
    whose position t holds every slot's key (value) of its t-th generated token (a slot is one
    distinct prefix being decoded, see `_Cohort`). A step writes one contiguous slice, and attention
    reads the first positions of the first `n` slots as a view, [n * kh, d, t] for the scores and
    [n * kh, t, d] for the values, with no copy: the matrices of a batched product may lie apart in
    memory as long as each one's rows do not. When the buffer is full, a new one BLOCK positions
    longer takes its contents.

    Why this layout (measured on the CPU, docs/results.md "Throughput"): a cache laid out row-major
    [B, kh, cap, d] must either be read whole (padding included) or copied to be sliced, and writing
    a step into it is a strided copy; time-major it is read to its exact length and written in one
    piece, and a slot can be added or copied without moving the others. Under MIN_VIEW positions,
    the batched product of probabilities and values takes a slow small-matrix path in torch, so the
    first steps attend to MIN_VIEW positions, the ones not yet written masked out (`mask`)."""

    BLOCK = 32
    MIN_VIEW = 17
    FIRST_MAX = 64  # the first buffer holds min(the token budget, FIRST_MAX) positions

    def __init__(self, layers: int, slots: int, kh: int, d: int, dtype, device, max_new_tokens: int):
        cap = max(self.MIN_VIEW, min(max_new_tokens, self.FIRST_MAX))
        self.k = [self._buffer(cap, slots, kh, d, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [self._buffer(cap, slots, kh, d, dtype=dtype, device=device) for _ in range(layers)]
        self.length = 0  # positions written by earlier steps
        self.n = 0  # slots in use (set by the cohort, then kept by branch and select)

    def _buffer(self, cap, *shape, dtype, device=None):
        buf = torch.empty((cap, *shape), dtype=dtype, device=device)
        # the positions the first steps read masked must hold finite numbers (0 × NaN is NaN);
        # past MIN_VIEW only written positions are read
        buf[: self.MIN_VIEW].zero_()
        return buf

    def _view(self) -> int:
        return max(self.length + 1, self.MIN_VIEW)

    def append(self, layer: int, k, v):
        """Write this step's k, v [n, kh, d] of `layer`; returns the keys [n * kh, d, t] and values
        [n * kh, t, d] to attend to (this step's included; t = max(length + 1, MIN_VIEW))."""
        kb, vb = self.k[layer], self.v[layer]
        n = self.n
        kb[self.length, :n] = k
        vb[self.length, :n] = v
        t = self._view()
        kh, d = kb.shape[2:]
        return kb[:t, :n].view(t, n * kh, d).permute(1, 2, 0), vb[:t, :n].view(t, n * kh, d).transpose(0, 1)

    def mask(self, scores) -> None:
        """Mask, in place, the scores [..., t] of positions not yet written."""
        if self.length + 1 < self.MIN_VIEW:
            scores[..., self.length + 1:] = float("-inf")

    def advance(self) -> None:
        self.length += 1
        if self._view() > self.k[0].shape[0]:
            for buffers in (self.k, self.v):
                for i, old in enumerate(buffers):
                    new = old.new_empty((old.shape[0] + self.BLOCK, *old.shape[1:]))
                    new[: self.length] = old[: self.length]
                    buffers[i] = new

    def branch(self, parents) -> None:
        """Add slots after the n in use, each a copy of its parent slot's positions so far."""
        m = len(parents)
        for buffers in (self.k, self.v):
            for buf in buffers:
                buf[: self.length, self.n:self.n + m] = buf[: self.length].index_select(1, parents)
        self.n += m

    def select(self, idx) -> None:
        """Keep slots `idx` only, in that order, in place; only the positions read later are moved.

        In place, not into fresh buffers: a fresh buffer costs an allocation, page faults on first
        touch and the zeroing of its first MIN_VIEW positions. Positions under MIN_VIEW that a kept
        slot has not written yet receive another slot's finite numbers: they stay masked, and finite
        is all they need."""
        keep = max(self.length, self.MIN_VIEW)
        for buffers in (self.k, self.v):
            for buf in buffers:
                buf[:keep, : len(idx)] = buf[:keep].index_select(1, idx)
        self.n = len(idx)


def draw(logits, generator, temperature: float, top_p: float, rows=None):
    """Sample one token per row: (token [B], log-prob at temperature 1 [B], log-prob under the
    sampling distribution [B], 0 for greedy).

    `logits` [S, V] are per slot (a distinct prefix), `rows` [B] the slot of each row drawing (default:
    one row per slot). The distribution's work (max, exponentials, cumulative sum, nucleus) is done
    once per slot; each row draws with its own uniform from its slot's cumulative sum. Row by row the
    numbers are those of drawing from a copy of the slot's logits: every reduction runs along a row.

    Inverse-CDF sampling: one uniform per row, located in the cumulative sum of the unnormalised
    probabilities. The chosen token's log-probs come from one log-sum-exp per slot, not a full
    log_softmax."""
    from pipeline.sampling.hf import process_logits

    logits = logits.float()
    if rows is None:
        rows = torch.arange(logits.shape[0], device=logits.device)
    m = logits.amax(-1, keepdim=True)
    if temperature == 0:
        tok = logits.argmax(-1).index_select(0, rows)
        lse = (logits - m).exp_().sum(-1).log_().add_(m.squeeze(-1))
        lp = logits[rows, tok] - lse.index_select(0, rows)
        return tok, lp, torch.zeros_like(lp)
    plain = temperature == 1.0 and top_p >= 1.0
    if plain:
        e = (logits - m).exp_()
    else:  # the processed distribution, with -inf outside the nucleus
        sample_lp = process_logits(logits, temperature, top_p)
        e = sample_lp.exp()
    cdf = e.cumsum(-1).index_select(0, rows)
    total = cdf[:, -1:]
    u = torch.rand((len(rows), 1), generator=generator, device=logits.device, dtype=cdf.dtype) * total
    # rand < 1, but u = rand × total can round up to total; keep it strictly below
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    tok = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max_(logits.shape[-1] - 1)
    chosen = logits[rows, tok]
    if plain:
        lp = chosen - m.squeeze(-1).index_select(0, rows) - e.sum(-1).log_().index_select(0, rows)
        return tok, lp, lp
    lse = (logits - m).exp_().sum(-1).log_().add_(m.squeeze(-1))
    return tok, chosen - lse.index_select(0, rows), sample_lp[rows, tok]


def _with_room(t, rows: int):
    """A buffer of `rows` rows whose first len(t) rows are t (the rest uninitialised)."""
    buf = t.new_empty((max(rows, t.shape[0]), *t.shape[1:]))
    buf[: t.shape[0]] = t
    return buf


class _Cohort:
    """One chunk of the work in flight: its rows (the samples being drawn) and its slots (the
    distinct prefixes being decoded), their prompts' cache (shared by all slots when they continue
    one prompt), their generated tokens' cache, and what each row has drawn so far.

    Rows with the same prompt and the same tokens drawn so far have the same next-token
    distribution, so the decoder computes it once, for their slot, and each row draws its own token
    from it. After each draw the rows of a slot that drew the same token stay together; the first
    token drawn keeps the slot, each other one gets a new slot that copies the cache so far (samples
    of one theorem share long prefixes: most of a step's rows are duplicates). Slots whose rows all
    finished ride along until a quarter of them are dead, then the cache is compacted."""

    def __init__(self, dec: LlamaDecoder, index: int, chunk, prompt_ids, *, pad: int, max_new_tokens: int,
                 limits=None):
        from pipeline.model import pack_left, position_ids_from_mask

        device = dec.device
        self.index, self.max_new_tokens = index, max_new_tokens
        self.vocab = dec.head.shape[0]
        b = len(chunk)
        # distinct prompts by content: each is the first slot of the rows that continue it
        distinct = sorted({tuple(prompt_ids[p]) for p, _ in chunk})
        row_of = {ids: i for i, ids in enumerate(distinct)}
        ids, mask = pack_left([list(x) for x in distinct], pad, device)
        pos0 = position_ids_from_mask(mask)
        self.slot_logits, prompt_kv = dec.prefill(ids, mask, pos0)
        # keys transposed [.., kh, d, P] for the score products; values [.., kh, P, d]
        prompt_kv = [(k.transpose(-1, -2), v) for k, v in prompt_kv]
        self.shared = len(distinct) == 1
        if self.shared:  # one prompt, hence no padding: its cache is shared by every slot
            self.prompt_kv = [(k[0].contiguous(), v[0]) for k, v in prompt_kv]
        else:  # each slot has its own copy of its prompt's cache, in buffers with room for b slots
            key_bias = torch.zeros(mask.shape, dtype=dec.dtype, device=device).masked_fill_(mask == 0, float("-inf"))
            # k0, v0, k1, v1, …, key_bias: every buffer indexed by slot, copied alike
            self._prompt_buffers = [_with_room(t, b) for kv in prompt_kv for t in kv] + [_with_room(key_bias[:, None, :], b)]
        self.row_slot = torch.tensor([row_of[tuple(prompt_ids[p])] for p, _ in chunk], device=device)
        self.pos = pos0[:, -1]  # each slot's position of its last token; advanced by record()
        self.tok = None
        self.cache = GenCache(len(dec.layers), b, dec.kv_heads, dec.head_dim, dec.dtype, device, max_new_tokens)
        self.cache.n = len(distinct)
        self._use_slots()
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

    def _use_slots(self) -> None:
        """Point the prompt-cache views at the slots in use (the generated tokens' cache keeps its own)."""
        if not self.shared:
            *kv, self.key_bias = [t[: self.cache.n] for t in self._prompt_buffers]
            self.prompt_kv = list(zip(kv[::2], kv[1::2]))

    def record(self, tok, lp, slp, eos) -> None:
        """Take this step's draws for the rows in the batch (finished rows' draws are ignored), and
        regroup the rows still decoding into slots by the prefix they now have."""
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
        if self.n_live and not self.done:
            self._regroup(tok)

    def _regroup(self, tok) -> None:
        n = self.cache.n
        at = self.live.nonzero().squeeze(-1)
        groups, inverse = torch.unique(self.row_slot[at] * self.vocab + tok[at], return_inverse=True)  # sorted
        parent, token = groups // self.vocab, groups % self.vocab
        first = torch.ones_like(parent, dtype=torch.bool)
        first[1:] = parent[1:] != parent[:-1]  # the first token drawn in a slot keeps the slot
        slot = parent.clone()
        branched = (~first).nonzero().squeeze(-1)
        if len(branched):
            slot[branched] = torch.arange(n, n + len(branched), device=slot.device)
            self.cache.branch(parent[branched])
            if not self.shared:
                for buf in self._prompt_buffers:
                    buf[n:n + len(branched)] = buf[parent[branched]]
            self.pos = torch.cat((self.pos, self.pos[parent[branched]]))
        self.row_slot[at] = slot[inverse]
        self.tok = torch.zeros(self.cache.n, dtype=tok.dtype, device=tok.device)  # dead slots: any token
        self.tok[slot] = token
        self.pos = self.pos + 1
        self._use_slots()
        if len(groups) < 0.75 * self.cache.n:  # a quarter of the slots are dead: drop them
            self._compact_slots(slot)

    def _compact_slots(self, alive) -> None:
        alive = alive.sort().values
        renumber = torch.zeros(self.cache.n, dtype=torch.long, device=alive.device)  # dead slots' rows: 0
        renumber[alive] = torch.arange(len(alive), device=alive.device)
        self.row_slot = renumber[self.row_slot]
        self.cache.select(alive)
        if not self.shared:
            for buf in self._prompt_buffers:  # in place, as the generated tokens' cache
                buf[: len(alive)] = buf.index_select(0, alive)
        self.tok, self.pos = self.tok[alive], self.pos[alive]
        self._use_slots()

    @property
    def done(self) -> bool:
        return self.n_live == 0 or self.step == self.max_new_tokens

    def compact(self) -> None:
        # finished rows ride along (their draws ignored) until a quarter of the batch is done; a
        # row is only an index here, but the draws take one random number per row in the batch,
        # and this schedule is part of what a seed reproduces
        if self.n_live > 0.75 * len(self.rows):
            return
        idx = self.live.nonzero().squeeze(-1)
        self.rows, self.live, self.row_slot = self.rows[idx], self.live[idx], self.row_slot[idx]

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
            if len(active) == 1:
                logits, rows = active[0].slot_logits, active[0].row_slot
            else:  # every cohort's slots in one matrix, each row pointing at its slot's
                offsets = [0]
                for c in active[:-1]:
                    offsets.append(offsets[-1] + c.slot_logits.shape[0])
                logits = torch.cat([c.slot_logits for c in active])
                rows = torch.cat([c.row_slot + o for c, o in zip(active, offsets)])
            tok, lp, slp = draw(logits, generator, temperature, top_p, rows)
            start = 0
            for c in active:
                n = c.row_slot.shape[0]
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
                    c.slot_logits = lg
    return out


def sample_loop(model, tokenizer, prompt_ids, chunk, *, temperature, top_p, max_new_tokens, generator,
                limits=None, per_token=False):
    """`pipeline.sampling.hf._sample_loop`'s contract (same arguments, same return values) on the
    lean decoder, for one chunk."""
    return sample_chunks(model, tokenizer, prompt_ids, [chunk], temperature=temperature, top_p=top_p,
                         max_new_tokens=max_new_tokens, generator=generator,
                         limits=None if limits is None else [limits], per_token=per_token)[0]
