"""The power sampler (pipeline/sampling/power.py): the MH acceptance ratio by hand, the distribution it
samples on an enumerable model (the paper's two-token example), γ = 1, token-cost accounting, and the
`hf` engine on a tiny transformers model (records, determinism, logp consistency)."""

import itertools
import math
import random

import numpy as np
import pytest
import torch

from pipeline.sampling import hf as sampler, power as power_sampler
from pipeline.model import completion_logprobs, encode_prompts
from pipeline.sampling.power import Chain, Extension, log_acceptance, run_chains, token_cost
from tests.test_sampler import PROMPTS

# ---- an enumerable "model": two tokens {0, 1}, outputs of exactly two tokens, no EOS.
# The first token 0 is the less likely one (0.4) but leads to one very likely continuation (0.95);
# token 1 (0.6) leads to two equally likely ones. p^γ favours the path 0→0 (probability 0.38 vs
# 0.3), while low temperature favours the first token 1, so the two distributions differ.
FIRST = np.array([0.4, 0.6])
SECOND = {0: np.array([0.95, 0.05]), 1: np.array([0.5, 0.5])}
PROMPT = [7]  # one prompt token; the engine only looks at what comes after it
OUTPUTS = list(itertools.product([0, 1], repeat=2))


def next_token_probs(generated):
    return FIRST if not generated else SECOND[generated[0]]


class TableEngine:
    """A ProposalEngine over a next-token table: q = p at `temperature`; counts the tokens it draws.
    `next_probs(generated tokens) -> probabilities over the vocabulary`; `eos` ends a sequence.
    Plain Python floats, cached per context: the tests draw a few hundred thousand tokens."""

    def __init__(self, temperature: float, seed: int, next_probs=None, eos=None):
        self.temperature, self.eos = temperature, eos
        self.next_probs = next_probs or next_token_probs
        self.rng = random.Random(seed)
        self.drawn = 0
        self.cache = {}

    def table(self, context: tuple):
        """(cumulative q, log p, log q) for the next token after `context`."""
        if context not in self.cache:
            p = np.asarray(self.next_probs(list(context)), dtype=float)
            q = p ** (1 / self.temperature)
            q = q / q.sum()
            self.cache[context] = (np.cumsum(q).tolist(), np.log(p).tolist(), np.log(q).tolist())
        return self.cache[context]

    def extend(self, prefixes, limits):
        out = []
        for prefix, limit in zip(prefixes, limits):
            generated = tuple(prefix[len(PROMPT):])
            toks, lp, qlp = [], [], []
            while len(toks) < limit and not (toks and toks[-1] == self.eos):
                cum, log_p, log_q = self.table(generated + tuple(toks))
                u = self.rng.random()
                tok = next((v for v, c in enumerate(cum) if u < c), len(cum) - 1)
                toks.append(tok)
                lp.append(log_p[tok])
                qlp.append(log_q[tok])
            self.drawn += len(toks)
            out.append(Extension(toks, lp, qlp, finished=bool(toks) and toks[-1] == self.eos))
        return out


def exact_p(y):
    return FIRST[y[0]] * SECOND[y[0]][y[1]]


def power_target(gamma):
    w = np.array([exact_p(y) ** gamma for y in OUTPUTS])
    return w / w.sum()


def low_temperature(gamma):
    """The distribution of plain sampling at temperature 1/γ (per-token sharpening), exactly."""
    def sharpen(p):
        return p ** gamma / (p ** gamma).sum()
    return np.array([sharpen(FIRST)[y[0]] * sharpen(SECOND[y[0]])[y[1]] for y in OUTPUTS])


def empirical(chains):
    counts = np.zeros(len(OUTPUTS))
    for c in chains:
        counts[OUTPUTS.index(tuple(c.tokens))] += 1
    return counts / counts.sum()


def tv(a, b):
    return 0.5 * float(np.abs(np.asarray(a) - np.asarray(b)).sum())


N_CHAINS = 2000
# With 2000 independent draws over 4 outcomes the empirical TV to the true distribution is about
# 0.015 (half a sum of 4 deviations of standard error ≤ 0.011); 0.04 leaves room for MCMC bias.
TV_BOUND = 0.04


