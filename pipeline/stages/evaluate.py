"""The `evaluate` stage: n samples per eval theorem, verified, giving per-theorem counts and pass@k.

The base model and the trained policy are evaluated the same way. The base evaluation's key does
not depend on the objective, so every run of a sweep shares one base evaluation through the store.
With `sampler=power` the policy (for `train=none`, the base model itself) is evaluated on power
samples instead (pipeline/sampling/power.py); the base evaluation stays plain, and the policy's
summary adds the sampling cost (`token_cost`: proposal tokens per kept token, plain sampling 1).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.config import eval_ks, power_sampling
from pipeline.context import Context
from pipeline.data import load_theorems
from pipeline.reporting.metrics import pass_at_k
from pipeline.store import Artifact, read_parquet, write_json, write_parquet

VERSION = 1


def evaluate_model(ctx: Context, model: Artifact, label: str, power: bool = False) -> Artifact:
    """pass@k of `model` on the eval theorems; `power`: on power samples (sampler.* settings)."""
    from pipeline.stages.sample import generate_samples, power_settings
    from pipeline.stages.verify import verify_samples

    cfg, ecfg = ctx.cfg, ctx.cfg.eval
    theorems = load_theorems(cfg.dataset.eval_path, cfg.dataset.eval_limit)
    samples = generate_samples(
        ctx, model, theorems, split="eval", n=ecfg.samples_per_prompt, temperature=ecfg.temperature,
        top_p=ecfg.top_p, max_new_tokens=cfg.sampler.max_new_tokens, seed=cfg.sampler.seed,
        batch_size=cfg.sampler.batch_size, prompts_per_shard=cfg.sampler.prompts_per_shard, label=f"sample[{label}]",
        power=power_settings(cfg.sampler) if power else None)
    verdicts = verify_samples(ctx, samples, label=f"verify[{label}]")
    ks = eval_ks(ecfg)

    def make(art: Artifact) -> dict:
        counts = read_parquet(verdicts.file("per_theorem.parquet"))
        table = pass_at_k_table(counts, ks)
        summary = {f"pass@{k}": float(table[f"pass@{k}"].mean()) for k in ks}
        summary.update(theorems=len(table), samples_per_theorem=int(table["n"].max()))
        if "token_cost" in samples.meta:  # power samples: what they cost beyond plain sampling
            summary.update({k: samples.meta[k] for k in ("token_cost", "mean_generated_tokens", "acceptance_rate")},
                           mean_tokens=samples.meta["mean_tokens"], power=samples.meta["power"])
        art.work.mkdir(parents=True, exist_ok=True)
        write_parquet(art.work / "per_theorem.parquet", table)
        write_json(art.work / "summary.json", summary)
        ctx.log.log(summary, stage=f"evaluate[{label}]")
        return {"label": label, "model": str(model), "summary": summary,
                "verdicts_path": str(verdicts.file("verdicts.parquet"))}

    return ctx.build("evaluate", {"ks": ks}, make, inputs={"verdicts": verdicts}, version=VERSION,
                     label=f"evaluate[{label}]", detail=_headline)


def pass_at_k_table(counts: pd.DataFrame, ks: list[int]) -> pd.DataFrame:
    table = counts.copy()
    for k in ks:
        table[f"pass@{k}"] = [pass_at_k(int(n), int(c), k) if k <= n else np.nan
                              for n, c in zip(table["n"], table["c"])]
    return table


def summary(art: Artifact) -> dict:
    return json.loads(art.file("summary.json").read_text())


def _headline(art: Artifact) -> str:
    s = summary(art)
    ks = sorted(int(k.split("@")[1]) for k in s if k.startswith("pass@"))
    return ", ".join(f"pass@{k}={s[f'pass@{k}']:.3f}" for k in (ks[0], ks[-1]))


def run_base(ctx: Context) -> Artifact:
    return evaluate_model(ctx, ctx.stage("pretrain"), "base")


def run(ctx: Context) -> Artifact:
    ctx.stage("evaluate_base")
    return evaluate_model(ctx, ctx.stage("train"), "trained", power=power_sampling(ctx.cfg))
