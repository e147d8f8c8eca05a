"""The hf sampler's fast decode path (pipeline/sampling/fast.py): its per-token log-probs are the
model's teacher-forced ones, it samples the model's distribution (a chi-square test against an
enumerated toy model), it is deterministic, and it steps aside for models it does not cover."""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from pipeline.model import encode_prompts, new_model, pack_left, position_ids_from_mask
from pipeline.sampling import fast
from pipeline.sampling import hf as sampler
from tests.test_sampler import COMPLETIONS, PROMPTS, tiny  # noqa: F401 (tiny: a fixture)
from tests.tiny_lm import fit_tiny_lm



@pytest.fixture(scope="module")
def tiny_gqa(tiny):
    """A random Llama with grouped-query attention (4 query heads on 2 key/value heads)."""
    _, tok = tiny
    torch.manual_seed(1)
    model = new_model(SimpleNamespace(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                                      max_length=256), tok)
    cfg = model.config
    cfg.num_key_value_heads = 2
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(cfg).eval()
    assert model.model.layers[0].self_attn.k_proj.weight.shape[0] == 16
    return model, tok


def teacher_forced(model, prompt, tokens, temperature, top_p):
    """Per-token log-probs of `tokens` after `prompt` by one forward pass: (raw, sampling distribution)."""
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt) + list(tokens)])).logits[0, len(prompt) - 1:-1].float()
    t = torch.tensor(tokens)[:, None]
    raw = torch.log_softmax(logits, -1).gather(-1, t).squeeze(-1)
    processed = sampler.process_logits(logits, temperature, top_p).gather(-1, t).squeeze(-1)
    return raw, processed


@pytest.mark.parametrize("which", ["tiny", "tiny_gqa"])
@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.8)])
@pytest.mark.parametrize("n,batch_size", [(9, 8), (3, 8)])  # one prompt per chunk (shared cache) / prompts mixed
def test_per_token_log_probs_equal_teacher_forcing(request, monkeypatch, which, temperature, top_p, n, batch_size):
    """Recorded per-token log-probs (temperature 1, and under the distribution sampled from) equal
    the teacher-forced ones within 1e-4, across the decoder's moving parts: prompts of different
    lengths (left padding), several chunks in flight, rows dropped as they finish, the first steps'
    masked positions, and a KV cache growing past its first buffer (40 tokens, the first buffer
    made 20 positions long)."""
    monkeypatch.setattr(fast.GenCache, "FIRST_MAX", 20)
    model, tok = request.getfixturevalue(which)
    assert fast.supports(model) is None
    prompt_ids = encode_prompts(tok, PROMPTS)
    chunks = sampler.chunk_work(len(PROMPTS), n, batch_size, by_prompt=True)
    gen = torch.Generator().manual_seed(0)
    outs = fast.sample_chunks(model, tok, prompt_ids, chunks, temperature=temperature, top_p=top_p,
                              max_new_tokens=40, generator=gen, batch_size=batch_size, per_token=True)
    worst, lengths = 0.0, []
    for chunk, out in zip(chunks, outs):
        for (p, _), (tokens, lp, slp, finished) in zip(chunk, out):
            raw, processed = teacher_forced(model, prompt_ids[p], tokens, temperature, top_p)
            # a token drawn from the sampling distribution has a finite log-prob under it
            assert torch.isfinite(processed).all() and torch.isfinite(torch.tensor(slp)).all()
            worst = max(worst, (raw - torch.tensor(lp)).abs().max().item(),
                        (processed - torch.tensor(slp)).abs().max().item())
            assert finished == (tokens[-1] == tok.eos_token_id)
            lengths.append(len(tokens))
    assert worst <= 1e-4
    if which == "tiny":  # the fitted model ends its samples at different lengths: rows are dropped
        assert len(set(lengths)) > 1 and min(lengths) < 40
    else:  # the random one rarely ends: the cache grows past its first buffer
        assert max(lengths) == 40 > fast.GenCache.FIRST_MAX


def test_greedy_picks_the_argmax_and_reports_its_log_prob(tiny):
    model, tok = tiny
    prompt_ids = encode_prompts(tok, PROMPTS)
    out = fast.sample_loop(model, tok, prompt_ids, [(p, 0) for p in range(3)], temperature=0.0, top_p=1.0,
                           max_new_tokens=12, generator=torch.Generator().manual_seed(0), per_token=True)
    for p, (tokens, lp, slp, _) in enumerate(out):
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids[p] + tokens])).logits[0, len(prompt_ids[p]) - 1:-1]
        assert tokens == logits.argmax(-1).tolist()
        assert lp == pytest.approx(torch.log_softmax(logits, -1).max(-1).values.tolist(), abs=1e-4)
        assert slp == [0.0] * len(tokens)


# ---------------------------------------------------------------- the distribution sampled