def power_chains(gamma, *, mcmc_steps, block_size=2, seed=0):
    engine = TableEngine(temperature=1 / gamma, seed=seed)
    chains = run_chains(engine, [PROMPT] * N_CHAINS, gamma=gamma, block_size=block_size, mcmc_steps=mcmc_steps,
                        max_new_tokens=2, rng=np.random.default_rng(seed + 100))
    return chains, engine


# MH steps per block: the chain starts from the low-temperature draw and moves to the first token 0
# only by resampling from position 0; at γ=4 about 15 % of the initial gap closes per step, so it
# needs more steps than at γ=2.
@pytest.mark.parametrize("gamma,steps", [(2.0, 10), (4.0, 30)])
def test_power_sampling_approaches_the_power_distribution_where_low_temperature_does_not(gamma, steps):
    target = power_target(gamma)
    # the two targets really differ (exact numbers, no sampling): TV 0.138 at γ=2, 0.40 at γ=4
    assert tv(low_temperature(gamma), target) > 0.13
    chains, _ = power_chains(gamma, mcmc_steps=steps)
    assert tv(empirical(chains), target) < TV_BOUND
    # the same engine with no MH step is plain sampling at temperature 1/γ: far from p^γ
    plain, _ = power_chains(gamma, mcmc_steps=0)
    assert tv(empirical(plain), low_temperature(gamma)) < TV_BOUND
    assert tv(empirical(plain), target) > 0.1


def test_one_token_blocks_also_reach_the_target_with_enough_steps():
    """Block size 1: after the first block the chain holds p(y_0)^γ, the wrong marginal for p^γ;
    the MH steps of the second block, which may resample from position 0, correct it."""
    chains, _ = power_chains(2.0, mcmc_steps=10, block_size=1)
    assert tv(empirical(chains), power_target(2.0)) < TV_BOUND


def test_gamma_one_with_the_base_model_as_proposal_is_plain_sampling():
    chains, _ = power_chains(1.0, mcmc_steps=5)
    # q = p and equal lengths: every proposal is accepted, and the samples follow p itself
    assert all(c.accepted == c.proposals == 5 for c in chains)
    assert tv(empirical(chains), [exact_p(y) for y in OUTPUTS]) < TV_BOUND


# ---- with an EOS: outputs of different lengths. Tokens {0, 1, EOS=2}, at most 3 tokens.
EOS = 2
EOS_TABLE = {(): [0.5, 0.3, 0.2], (0,): [0.1, 0.1, 0.8], (1,): [0.45, 0.45, 0.1]}


def eos_probs(generated):
    return EOS_TABLE.get(tuple(generated), [0.3, 0.3, 0.4])  # after two tokens


def suffixes(engine, prefix: tuple, limit: int):
    """Every suffix the proposal can draw after `prefix` within `limit` tokens, with its probability."""
    if limit == 0 or (prefix and prefix[-1] == EOS):
        return [(Extension([], [], [], finished=bool(prefix) and prefix[-1] == EOS), 1.0)]
    cum, log_p, log_q = engine.table(prefix)
    out = []
    for tok in range(3):
        for rest, prob in suffixes(engine, prefix + (tok,), limit - 1):
            out.append((Extension([tok] + rest.tokens, [log_p[tok]] + rest.logp, [log_q[tok]] + rest.proposal_logp,
                                  rest.finished if rest.tokens else tok == EOS), math.exp(log_q[tok]) * prob))
    return out


def exact_kernel(gamma, length_correction=True):
    """The MH chain of one block (block_size = max_new_tokens = 3) as an exact transition matrix over
    every output, and the power target on the same outputs."""
    engine = TableEngine(1 / gamma, 0, eos_probs, EOS)
    states = [tuple(e.tokens) for e, _ in suffixes(engine, (), 3)]
    index = {y: i for i, y in enumerate(states)}
    chains = {tuple(e.tokens): Chain(list(e.tokens), e.logp, e.proposal_logp, e.finished) for e, _ in suffixes(engine, (), 3)}
    target = np.array([math.exp(gamma * sum(chains[y].logp)) for y in states])
    kernel = np.zeros((len(states), len(states)))
    for y in states:
        for t in range(len(y)):
            for ext, prob in suffixes(engine, y[:t], 3 - t):
                log_a = log_acceptance(gamma, chains[y], t, ext)
                if not length_correction:  # the authors' code: no |y| / |y'| factor
                    log_a -= math.log(len(y)) - math.log(t + len(ext.tokens))
                kernel[index[y], index[y[:t] + tuple(ext.tokens)]] += prob / len(y) * min(1.0, math.exp(log_a))
        kernel[index[y], index[y]] += 1 - kernel[index[y]].sum()
    return kernel, target / target.sum(), states


