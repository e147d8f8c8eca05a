"""pipeline.model: the tokenizer's exact round trip, save/load through from_pretrained, and
teacher-forced scoring that agrees with the sampler's own log-probs."""

import json
from types import SimpleNamespace

import pytest
import torch

from pipeline.sampling import hf as sampler
from pipeline.model import (completion_logprobs, decode_completion, encode_completions, encode_prompts, load,
                            model_dir, new_model, resolve_device, train_tokenizer)
from tests.faults import Killed, kill_at

CORPUS = [
    ("theorem t1 (p q : Prop) : p ∧ q → q ∧ p := by", "\n  intro h\n  exact ⟨h.2, h.1⟩"),
    ("theorem t2 (p q : Prop) : p ∨ q → q ∨ p := by",
     "\n  intro h\n  cases h with\n  | inl hp => exact Or.inr hp\n  | inr hq => exact Or.inl hq"),
    ("theorem t3 (p : Prop) : p → ¬¬p := by", " exact fun hp hnp => hnp hp"),
    ("theorem t4 (p q r : Prop) : (p → q) → (q → r) → p → r := by", "\n  intro h1 h2 h3\n  exact h2 (h1 h3)"),
    ("theorem t5 (p q : Prop) : (p ↔ q) → (q ↔ p) := by", " intro ⟨a, b⟩; exact ⟨b, a⟩"),
    ("theorem t6 (p q : Prop) : p ∧ q ↔ q ∧ p := by",
     "\n  constructor\n  · intro ⟨a, b⟩\n    exact ⟨b, a⟩\n  · intro ⟨a, b⟩\n    exact ⟨b, a⟩"),
]
ARCH = SimpleNamespace(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, max_length=256)


