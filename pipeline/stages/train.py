"""The `train` stage: one readable loop, config in, checkpoint out.

Each round: pick prompts → get k proofs per prompt (offline: the base model's verified samples from
the `sample`/`verify` stages; online: fresh samples from the current policy, verified now) → score
them under the proposal and the frozen base model → a few optimiser steps on the chosen objective.
Offline training is the same loop with one round. What the loop must know about the objective it
asks the registry (pipeline/objectives): whether each round also needs the base model's samples
(DPH-RL: they are extra rows, never budget), whether each step needs fresh rollouts (the paper
preset: a round is then drawn in parts of one step each), and at which temperature to score.

Budget: `batch_size` policy samples per step; `train_samples` counts the policy's samples (the
base model's, offline). Every objective is on the run's one loss scale (`train.loss_agg`); the
artifact's meta reports it with the mean gradient norm and the fraction of steps the clip bit.

Resumption: each round's (part's) scored data is saved before any step is taken, and a checkpoint
(model, optimiser, step counters, RNG) every `checkpoint_every_steps`; batch order is a pure
function of (seed, round, part, epoch), so a run killed at any point and restarted ends with the
same weights as an uninterrupted one (same seed, CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import distributed, objectives
from pipeline.config import NO_TRAINING, method_label, plain_sampler, sweep_axis, to_container
from pipeline.context import Context
from pipeline.data import load_theorems
from pipeline.prompts import build_prompts, proofs_for
from pipeline.faults import maybe_die
from pipeline.model import completion_logprobs, encode_prompts, load, model_dir, resolve_device
from pipeline.objectives import ObjectiveBatch
from pipeline.store import Artifact, read_parquet, write_json, write_parquet

# 2: steps without gradient signal are skipped (train.skip_empty_steps)
# 3: per-objective config sections, one loss scale, budget on policy samples, warm-up, exact micro-batching
# 4: scoring and steps share each prompt's forward pass and run in length buckets (completion_logprobs):
#    the same numbers up to float rounding
# 5: online samples drawn with train.seed too (a reseeding reseeds the rollouts)
# 6: the fast decoder's time-major cache rounds attention differently: other draws for a seed
VERSION = 6


def run(ctx: Context) -> Artifact:
    base = ctx.stage("pretrain")
    if ctx.cfg.train.objective == NO_TRAINING:  # an inference-time method: the policy is the base model
        ctx.announce("train", base, reused=True, detail="train.objective=none: no training, the base model")
        return base
    base_samples = ctx.stage("verify")
    cfg = ctx.cfg
    key_cfg = {"train": train_key(cfg.train), "dataset": [cfg.dataset.train_path, cfg.dataset.train_limit,
               cfg.dataset.prompt_template, cfg.dataset.proof_prefix, cfg.dataset.header,
               cfg.model.prompt_style], "verifier": cfg.verifier.backend}
    if cfg.train.mode == "online" or objectives.get_objective(cfg.train.objective).policy_temperature == "sampler":
        key_cfg["sampler"] = {k: cfg.sampler[k] for k in ("samples_per_prompt", "temperature", "top_p", "max_new_tokens")}
        if plain_sampler(cfg.sampler) == "hf":  # the decode path decides which tokens a seed draws
            key_cfg["sampler"]["method"] = cfg.sampler.get("method", "auto")
    if trajectory_settings(cfg):  # off: the key it always had
        key_cfg["trajectory"] = trajectory_settings(cfg)
    inputs = {"base": base, "base_samples": base_samples}
    # FSDP: every torchrun rank trains together (the store's lock would admit one), rank 0 commits
    collective = distributed.setup() if cfg.train.strategy == "fsdp" else None

    def make(art: Artifact) -> dict:
        trainer = Trainer(ctx, art, base, base_samples)
        stats = trainer.fit()
        world = {"world_size": trainer.dist.world} if collective is not None else {}
        return {**run_meta(cfg), **world, **stats}

    return ctx.build("train", key_cfg, make, inputs=inputs, version=VERSION, collective=collective,
                     detail=lambda art: f"{art.meta['steps']} steps" if art.done else "")


def trajectory_settings(cfg) -> dict | None:
    """What the training trajectory depends on (None when it is off)."""
    e, d = cfg.eval, cfg.dataset
    if not int(e.get("trajectory_samples", 0)) or not d.get("valid_path"):
        return None
    return {"valid": [d.valid_path, int(d.valid_limit)], "n": int(e.trajectory_samples),
            "every": int(e.trajectory_every), "temperature": float(e.temperature), "top_p": float(e.top_p),
            "max_new_tokens": int(cfg.sampler.max_new_tokens), "seed": int(cfg.sampler.seed)}


def train_key(tcfg) -> dict:
    """What the train artifact is keyed by: the shared settings and the chosen objective's own
    section (the other objectives' sections cannot change this run)."""
    sections = set(objectives.REGISTRY)
    return {k: v for k, v in to_container(tcfg).items() if k not in sections or k == tcfg.objective}


def run_meta(cfg) -> dict:
    """What the artifact says about the run besides its statistics."""
    return {"objective": cfg.train.objective, "label": method_label(cfg), "sweep_axis": sweep_axis(cfg),
            "loss_agg": objectives.aggregation_of(cfg.train).description}


class Trainer:
    def __init__(self, ctx: Context, art: Artifact, base: Artifact, base_samples: Artifact):
        self._init_state(ctx, art)
        self._load(base, base_samples)

    def _init_state(self, ctx: Context, art: Artifact) -> None:
        """The loop's configuration and counters (no model: tests drive the loop with fakes)."""
        self.ctx, self.cfg, self.tcfg = ctx, ctx.cfg, ctx.cfg.train
        self.art = art
        self.work = art.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.spec = objectives.get_objective(self.tcfg.objective)
        self.loss_fn = objective_loss(self.tcfg)
        # the temperature the objective reads π_θ and π_ref at (the proposal q is always the sampler's)
        self.temperature = float(self.cfg.sampler.temperature) if self.spec.policy_temperature == "sampler" else 1.0
        self.dist = distributed.setup()
        self.backend = None  # the verifier for online rounds, started once and kept warm across rounds
        self.vllm = None  # sampler=vllm: the engine for online rounds, kept warm the same way
        self.step = 0
        self.skipped_steps = 0  # steps with no gradient signal, not taken (train.skip_empty_steps)
        self.clipped_steps = 0  # steps taken whose gradient norm exceeded grad_clip
        self.grad_norm_sum = 0.0  # over the steps taken
        self.position = (0, 0, 0, 0)  # (round, part, epoch, batch) of the next optimiser step

    def _load(self, base: Artifact, base_samples: Artifact) -> None:
        torch.manual_seed(self.tcfg.seed)
        mcfg = self.cfg.model
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

    # ---- the loop

    def fit(self) -> dict:
        self._resume()
        started, tokens = time.time(), 0
        planned = self.planned_steps()
        for rnd in range(self.position[0], self.tcfg.rounds):
            if self.position[1:] == (0, 0, 0):  # the policy after `rnd` rounds, before any step of this one
                self._trajectory_point(rnd)
            parts = self._round_parts(rnd)
            for part in range(self.position[1] if rnd == self.position[0] else 0, len(parts)):
                data = self._round_data(rnd, part, parts[part])
                groups = _group_slices(data)
                per_step = prompts_per_step(self.tcfg.batch_size, data)
                here = (rnd, part)
                for epoch in range(self.position[2] if here == self.position[:2] else 0, self.tcfg.epochs_per_round):
                    order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(
                        _seed(self.tcfg.seed, rnd, part, epoch))).tolist()
                    batches = [order[i:i + per_step] for i in range(0, len(order), per_step)]
                    first = self.position[3] if (*here, epoch) == self.position[:3] else 0
                    for b in range(first, len(batches)):
                        rows = np.concatenate([np.arange(*groups[g]) for g in batches[b]])
                        metrics = self._optimise(data.iloc[rows], self._lr(planned))
                        tokens += int(metrics.pop("tokens"))
                        self.step += 1
                        self.position = (rnd, part, epoch, b + 1)
                        metrics["tokens_per_s"] = tokens / max(time.time() - started, 1e-9)
                        if self.dist.main:
                            self.ctx.log.log(metrics, step=self.step, stage="train")
                        if self.step % self.tcfg.checkpoint_every_steps == 0:
                            self._checkpoint()
                        maybe_die("train", "step", self.step)
                    self.position = (rnd, part, epoch + 1, 0)
                self.position = (rnd, part + 1, 0, 0)
            self.position = (rnd + 1, 0, 0, 0)
            self._checkpoint()
        self._trajectory_point(self.tcfg.rounds, final=True)
        if self.backend is not None:
            self.backend.close()
        if self.vllm is not None:
            self.vllm.close()
        self._save_policy(self.work / "model")
        policy_rows, reference_rows = self._sample_counts()
        taken = self.step - self.skipped_steps
        return {"steps": self.step, "train_samples": policy_rows, "reference_samples": reference_rows,
                "skipped_steps": self.skipped_steps, "planned_steps": planned,
                "clipped_step_frac": self.clipped_steps / taken if taken else 0.0,
                "grad_norm_mean": self.grad_norm_sum / taken if taken else 0.0,
                "trajectory": self._trajectory(), "seconds": time.time() - started}

    def planned_steps(self) -> int:
        """The optimiser steps the config asks for (the warm-up's length is a fraction of it): every
        round's prompts in batches of `batch_size` samples. A prompt whose samples the verifier
        could not decide drops out, so a run can take a few steps less."""
        n = min(self.tcfg.prompts_per_round or len(self.theorems), len(self.theorems))
        per = _planned_prompts_per_step(self.tcfg.batch_size, self.cfg.sampler.samples_per_prompt)
        if self.spec.fresh_rollouts_per_step:
            return self.tcfg.rounds * math.ceil(n / per)
        return self.tcfg.rounds * self.tcfg.epochs_per_round * math.ceil(n / per)

    def _lr(self, planned: int) -> float:
        """Linear warm-up over `warmup_frac` of the planned steps (from lr/W at the first step to lr
        at step W), then constant; a function of the step counter, so a resumed run follows it."""
        warm = int(round(self.tcfg.warmup_frac * planned))
        if warm and self.step < warm:
            return float(self.tcfg.lr) * (self.step + 1) / warm
        return float(self.tcfg.lr)

    def _optimise(self, rows: pd.DataFrame, lr: float) -> dict:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        out = optimise_step(self.policy, self.optimizer, rows, self.tcfg, self.dist, self.device,
                            loss_fn=self.loss_fn, temperature=self.temperature)
        skipped = bool(out.pop("skipped"))
        self.skipped_steps += int(skipped)
        if not skipped:
            self.clipped_steps += int(out["grad_clipped"])
            self.grad_norm_sum += float(out["grad_norm"])
        return {**out, "lr": lr, "skipped_steps": self.skipped_steps}

    def _sample_counts(self) -> tuple[int, int]:
        """(policy samples, reference samples) in the run's training data: the budget is the first."""
        policy = reference = 0
        for path in sorted(self.work.glob("round-*.parquet")):
            if ".unscored" in path.name:
                continue
            data = read_parquet(path)
            ref = int((data["is_ref_sample"] > 0.5).sum()) if "is_ref_sample" in data else 0
            policy, reference = policy + len(data) - ref, reference + ref
        return policy, reference

    # ---- data for one round (or part of one), saved before the first step so a resumed run sees the same data

    def _round_parts(self, rnd: int) -> list[pd.DataFrame]:
        """The round's theorems, all at once, or, for an objective that takes one step per batch of
        fresh rollouts, in parts of one step's prompts each (drawn in a seeded order)."""
        theorems = self._round_theorems(rnd)
        if not self.spec.fresh_rollouts_per_step:
            return [theorems]
        per = _planned_prompts_per_step(self.tcfg.batch_size, self.cfg.sampler.samples_per_prompt)
        order = torch.randperm(len(theorems), generator=torch.Generator().manual_seed(
            _seed(self.tcfg.seed, rnd, -2))).tolist()
        return [theorems.iloc[sorted(order[i:i + per])] for i in range(0, len(order), per)]

    def _round_data(self, rnd: int, part: int, theorems: pd.DataFrame) -> pd.DataFrame:
        name = f"round-{rnd:04d}" + (f"-part-{part:04d}" if self.spec.fresh_rollouts_per_step else "")
        path = self.work / f"{name}.parquet"
        if path.exists():
            return read_parquet(path)
        # Under torchrun rank 0 alone draws and verifies the round's samples (one sampler, one
        # verifier); every rank then scores them in lockstep (the models are sharded).
        unscored = self.work / f"{name}.unscored.parquet"
        if self.tcfg.mode == "online" and plain_sampler(self.cfg.sampler) == "vllm":
            self._save_policy_for_sampler()  # gathers the sharded weights: every rank takes part
        if self.dist.main:
            if self.tcfg.mode == "offline":
                data = self._offline_samples(theorems)
            else:
                data = self._online_samples(theorems, rnd, part)
            if self.spec.needs_base_samples:
                # e.g. DPH-RL's divergence term: the initial policy's own samples of the same prompts
                data = _interleave_by_theorem(data, self._offline_samples(theorems))
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
            own = data[data["is_ref_sample"] < 0.5] if "is_ref_sample" in data else data
            self.ctx.log.log({"round": rnd, "part": part, "acceptance": float(own["reward"].mean()),
                              "samples": len(own)}, stage="train")
        self.dist.barrier()
        return data

    def _round_theorems(self, rnd: int) -> pd.DataFrame:
        n = self.tcfg.prompts_per_round or len(self.theorems)
        if n >= len(self.theorems):
            return self.theorems
        perm = torch.randperm(len(self.theorems), generator=torch.Generator().manual_seed(_seed(self.tcfg.seed, rnd, -1)))
        return self.theorems.iloc[sorted(perm[:n].tolist())]

    def _offline_samples(self, theorems: pd.DataFrame) -> pd.DataFrame:
        v = self.base_verdicts[self.base_verdicts["theorem_id"].isin(set(theorems["id"]))]
        return _decided(v).assign(sampled_by="base")

    def _online_samples(self, theorems: pd.DataFrame, rnd: int, part: int) -> pd.DataFrame:
        from lean_env.verifier import Item, get_backend
        from pipeline.config import backend_options
        from pipeline.stages.verify import open_cache, verify_proofs

        scfg, vcfg = self.cfg.sampler, self.cfg.verifier
        self.policy.eval()
        draw = self._draw()
        texts = [self.prompt_of[i] for i in theorems["id"]]
        records = draw(texts,
                       n=scfg.samples_per_prompt, temperature=scfg.temperature, top_p=scfg.top_p,
                       max_new_tokens=scfg.max_new_tokens, batch_size=scfg.batch_size,
                       # a reseeded run (train.seed) draws its own samples too
                       seed=_seed(scfg.seed, self.tcfg.seed, rnd, part), progress=self.cfg.progress,
                       desc=f"round {rnd} sample")
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

    # ---- the training trajectory: the policy on the validation split, round by round

    def _trajectory(self) -> list[dict]:
        path = self.work / "trajectory.json"
        return json.loads(path.read_text()) if path.exists() else []

    def _trajectory_point(self, rnd: int, final: bool = False) -> None:
        """pass@1 and pass@n of the policy after `rnd` rounds on the validation theorems (n samples
        each, the same seed every round, so rounds differ by the policy, not by the draws). Kept in
        trajectory.json, so a resumed run skips the points it has."""
        settings = trajectory_settings(self.cfg)
        if settings is None or not (final or rnd % max(1, settings["every"]) == 0):
            return
        points = self._trajectory()
        if any(p["round"] == rnd for p in points):
            return
        from lean_env.verifier import Item, get_backend
        from pipeline.config import backend_options
        from pipeline.reporting.metrics import pass_at_k
        from pipeline.stages.verify import open_cache, per_theorem, verify_proofs

        if plain_sampler(self.cfg.sampler) == "vllm":
            self._save_policy_for_sampler()  # the engine samples what the folder holds; every rank gathers
        if self.dist.main:
            theorems = load_theorems(self.cfg.dataset.valid_path, self.cfg.dataset.valid_limit)
            texts = build_prompts(self.cfg, theorems, self.tokenizer)
            self.policy.eval()
            n = settings["n"]
            records = self._draw()(texts, n=n, temperature=settings["temperature"], top_p=settings["top_p"],
                                   max_new_tokens=settings["max_new_tokens"], batch_size=self.cfg.sampler.batch_size,
                                   seed=_seed(settings["seed"], 7919), progress=self.cfg.progress,
                                   desc=f"round {rnd} validation")
            df = pd.DataFrame(records)
            df["theorem_id"] = theorems["id"].to_numpy()[df["prompt_idx"]]
            df["statement"] = theorems["statement"].to_numpy()[df["prompt_idx"]]
            df["proof"] = proofs_for(self.cfg, df["statement"], [texts[i] for i in df["prompt_idx"]], df["completion"])
            vcfg = self.cfg.verifier
            if self.backend is None:
                self.backend = get_backend(vcfg.backend, **backend_options(vcfg))
            results = verify_proofs([Item(f"{r.theorem_id}#{r.sample_idx}", r.statement, r.proof) for r in df.itertuples()],
                                    self.backend, cache=open_cache(self.ctx), timeout=vcfg.timeout,
                                    workers=vcfg.workers, progress=self.cfg.progress,
                                    prompt_style=self.cfg.model.prompt_style)
            counts = per_theorem(df.assign(verdict=[r.verdict for r in results]))
            counts = counts[counts["n"] > 0]
            point = {"round": rnd, "steps": self.step, "k": n,
                     "pass@1": float(np.mean([pass_at_k(int(a), int(c), 1) for a, c in zip(counts.n, counts.c)])),
                     f"pass@{n}": float(np.mean([pass_at_k(int(a), int(c), min(n, int(a)))
                                                 for a, c in zip(counts.n, counts.c)]))}
            write_json(self.work / "trajectory.json", points + [point])
            self.ctx.log.log({f"valid_{k}": v for k, v in point.items() if k.startswith("pass@")}, step=self.step,
                             stage="train")
        self.dist.barrier()

    def _draw(self):
        """The sampling function for this round: `hf` samples from the policy in memory; `vllm` keeps
        one engine across rounds and gives it the policy's current weights (pipeline/sampling/vllm.py:
        in place on GPUs, a fresh engine on CPU; `_check_sampler_weights` checks the result)."""
        if plain_sampler(self.cfg.sampler) != "vllm":
            from functools import partial

            from pipeline.sampling.hf import sample
            return partial(sample, self.policy, self.tokenizer, method=self.cfg.sampler.get("method", "auto"))
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
        """Token log-probs under the proposal q (the model that sampled, at the sampler's temperature:
        the distribution actually sampled from) and under the base model at the temperature the
        objective reads (`self.temperature`)."""
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
            lp_ref, mask = completion_logprobs(self.reference, p_ids, c_ids, temperature=self.temperature, device=dev)
            by_base = chunk["sampled_by"].eq("base").to_numpy()
            lp_base = lp_ref if temperature == self.temperature else completion_logprobs(
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
                     "skipped_steps": self.skipped_steps, "clipped_steps": self.clipped_steps,
                     "grad_norm_sum": self.grad_norm_sum, "position": self.position,
                     "torch_rng": torch.get_rng_state()}
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
        self.skipped_steps = state["skipped_steps"]
        self.clipped_steps, self.grad_norm_sum = state["clipped_steps"], state["grad_norm_sum"]
        torch.set_rng_state(state["torch_rng"])
        print(f"[train] resuming at step {self.step}, round/part/epoch/batch {self.position}", flush=True)


