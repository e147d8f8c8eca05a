"""Throughput of the hf sampler (samples/s and tokens/s) for tiny_prop on this machine.

    python scripts/bench_sampler.py [--model DIR] [--prompts 8] [--n 256] [--batch-size 256]
                                    [--max-new-tokens N] [--methods loop,generate] [--repeats 3] [--threads N]

`--model` is a saved model folder (e.g. `outputs/store/pretrain/<key>/model`); by default the newest
pretrain artifact under `outputs/store` is used, and without one a randomly initialised model of the
`conf/model/tiny_prop.yaml` size (its samples rarely end early, so every sample runs to the budget).
Prompts are eval-split statements. Each method runs `--repeats` times, interleaved (the machine may
be shared); the median and best of each are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.sampling import hf as sampler  # noqa: E402
from pipeline.config import ModelConfig, SamplerConfig  # noqa: E402
from pipeline.data import load_theorems, prompts  # noqa: E402
from pipeline.model import load, new_model, train_tokenizer  # noqa: E402


def newest_model() -> Path | None:
    found = sorted((ROOT / "outputs" / "store" / "pretrain").glob("*/model/config.json"),
                   key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def main() -> None:
    conf_model = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(ROOT / "conf/model/tiny_prop.yaml"))
    conf_sampler = OmegaConf.merge(OmegaConf.structured(SamplerConfig), OmegaConf.load(ROOT / "conf/sampler/hf.yaml"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=256, help="samples per prompt")
    ap.add_argument("--batch-size", type=int, default=conf_sampler.batch_size)
    ap.add_argument("--max-new-tokens", type=int, default=conf_sampler.max_new_tokens)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--methods", default="loop,generate")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    path = args.model or newest_model()
    theorems = load_theorems("pkg://lean_env/data/prop_eval.jsonl").iloc[: args.prompts]
    texts = prompts(theorems, "{statement} := by")
    if path is not None:
        model, tok = load(path, "cpu", "float32")
        what = f"model {path}"
    else:
        train = load_theorems("pkg://lean_env/data/prop_train.jsonl")
        tok = train_tokenizer(prompts(train, "{statement} := by"), conf_model.vocab_size)
        torch.manual_seed(0)
        model = new_model(conf_model, tok).eval()
        what = "randomly initialised tiny_prop (no pretrain artifact found)"
    params = sum(p.numel() for p in model.parameters())
    print(f"{what}; {params / 1e6:.2f}M parameters; {torch.get_num_threads()} threads; {len(texts)} prompts x "
          f"{args.n} samples, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}", flush=True)

    methods = [m for m in args.methods.split(",") if m]
    sampler.sample(model, tok, texts[:1], n=8, max_new_tokens=8, batch_size=8, method=methods[0])  # warm-up
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in methods}
    for rep in range(args.repeats):
        for m in methods:
            started = time.perf_counter()
            recs = sampler.sample(model, tok, texts, n=args.n, temperature=args.temperature, top_p=args.top_p,
                                  max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=rep,
                                  method=m)
            dt = time.perf_counter() - started
            tokens = sum(r["num_tokens"] for r in recs)
            finished = sum(r["finished"] for r in recs) / len(recs)
            results[m].append((len(recs) / dt, tokens / dt, finished))
            print(f"  {m:9s} run {rep}: {len(recs) / dt:8.1f} samples/s {tokens / dt:9.0f} tokens/s "
                  f"({dt:.1f}s, {tokens / len(recs):.1f} tokens/sample, finished {finished:.2f})", flush=True)
    print("summary (median / best):")
    for m, rs in results.items():
        sps, tps = [r[0] for r in rs], [r[1] for r in rs]
        print(f"  {m:9s} samples/s {statistics.median(sps):8.1f} / {max(sps):8.1f}   "
              f"tokens/s {statistics.median(tps):9.0f} / {max(tps):9.0f}")


if __name__ == "__main__":
    main()
