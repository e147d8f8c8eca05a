"""Throughput of training, old layout against new in the same run, with the roofline ratio.

    python scripts/bench_train.py [--model DIR] [--parts pretrain,round] [--repeats 3] [--threads 1]
                                  [--profile]

Two parts:

- `pretrain`: pretraining steps of the default config (batch 16, length-bucketed batches from a
  corpus built like the pretrain stage's, from the train split plus 1,000 generator theorems) on a
  fresh tiny_prop model: the old loss (two cross-entropies on a slice of the logits) against
  `pipeline.stages.pretrain.pretrain_loss`.
- `round`: one online training round of the α-sweep (`experiment=alpha_sweep`: 64 train theorems × 8
  samples, α-DPG, 8 optimiser steps of 64 sequences) on a base model: sampling (`loop`, the
  transformers decode loop, against `auto`), verification (the prop checker, the same for both),
  scoring under the reference and the policy, and the optimiser steps (one padded batch against
  length buckets, `pipeline.model.completion_logprobs`).

`--model` is a saved model folder; by default the shipped base model, `pipeline/assets/tiny_prop`
(the pretraining part takes its tokenizer and trains a fresh model of the configured shape).
Each repeat runs old then new and measures the matmul roofline of the model's shapes (forward and
both backward products, rows = the batch's tokens) in the same process right before
(pipeline/roofline.py). Tokens are the real tokens of the batch (padding excluded); `ratio` is
tokens per CPU-second over the roofline's (CPU time of this process: a busy machine does not
inflate it); wall-clock rates are printed beside.

`--profile` (pretraining part): where the new step's CPU time goes by kernel kind (matmul, attention,
log-softmax, the optimiser, everything else) and the ratio's ceiling: the ratio the step would reach
if its matmuls ran at the roofline and nothing but attention, log-softmax and the optimiser took time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.roofline import flops_per_token, roofline_tokens_per_s  # noqa: E402


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from pipeline.config import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


# ---------------------------------------------------------------- pretraining steps


def old_pretrain_loss(model, ids, mask, labels, prompt_labels, weight):
    """The pretrain stage's loss before pretrain_loss: two cross-entropies on a slice of the logits."""
    out = model(input_ids=ids, attention_mask=mask, use_cache=False)
    logits = out.logits[:, :-1].float().reshape(-1, out.logits.shape[-1])
    target = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits, target.reshape(-1), ignore_index=-100, reduction="sum") / max(
        1, int((target != -100).sum()))
    prompt_target = prompt_labels[:, 1:].reshape(-1)
    return loss + weight * torch.nn.functional.cross_entropy(
        logits, prompt_target, ignore_index=-100, reduction="sum") / max(1, int((prompt_target != -100).sum()))


def bench_pretrain(args, model_path) -> list[str]:
    from transformers import AutoTokenizer

    from pipeline.model import encode_completions, encode_prompts, new_model
    from pipeline.stages.pretrain import Batches, build_corpus, collate, pretrain_loss, step_seed

    cfg = compose(["pretrain.extra_theorems=1000"])
    corpus, _ = build_corpus(cfg)
    tok = AutoTokenizer.from_pretrained(str(model_path))
    p_ids = encode_prompts(tok, list(corpus["prompt"]))
    c_ids = encode_completions(tok, list(corpus["completion"]))
    lengths = np.array([len(p) + len(c) for p, c in zip(p_ids, c_ids)])
    batches = Batches(lengths, int(cfg.pretrain.batch_size), step_seed(0, 5))
    steps = [collate(p_ids, c_ids, batches.batch(s), tok.pad_token_id) for s in range(args.pretrain_steps)]
    real = sum(int(b[1].sum()) for b in steps)
    computed = sum(b[1].numel() for b in steps)
    weight = float(cfg.pretrain.prompt_loss_weight)
    losses = {"old": partial(old_pretrain_loss, weight=weight),
              "new": lambda *b: pretrain_loss(*b, weight)[1]}
    models = {}
    for name in losses:
        torch.manual_seed(0)
        model = new_model(cfg.model, tok).train()
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95)))
    rows = round(computed / len(steps))
    lines = [f"pretrain: {len(steps)} steps of {cfg.pretrain.batch_size} sequences, {real / len(steps):.0f} real "
             f"tokens/step, padding {1 - real / computed:.1%} of the tokens computed; "
             f"{flops_per_token(models['old'][0], training=True) / 1e6:.1f} MFLOP/token"]
    results = {name: [] for name in losses}
    for rep in range(args.repeats):
        roof, rate = roofline_tokens_per_s(models["old"][0], rows, training=True)
        print(f"  repeat {rep}: training roofline at {rows} rows {rate / 1e9:.1f} GFLOP/s = {roof:,.0f} tokens/s", flush=True)
        for name, loss_fn in losses.items():
            model, opt = models[name]
            loss_fn(model, *steps[0])  # warm-up
            with Clock() as c:
                for ids, mask, labels, prompt_labels in steps:
                    objective = loss_fn(model, ids, mask, labels, prompt_labels)
                    opt.zero_grad(set_to_none=True)
                    objective.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
            results[name].append((real / c.wall, real / c.cpu, real / c.cpu / roof, c.cpu / len(steps)))
            print(f"    {name}: {real / c.wall:7.0f} tokens/s {1000 * c.cpu / len(steps):6.1f} CPU-ms/step "
                  f"ratio {real / c.cpu / roof:.3f}", flush=True)
    lines += summary(results, "pretrain step")
    if args.profile:
        lines += ceiling(models["new"], losses["new"], steps, real, rows)
    return lines