def build_tiny(steps: int = 60, seed: int = 0):
    """A tokenizer and a 2-layer Llama briefly fitted to CORPUS (so it emits EOS now and then)."""
    texts = [p for p, _ in CORPUS] + [c for _, c in CORPUS] * 4
    tok = train_tokenizer(texts, 320)
    torch.manual_seed(seed)
    model = new_model(ARCH, tok)
    p_ids = encode_prompts(tok, [p for p, _ in CORPUS])
    c_ids = encode_completions(tok, [c for _, c in CORPUS])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        lp, mask = completion_logprobs(model, p_ids, c_ids)
        loss = -(lp.sum() / mask.sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


ROUND_TRIP = [
    "",
    " ",
    "\n",
    "by\n  intro h\n  exact ⟨h.2, h.1⟩",
    "\n  constructor\n  · intro ⟨a, b⟩\n    exact ⟨b, a⟩\n\n\n  · exact fun x => x",
    "  trailing spaces   \n\t\ttabs\t\n    \n",
    "¬(p ∨ q) ↔ ¬p ∧ ¬q → False ∨ True",
    "unseen unicode: αβγ ∀∃ ⊢ 𝔽 😀 中文 é (combining e\u0301) \u200b zero-width",
    "\r\nwindows\r\nline ends",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_tokenizer_round_trip_is_exact(tiny, text):
    _, tok = tiny
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, clean_up_tokenization_spaces=False) == text
    # the completion path used by the sampler
    assert decode_completion(tok, ids + [tok.eos_token_id]) == text


def test_prompts_get_bos_and_completions_eos(tiny):
    _, tok = tiny
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    p = encode_prompts(tok, ["theorem x : True := by"])[0]
    c = encode_completions(tok, [" trivial"])[0]
    assert p[0] == tok.bos_token_id and tok.bos_token_id not in p[1:]
    assert c[-1] == tok.eos_token_id and tok.bos_token_id not in c
    # prompt and completion tokenised apart give the same text as together
    assert tok.decode(p[1:] + c[:-1]) == "theorem x : True := by trivial"


def test_save_and_load_through_from_pretrained(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, tok2 = load(tmp_path / "m", "cpu", "float32")
    assert type(loaded).__name__ == "LlamaForCausalLM" and not loaded.training
    assert tok2.padding_side == "left"
    for text in ROUND_TRIP:
        assert tok2(text)["input_ids"] == tok(text)["input_ids"]
        assert tok2.decode(tok2(text, add_special_tokens=False)["input_ids"]) == text
    assert (tok2.pad_token_id, tok2.bos_token_id, tok2.eos_token_id) == \
           (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    ids = torch.tensor([encode_prompts(tok, [CORPUS[0][0]])[0]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_load_bfloat16(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, _ = load(tmp_path / "m", "cpu", "bfloat16")
    assert next(loaded.parameters()).dtype == torch.bfloat16
    lp, mask = completion_logprobs(loaded, encode_prompts(tok, [CORPUS[0][0]]), encode_completions(tok, [CORPUS[0][1]]))
    assert lp.dtype == torch.float32 and torch.isfinite(lp).all()


def test_new_model_follows_config(tiny):
    model, tok = tiny
    c = model.config
    assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads) == (32, 64, 2, 2)
    assert c.vocab_size == len(tok) and c.eos_token_id == tok.eos_token_id and c.pad_token_id == tok.pad_token_id
    with pytest.raises(ValueError, match="multiple"):
        new_model(SimpleNamespace(**{**vars(ARCH), "num_heads": 3}), tok)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_model_dir_own_or_external(tmp_path):
    own = SimpleNamespace(path=tmp_path / "a")
    own.path.mkdir()
    (own.path / "meta.json").write_text(json.dumps({"stage": "pretrain"}))
    assert model_dir(own) == str(tmp_path / "a" / "model")
    ext = SimpleNamespace(path=tmp_path / "b")
    ext.path.mkdir()
    (ext.path / "meta.json").write_text(json.dumps({"external_path": "org/some-model"}))
    assert model_dir(ext) == "org/some-model"


def test_completion_logprobs_ignores_padding_and_batch(tiny):
    model, tok = tiny
    p_ids = encode_prompts(tok, [p for p, _ in CORPUS])
    c_ids = encode_completions(tok, [c for _, c in CORPUS])
    with torch.no_grad():
        lp, mask = completion_logprobs(model, p_ids, c_ids)
        assert lp.shape == mask.shape == (len(CORPUS), max(map(len, c_ids)))
        assert mask.sum(1).tolist() == [len(c) for c in c_ids]
        assert (lp[~mask] == 0).all() and (lp[mask] < 0).all()
        for i in range(len(CORPUS)):
            alone, _ = completion_logprobs(model, [p_ids[i]], [c_ids[i]])
            torch.testing.assert_close(alone[0], lp[i, :len(c_ids[i])], atol=1e-5, rtol=1e-5)
        # against a plain unpadded forward pass
        full = torch.tensor([p_ids[1] + c_ids[1]])
        ref = torch.log_softmax(model(full).logits[0, len(p_ids[1]) - 1:-1].float(), -1)
        ref = ref.gather(-1, torch.tensor(c_ids[1])[:, None]).squeeze(-1)
        torch.testing.assert_close(lp[1, :len(c_ids[1])], ref, atol=1e-5, rtol=1e-5)


def test_completion_logprobs_has_gradients(tiny):
    model, tok = tiny
    lp, mask = completion_logprobs(model, encode_prompts(tok, [CORPUS[2][0]]), encode_completions(tok, [CORPUS[2][1]]))
    lp.sum().backward()
    assert model.model.embed_tokens.weight.grad is not None
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("method", ["fast", "loop", "generate"])
@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.9)])
def test_completion_logprobs_equals_sampler_logp(tiny, method, temperature, top_p):
    model, tok = tiny
    prompts = [CORPUS[0][0], CORPUS[3][0], "theorem odd (p : Prop) : p → p := by"]  # different lengths
    recs = sampler.sample(model, tok, prompts, n=5, temperature=temperature, top_p=top_p, max_new_tokens=40,
                          batch_size=7, seed=3, method=method)
    p_ids = encode_prompts(tok, prompts)
    with torch.no_grad():
        lp, mask = completion_logprobs(model, [p_ids[r["prompt_idx"]] for r in recs], [r["token_ids"] for r in recs])
        lp_t, _ = completion_logprobs(model, [p_ids[r["prompt_idx"]] for r in recs], [r["token_ids"] for r in recs],
                                      temperature=temperature)
    got = torch.tensor([r["logp"] for r in recs])
    torch.testing.assert_close(lp.sum(1).double(), got.double(), atol=1e-4, rtol=1e-5)
    assert mask.sum(1).tolist() == [r["num_tokens"] for r in recs]
    if top_p == 1.0:  # without a nucleus the sampling distribution is the tempered softmax
        torch.testing.assert_close(lp_t.sum(1).double(), torch.tensor([r["sample_logp"] for r in recs]).double(),
                                   atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------- the pretrain stage


def pretrain_ctx(root):
    from omegaconf import OmegaConf

    from pipeline.context import Context
    from pipeline.store import ArtifactStore
    from pipeline.tracking import RunLogger

    cfg = OmegaConf.create({
        "model": {"name": "tiny_prop", "path": "", "vocab_size": 300, "hidden_size": 32, "intermediate_size": 64,
                  "num_layers": 1, "num_heads": 2, "max_length": 256, "dtype": "float32", "device": "cpu", "prompt_style": "prop"},
        "pretrain": {"seed": 0, "extra_path": "pkg://lean_env/data/prop_pretrain.jsonl", "extra_theorems": 12, "proofs_per_theorem": 2, "max_proof_chars": 0, "prompt_loss_weight": 0.5, "steps": 12,
                     "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "weight_decay": 0.01, "checkpoint_every": 4,
                     "num_threads": 0},
        "dataset": {"train_path": "pkg://lean_env/data/prop_train.jsonl", "eval_path": "pkg://lean_env/data/prop_eval.jsonl",
                    "train_limit": 10, "prompt_template": "{statement} := by", "proof_prefix": "by", "header": ""},
        "progress": False,
    })
    return Context(cfg=cfg, store=ArtifactStore(root / "store"), run_dir=root / "run", log=RunLogger(root / "run"))


def test_pretrain_corpus_excludes_the_eval_split(tmp_path):
    from lean_env.propgen import canonical_key
    from pipeline.data import load_theorems
    from pipeline.stages.pretrain import build_corpus

    ctx = pretrain_ctx(tmp_path)
    corpus, stats = build_corpus(ctx.cfg)
    eval_keys = {canonical_key(s) for s in load_theorems(ctx.cfg.dataset.eval_path)["statement"]}
    assert not eval_keys & {canonical_key(s) for s in corpus["statement"]}
    assert stats["train_theorems"] == 10 and stats["extra_theorems"] == 12 and len(corpus) == 22 * 2
    assert (corpus["prompt"] == corpus["statement"] + " := by").all()
    assert not corpus["completion"].str.startswith("by").any()


def test_pretrain_killed_midway_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from pipeline.stages import pretrain

    ref = pretrain.run(pretrain_ctx(tmp_path / "a"))
    assert (ref.path / "model" / "model.safetensors").exists() and (ref.path / "corpus_stats.json").exists()
    assert not (ref.path / "checkpoint.pt").exists()
    loaded, tok = load(model_dir(ref), "cpu", "float32")
    assert loaded.config.num_hidden_layers == 1

    kill_at(monkeypatch, pretrain, "pretrain", "step", 6)
    ctx = pretrain_ctx(tmp_path / "b")
    with pytest.raises(Killed):
        pretrain.run(ctx)
    monkeypatch.undo()
    work = next((tmp_path / "b" / "store" / "pretrain").glob("*.partial"))
    assert torch.load(work / "checkpoint.pt", weights_only=False)["step"] == 4
    resumed = pretrain.run(pretrain_ctx(tmp_path / "b"))
    assert resumed.key == ref.key
    a = load_file(ref.path / "model" / "model.safetensors")
    b = load_file(resumed.path / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_with_a_model_path_records_it(tmp_path, monkeypatch):
    import transformers

    from pipeline.stages import pretrain

    ctx = pretrain_ctx(tmp_path)
    ctx.cfg.model.path = "some-org/some-model"
    asked = []
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", lambda name, **kw: asked.append(name))
    art = pretrain.run(ctx)
    assert asked == ["some-org/some-model"]  # the hub (or its cache) was asked before anything was recorded
    assert art.meta["external_path"] == "some-org/some-model" and model_dir(art) == "some-org/some-model"
    assert pretrain.run(ctx).path == art.path


def test_a_model_path_that_holds_no_model_fails_up_front_naming_it(tmp_path, monkeypatch):
    import transformers

    from pipeline.stages import pretrain

    ctx = pretrain_ctx(tmp_path / "run")
    ctx.cfg.model.path = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        pretrain.run(ctx)
    (tmp_path / "empty").mkdir()
    ctx.cfg.model.path = str(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        pretrain.run(ctx)

    def unreachable(name, **kw):
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", unreachable)
    ctx.cfg.model.path = "some-org/typo-model"
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a hub model"):
        pretrain.run(ctx)
    assert not (tmp_path / "run" / "store" / "pretrain").exists() or not any(
        (tmp_path / "run" / "store" / "pretrain").iterdir())  # nothing recorded for a model that is not there


def test_collate_labels_the_completion_and_the_prompt_apart():
    """The completion loss sees only completion tokens; the auxiliary prompt loss
    (pretrain.prompt_loss_weight) sees the prompt's tokens after BOS; padding is in neither."""
    import numpy as np

    from pipeline.stages.pretrain import collate

    prompts, completions = [[1, 10, 11], [1, 12]], [[20, 2], [21, 22, 2]]
    ids, mask, labels, prompt_labels = collate(prompts, completions, np.array([0, 1]), pad_id=0)
    assert ids.tolist() == [[1, 10, 11, 20, 2], [1, 12, 21, 22, 2]]
    assert labels.tolist() == [[-100, -100, -100, 20, 2], [-100, -100, 21, 22, 2]]
    assert prompt_labels.tolist() == [[-100, 10, 11, -100, -100], [-100, 12, -100, -100, -100]]
    # rows of different lengths: the padding is masked and labelled in neither loss
    ids, mask, labels, prompt_labels = collate([[1, 10, 11], [1]], [[2], [20, 2]], np.array([1, 0]), pad_id=0)
    assert ids.tolist() == [[1, 20, 2, 0], [1, 10, 11, 2]] and mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert labels.tolist() == [[-100, 20, 2, -100], [-100, -100, -100, 2]]
    assert prompt_labels.tolist() == [[-100, -100, -100, -100], [-100, 10, 11, -100]]
    ids, mask, labels, prompt_labels = collate([[1, 10, 11, 12]], [[2]], np.array([0]), pad_id=0)
    assert prompt_labels.tolist() == [[-100, 10, 11, 12, -100]] and labels.tolist() == [[-100, -100, -100, -100, 2]]


def test_pretrain_loss_is_the_mean_next_token_loss_of_each_part(tiny):
    """pretrain_loss against cross-entropy written out on the shifted logits: the completion loss,
    and the objective adding the weighted prompt loss; the same gradients."""
    import numpy as np

    from pipeline.stages.pretrain import collate, pretrain_loss

    model, tok = tiny
    model.zero_grad(set_to_none=True)
    p_ids = encode_prompts(tok, [p for p, _ in CORPUS])
    c_ids = encode_completions(tok, [c for _, c in CORPUS])
    ids, mask, labels, prompt_labels = collate(p_ids, c_ids, np.arange(len(CORPUS)), tok.pad_token_id)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    lp = torch.log_softmax(logits.float(), -1)

    def mean_nll(target):
        target = target[:, 1:]
        keep = target != -100
        return -lp.gather(-1, target.clamp(min=0)[..., None])[..., 0][keep].mean()

    expected = mean_nll(labels) + 0.5 * mean_nll(prompt_labels)
    expected.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    loss, objective, n_tok = pretrain_loss(model, ids, mask, labels, prompt_labels, 0.5)
    objective.backward()
    assert n_tok == sum(len(c) for c in c_ids)
    torch.testing.assert_close(loss, mean_nll(labels), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(objective, expected, atol=1e-6, rtol=1e-6)
    for p, g in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)
    model.zero_grad(set_to_none=True)
    assert pretrain_loss(model, ids, mask, labels, prompt_labels, 0.0)[1] == loss


def test_length_buckets_cover_every_row_once_and_cut_the_padding():
    from pipeline.model import length_buckets

    prompt_lens = [30, 34, 31, 40] * 16
    completion_lens = [10, 12, 90, 25, 11, 14, 60, 20] * 8
    groups = length_buckets(prompt_lens, completion_lens)
    assert sorted(i for g in groups for i in g) == list(range(64))
    computed = sum(len(g) * (max(prompt_lens[i] for i in g) + max(completion_lens[i] for i in g)) for g in groups)
    assert 1 < len(groups) < 64 and computed < 0.6 * 64 * (40 + 90)
    assert length_buckets([5] * 8, [7] * 8) == [list(range(8))]  # nothing to gain: one pass


@pytest.mark.parametrize("share_prompts", [True, False])
def test_bucketed_scoring_equals_one_padded_batch(tiny, share_prompts, monkeypatch):
    """Rows scored in length buckets, each distinct prompt run once (or, for a model whose cache
    cannot be shared, with the rows), get the numbers and gradients of one padded batch, in the
    caller's row order."""
    import pipeline.model as model_mod

    model, tok = tiny
    assert model_mod._full_attention(model)
    if not share_prompts:
        monkeypatch.setattr(model_mod, "_full_attention", lambda m: False)
    p_ids = encode_prompts(tok, [p for p, _ in CORPUS] * 3)
    c_ids = encode_completions(tok, [c for _, c in CORPUS] + [c[:3] for _, c in CORPUS] + [c * 4 for _, c in CORPUS])
    from pipeline.model import length_buckets

    assert len(length_buckets([len(p) for p in p_ids], [len(c) for c in c_ids])) > 1
    out = {}
    for buckets in (False, True):
        model.zero_grad(set_to_none=True)
        lp, mask, ent = completion_logprobs(model, p_ids, c_ids, temperature=0.8, return_entropy=True, buckets=buckets)
        (lp.sum() + ent.sum()).backward()
        out[buckets] = (lp, mask, ent, [p.grad.clone() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    (a, ma, ea, ga), (b, mb, eb, gb) = out[False], out[True]
    assert torch.equal(ma, mb) and a.shape == b.shape
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ea, eb, atol=1e-5, rtol=1e-5)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_scoring_a_gpt2_in_buckets(tiny):
    """Another architecture through the shared-prompt path: the numbers of one padded batch."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = tiny
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2)).eval()
    p_ids = encode_prompts(tok, [p for p, _ in CORPUS] * 2)
    c_ids = encode_completions(tok, [c for _, c in CORPUS] + [c[:2] for _, c in CORPUS])
    with torch.no_grad():
        a, ma = completion_logprobs(gpt2, p_ids, c_ids, buckets=False, pad_id=tok.pad_token_id)
        b, mb = completion_logprobs(gpt2, p_ids, c_ids, buckets=True, pad_id=tok.pad_token_id)
    assert torch.equal(ma, mb)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_data_parallel_pretraining_resumes_exactly_and_matches_one_process(tmp_path, monkeypatch):
    """pretrain.processes=2: two processes share each batch. A run killed midway (in the stage's
    own process) and restarted ends with the weights of an uninterrupted one, and those are the
    single-process run's up to float rounding (the same batches, the same summed gradient)."""
    from safetensors.torch import load_file

    from pipeline.stages import pretrain

    def ctx(root, processes):
        c = pretrain_ctx(root)
        c.cfg.pretrain.processes = processes
        c.cfg.pretrain.num_threads = 1
        return c

    one = pretrain.run(ctx(tmp_path / "one", 1))
    two = pretrain.run(ctx(tmp_path / "two", 2))
    assert two.key != one.key and two.meta["steps"] == 12

    kill_at(monkeypatch, pretrain, "pretrain", "step", 6)
    with pytest.raises(Killed):
        pretrain.run(ctx(tmp_path / "killed", 2))
    monkeypatch.undo()
    resumed = pretrain.run(ctx(tmp_path / "killed", 2))
    a, b, c = (load_file(art.path / "model" / "model.safetensors") for art in (two, resumed, one))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert abs(two.meta["final_loss"] - one.meta["final_loss"]) < 1e-3
    assert max(float((a[k] - c[k]).abs().max()) for k in a) < 1e-2
