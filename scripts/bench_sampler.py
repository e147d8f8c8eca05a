"""Throughput of the hf sampler's decode paths (samples/s, tokens/s, ratio to the matmul roofline).

    python scripts/bench_sampler.py [--model DIR] [--prompts 8] [--n 256] [--batch-size 256]
                                    [--max-new-tokens N] [--methods loop,fast] [--repeats 3] [--threads 1]

`--model` is a saved model folder (e.g. `outputs/store/pretrain/<key>/model`); by default the shipped
base model, `pipeline/assets/tiny_prop`.
Prompts are the first `--prompts` eval-split statements (0: the whole split, i.e. the base
evaluation). Methods (pipeline/sampling/hf.py): `loop` is the transformers decode loop (the path
every model can take), `fast` the lean Llama decoder, `generate` model.generate.

Each repeat runs every method once, interleaved (the machine may be shared), and measures the matmul
roofline of the model's own shapes at the decode batch in the same process right before
(pipeline/roofline.py): `ratio` is a run's tokens per CPU-second over the roofline's (both in this
process's CPU time, which a busy machine does not inflate; samples/s and tokens/s are wall clock).
The summary gives the median and best of each method, and the median of the per-repeat speed-ups
over the first method (wall clock and CPU time).
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
SHIPPED_MODEL = ROOT / "pipeline" / "assets" / "tiny_prop"

from pipeline.sampling import hf as sampler  # noqa: E402
from pipeline.config import SamplerConfig  # noqa: E402
from pipeline.data import load_theorems, prompts  # noqa: E402
from pipeline.model import load  # noqa: E402
from pipeline.roofline import flops_per_token, roofline_tokens_per_s  # noqa: E402


def pass_rates(recs, theorems, texts):
    """Each theorem's fraction of samples the prop checker accepts."""
    import numpy as np

    from lean_env.verifier import Item, get_backend
    from pipeline.prompts import completion_to_proof

    backend = get_backend("prop")
    stmts = theorems["statement"].tolist()
    items = [Item(f"{r['prompt_idx']}#{r['sample_idx']}", stmts[r["prompt_idx"]],
                  completion_to_proof("prop", stmts[r["prompt_idx"]], texts[r["prompt_idx"]], r["completion"], "by"))
             for r in recs]
    from pipeline.stages.verify import verify_proofs

    passed = np.zeros(len(texts))
    counts = np.zeros(len(texts))
    for r, res in zip(recs, verify_proofs(items, backend, prompt_style="prop")):
        counts[r["prompt_idx"]] += 1
        passed[r["prompt_idx"]] += res.verdict == "pass"
    return passed / np.maximum(counts, 1)


def main() -> None:
    conf_sampler = OmegaConf.merge(OmegaConf.structured(SamplerConfig), OmegaConf.load(ROOT / "conf/sampler/hf.yaml"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    ap.add_argument("--prompts", type=int, default=8, help="eval statements (0: all of them)")
    ap.add_argument("--n", type=int, default=256, help="samples per prompt")
    ap.add_argument("--batch-size", type=int, default=conf_sampler.batch_size)
    ap.add_argument("--max-new-tokens", type=int, default=conf_sampler.max_new_tokens)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--methods", default="loop,fast")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--verify", action="store_true",
                    help="check every sample with the prop checker and print each method's pass@1 ± its standard "
                         "error over theorems, and the paired difference to the first method")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    theorems = load_theorems("pkg://lean_env/data/prop_eval.jsonl")
    if args.prompts:
        theorems = theorems.iloc[: args.prompts]
    texts = prompts(theorems, "{statement} := by")
    model, tok = load(args.model, "cpu", "float32")
    what = f"model {args.model}"
    params = sum(p.numel() for p in model.parameters())
    rows = min(args.batch_size, args.n * len(texts))
    print(f"{what}; {params / 1e6:.2f}M parameters, {flops_per_token(model) / 1e6:.2f} MFLOP/token in matmuls; "
          f"{torch.get_num_threads()} threads; {len(texts)} prompts x {args.n} samples, batch {args.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}; auto picks {sampler.resolve_method(model)!r}", flush=True)

    methods = [m for m in args.methods.split(",") if m]
    for m in methods:  # warm-up
        sampler.sample(model, tok, texts[:1], n=8, max_new_tokens=8, batch_size=8, method=m)
    results: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in methods}
    rates: dict[str, list] = {m: [] for m in methods}
    for rep in range(args.repeats):
        roof, rate = roofline_tokens_per_s(model, rows)
        print(f"repeat {rep}: matmul roofline at {rows} rows {rate / 1e9:.1f} GFLOP/s = {roof:,.0f} tokens/s", flush=True)
        for m in methods:
            started, cpu_started = time.perf_counter(), time.process_time()
            recs = sampler.sample(model, tok, texts, n=args.n, temperature=args.temperature, top_p=args.top_p,
                                  max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=rep,
                                  method=m)
            dt, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            tokens = sum(r["num_tokens"] for r in recs)
            finished = sum(r["finished"] for r in recs) / len(recs)
            results[m].append((len(recs) / dt, tokens / dt, tokens / cpu / roof, len(recs) / cpu))
            if args.verify:
                rates[m].append(pass_rates(recs, theorems, texts))
            print(f"  {m:9s} {len(recs) / dt:8.1f} samples/s {tokens / dt:9.0f} tokens/s  ratio {tokens / cpu / roof:.3f}"
                  f"  ({dt:.1f}s wall, {cpu:.1f}s CPU, {tokens / len(recs):.1f} tokens/sample, finished {finished:.2f})",
                  flush=True)
    print("summary (median / best):")
    first = methods[0]
    for m, rs in results.items():
        sps, tps, ratio = ([r[i] for r in rs] for i in range(3))
        speedup = statistics.median(r[0] / f[0] for r, f in zip(rs, results[first]))
        speedup_cpu = statistics.median(r[3] / f[3] for r, f in zip(rs, results[first]))
        print(f"  {m:9s} samples/s {statistics.median(sps):8.1f} / {max(sps):8.1f}   "
              f"tokens/s {statistics.median(tps):9.0f} / {max(tps):9.0f}   roofline ratio {statistics.median(ratio):.3f} / "
              f"{max(ratio):.3f}   x{speedup:.2f} vs {first} (CPU time x{speedup_cpu:.2f})")
    if args.verify:  # per theorem pass rates, averaged over the repeats
        import numpy as np

        per = {m: np.mean(r, axis=0) for m, r in rates.items()}
        print(f"pass@1 over {len(texts)} theorems (prop checker), mean ± standard error over theorems:")
        for m, r in per.items():
            diff = r - per[first]
            print(f"  {m:9s} pass@1 {r.mean():.4f} ± {r.std(ddof=1) / np.sqrt(len(r)):.4f}   "
                  f"minus {first}: {diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(len(r)):.4f} (paired)")


if __name__ == "__main__":
    main()