# matmul kernels; attention kernels (their FLOPs are not in the roofline's count); the loss's log-softmax
KINDS = {"matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul"),
         "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                       "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
         "log-softmax": ("aten::_log_softmax", "aten::_log_softmax_backward_data")}


def ceiling(model_opt, loss_fn, steps, real: int, rows: int) -> list[str]:
    """Where a pretraining step's CPU time goes (torch.profiler, self time per kernel kind; the
    optimiser step timed apart), and the roofline ratio the step would reach if its matmuls ran at
    the roofline and every op but attention, the log-softmax and the optimiser took no time."""
    from torch.profiler import ProfilerActivity, profile

    model, opt = model_opt
    roof, _ = roofline_tokens_per_s(model, rows, training=True)
    optimiser = 0.0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for ids, mask, labels, prompt_labels in steps:
            objective = loss_fn(model, ids, mask, labels, prompt_labels)
            opt.zero_grad(set_to_none=True)
            objective.backward()
            started = time.process_time()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            optimiser += time.process_time() - started
    seconds = {kind: 0.0 for kind in (*KINDS, "other")}
    for event in prof.key_averages():
        kind = next((k for k, names in KINDS.items() if event.key in names), "other")
        seconds[kind] += event.self_cpu_time_total / 1e6
    seconds["other"] -= optimiser  # the optimiser's own ops are in the profile too: counted apart
    seconds["optimiser"] = optimiser
    total = sum(seconds.values())
    at_roofline = real / roof
    unavoidable = at_roofline + seconds["attention"] + seconds["log-softmax"] + optimiser
    per_step = ", ".join(f"{k} {1000 * v / len(steps):.1f} ms ({v / total:.0%})" for k, v in seconds.items())
    return [f"  profile of the new step (CPU ms per step, self time; the profiler adds to the small ops): {per_step}",
            f"  matmuls at the roofline would take {1000 * at_roofline / len(steps):.1f} ms a step; with attention, "
            f"log-softmax and the optimiser as measured, and nothing else, the ratio would be "
            f"{at_roofline / unavoidable:.3f} (its ceiling in this layout); measured matmul rate "
            f"{real / seconds['matmul'] / roof:.2f} of the roofline"]


def summary(results: dict, what: str) -> list[str]:
    old = results["old"]
    lines = []
    for name, rs in results.items():
        speed = statistics.median(r[1] / o[1] for r, o in zip(rs, old))
        lines.append(f"  {what:14s} {name}: tokens/s {statistics.median(r[0] for r in rs):8.0f} (wall)  "
                     f"{statistics.median(r[1] for r in rs):8.0f} (CPU)  roofline ratio "
                     f"{statistics.median(r[2] for r in rs):.3f} (best {max(r[2] for r in rs):.3f})  x{speed:.2f} vs old (CPU time)")
    return lines


# ---------------------------------------------------------------- one online round