def toy_model(seed: int):
    """A 2-layer Llama over 5 tokens (0 pad, 1 bos, 2 eos, 3, 4) with peaked random weights: every
    sequence of up to 3 new tokens can be enumerated."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=5, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=32, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0, tie_word_embeddings=True, initializer_range=0.2)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = 2
    return model, SimpleNamespace(eos_token_id=2, pad_token_id=0)


def enumerate_sequences(model, prompt, max_new, temperature, top_p):
    """{token tuple: probability under the sampling distribution} for every completion of `prompt`."""
    probs = {}
    seqs = [()]
    for _ in range(max_new):
        grown = []
        for s in seqs:
            with torch.no_grad():
                logits = model(torch.tensor([list(prompt) + list(s)])).logits[0, -1:].float()
            p = sampler.process_logits(logits, temperature, top_p).exp()[0]
            base = probs.pop(s, 1.0) if s else 1.0
            for t in range(5):
                if p[t] > 0:
                    probs[s + (t,)] = base * float(p[t])
                    if t != 2:
                        grown.append(s + (t,))
        seqs = grown if len(seqs[0]) + 1 < max_new else []
    return probs


def chi_square_p_value(counts: dict, expected_probs: dict, total: int) -> tuple[float, int]:
    """Pearson's chi-square test; categories expected fewer than 5 times are pooled."""
    stat, pooled_obs, pooled_exp, dof = 0.0, 0, 0.0, -1
    for key, prob in expected_probs.items():
        e, o = prob * total, counts.get(key, 0)
        if e < 5:
            pooled_obs, pooled_exp = pooled_obs + o, pooled_exp + e
            continue
        stat += (o - e) ** 2 / e
        dof += 1
    if pooled_exp > 0:
        stat += (pooled_obs - pooled_exp) ** 2 / pooled_exp
        dof += 1
    unexpected = sum(v for k, v in counts.items() if k not in expected_probs)
    assert unexpected == 0, f"{unexpected} samples the distribution gives probability 0"
    p = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)))
    return p, dof


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.8, 0.85)])
def test_samples_follow_the_model_distribution(temperature, top_p):
    """20,000 samples of each of two prompts (of different lengths, so chunks mixing them are
    left-padded) against the exact distribution of the toy model's sequences."""
    model, tok = toy_model(1)
    prompts = [[1, 3], [1, 4, 4, 3]]
    n = 20_000
    recs = {}
    for name, batch_size in (("shared", 256), ("mixed", 2 * n)):  # one prompt per chunk / both in one chunk
        chunks = sampler.chunk_work(len(prompts), n, batch_size, by_prompt=True)
        outs = fast.sample_chunks(model, tok, prompts, chunks, temperature=temperature, top_p=top_p, max_new_tokens=3,
                                  generator=torch.Generator().manual_seed(7), batch_size=batch_size)
        recs[name] = [(p, tuple(o[0])) for chunk, out in zip(chunks, outs) for (p, _), o in zip(chunk, out)]
    for p, prompt in enumerate(prompts):
        exact = enumerate_sequences(model, prompt, 3, temperature, top_p)
        assert math.isclose(sum(exact.values()), 1.0, abs_tol=1e-5)
        assert max(exact.values()) < 0.5 and len(exact) > 10  # a distribution worth testing
        for name, rs in recs.items():
            counts = {}
            for q, seq in rs:
                if q == p:
                    counts[seq] = counts.get(seq, 0) + 1
            p_value, dof = chi_square_p_value(counts, exact, n)
            assert dof > 5 and p_value > 1e-3, (name, p, p_value, dof)


def test_the_chi_square_test_tells_a_wrong_distribution():
    """The test above has power: samples drawn at another temperature fail it."""
    model, tok = toy_model(1)
    prompts = [[1, 3]]
    out = fast.sample_loop(model, tok, prompts, [(0, s) for s in range(20_000)], temperature=0.8, top_p=1.0,
                           max_new_tokens=3, generator=torch.Generator().manual_seed(7))
    counts = {}
    for o in out:
        counts[tuple(o[0])] = counts.get(tuple(o[0]), 0) + 1
    p_value, _ = chi_square_p_value(counts, enumerate_sequences(model, prompts[0], 3, 1.0, 1.0), 20_000)
    assert p_value < 1e-6


def test_inverse_cdf_draw_never_picks_a_token_outside_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 4000))
    tok, lp, slp = fast.draw(logits, torch.Generator().manual_seed(0), 1.0, 0.8)
    assert set(tok.tolist()) == {0, 1}
    assert torch.allclose(slp.exp(), torch.tensor([0.625, 0.375])[tok], atol=1e-6)
    assert torch.allclose(lp.exp(), torch.tensor([0.5, 0.3])[tok], atol=1e-6)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (1.3, 1.0), (0.0, 1.0)])
def test_drawing_from_slots_equals_drawing_from_each_rows_copy(temperature, top_p):
    """Rows that share a slot draw from its logits, computed once: the same tokens and the same
    log-probs, to the bit, as drawing from a copy of the logits per row, with the same random numbers."""
    slots = torch.randn(5, 37) * 3
    rows = torch.tensor([0, 0, 3, 1, 3, 3, 4, 2, 0, 4, 4, 1] * 50)
    by_slot = fast.draw(slots, torch.Generator().manual_seed(3), temperature, top_p, rows)
    by_row = fast.draw(slots[rows], torch.Generator().manual_seed(3), temperature, top_p)
    for a, b in zip(by_slot, by_row):
        assert torch.equal(a, b)
    assert len(set(by_slot[0].tolist())) >= (4 if temperature == 0 else 10)  # not a degenerate draw


