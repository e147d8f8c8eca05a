"""Power sampling against plain and low-temperature sampling on the embedded benchmark, at equal tokens.

    python scripts/bench_power.py --model DIR --out OUT.json --runs plain:1,plain:0.5,power:2 \
        [--theorems 20] [--n 256] [--block-size 16] [--mcmc-steps 4] [--max-new-tokens 160]
        [--budget-from PLAIN.json] [--round 8] [--max-seconds 0] [--threads 1] [--same-count]

Each run samples the first `--theorems` eval theorems, verifies every sample with the prop checker
and records pass@k, the tokens generated and the time:

- `plain:T` draws `--n` samples per theorem at temperature T (`plain:1` is the base model;
  `plain:0.5` the low-temperature baseline for γ=2).
- `power:G` draws power samples (γ=G, proposal at 1/γ, `--block-size`, `--mcmc-steps`) in rounds of
  at most `--round` samples per theorem (the last one sized to what is left) until the tokens it
  generated (proposals, rejected ones included) are as near as it gets to the token budget: what `plain:1` generated for the same theorems (read from the JSON of an
  earlier `--budget-from` run; else --n × --max-new-tokens per theorem). So `m` power samples per
  theorem cost what `--n` plain ones did; `--max-seconds` stops it early (and says so).

With `--same-count` a power run instead draws `--n` samples per theorem whatever they cost: its
pass@n beside plain sampling's, at `token_cost` times the tokens.

pass@k is the unbiased estimate, averaged over theorems, for every power of 2 up to the samples per
theorem (so the plain runs also have pass@m, a same-count comparison with m power samples).

    python scripts/bench_power.py --table OUT1.json [OUT2.json …]

prints the results of earlier runs as one markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lean_env.verifier import Item, get_backend, verify_items  # noqa: E402
from pipeline.sampling import hf as sampler, power as power_sampler  # noqa: E402
from pipeline.data import load_theorems, prompts  # noqa: E402
from pipeline.reporting.metrics import pass_at_k  # noqa: E402
from pipeline.model import load  # noqa: E402
from pipeline.stages.sample import shard_seed  # noqa: E402

EVAL_PATH = "pkg://lean_env/data/prop_eval.jsonl"
TEMPLATE, PROOF_PREFIX = "{statement} := by", "by"


def verify(records, theorems, backend) -> np.ndarray:
    """Passes per theorem."""
    stmts = theorems["statement"].tolist()
    items = [Item(id=i, statement=stmts[r["prompt_idx"]], proof=PROOF_PREFIX + r["completion"])
             for i, r in enumerate(records)]
    passed = np.zeros(len(theorems), dtype=int)
    for r, res in zip(records, verify_items(items, backend, timeout=10.0, workers=0)):
        passed[r["prompt_idx"]] += res.verdict == "pass"
    return passed


def run_one(spec: str, model, tok, theorems, args, budget: int | None) -> dict:
    kind, value = spec.split(":")
    value = float(value)
    texts = prompts(theorems, TEMPLATE)
    backend = get_backend("prop")
    started = time.time()
    records, rounds, stopped = [], 0, ""
    with backend:
        if kind == "plain":
            records = sampler.sample(model, tok, texts, n=args.n, temperature=value, max_new_tokens=args.max_new_tokens,
                                     batch_size=args.batch_size, seed=args.seed)
            generated = sum(r["num_tokens"] for r in records)
        elif kind == "power":
            generated = 0
            # budget None (--same-count): --n samples per theorem, whatever they cost
            def more() -> bool:
                return len(records) < args.n * len(texts) if budget is None else generated < budget

            while more():
                n_round = args.round if budget is not None else min(args.round, args.n - len(records) // len(texts))
                if records and budget is not None:  # size the last round to the budget left, at the cost per sample so far
                    per_round_sample = generated / (len(records) / len(texts))
                    n_round = max(1, min(args.round, round((budget - generated) / per_round_sample)))
                    if (budget - generated) < 0.5 * per_round_sample:
                        break  # nearer to the budget without another sample per theorem
                new = power_sampler.sample(model, tok, texts, n=n_round, gamma=value, block_size=args.block_size,
                                           mcmc_steps=args.mcmc_steps, max_new_tokens=args.max_new_tokens,
                                           batch_size=args.batch_size, seed=shard_seed(args.seed, rounds))
                done = len(records) // len(texts)
                for r in new:
                    r["sample_idx"] += done
                records += new
                generated += sum(r["generated_tokens"] for r in new)
                rounds += 1
                if args.max_seconds and time.time() - started > args.max_seconds and more():
                    stopped = f"stopped by --max-seconds at {generated} tokens, {len(records) // len(texts)} samples"
                    break
        else:
            raise SystemExit(f"unknown run {spec!r}: expected plain:T or power:G")
        sampling_seconds = time.time() - started
        passed = verify(records, theorems, backend)
    n = len(records) // len(theorems)
    out = {"run": spec, "kind": kind, "value": value, "samples_per_theorem": n, "generated_tokens": generated,
           "kept_tokens": sum(r["num_tokens"] for r in records), "passed": passed.tolist(),
           "sampling_seconds": sampling_seconds, "seconds": time.time() - started, "note": stopped}
    if kind == "power":
        proposals = sum(r["mh_proposals"] for r in records)
        out.update(rounds=rounds, acceptance_rate=sum(r["mh_accepted"] for r in records) / max(1, proposals),
                   token_cost=generated / max(1, out["kept_tokens"]), budget=budget)
    out["pass"] = {str(k): float(np.mean([pass_at_k(n, int(c), k) for c in passed]))
                   for k in sorted({2 ** i for i in range(n.bit_length())} | {n})}
    return out


def token_budget(results: list[dict], args, theorems: int) -> int:
    """Tokens generated by plain:1: from this process's results, else from --budget-from (waiting for
    a parallel process to write it), else --n × --max-new-tokens per theorem."""
    def base(rs):
        return next((r["generated_tokens"] for r in rs if r["run"] in ("plain:1", "plain:1.0")), None)

    if base(results) is not None:
        return base(results)
    if args.budget_from:
        path = Path(args.budget_from)
        while not path.exists() or base(json.loads(path.read_text())["results"]) is None:
            time.sleep(5)
        return base(json.loads(path.read_text())["results"])
    return args.n * args.max_new_tokens * theorems


def table(paths: list[str]) -> str:
    results = [r for p in paths for r in json.loads(Path(p).read_text())["results"]]
    base = next((r for r in results if r["run"] in ("plain:1", "plain:1.0")), None)
    ms = sorted({r["samples_per_theorem"] for r in results if r["kind"] == "power"})
    ks = sorted({1, *ms, max(r["samples_per_theorem"] for r in results)})
    head = ["run", "samples/theorem", "tokens generated", "× tokens of plain:1", "tokens per kept token",
            "MH acceptance", *[f"pass@{k}" for k in ks], "seconds (sampling+verify)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ratio = r["generated_tokens"] / base["generated_tokens"] if base else float("nan")
        cells = [r["run"], str(r["samples_per_theorem"]), str(r["generated_tokens"]), f"{ratio:.2f}",
                 f"{r['generated_tokens'] / max(1, r['kept_tokens']):.2f}",
                 f"{r['acceptance_rate']:.2f}" if "acceptance_rate" in r else "",
                 *[f"{r['pass'][str(k)]:.3f}" if str(k) in r["pass"] else "" for k in ks],
                 f"{r['seconds']:.0f}" + (f" ({r['note']})" if r.get("note") else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--table"]:
        print(table(sys.argv[2:]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--theorems", type=int, default=20)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--round", type=int, default=8)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--mcmc-steps", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-from", default="")
    ap.add_argument("--max-seconds", type=float, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--same-count", action="store_true",
                    help="power runs draw --n samples per theorem (not the plain run's token budget)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load(args.model, "cpu", "float32")
    theorems = load_theorems(EVAL_PATH, args.theorems)
    results = []
    for spec in args.runs.split(","):
        budget = token_budget(results, args, len(theorems)) if spec.startswith("power") and not args.same_count else None
        res = run_one(spec, model, tok, theorems, args, budget)
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "passed"}), flush=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