def objective_loss(tcfg):
    """batch -> (loss, diagnostics) of the configured objective, its options and the run's loss scale."""
    spec = objectives.get_objective(tcfg.objective)
    options, agg = objectives.options_of(tcfg), objectives.aggregation_of(tcfg)
    return lambda batch: spec.loss(batch, options, agg)


def optimise_step(policy, optimizer, rows: pd.DataFrame, tcfg, dist_: distributed.Dist, device=None, *,
                  loss_fn=None, temperature: float = 1.0) -> dict:
    """One optimiser step on `rows` (grouped by theorem). In one process with grad_accum=1 this is a
    plain forward/backward on the whole batch. Split over micro-batches or FSDP ranks, every row's
    log-probs are first computed without gradient (each rank its own rows, then exchanged); each
    micro-batch then evaluates the loss of the WHOLE batch with its own rows live and the others
    frozen at those values. By the chain rule the summed gradients are the whole batch's gradient,
    for any objective: normalisations over the batch (weights, token counts, DPH-RL's two terms)
    are never computed on a piece. The cost is one extra forward pass without gradient."""
    loss_fn = loss_fn or objective_loss(tcfg)
    policy.train()
    groups = [np.arange(a, b) for a, b in _group_slices(rows)]
    pieces = distributed.rank_share(groups, dist_.rank, dist_.world, int(tcfg.grad_accum))
    optimizer.zero_grad(set_to_none=True)
    if len(pieces) == 1 and not dist_.active:
        logp, mask = _policy_logprobs(policy, rows, device, temperature)
        loss, diagnostics = loss_fn(_objective_batch(rows, logp, mask))
        loss.backward()
    else:
        frozen = _objective_batch(rows, *_frozen_logprobs(policy, rows, pieces, dist_, device, temperature))
        loss = diagnostics = None
        for idx, live in pieces:
            logp, _ = _policy_logprobs(policy, rows.iloc[idx], device, temperature)
            piece_loss, piece_diag = loss_fn(_with_live_rows(frozen, idx, logp))
            # FSDP averages gradients over ranks, hence × world; a filler piece (live False) only
            # takes part in the collectives
            (piece_loss * (dist_.world if live else 0.0)).backward()
            if loss is None:
                loss, diagnostics = piece_loss, piece_diag  # every piece's loss is the whole batch's
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), tcfg.grad_clip)
    norm = distributed.grad_norm_value(grad_norm)  # the whole model's norm, the same on every rank
    skipped = (norm == 0.0 or not math.isfinite(norm)) and tcfg.skip_empty_steps
    if not skipped:  # see TrainSettings.skip_empty_steps: Adam would move the weights on momentum alone
        optimizer.step()
    return {"loss": float(loss.detach()), "reward": float(rows["reward"].mean()),
            "grad_norm": norm, "grad_clipped": bool(norm > tcfg.grad_clip), "skipped": skipped,
            "tokens": int(sum(len(x) for x in rows["token_ids"])),
            **{k: float(v) for k, v in diagnostics.items()}}