# ---------------------------------------------------------------- determinism and the fallback


def test_same_seed_same_samples(tiny):
    model, tok = tiny
    args = dict(n=6, max_new_tokens=30, batch_size=4, method="fast")
    a = sampler.sample(model, tok, PROMPTS, seed=1, **args)
    assert a == sampler.sample(model, tok, PROMPTS, seed=1, **args)
    assert [r["token_ids"] for r in a] != [r["token_ids"] for r in sampler.sample(model, tok, PROMPTS, seed=2, **args)]


def test_auto_uses_the_fast_path_for_a_float32_llama_only(tiny):
    model, tok = tiny
    assert sampler.resolve_method(model) == "fast"
    bf16 = fit_tiny_lm(PROMPTS, COMPLETIONS, num_layers=1, max_length=64, steps=0)[0].to(torch.bfloat16)
    assert "float32" in fast.supports(bf16) and sampler.resolve_method(bf16) == "loop"


def test_other_architectures_fall_back_to_the_transformers_loop(tiny):
    """A GPT-2 (not covered by the fast decoder): auto samples it with the transformers loop, and
    asking for the fast path by name is refused with the reason."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = tiny
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    assert "gpt2" in fast.supports(gpt2)
    assert sampler.resolve_method(gpt2) == "loop"
    recs = sampler.sample(gpt2, tok, PROMPTS[:2], n=3, max_new_tokens=5, batch_size=4, seed=0)
    assert len(recs) == 6 and all(1 <= r["num_tokens"] <= 5 for r in recs)
    assert recs == sampler.sample(gpt2, tok, PROMPTS[:2], n=3, max_new_tokens=5, batch_size=4, seed=0, method="loop")
    with pytest.raises(ValueError, match="gpt2"):
        sampler.sample(gpt2, tok, PROMPTS[:2], n=3, max_new_tokens=5, method="fast")


def test_chunks_keep_a_prompt_together_when_it_fills_half_a_batch():
    for n_prompts, n, bs in itertools.product((1, 3, 5), (1, 3, 8, 9, 256), (4, 8, 256)):
        chunks = sampler.chunk_work(n_prompts, n, bs, by_prompt=True)
        assert [row for c in chunks for row in c] == [(p, s) for p in range(n_prompts) for s in range(n)]
        assert all(1 <= len(c) <= bs for c in chunks)
        if 2 * n > bs:
            assert all(len({p for p, _ in c}) == 1 for c in chunks)
    assert sampler.chunk_work(2, 5, 4, by_prompt=False)[1] == [(0, 4), (1, 0), (1, 1), (1, 2)]


def test_prefill_matches_transformers_on_left_padded_prompts(tiny):
    model, tok = tiny
    ids, mask = pack_left(encode_prompts(tok, PROMPTS), tok.pad_token_id)
    pos = position_ids_from_mask(mask)
    with torch.inference_mode():
        dec = fast.LlamaDecoder(model)
        logits, _ = dec.prefill(ids, mask, pos)
        ref = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
    torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)


def test_rows_that_share_a_prefix_are_decoded_once(tiny, monkeypatch):
    """Samples of one prompt share their first tokens: the decoder computes a step once per distinct
    prefix (slot), never more slots than rows still decoding, adds slots as prefixes branch and drops
    the dead ones (their correctness: test_per_token_log_probs_equal_teacher_forcing)."""
    model, tok = tiny
    seen, calls = [], {"branch": 0, "compact": 0}
    step, branch, compact = fast.LlamaDecoder.step, fast.GenCache.branch, fast._Cohort._compact_slots

    def spy_step(self, cohorts):
        seen.append((sum(c.cache.n for c in cohorts), sum(c.n_live for c in cohorts)))
        return step(self, cohorts)

    def spy(name, f):
        def g(*a):
            calls[name] += 1
            return f(*a)
        return g

    monkeypatch.setattr(fast.LlamaDecoder, "step", spy_step)
    monkeypatch.setattr(fast.GenCache, "branch", spy("branch", branch))
    monkeypatch.setattr(fast._Cohort, "_compact_slots", spy("compact", compact))
    recs = sampler.sample(model, tok, PROMPTS[:1], n=64, max_new_tokens=30, batch_size=64, seed=0, method="fast")
    assert len({tuple(r["token_ids"]) for r in recs}) > 1
    # dead slots ride along until they are a quarter of the slots
    assert all(0.75 * slots <= live for slots, live in seen) and seen[0][0] < seen[0][1]
    assert sum(s for s, _ in seen) < 0.8 * sum(n for _, n in seen)
    assert calls["branch"] > 0 and calls["compact"] > 0