@pytest.mark.parametrize("gamma", [1.0, 2.0, 4.0])
def test_the_mh_step_leaves_the_power_distribution_invariant_across_lengths(gamma):
    """Exactly, by enumeration: π K = π for π ∝ p^γ over outputs of 1 to 3 tokens (EOS or not)."""
    kernel, target, states = exact_kernel(gamma)
    assert len(states) == 15 and np.allclose(kernel.sum(1), 1.0) and (kernel >= -1e-12).all()
    assert np.abs(target @ kernel - target).max() < 1e-12
    # without the |y| / |y'| factor the chain drifts away from p^γ when lengths differ
    biased, _, _ = exact_kernel(gamma, length_correction=False)
    assert np.abs(target @ biased - target).max() > 1e-3


def test_chains_with_eos_sample_the_power_distribution():
    gamma = 2.0
    _, target, states = exact_kernel(gamma)

    def sampled(mcmc_steps):
        engine = TableEngine(1 / gamma, 1, eos_probs, EOS)
        chains = run_chains(engine, [PROMPT] * N_CHAINS, gamma=gamma, block_size=3, mcmc_steps=mcmc_steps,
                            max_new_tokens=3, rng=np.random.default_rng(2))
        counts = np.zeros(len(states))
        for c in chains:
            counts[states.index(tuple(c.tokens))] += 1
            assert c.finished == (c.tokens[-1] == EOS)
        return counts / counts.sum()

    # 15 outcomes: the TV's sampling noise at 2000 draws is larger than with 4 (about 0.03)
    assert tv(sampled(10), target) < 0.05
    assert tv(sampled(0), target) > 0.15  # no MH step: low-temperature sampling


def test_acceptance_ratio_by_hand():
    current = Chain(tokens=[5, 6, 7], logp=[-1.0, -2.0, -3.0], proposal_logp=[-0.5, -1.0, -1.5])
    shorter = Extension(tokens=[2], logp=[-0.2], proposal_logp=[-0.1], finished=True)
    # suffix from t=1: log p 's -5 → -0.2, log q 's -2.5 → -0.1; lengths 3 → 2
    expected = 2.0 * (-0.2 + 5.0) + (-2.5 + 0.1) + math.log(3 / 2)
    assert log_acceptance(2.0, current, 1, shorter) == pytest.approx(expected)
    same_length = Extension(tokens=[8, 9], logp=[-1.0, -1.0], proposal_logp=[-2.0, -2.0], finished=False)
    assert log_acceptance(3.0, current, 1, same_length) == pytest.approx(3.0 * (-2.0 + 5.0) + (-2.5 + 4.0))
    # resampling from position 0 compares the whole sequences
    whole = Extension(tokens=[1, 1, 1], logp=[-1.0, -2.0, -3.0], proposal_logp=[-0.5, -1.0, -1.5], finished=False)
    assert log_acceptance(4.0, current, 0, whole) == pytest.approx(0.0)


def test_replacing_a_suffix_keeps_the_prefix_and_its_log_probs():
    c = Chain(tokens=[5, 6, 7], logp=[-1.0, -2.0, -3.0], proposal_logp=[-0.5, -1.0, -1.5])
    c.replace_from(1, Extension([2], [-0.2], [-0.1], finished=True))
    assert (c.tokens, c.logp, c.proposal_logp, c.finished) == ([5, 2], [-1.0, -0.2], [-0.5, -0.1], True)


