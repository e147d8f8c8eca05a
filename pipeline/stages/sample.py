"""The `sample` stage: n completions per theorem from a model, in resumable shards.

`generate_samples` is shared with `evaluate`: it is keyed by the model artifact, the theorems
(their ids and statements, so any change to the table is a new key), the prompt format and every
sampling setting. Work goes in shards of `prompts_per_shard` prompts under `art.work`; shard i is
sampled with a seed derived from (seed, i) only, so a run killed after any shard and restarted writes
the same table as an uninterrupted one, and a rerun skips the shards already written.

`samples.parquet` columns: theorem_id, statement, sample_idx, completion, proof (the text the verifier
sees after `:=`, taken from the completion as `model.prompt_style` says, see pipeline/prompts.py;
empty when none could be extracted, which the verify stage marks `invalid`), logp (summed over the generated tokens under the
model at temperature 1), sample_logp (under the distribution sampled from), num_tokens (EOS
included when finished), finished (ended with EOS within max_new_tokens), token_ids (the generated
ids, EOS included, for exact teacher-forced rescoring without re-tokenising the text).
Power samples (`power=...`, pipeline/sampling/power.py) add generated_tokens (proposal tokens spent on
the sample, rejected ones included), mh_proposals and mh_accepted, and their meta the `token_cost`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from pipeline.context import Context
from pipeline.data import load_theorems
from pipeline.prompts import build_prompts, needs_tokenizer, proofs_for
from pipeline.faults import maybe_die
from pipeline.store import Artifact, Shards, stable_hash, write_parquet

# 2: the hf sampler's fast decode path (sampler.method=auto) draws other tokens for a seed
# 3: its time-major cache rounds attention differently, which changes some draws for a seed
VERSION = 3
COLUMNS = ["theorem_id", "statement", "sample_idx", "completion", "proof", "logp", "sample_logp",
           "num_tokens", "finished", "token_ids"]
POWER_COLUMNS = ["generated_tokens", "mh_proposals", "mh_accepted"]


def power_settings(scfg) -> dict:
    """What the power sampler's samples depend on beyond the plain settings (part of their key)."""
    from pipeline.sampling.power import resolve_proposal_temperature

    return {"gamma": float(scfg.gamma), "block_size": int(scfg.block_size), "mcmc_steps": int(scfg.mcmc_steps),
            "proposal_temperature": resolve_proposal_temperature(scfg.gamma, scfg.proposal_temperature)}


def shard_seed(seed: int, shard: int) -> int:
    return int(np.random.SeedSequence([int(seed) % (2**32), int(shard)]).generate_state(1)[0])


def generate_samples(ctx: Context, model_art: Artifact, theorems: pd.DataFrame, *, split: str, n: int,
                     temperature: float, top_p: float, max_new_tokens: int, seed: int, batch_size: int,
                     prompts_per_shard: int, label: str = "sample", power: dict | None = None) -> Artifact:
    """`power`: None for plain samples from the sampler (the power sampler's proposal engine when
    sampler.name is power), else `power_settings(...)` for power samples (then `temperature` is
    unused: the proposal's temperature is in the settings)."""
    from pipeline.config import plain_sampler

    cfg = ctx.cfg
    ds = cfg.dataset
    key_cfg = {
        "sampler": plain_sampler(cfg.sampler), "split": split,
        "theorems": stable_hash([[str(i), str(s)] for i, s in zip(theorems["id"], theorems["statement"])]),
        "num_theorems": len(theorems),
        "prompt_template": ds.prompt_template, "proof_prefix": ds.proof_prefix,
        "prompt_style": cfg.model.prompt_style, "header": ds.header,
        "n": int(n), "temperature": float(temperature), "top_p": float(top_p),
        "max_new_tokens": int(max_new_tokens), "seed": int(seed), "batch_size": int(batch_size),
        "prompts_per_shard": int(prompts_per_shard), "dtype": cfg.model.dtype,
    }
    if plain_sampler(cfg.sampler) == "hf":  # the decode path decides which tokens a seed draws
        key_cfg["method"] = str(cfg.sampler.get("method", "auto"))
    if power is not None:  # plain samples keep the key they always had
        key_cfg["power"] = dict(power)

    def make(art: Artifact) -> dict:
        meta = _build(ctx, art, model_art, theorems, n=n, temperature=temperature, top_p=top_p,
                      max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                      prompts_per_shard=prompts_per_shard, label=label, power=power)
        return {**meta, "label": label, "model": str(model_art), **key_cfg}

    return ctx.build("sample", key_cfg, make, inputs={"model": model_art}, version=VERSION, label=label,
                     detail=lambda art: _detail(art.meta))


