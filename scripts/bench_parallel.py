"""Threads or processes: the same work in 1 process × 1 thread, 1 process × 2 threads, and
2 processes × 1 thread (each doing the work at once), for a pretraining workload and the sampler.

    python scripts/bench_parallel.py [--model DIR] [--repeats 2]

Pretraining: 15 steps of 16 random sequences of 70 tokens on a fresh tiny_prop (pretrain_loss,
AdamW). Sampling: the hf sampler's default path on 4 eval theorems × 256 samples (`--model`, by
default the newest pretrain artifact under outputs/store, else a random tiny_prop). Each line is
one process: wall and CPU seconds of its work. Configurations run one after the other.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def work(what: str, threads: int, model: str) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(threads)
    if what == "pretrain":
        from types import SimpleNamespace

        from pipeline.model import new_model
        from pipeline.stages.pretrain import collate, pretrain_loss

        class Tok:  # what new_model reads of a tokenizer
            bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

            def __len__(self):
                return 768

        rng = np.random.default_rng(0)
        batch = collate([list(rng.integers(3, 768, 36)) for _ in range(16)],
                        [list(rng.integers(3, 768, 34)) for _ in range(16)], np.arange(16), 0)
        torch.manual_seed(0)
        arch = SimpleNamespace(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4, max_length=320)

        model_ = new_model(arch, Tok()).train()
        opt = torch.optim.AdamW(model_.parameters(), lr=1e-3)

        def run():
            for _ in range(15):
                _, objective, _ = pretrain_loss(model_, *batch, 0.5)
                opt.zero_grad()
                objective.backward()
                torch.nn.utils.clip_grad_norm_(model_.parameters(), 1.0)
                opt.step()
            return 15 * 16 * 70
    else:
        from pipeline.data import load_theorems, prompts
        from pipeline.model import load
        from pipeline.sampling import hf

        model_, tok = load(model, "cpu", "float32")
        texts = prompts(load_theorems("pkg://lean_env/data/prop_eval.jsonl").iloc[:4], "{statement} := by")

        def run():
            return sum(r["num_tokens"] for r in hf.sample(model_, tok, texts, n=256, max_new_tokens=160, seed=0))
    run()  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    units = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"    {what} threads={threads}: {wall:.2f}s wall, {cpu:.2f}s CPU, {units / wall:.0f} tokens/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", nargs=2, metavar=("WHAT", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        work(args.worker[0], int(args.worker[1]), str(args.model))
        return
    model = args.model
    if model is None:
        found = sorted((ROOT / "outputs" / "store" / "pretrain").glob("*/model/config.json"),
                       key=lambda p: p.stat().st_mtime)
        if not found:
            raise SystemExit("no pretrain artifact under outputs/store: pass --model DIR")
        model = found[-1].parent

    def launch(what, threads):
        return subprocess.Popen([sys.executable, __file__, "--model", str(model), "--worker", what, str(threads)])

    for rep in range(args.repeats):
        for what in ("pretrain", "sample"):
            for label, procs, threads in (("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2),
                                          ("2 processes x 1 thread, at once", 2, 1)):
                print(f"repeat {rep} {what}: {label}", flush=True)
                for p in [launch(what, threads) for _ in range(procs)]:
                    p.wait()


if __name__ == "__main__":
    main()