def test_token_cost_counts_every_proposal_token():
    chains, engine = power_chains(2.0, mcmc_steps=3)
    # every drawn token, rejected ones included, is charged to the chain that asked for it
    assert sum(c.generated_tokens for c in chains) == engine.drawn
    # one block of 2 tokens, then 3 proposals of 2 - t tokens each (t ∈ {0, 1})
    assert all(2 + 3 <= c.generated_tokens <= 2 + 3 * 2 for c in chains)
    records = [{"num_tokens": len(c.tokens), "generated_tokens": c.generated_tokens} for c in chains]
    assert token_cost(records) == pytest.approx(engine.drawn / (2 * N_CHAINS))
    no_mh, _ = power_chains(2.0, mcmc_steps=0)
    assert token_cost([{"num_tokens": 2, "generated_tokens": c.generated_tokens} for c in no_mh]) == 1.0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        run_chains(TableEngine(1.0, 0), [PROMPT], gamma=0.0, block_size=1, mcmc_steps=1, max_new_tokens=2,
                   rng=np.random.default_rng(0))
    assert power_sampler.resolve_proposal_temperature(4.0, 0.0) == 0.25
    assert power_sampler.resolve_proposal_temperature(4.0, 0.7) == 0.7


# ---- the hf engine on a tiny transformers model


@pytest.fixture(scope="module")
def tiny():
    """A one-layer Llama fitted for a few steps to the proofs of tests/test_sampler.py, so that EOS
    comes up now and then. One torch thread: the tests share a busy 2-core machine."""
    from tests.test_sampler import COMPLETIONS
    from tests.tiny_lm import fit_tiny_lm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, tok = fit_tiny_lm(PROMPTS, COMPLETIONS, num_layers=1, max_length=128, steps=25)
    yield model, tok
    torch.set_num_threads(threads)


def power_draw(tiny, **kw):
    model, tok = tiny
    args = dict(n=4, gamma=2.0, block_size=8, mcmc_steps=2, max_new_tokens=20, batch_size=8, seed=0)
    args.update(kw)
    return power_sampler.sample(model, tok, PROMPTS, **args)


def test_hf_power_records_are_sampler_records_with_consistent_log_probs(tiny):
    model, tok = tiny
    records = power_draw(tiny)
    plain = sampler.sample(model, tok, PROMPTS, n=1, max_new_tokens=5)
    assert set(plain[0]) <= set(records[0])
    assert [(r["prompt_idx"], r["sample_idx"]) for r in records] == [(p, s) for p in range(3) for s in range(4)]
    for r in records:
        assert r["num_tokens"] == len(r["token_ids"]) <= 20
        assert r["finished"] == (r["token_ids"][-1] == tok.eos_token_id)
        assert r["mh_proposals"] > 0 and 0 <= r["mh_accepted"] <= r["mh_proposals"]
        assert r["generated_tokens"] >= r["num_tokens"]
    # logp is the base model's log-prob of the final tokens, whatever proposals produced them
    lp, mask = completion_logprobs(model, [encode_prompts(tok, PROMPTS)[r["prompt_idx"]] for r in records],
                                   [r["token_ids"] for r in records], pad_id=tok.pad_token_id)
    assert (lp * mask).sum(1).tolist() == pytest.approx([r["logp"] for r in records], abs=1e-3)
    assert token_cost(records) > 1.0
    assert power_draw(tiny) == records and power_draw(tiny, seed=1) != records


def test_hf_power_without_mh_steps_is_plain_sampling_at_the_proposal_temperature(tiny):
    """No MH step and one block: the first proposal is the sample, drawn exactly like the hf
    sampler's (same generator, same decode loop) at temperature 1/γ."""
    model, tok = tiny
    power = power_draw(tiny, mcmc_steps=0, block_size=20, gamma=2.0)
    plain = sampler.sample(model, tok, PROMPTS, n=4, temperature=0.5, max_new_tokens=20, batch_size=8, seed=0)
    assert [r["token_ids"] for r in power] == [r["token_ids"] for r in plain]
    assert [r["logp"] for r in power] == pytest.approx([r["logp"] for r in plain], abs=1e-4)
    assert token_cost(power) == 1.0


# ---- the sample stage with power=...: its own artifact, extra columns, the token cost in its meta