def bench_round(args, model_path) -> list[str]:
    import pandas as pd
    import pipeline.stages.train as train_stage
    from lean_env.verifier import Item, get_backend
    from pipeline import distributed
    from pipeline.config import backend_options
    from pipeline.data import load_theorems
    from pipeline.model import completion_logprobs, encode_prompts, load
    from pipeline.prompts import build_prompts, proofs_for
    from pipeline.sampling import hf
    from pipeline.stages.verify import verify_proofs

    cfg = compose(["+experiment=alpha_sweep", "+method=dpg_a05"])
    scfg, tcfg = cfg.sampler, cfg.train
    theorems = load_theorems(cfg.dataset.train_path, cfg.dataset.train_limit).iloc[: tcfg.prompts_per_round]
    base, tok = load(model_path, "cpu", "float32")
    texts = build_prompts(cfg, theorems, tok)
    prompt_ids = encode_prompts(tok, texts)
    backend = get_backend(cfg.verifier.backend, **backend_options(cfg.verifier))
    print(f"round: {len(texts)} theorems x {scfg.samples_per_prompt} samples, {tcfg.objective} "
          f"({cfg.train.get(tcfg.objective, {})}), batches of {tcfg.batch_size}", flush=True)
    layouts = {"old": dict(method="loop", buckets=False), "new": dict(method="auto", buckets=True)}
    parts = {name: {} for name in layouts}
    results = {name: [] for name in layouts}
    for rep in range(args.repeats):
        roof_s, _ = roofline_tokens_per_s(base, scfg.batch_size)
        for name, layout in layouts.items():
            policy = type(base)(base.config)
            policy.load_state_dict(base.state_dict())
            policy.eval()
            opt = torch.optim.AdamW(policy.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
            score = partial(completion_logprobs, buckets=layout["buckets"])
            times = {}
            with Clock() as c:
                recs = hf.sample(policy, tok, texts, n=scfg.samples_per_prompt, temperature=scfg.temperature,
                                 top_p=scfg.top_p, max_new_tokens=scfg.max_new_tokens, batch_size=scfg.batch_size,
                                 seed=rep, method=layout["method"])
            times["sample"] = c
            df = pd.DataFrame(recs)
            df["theorem_id"] = theorems["id"].to_numpy()[df["prompt_idx"]]
            df["statement"] = theorems["statement"].to_numpy()[df["prompt_idx"]]
            df["proof"] = proofs_for(cfg, df["statement"], [texts[i] for i in df["prompt_idx"]], df["completion"])
            with Clock() as c:
                verdicts = verify_proofs([Item(f"{r.theorem_id}#{r.sample_idx}", r.statement, r.proof)
                                          for r in df.itertuples()], backend, timeout=cfg.verifier.timeout,
                                         workers=cfg.verifier.workers, prompt_style=cfg.model.prompt_style)
            times["verify"] = c
            df["reward"] = [float(v.verdict == "pass") for v in verdicts]
            df["prompt_ids"] = [prompt_ids[i] for i in df["prompt_idx"]]
            with Clock() as c, torch.no_grad():
                ref, old = [], []
                for start in range(0, len(df), tcfg.batch_size):
                    chunk = df.iloc[start:start + tcfg.batch_size]
                    p, t = list(chunk["prompt_ids"]), [list(x) for x in chunk["token_ids"]]
                    lp_ref, mask = score(base, p, t)
                    lp_old = score(policy, p, t)[0]
                    for i in range(len(chunk)):
                        n = int(mask[i].sum())
                        ref.append(lp_ref[i, :n].tolist())
                        old.append(lp_old[i, :n].tolist())
            times["score"] = c
            df["ref_logp"], df["old_logp"] = ref, old
            df["log_z"] = np.log(np.maximum(df.groupby("theorem_id")["reward"].transform("mean"), 1e-9))
            groups = train_stage._group_slices(df)
            per_step = max(1, round(tcfg.batch_size * len(groups) / len(df)))
            real = 0
            policy.train()
            real_before = train_stage.completion_logprobs
            train_stage.completion_logprobs = score  # the layout under test, inside the stage's own step
            try:
                with Clock() as c:
                    for start in range(0, len(groups), per_step):
                        rows = np.concatenate([np.arange(*groups[g]) for g in range(start, min(len(groups), start + per_step))])
                        train_stage.optimise_step(policy, opt, df.iloc[rows], tcfg, distributed.Dist())
                        real += sum(len(p) + len(t) for p, t in zip(df.iloc[rows]["prompt_ids"], df.iloc[rows]["token_ids"]))
            finally:
                train_stage.completion_logprobs = real_before
            times["steps"] = c
            if rep == 0 and name == "old":
                print("  " + padding_report(df, groups, per_step), flush=True)
            rows_per_step = real / max(1, -(-len(groups) // per_step))
            roof_t, _ = roofline_tokens_per_s(base, int(rows_per_step), training=True)
            gen = int(df["num_tokens"].sum())
            total_wall = sum(t.wall for t in times.values())
            total_cpu = sum(t.cpu for t in times.values())
            for k, t in times.items():
                parts[name].setdefault(k, []).append(t.cpu)
            results[name].append((len(df) / total_wall, len(df) / total_cpu, gen / times["sample"].cpu / roof_s,
                                  real / times["steps"].cpu / roof_t))
            print(f"  repeat {rep} {name}: round {total_wall:.1f}s wall / {total_cpu:.1f}s CPU ("
                  + ", ".join(f"{k} {t.cpu:.2f}s" for k, t in times.items())
                  + f"); sampling ratio {gen / times['sample'].cpu / roof_s:.3f}, steps ratio "
                    f"{real / times['steps'].cpu / roof_t:.3f} ({real / times['steps'].cpu:.0f} real tokens/CPU-s); "
                    f"acceptance {df['reward'].mean():.3f}", flush=True)
    lines = []
    for name, rs in results.items():
        speed = statistics.median(r[1] / o[1] for r, o in zip(rs, results["old"]))
        lines.append(f"  online round   {name}: samples/s {statistics.median(r[0] for r in rs):7.1f} (wall) "
                     f"{statistics.median(r[1] for r in rs):7.1f} (CPU), per part CPU s "
                     + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in parts[name].items())
                     + f"; sampling ratio {statistics.median(r[2] for r in rs):.3f}, steps ratio "
                       f"{statistics.median(r[3] for r in rs):.3f}; x{speed:.2f} vs old (CPU time)")
    return lines


def padding_report(df, groups, per_step) -> str:
    """Tokens a round's optimiser steps compute in each layout, against the real ones."""
    from pipeline.model import length_buckets

    real = padded = bucketed = shared = 0
    for start in range(0, len(groups), per_step):
        rows = np.concatenate([np.arange(*groups[g]) for g in range(start, min(len(groups), start + per_step))])
        p = [len(x) for x in df.iloc[rows]["prompt_ids"]]
        c = [len(x) for x in df.iloc[rows]["token_ids"]]
        real += sum(p) + sum(c)
        padded += len(rows) * (max(p) + max(c))
        for b in length_buckets(p, c):
            bucketed += len(b) * (max(p[i] for i in b) + max(c[i] for i in b))
        prompts = {tuple(x) for x in df.iloc[rows]["prompt_ids"]}
        shared += len(prompts) * max(len(x) for x in prompts) + sum(
            len(b) * max(c[i] for i in b) for b in length_buckets([0] * len(c), c))
    return (f"steps' tokens: real {real}, prompts {sum(len(x) for x in df['prompt_ids']) / real:.0%} of them; "
            f"computed in one padded batch {padded} (padding {1 - real / padded:.0%}), in length buckets "
            f"{bucketed} (padding {1 - real / bucketed:.0%}), each prompt once + completions in buckets {shared} "
            f"({shared / real:.2f} of the real tokens)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "pipeline" / "assets" / "tiny_prop")
    ap.add_argument("--parts", default="pretrain,round")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pretrain-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--profile", action="store_true",
                    help="pretrain: profile the new step and print the ratio's ceiling (matmuls at the roofline, "
                         "attention, log-softmax and optimiser as measured)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = args.model
    print(f"{torch.get_num_threads()} threads; model {model_path}", flush=True)
    lines = []
    for part in args.parts.split(","):
        lines += {"pretrain": bench_pretrain, "round": bench_round}[part](args, model_path)
    print("summary (medians over repeats):")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