def _build(ctx, art, model_art, theorems, *, n, temperature, top_p, max_new_tokens, seed, batch_size,
           prompts_per_shard, label, power=None) -> dict:
    from pipeline.model import model_dir, set_progress

    cfg = ctx.cfg
    set_progress(bool(cfg.progress))
    tokenizer = None
    if needs_tokenizer(cfg):  # chat-style prompts are rendered with the model's own chat template
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir(model_art))
    texts = build_prompts(cfg, theorems, tokenizer)
    per = max(1, int(prompts_per_shard))
    count = max(1, math.ceil(len(theorems) / per))
    shards = Shards(art.work)
    todo = [i for i in range(count) if not shards.done(i)]
    if len(todo) < count:
        print(f"[{label}] resuming: {count - len(todo)}/{count} shards already written", flush=True)
    seconds, tokens, drawn = 0.0, 0, 0
    if todo:
        job = _ShardJob(cfg, model_dir(model_art), power, texts, theorems, shards.folder,
                        dict(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                             batch_size=batch_size), seed, per)
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm
            already = sum(min(per, len(theorems) - i * per) for i in range(count) if i not in todo) * n
            bar = tqdm(total=len(theorems) * n, initial=already, desc=label, unit="sample", dynamic_ncols=True)
        try:
            for i, dt, size, n_tokens, finished in _run_shards(job, todo, sampler_workers(cfg), bar):
                seconds += dt
                tokens += n_tokens
                drawn += size
                ctx.log.log({"shard": i, "samples_per_s": size / max(dt, 1e-9),
                             "tokens_per_s": n_tokens / max(dt, 1e-9), "finished": finished}, stage=label)
                maybe_die("sample", "shard", i)
        finally:
            if bar is not None:
                bar.close()
    table = shards.concat(count)
    write_parquet(art.work / "samples.parquet", table)
    shards.remove()
    meta = {
        "samples": len(table), "theorems": int(len(theorems)), "finished": float(table["finished"].mean()),
        "mean_tokens": float(table["num_tokens"].mean()), "seconds": seconds,
        "samples_per_s": drawn / seconds if seconds else None,
        "tokens_per_s": tokens / seconds if seconds else None,
    }
    if power is not None:  # from the whole table, so a resumed run reports the same numbers
        meta.update(sampling_cost(table))
    return meta


def sampler_workers(cfg) -> int:
    """Processes drawing shards at once: sampler.workers for the in-process samplers (hf, power on
    hf); vLLM keeps one engine."""
    from pipeline.config import plain_sampler

    return max(1, int(cfg.sampler.get("workers", 1))) if plain_sampler(cfg.sampler) == "hf" else 1


class _ShardJob:
    """Everything a process needs to draw shards of one samples artifact (picklable for workers)."""

    def __init__(self, cfg, model_path: str, power, texts, theorems, folder, settings: dict, seed: int, per: int):
        from pipeline.config import to_container

        self.cfg = to_container(cfg)
        self.model_path, self.power, self.texts, self.theorems = model_path, power, texts, theorems
        self.folder, self.settings, self.seed, self.per = folder, settings, seed, per
        self.draw = self.close = None

    def open(self) -> None:
        from omegaconf import OmegaConf

        self.cfg = OmegaConf.create(self.cfg) if isinstance(self.cfg, dict) else self.cfg
        self.draw, self.close = open_sampler(self.cfg, self.model_path, self.power)

    def shard(self, i: int, bar=None) -> tuple:
        """Draw and write shard i; (i, seconds, samples, tokens, finished fraction)."""
        lo, hi = i * self.per, min(len(self.theorems), (i + 1) * self.per)
        started = time.time()
        records = self.draw(self.texts[lo:hi], **self.settings, seed=shard_seed(self.seed, i), bar=bar,
                            num_threads=self.cfg.sampler.get("num_threads", 0))
        dt = time.time() - started
        df = _frame(records, self.theorems.iloc[lo:hi], self.texts[lo:hi], self.cfg)
        Shards(self.folder).write(i, df)
        return i, dt, len(df), int(df["num_tokens"].sum()), float(df["finished"].mean())


_WORKER_JOB: _ShardJob | None = None


def _worker_init(job: _ShardJob, threads: int) -> None:
    import torch

    global _WORKER_JOB
    torch.set_num_threads(threads)
    job.open()
    _WORKER_JOB = job


def _worker_shard(i: int) -> tuple:
    return _WORKER_JOB.shard(i)