def _policy_logprobs(policy, rows: pd.DataFrame, device, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    prompt_ids = [list(x) for x in rows["prompt_ids"]]
    completion_ids = [list(x) for x in rows["token_ids"]]
    logp, mask = completion_logprobs(policy, prompt_ids, completion_ids, temperature=temperature, device=device)
    return logp.cpu(), mask.cpu()


@torch.no_grad()
def _frozen_logprobs(policy, rows: pd.DataFrame, pieces, dist_: distributed.Dist, device, temperature: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's token log-probs under the current policy, without gradient, as ([N, T], mask):
    this rank scores its own pieces (every rank runs as many forwards as it will with gradient,
    which FSDP's collectives need), then the ranks exchange their rows."""
    mine = {}
    for idx, live in pieces:
        logp, mask = _policy_logprobs(policy, rows.iloc[idx], device, temperature)
        if live:
            for j, i in enumerate(idx):
                mine[int(i)] = logp[j, :int(mask[j].sum())].numpy()
    if dist_.active:
        everyone = [None] * dist_.world
        torch.distributed.all_gather_object(everyone, mine)
        for part in everyone:
            mine.update(part)
    lengths = [len(mine[i]) for i in range(len(rows))]
    logp = torch.zeros(len(rows), max(lengths, default=0))
    for i, n in enumerate(lengths):
        logp[i, :n] = torch.from_numpy(mine[i])
    mask = torch.arange(logp.shape[1])[None, :] < torch.tensor(lengths)[:, None]
    return logp, mask


def _with_live_rows(frozen: ObjectiveBatch, idx: np.ndarray, logp: torch.Tensor) -> ObjectiveBatch:
    """The whole batch with rows `idx` carrying the gradient (their log-probs `logp`)."""
    policy_logp = frozen.policy_logp.clone()
    policy_logp[torch.as_tensor(idx), :logp.shape[1]] = logp.to(policy_logp.dtype)
    return dataclasses.replace(frozen, policy_logp=policy_logp)


def _objective_batch(rows: pd.DataFrame, policy_logp: torch.Tensor, mask: torch.Tensor) -> ObjectiveBatch:
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


def prompts_per_step(batch_size: int, data: pd.DataFrame) -> int:
    """Prompts per optimiser step so that a step holds about `batch_size` of the POLICY's samples
    (DPH-RL's base-model rows ride along and do not count)."""
    own = int((data["is_ref_sample"] < 0.5).sum()) if "is_ref_sample" in data else len(data)
    n_groups = data["theorem_id"].nunique()
    return max(1, round(batch_size * n_groups / max(1, own)))


def _planned_prompts_per_step(batch_size: int, samples_per_prompt: int) -> int:
    return max(1, round(batch_size / max(1, samples_per_prompt)))


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
    """log Ẑ(x): with base samples (q = a) the importance-sampling estimate of Z is the pass rate,
    over the DECIDED samples: a verifier `error` is dropped here exactly as training drops it."""
    rate = _decided(verdicts).groupby("theorem_id")["reward"].mean()
    with np.errstate(divide="ignore"):
        return {k: float(np.log(v)) for k, v in rate.items()}
