"""pipeline.sampling.hf and the sample stage: determinism, record shapes, the effect of temperature and
top-p on sample_logp, and shard resumption that reproduces an uninterrupted run."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from pipeline.stages import sample as sample_stage
from pipeline.sampling import hf as sampler
from pipeline.context import Context
from pipeline.model import decode_completion
from pipeline.store import ArtifactStore, write_json
from pipeline.tracking import RunLogger
from tests.tiny_lm import fit_tiny_lm
from tests.faults import Killed, kill_at

PROMPTS = ["theorem a (p q : Prop) : p ∧ q → q ∧ p := by", "theorem b (p : Prop) : p → ¬¬p := by",
           "theorem c (p q r : Prop) : (p → q) → (q → r) → p → r := by"]
COMPLETIONS = ["\n  intro h\n  exact ⟨h.2, h.1⟩", " exact fun hp hnp => hnp hp", "\n  intro h1 h2 h3\n  exact h2 (h1 h3)"]


@pytest.fixture(scope="module")
def tiny():
    # 40 steps: enough that EOS comes up within the budget now and then
    return fit_tiny_lm(PROMPTS, COMPLETIONS, num_layers=2, max_length=256, steps=40)


def draw(tiny, **kw):
    model, tok = tiny
    args = dict(n=6, temperature=1.0, top_p=1.0, max_new_tokens=30, batch_size=8, seed=0)
    args.update(kw)
    return sampler.sample(model, tok, PROMPTS, **args)


def test_same_seed_same_samples_other_seed_other_samples(tiny):
    a, b, c = draw(tiny, seed=1), draw(tiny, seed=1), draw(tiny, seed=2)
    assert a == b
    assert [r["token_ids"] for r in a] != [r["token_ids"] for r in c]


def test_sampling_leaves_the_global_rng_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    draw(tiny)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("method", ["loop", "generate"])
def test_records_have_the_documented_shape(tiny, method):
    model, tok = tiny
    recs = draw(tiny, method=method, max_new_tokens=10)
    assert len(recs) == len(PROMPTS) * 6
    assert [(r["prompt_idx"], r["sample_idx"]) for r in recs] == [(p, s) for p in range(3) for s in range(6)]
    eos = tok.eos_token_id
    for r in recs:
        assert r["num_tokens"] == len(r["token_ids"]) <= 10
        assert r["completion"] == decode_completion(tok, r["token_ids"])
        if r["finished"]:
            assert r["token_ids"][-1] == eos and eos not in r["token_ids"][:-1]
        else:
            assert r["num_tokens"] == 10 and eos not in r["token_ids"]
        assert r["logp"] < 0 and math.isclose(r["logp"], r["sample_logp"], abs_tol=1e-4)
    assert any(r["finished"] for r in recs) and any(not r["finished"] for r in recs)


def test_batch_size_does_not_change_the_record_layout(tiny):
    for bs in (1, 5, 64):
        recs = draw(tiny, batch_size=bs)
        assert [(r["prompt_idx"], r["sample_idx"]) for r in recs] == [(p, s) for p in range(3) for s in range(6)]


def test_temperature_and_top_p_change_sample_logp_not_logp(tiny):
    # at temperature 1 without a nucleus both are the same quantity
    for r in draw(tiny):
        assert math.isclose(r["logp"], r["sample_logp"], rel_tol=1e-6, abs_tol=1e-6)
    # a nucleus renormalises over fewer tokens: every kept token is at least as likely
    nucleus = draw(tiny, top_p=0.5)
    assert all(r["sample_logp"] >= r["logp"] - 1e-6 for r in nucleus)
    assert any(r["sample_logp"] > r["logp"] + 1e-3 for r in nucleus)
    # a low temperature sharpens: samples are likelier under the sampling distribution, and more alike
    cold, hot = draw(tiny, temperature=0.3, n=12), draw(tiny, temperature=1.5, n=12)
    mean = lambda rs, k: sum(r[k] / r["num_tokens"] for r in rs) / len(rs)  # noqa: E731
    assert mean(cold, "sample_logp") > mean(hot, "sample_logp")
    assert mean(cold, "logp") > mean(hot, "logp")
    distinct = lambda rs: len({tuple(r["token_ids"]) for r in rs})  # noqa: E731
    assert distinct(cold) < distinct(hot)


def test_greedy_is_deterministic_and_scores_zero(tiny):
    recs = draw(tiny, temperature=0.0)
    for p in range(3):
        group = [r for r in recs if r["prompt_idx"] == p]
        assert len({tuple(r["token_ids"]) for r in group}) == 1
    assert all(r["sample_logp"] == 0.0 for r in recs)


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    lp = sampler.process_logits(logits, 1.0, 0.8)
    assert torch.isinf(lp[0, 2:]).all() and torch.allclose(lp[0, :2].exp(), torch.tensor([0.625, 0.375]))
    lp = sampler.process_logits(logits, 1.0, 0.81)
    assert torch.isfinite(lp[0, :3]).all() and torch.isinf(lp[0, 3])
    lp = sampler.process_logits(logits, 1.0, 0.01)  # the top token always stays
    assert lp[0, 0] == 0 and torch.isinf(lp[0, 1:]).all()


def test_invalid_arguments_are_refused(tiny):
    with pytest.raises(ValueError):
        draw(tiny, n=0)
    with pytest.raises(ValueError):
        draw(tiny, top_p=0.0)


# ---------------------------------------------------------------- the sample stage


def make_ctx(root: Path, **sampler_kw) -> Context:
    cfg = OmegaConf.create({
        "model": {"name": "tiny", "dtype": "float32", "device": "cpu", "prompt_style": "prop"},
        "dataset": {"prompt_template": "{statement} := by", "proof_prefix": "by", "header": ""},
        "sampler": {"name": "hf"},
        "progress": False,
    })
    return Context(cfg=cfg, store=ArtifactStore(root / "store"), run_dir=root / "run", log=RunLogger(root / "run"))


@pytest.fixture(scope="module")
def model_art(tiny, tmp_path_factory):
    model, tok = tiny
    root = tmp_path_factory.mktemp("model")
    store = ArtifactStore(root)
    art = store.artifact("pretrain", {"tiny": 1})
    model.save_pretrained(art.work / "model")
    tok.save_pretrained(art.work / "model")
    return store.commit(art, {})


THEOREMS = pd.DataFrame({"id": [f"t{i}" for i in range(7)],
                         "statement": [p.removesuffix(" := by").replace(" a ", f" a{i} ")
                                       for i, p in enumerate(PROMPTS * 3)][:7]})
SETTINGS = dict(split="train", n=3, temperature=1.0, top_p=1.0, max_new_tokens=20, seed=5, batch_size=4,
                prompts_per_shard=2)


def test_generate_samples_writes_the_table_and_reuses_it(model_art, tmp_path):
    ctx = make_ctx(tmp_path)
    art = sample_stage.generate_samples(ctx, model_art, THEOREMS, **SETTINGS)
    df = pd.read_parquet(art.file("samples.parquet"))
    assert list(df.columns) == sample_stage.COLUMNS
    assert len(df) == 7 * 3
    assert df["theorem_id"].tolist() == [f"t{i}" for i in range(7) for _ in range(3)]
    assert df["sample_idx"].tolist() == [0, 1, 2] * 7
    assert (df["proof"] == "by" + df["completion"]).all()
    assert (df["num_tokens"] == df["token_ids"].map(len)).all()
    assert art.meta["samples"] == 21 and not list(art.work.parent.glob("*.partial"))
    again = sample_stage.generate_samples(ctx, model_art, THEOREMS, **SETTINGS)
    assert again.path == art.path
    other = sample_stage.generate_samples(ctx, model_art, THEOREMS, **{**SETTINGS, "seed": 6})
    assert other.path != art.path


def test_a_killed_run_resumes_to_the_same_table(model_art, tmp_path, monkeypatch):
    reference = sample_stage.generate_samples(make_ctx(tmp_path / "a"), model_art, THEOREMS, **SETTINGS)

    kill_at(monkeypatch, sample_stage, "sample", "shard", 1)

    ctx = make_ctx(tmp_path / "b")
    with pytest.raises(Killed):
        sample_stage.generate_samples(ctx, model_art, THEOREMS, **SETTINGS)
    monkeypatch.undo()
    partial = list((tmp_path / "b" / "store" / "sample").glob("*.partial"))
    assert len(partial) == 1 and sorted(p.name for p in partial[0].glob("shard-*")) == \
        ["shard-00000.parquet", "shard-00001.parquet"]

    calls = []
    real = sampler.sample
    monkeypatch.setattr(sampler, "sample", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    resumed = sample_stage.generate_samples(ctx, model_art, THEOREMS, **SETTINGS)
    assert calls == [2, 1]  # shards 2 and 3 only (7 prompts, 2 per shard)
    assert resumed.key == reference.key
    pd.testing.assert_frame_equal(pd.read_parquet(resumed.file("samples.parquet")),
                                  pd.read_parquet(reference.file("samples.parquet")))


def test_shards_drawn_by_two_worker_processes_make_the_same_table(model_art, tmp_path):
    """sampler.workers=2: two processes draw different shards at once; each shard's samples depend
    on its own seed only, so the table is the one a single process writes."""
    one = sample_stage.generate_samples(make_ctx(tmp_path / "one"), model_art, THEOREMS, **SETTINGS)
    ctx = make_ctx(tmp_path / "two")
    ctx.cfg.sampler.workers = 2
    assert sample_stage.sampler_workers(ctx.cfg) == 2
    two = sample_stage.generate_samples(ctx, model_art, THEOREMS, **SETTINGS)
    assert two.key == one.key
    pd.testing.assert_frame_equal(pd.read_parquet(two.file("samples.parquet")), pd.read_parquet(one.file("samples.parquet")))
    assert two.meta["samples"] == 21