def _run_shards(job: _ShardJob, todo: list[int], workers: int, bar):
    """Yield each shard's stats as it is written: in this process, or on `workers` processes of one
    torch thread each (sampler.num_threads if set), which draw different shards at once. A shard's
    samples depend on its own seed only, so the table is the same either way."""
    if workers <= 1 or len(todo) <= 1:
        job.open()
        try:
            for i in todo:
                yield job.shard(i, bar)
        finally:
            job.close()
        return
    import multiprocessing

    threads = int(job.cfg["sampler"].get("num_threads", 0)) or 1
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(todo)), initializer=_worker_init,
                                                     initargs=(job, threads))
    try:
        for stats in pool.imap_unordered(_worker_shard, todo):
            if bar is not None:
                bar.update(stats[2])
            yield stats
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def sampling_cost(table: pd.DataFrame) -> dict:
    """Token cost of power samples: proposal tokens generated per kept token, and the MH acceptance rate."""
    kept = int(table["num_tokens"].sum())
    generated = int(table["generated_tokens"].sum())
    proposals = int(table["mh_proposals"].sum())
    return {"generated_tokens": generated, "kept_tokens": kept,
            "mean_generated_tokens": generated / max(1, len(table)),
            "token_cost": generated / kept if kept else None,
            "acceptance_rate": int(table["mh_accepted"].sum()) / proposals if proposals else None}


def open_sampler(cfg, model_path: str, power: dict | None = None):
    """(draw, close) for `cfg.sampler.name`: draw(prompts, n=..., ...) returns the sampler records.

    `power` (the power sampler's settings, see `power_settings`) draws from p^gamma instead, with the
    hf engine as its proposal; the plain `temperature` is then unused (the proposal's is in `power`)."""
    if power is not None:
        if cfg.sampler.proposal != "hf":
            raise ValueError(f"sampler.proposal={cfg.sampler.proposal!r}: only the hf engine is wired to "
                             "the power sampler (see pipeline/sampling/power.py for plugging in another)")
        from pipeline.model import load
        from pipeline.sampling.power import sample as power_sample

        model, tokenizer = load(model_path, cfg.model.device, cfg.model.dtype)

        def draw(texts, *, temperature, **kw):  # noqa: ARG001 - see the docstring
            return power_sample(model, tokenizer, texts, **power, method=cfg.sampler.get("method", "auto"), **kw)

        return draw, lambda: None
    from pipeline.config import plain_sampler

    name = plain_sampler(cfg.sampler)  # sampler=power draws its plain samples with its proposal engine
    if name == "vllm":
        from pipeline.sampling.vllm import VLLMSampler

        engine = VLLMSampler(model_path, cfg.sampler, cfg.model)
        return engine.sample, engine.close
    if name == "hf":
        from functools import partial

        from pipeline.model import load
        from pipeline.sampling.hf import sample

        model, tokenizer = load(model_path, cfg.model.device, cfg.model.dtype)
        return partial(sample, model, tokenizer, method=cfg.sampler.get("method", "auto")), lambda: None
    raise ValueError(f"sampler.name={name!r}: expected 'hf' or 'vllm'")


def _frame(records: list[dict], theorems: pd.DataFrame, texts: list[str], cfg) -> pd.DataFrame:
    """The sampler's records as sample rows; `texts` are the prompts of `theorems`, in order."""
    df = pd.DataFrame(records)
    at = df["prompt_idx"].to_numpy()
    df["theorem_id"] = theorems["id"].to_numpy()[at]
    df["statement"] = theorems["statement"].to_numpy()[at]
    df["proof"] = proofs_for(cfg, df["statement"], [texts[i] for i in at], df["completion"])
    df["sample_idx"] = df["sample_idx"].astype("int64")
    df["num_tokens"] = df["num_tokens"].astype("int64")
    df["finished"] = df["finished"].astype(bool)
    return df[COLUMNS + [c for c in POWER_COLUMNS if c in df.columns]]


def _detail(meta: dict) -> str:
    return f"{meta.get('samples')} samples, finished={meta.get('finished', float('nan')):.3f}"


def run(ctx: Context) -> Artifact:
    base = ctx.stage("pretrain")
    cfg, scfg = ctx.cfg, ctx.cfg.sampler
    theorems = load_theorems(cfg.dataset.train_path, cfg.dataset.train_limit)
    return generate_samples(
        ctx, base, theorems, split="train", n=scfg.samples_per_prompt, temperature=scfg.temperature,
        top_p=scfg.top_p, max_new_tokens=scfg.max_new_tokens, seed=scfg.seed, batch_size=scfg.batch_size,
        prompts_per_shard=scfg.prompts_per_shard, label="sample")