def test_power_samples_get_their_own_artifact_and_report_their_cost(tiny, tmp_path):
    import pandas as pd
    from omegaconf import OmegaConf

    from pipeline.stages import sample as sample_stage
    from pipeline.context import Context
    from pipeline.store import ArtifactStore
    from pipeline.tracking import RunLogger

    model, tok = tiny
    store = ArtifactStore(tmp_path / "store")
    model_art = store.artifact("pretrain", {"tiny": 1})
    model.save_pretrained(model_art.work / "model")
    tok.save_pretrained(model_art.work / "model")
    store.commit(model_art, {})
    cfg = OmegaConf.create({"model": {"name": "tiny", "dtype": "float32", "device": "cpu", "prompt_style": "prop"},
                            "dataset": {"prompt_template": "{statement} := by", "proof_prefix": "by", "header": ""},
                            "sampler": {"name": "power", "proposal": "hf", "gamma": 2.0, "block_size": 8,
                                        "mcmc_steps": 2, "proposal_temperature": 0.0, "num_threads": 1},
                            "progress": False})
    ctx = Context(cfg=cfg, store=store, run_dir=tmp_path / "run", log=RunLogger(tmp_path / "run"))
    theorems = pd.DataFrame({"id": ["a", "b"], "statement": [p.removesuffix(" := by") for p in PROMPTS[:2]]})
    settings = dict(split="eval", n=3, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=5, batch_size=8,
                    prompts_per_shard=1)
    power = sample_stage.power_settings(cfg.sampler)
    assert power == {"gamma": 2.0, "block_size": 8, "mcmc_steps": 2, "proposal_temperature": 0.5}
    art = sample_stage.generate_samples(ctx, model_art, theorems, **settings, power=power)
    plain = sample_stage.generate_samples(ctx, model_art, theorems, **settings)
    assert art.path != plain.path and art.spec["config"]["sampler"] == plain.spec["config"]["sampler"] == "hf"
    df = pd.read_parquet(art.file("samples.parquet"))
    assert list(df.columns) == sample_stage.COLUMNS + sample_stage.POWER_COLUMNS and len(df) == 6
    assert list(pd.read_parquet(plain.file("samples.parquet")).columns) == sample_stage.COLUMNS
    meta = art.meta
    assert meta["token_cost"] == pytest.approx(df["generated_tokens"].sum() / df["num_tokens"].sum())
    assert meta["token_cost"] > 1 and 0 <= meta["acceptance_rate"] <= 1 and meta["power"] == power
    assert "token_cost" not in plain.meta


# ---- the pipeline: a power method (no training, power-sampled evaluation) through report and sweep report


def test_power_method_runs_through_the_pipeline_into_the_sweep_report(tiny, tmp_path):
    import json

    import pandas as pd
    from hydra import compose, initialize_config_dir

    from pipeline.__main__ import build_context, run_stages
    from pipeline.config import register
    from pipeline.reporting.sweep import report_sweep
    from tests.test_config import CONF

    model, tok = tiny
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    register()
    overrides = ["+experiment=smoke", "+method=power_g2", f"model.path={tmp_path / 'model'}", "dataset.eval_limit=2",
                 "eval.samples_per_prompt=4", "eval.ks=[1,2,4]", "sampler.max_new_tokens=12", "sampler.block_size=6",
                 "sampler.mcmc_steps=2", "sampler.num_threads=1", "stages=[report]", "logger.backend=none",
                 f"output_dir={tmp_path / 'out'}", "progress=false"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    job = tmp_path / "sweep" / "0"
    run_stages(build_context(cfg, job))

    summary = json.loads((job / "run_summary.json").read_text())
    assert summary["method"] == "power γ=2" and summary["objective"] == "none"
    assert summary["sampler"] == {"name": "power", "gamma": 2.0}
    assert summary["budget"]["steps"] == 0 and summary["budget"]["sampling_token_cost"] > 1
    trained, base = summary["trained"], summary["base"]
    assert trained["token_cost"] > 1 and trained["power"]["proposal_temperature"] == 0.5
    assert "token_cost" not in base  # the base row is plain sampling
    samples = {json.loads(m.read_text())["label"]: json.loads(m.read_text())
               for m in (tmp_path / "out" / "store" / "sample").glob("*/meta.json")}
    assert set(samples) == {"sample[base]", "sample[trained]"}
    assert "power" not in samples["sample[base]"] and samples["sample[trained]"]["power"]["gamma"] == 2.0

    outputs = report_sweep(tmp_path / "sweep", wandb_mode="disabled")
    row = pd.read_csv(outputs["table_csv"]).set_index("method").loc["power γ=2"]
    assert (row["gamma"], row["token_cost"]) == (2.0, pytest.approx(trained["token_cost"]))
