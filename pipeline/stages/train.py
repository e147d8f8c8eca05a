"""The `train` stage: one readable loop, config in, checkpoint out.

Each round: pick prompts → get k proofs per prompt (offline: the base model's verified samples from
the `sample`/`verify` stages; online: fresh samples from the current policy, verified now) → score
them under the proposal and the frozen base model → a few optimiser steps on the chosen objective.
Offline training is the same loop with one round.

Resumption: the round's scored data is saved before any step is taken, and a checkpoint (model,
optimiser, step counters, RNG) every `checkpoint_every_steps`; batch order is a pure function of
(seed, round, epoch), so a run killed at any point and restarted ends with the same weights as an
uninterrupted one (same seed, CPU).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import distributed
from pipeline.config import NO_TRAINING, plain_sampler, to_container
from pipeline.context import Context
from pipeline.data import load_theorems
from pipeline.prompts import build_prompts, proofs_for
from pipeline.faults import maybe_die
from pipeline.model import completion_logprobs, encode_prompts, load, model_dir, resolve_device
from pipeline.objectives import ObjectiveBatch, compute_loss
from pipeline.store import Artifact, read_parquet, write_parquet

VERSION = 2  # 2: steps without gradient signal are skipped (train.skip_empty_steps)


def run(ctx: Context) -> Artifact:
    base = ctx.stage("pretrain")
    if ctx.cfg.train.objective == NO_TRAINING:  # an inference-time method: the policy is the base model
        ctx.announce("train", base, reused=True, detail="train.objective=none: no training, the base model")
        return base
    base_samples = ctx.stage("verify")
    cfg = ctx.cfg
    key_cfg = {"train": to_container(cfg.train), "dataset": [cfg.dataset.train_path, cfg.dataset.train_limit,
               cfg.dataset.prompt_template, cfg.dataset.proof_prefix, cfg.dataset.header,
               cfg.model.prompt_style], "verifier": cfg.verifier.backend}
    if cfg.train.mode == "online":
        key_cfg["sampler"] = {k: cfg.sampler[k] for k in ("samples_per_prompt", "temperature", "top_p", "max_new_tokens")}
    inputs = {"base": base, "base_samples": base_samples}
    # FSDP: every torchrun rank trains together (the store's lock would admit one), rank 0 commits
    collective = distributed.setup() if cfg.train.strategy == "fsdp" else None

    def make(art: Artifact) -> dict:
        trainer = Trainer(ctx, art, base, base_samples)
        stats = trainer.fit()
        world = {"world_size": trainer.dist.world} if collective is not None else {}
        return {"objective": cfg.train.objective, "alpha": cfg.train.alpha, **world, **stats}

    return ctx.build("train", key_cfg, make, inputs=inputs, version=VERSION, collective=collective,
                     detail=lambda art: f"{art.meta['steps']} steps" if art.done else "")


class Trainer:
    def __init__(self, ctx: Context, art: Artifact, base: Artifact, base_samples: Artifact):
        self.ctx, self.cfg, self.tcfg = ctx, ctx.cfg, ctx.cfg.train
        self.art = art
        self.work = art.work
        self.work.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.tcfg.seed)
        mcfg = self.cfg.model
        self.dist = distributed.setup()
        if self.tcfg.strategy == "fsdp" and not self.dist.active and not torch.distributed.is_initialized():
            raise RuntimeError("train.strategy=fsdp: launch with `torchrun --nproc-per-node N -m pipeline ...`")
        self.device = resolve_device(mcfg.device)  # inputs go here even when FSDP offloads weights to the CPU
        self.policy, self.tokenizer = load(model_dir(base), self.device, mcfg.dtype)
        self.reference, _ = load(model_dir(base), self.device, mcfg.dtype)
        # The reference is frozen and only ever scored under no_grad: no gradients, no optimiser
        # state; under FSDP it is sharded too, so each rank holds 1/N of it.
        self.policy = distributed.prepare(self.policy, self.tcfg)
        self.reference = distributed.prepare(self.reference, self.tcfg, frozen=True)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=self.tcfg.lr,
                                           weight_decay=self.tcfg.weight_decay)
        self.theorems = load_theorems(self.cfg.dataset.train_path, self.cfg.dataset.train_limit)
        # Each theorem's prompt, rendered once: sampling and rescoring must see the same text.
        self.prompt_of = dict(zip(self.theorems["id"], build_prompts(self.cfg, self.theorems, self.tokenizer)))
        self.base_verdicts = read_parquet(base_samples.file("verdicts.parquet"))
        self.log_z = _log_pass_rate(self.base_verdicts)
        self.backend = None  # the verifier for online rounds, started once and kept warm across rounds
        self.vllm = None  # sampler=vllm: the engine for online rounds, kept warm the same way
        self.step = 0
        self.skipped_steps = 0  # steps with no gradient signal, not taken (train.skip_empty_steps)
        self.position = (0, 0, 0)  # (round, epoch, batch) of the next optimiser step

    # ---- the loop

    def fit(self) -> dict:
        self._resume()
        started, tokens = time.time(), 0
        for rnd in range(self.position[0], self.tcfg.rounds):
            data = self._round_data(rnd)
            groups = _group_slices(data)
            per_step = max(1, round(self.tcfg.batch_size * len(groups) / max(1, len(data))))
            for epoch in range(self.position[1] if rnd == self.position[0] else 0, self.tcfg.epochs_per_round):
                order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(
                    _seed(self.tcfg.seed, rnd, epoch))).tolist()
                batches = [order[i:i + per_step] for i in range(0, len(order), per_step)]
                first = self.position[2] if (rnd, epoch) == self.position[:2] else 0
                for b in range(first, len(batches)):
                    rows = np.concatenate([np.arange(*groups[g]) for g in batches[b]])
                    metrics = self._optimise(data.iloc[rows])
                    tokens += int(metrics.pop("tokens"))
                    self.step += 1
                    self.position = (rnd, epoch, b + 1)
                    metrics["tokens_per_s"] = tokens / max(time.time() - started, 1e-9)
                    if self.dist.main:
                        self.ctx.log.log(metrics, step=self.step, stage="train")
                    if self.step % self.tcfg.checkpoint_every_steps == 0:
                        self._checkpoint()
                    maybe_die("train", "step", self.step)
                self.position = (rnd, epoch + 1, 0)
            self.position = (rnd + 1, 0, 0)
            self._checkpoint()
        if self.backend is not None:
            self.backend.close()
        if self.vllm is not None:
            self.vllm.close()
        self._save_policy(self.work / "model")
        samples = sum(len(read_parquet(p)) for p in sorted(self.work.glob("round-*.parquet")))
        return {"steps": self.step, "train_samples": samples, "seconds": time.time() - started}

    def _optimise(self, rows: pd.DataFrame) -> dict:
        out = optimise_step(self.policy, self.optimizer, rows, self.tcfg, self.dist, self.device)
        self.skipped_steps += int(out.pop("skipped"))
        return {**out, "skipped_steps": self.skipped_steps}

    # ---- data for one round, saved before the first step so a resumed round sees the same data

    def _round_data(self, rnd: int) -> pd.DataFrame:
        path = self.work / f"round-{rnd:04d}.parquet"
        if path.exists():
            return read_parquet(path)
        # Under torchrun rank 0 alone draws and verifies the round's samples (one sampler, one
        # verifier); every rank then scores them in lockstep (the models are sharded).
        unscored = self.work / f"round-{rnd:04d}.unscored.parquet"
        if self.tcfg.mode == "online" and plain_sampler(self.cfg.sampler) == "vllm":
            self._save_policy_for_sampler()  # gathers the sharded weights: every rank takes part
        if self.dist.main:
            if self.tcfg.mode == "offline":
                data = self._offline_samples(rnd)
            else:
                data = self._online_samples(rnd)
                if self.tcfg.objective == "dph_rl":
                    # DPH-RL's divergence term needs the initial policy's own samples of the same prompts.
                    data = _interleave_by_theorem(data, self._offline_samples(rnd))
            if self.dist.active:
                write_parquet(unscored, data)
        self.dist.barrier()
        if not self.dist.main:
            data = read_parquet(unscored)
        data = self._score(data)
        if self.tcfg.mode == "online" and plain_sampler(self.cfg.sampler) == "vllm":
            self._check_sampler_weights(data)  # before the round is saved: never train on a stale engine
        if self.dist.main:
            write_parquet(path, data)
            unscored.unlink(missing_ok=True)
            acc = float(data["reward"].mean())
            self.ctx.log.log({"round": rnd, "acceptance": acc, "samples": len(data)}, stage="train")
        self.dist.barrier()
        return data

    def _round_theorems(self, rnd: int) -> pd.DataFrame:
        n = self.tcfg.prompts_per_round or len(self.theorems)
        if n >= len(self.theorems):
            return self.theorems
        perm = torch.randperm(len(self.theorems), generator=torch.Generator().manual_seed(_seed(self.tcfg.seed, rnd, -1)))
        return self.theorems.iloc[sorted(perm[:n].tolist())]

    def _offline_samples(self, rnd: int) -> pd.DataFrame:
        ids = set(self._round_theorems(rnd)["id"])
        v = self.base_verdicts[self.base_verdicts["theorem_id"].isin(ids)]
        return _decided(v).assign(sampled_by="base")

    def _online_samples(self, rnd: int) -> pd.DataFrame:
        from lean_env.verifier import Item, get_backend
        from pipeline.config import backend_options
        from pipeline.stages.verify import open_cache, verify_proofs

        theorems = self._round_theorems(rnd)
        scfg, vcfg = self.cfg.sampler, self.cfg.verifier
        self.policy.eval()
        draw = self._draw()
        texts = [self.prompt_of[i] for i in theorems["id"]]
        records = draw(texts,
                       n=scfg.samples_per_prompt, temperature=scfg.temperature, top_p=scfg.top_p,
                       max_new_tokens=scfg.max_new_tokens, batch_size=scfg.batch_size,
                       seed=_seed(scfg.seed, rnd, 0), progress=self.cfg.progress, desc=f"round {rnd} sample")
        df = pd.DataFrame(records)
        df["theorem_id"] = theorems["id"].to_numpy()[df["prompt_idx"]]
        df["statement"] = theorems["statement"].to_numpy()[df["prompt_idx"]]
        df["proof"] = proofs_for(self.cfg, df["statement"], [texts[i] for i in df["prompt_idx"]], df["completion"])
        cache = open_cache(self.ctx)
        if self.backend is None:
            self.backend = get_backend(vcfg.backend, **backend_options(vcfg))
        results = verify_proofs([Item(f"{r.theorem_id}#{r.sample_idx}", r.statement, r.proof) for r in df.itertuples()],
                                self.backend, cache=cache, timeout=vcfg.timeout, workers=vcfg.workers,
                                progress=self.cfg.progress, prompt_style=self.cfg.model.prompt_style)
        df["verdict"] = [r.verdict for r in results]
        return _decided(df).assign(sampled_by="policy")

    def _draw(self):
        """The sampling function for this round: `hf` samples from the policy in memory; `vllm` keeps
        one engine across rounds and gives it the policy's current weights (pipeline/sampling/vllm.py:
        in place on GPUs, a fresh engine on CPU; `_check_sampler_weights` checks the result)."""
        if plain_sampler(self.cfg.sampler) != "vllm":
            from functools import partial

            from pipeline.sampling.hf import sample
            return partial(sample, self.policy, self.tokenizer)
        from pipeline.sampling.vllm import VLLMSampler

        folder = self.work / "policy-for-sampler"  # written by _save_policy_for_sampler
        started = time.time()
        if self.vllm is None:
            self.vllm = VLLMSampler(str(folder), self.cfg.sampler, self.cfg.model)
        else:
            self.vllm.load_weights(str(folder))
        self.ctx.log.log({"sampler_reload_s": time.time() - started, "sampler_reload": self.vllm.reload}, stage="train")
        return self.vllm.sample

    def _check_sampler_weights(self, data: pd.DataFrame) -> None:
        """The engine's log-probs of a few of this round's samples must equal the policy's teacher-forced
        ones (pipeline/sampling/vllm.py: check_logprobs); every rank checks the same rows."""
        from pipeline.sampling.vllm import check_logprobs, reload_check_tol

        drawn = data[data["sampled_by"].eq("policy")]
        k = min(int(self.cfg.sampler.reload_check_samples), len(drawn))
        rows = drawn.iloc[np.unique(np.linspace(0, len(drawn) - 1, k).astype(int))] if k else drawn
        self.policy.eval()
        gap = check_logprobs(self.policy, rows.to_dict("records"), device=self.device,
                             tol=reload_check_tol(self.cfg.sampler, self.cfg.model.dtype))
        if self.dist.main:
            self.ctx.log.log({"sampler_logp_gap": gap}, stage="train")

    def _save_policy_for_sampler(self) -> None:
        self._save_policy(self.work / "policy-for-sampler")

    def _save_policy(self, folder: Path) -> None:
        """The policy as a Hugging Face folder; under FSDP every rank gathers, rank 0 writes."""
        weights, _ = distributed.full_state_dict(self.policy)
        if self.dist.main:
            self.policy.save_pretrained(folder, state_dict=weights)
            self.tokenizer.save_pretrained(folder)
        self.dist.barrier()

    @torch.no_grad()
    def _score(self, data: pd.DataFrame) -> pd.DataFrame:
        """Token log-probs under the proposal (the model that sampled, at its temperature) and the base model."""
        data = data.reset_index(drop=True).copy()
        # Rescore under the exact prompts the samples were drawn with.
        data["prompt_ids"] = encode_prompts(self.tokenizer, [self.prompt_of[i] for i in data["theorem_id"]])
        temperature = self.cfg.sampler.temperature
        self.policy.eval()
        old, ref = [], []
        for start in range(0, len(data), self.tcfg.batch_size):
            chunk = data.iloc[start:start + self.tcfg.batch_size]
            p_ids, c_ids = list(chunk["prompt_ids"]), [list(x) for x in chunk["token_ids"]]
            dev = self.device
            lp_ref, mask = completion_logprobs(self.reference, p_ids, c_ids, device=dev)
            by_base = chunk["sampled_by"].eq("base").to_numpy()
            lp_base = lp_ref if temperature == 1.0 else completion_logprobs(
                self.reference, p_ids, c_ids, temperature=temperature, device=dev)[0]
            lp_old = lp_base if by_base.all() else completion_logprobs(
                self.policy, p_ids, c_ids, temperature=temperature, device=dev)[0]
            for i in range(len(chunk)):
                n = int(mask[i].sum())
                ref.append(lp_ref[i, :n].tolist())
                old.append((lp_base if by_base[i] else lp_old)[i, :n].tolist())
        data["ref_logp"], data["old_logp"] = ref, old
        data["log_z"] = data["theorem_id"].map(self.log_z).fillna(-math.inf)
        return data

    # ---- checkpoints

    def _checkpoint(self) -> None:
        # full (unsharded) state dicts, gathered from every rank under FSDP and written by rank 0
        model_state, optimizer_state = distributed.full_state_dict(self.policy, self.optimizer)
        if self.dist.main:
            state = {"model": model_state, "optimizer": optimizer_state, "step": self.step,
                     "skipped_steps": self.skipped_steps, "position": self.position, "torch_rng": torch.get_rng_state()}
            tmp = self.work / "checkpoint.pt.tmp"
            torch.save(state, tmp)
            os.replace(tmp, self.work / "checkpoint.pt")
        self.dist.barrier()

    def _resume(self) -> None:
        path = self.work / "checkpoint.pt"
        if not path.exists():
            return
        state = torch.load(path, weights_only=False)
        distributed.load_full_state_dict(self.policy, self.optimizer, state["model"], state["optimizer"])
        self.step, self.position = state["step"], tuple(state["position"])
        self.skipped_steps = state.get("skipped_steps", 0)
        torch.set_rng_state(state["torch_rng"])
        print(f"[train] resuming at step {self.step}, round/epoch/batch {self.position}", flush=True)


def optimise_step(policy, optimizer, rows: pd.DataFrame, tcfg, dist_: distributed.Dist, device=None) -> dict:
    """One optimiser step on `rows` (grouped by theorem). In one process with grad_accum=1 this is a
    plain forward/backward on the whole batch; otherwise this rank's micro-batches of it
    (distributed.rank_share), whose weighted gradients add up to the same step."""
    policy.train()
    groups = [np.arange(a, b) for a, b in _group_slices(rows)]
    optimizer.zero_grad(set_to_none=True)
    loss_sum, diagnostics, weights = 0.0, {}, 0.0
    for idx, weight in distributed.rank_share(groups, dist_.rank, dist_.world, int(tcfg.grad_accum)):
        batch = _objective_batch(policy, rows.iloc[idx], device)
        loss, diag = compute_loss(tcfg.objective, batch, tcfg)
        (loss * weight).backward()
        loss_sum += float(loss.detach()) * weight
        for k, v in diag.items():
            diagnostics[k] = diagnostics.get(k, 0.0) + float(v) * weight
        weights += weight
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), tcfg.grad_clip)
    norm = distributed.grad_norm_value(grad_norm)  # the whole model's norm, the same on every rank
    skipped = (norm == 0.0 or not math.isfinite(norm)) and tcfg.skip_empty_steps
    if not skipped:  # see TrainConfig.skip_empty_steps: Adam would move the weights on momentum alone
        optimizer.step()
    # loss: the rank sums are shares of the whole batch's loss times world, so their mean is that loss
    return {"loss": dist_.mean(loss_sum), "reward": float(rows["reward"].mean()),
            "grad_norm": norm, "skipped": skipped,
            "tokens": int(sum(len(x) for x in rows["token_ids"])),
            **{k: v / weights for k, v in diagnostics.items()}}  # this rank's pieces (all of them in one process)


def _objective_batch(policy, rows: pd.DataFrame, device=None) -> ObjectiveBatch:
    prompt_ids = [list(x) for x in rows["prompt_ids"]]
    completion_ids = [list(x) for x in rows["token_ids"]]
    policy_logp, mask = completion_logprobs(policy, prompt_ids, completion_ids, device=device)
    policy_logp, mask = policy_logp.cpu(), mask.cpu()
    return ObjectiveBatch(
        policy_logp=policy_logp,
        old_logp=_pad(rows["old_logp"], policy_logp.shape),
        ref_logp=_pad(rows["ref_logp"], policy_logp.shape),
        mask=mask.float(),
        reward=torch.tensor(rows["reward"].to_numpy(), dtype=torch.float32),
        group=torch.tensor(pd.factorize(rows["theorem_id"])[0], dtype=torch.long),
        log_z=torch.tensor(rows.groupby("theorem_id", sort=False)["log_z"].first().to_numpy(), dtype=torch.float32),
        is_ref_sample=torch.tensor(rows["is_ref_sample"].to_numpy(), dtype=torch.float32)
        if "is_ref_sample" in rows else None,
    )


def _decided(samples: pd.DataFrame) -> pd.DataFrame:
    """Rows with a reward: a verifier `error` is neither pass nor fail, so those samples are dropped."""
    kept = samples[samples["verdict"] != "error"]
    return kept.assign(reward=kept["verdict"].eq("pass").astype(float))


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % (2**32) for p in parts]).generate_state(1)[0])


def _group_slices(data: pd.DataFrame) -> list[tuple[int, int]]:
    """Row ranges of each theorem's samples (rows are stored grouped by theorem)."""
    ids = data["theorem_id"].to_numpy()
    starts = [0] + [i for i in range(1, len(ids)) if ids[i] != ids[i - 1]]
    return list(zip(starts, starts[1:] + [len(ids)]))


def _interleave_by_theorem(policy_rows: pd.DataFrame, base_rows: pd.DataFrame) -> pd.DataFrame:
    """Policy samples and base samples of the same prompts, grouped by theorem (policy rows first)."""
    both = pd.concat([policy_rows.assign(is_ref_sample=0.0), base_rows.assign(is_ref_sample=1.0)], ignore_index=True)
    order = {t: i for i, t in enumerate(pd.unique(policy_rows["theorem_id"]))}
    return both.sort_values("theorem_id", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


def _pad(column: pd.Series, shape) -> torch.Tensor:
    out = torch.zeros(shape, dtype=torch.float32)
    for i, values in enumerate(column):
        out[i, :len(values)] = torch.as_tensor(np.asarray(values, dtype=np.float32))
    return out


def _log_pass_rate(verdicts: pd.DataFrame) -> dict[str, float]:
    """log Ẑ(x): with base samples (q = a) the importance-sampling estimate of Z is the pass rate."""
    rate = verdicts.assign(p=verdicts["verdict"].eq("pass")).groupby("theorem_id")["p"].mean()
    with np.errstate(divide="ignore"):
        return {k: float(np.log(v)) for k, v in rate.items()}
