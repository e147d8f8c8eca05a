"""Choose the study's training budget on the TRAIN split: how far each method moves at each budget.

    python scripts/budget_probe.py OUT_DIR --methods dpg_a0,dpg_a1,grpo \
        --budget small "train.rounds=4" --budget large "train.rounds=12 train.lr=3e-4" \
        [--heldout 300] [--n 64] [--train-limit 512] [--threads 1] [-- EXTRA OVERRIDES]

Every (method, budget) is trained by the pipeline itself (`python -m pipeline 'stages=[bucket]'`, in
one artifact store under OUT_DIR, so a rerun reuses everything), with `dataset.train_limit` train
theorems to learn from, and then evaluated on HELD-OUT train theorems: the last `--heldout` rows of
the train split, which training never sees (it draws from the first `--train-limit`). The eval split
is never touched. Per run the probe reports, against the base model on the same held-out theorems:

- acceptance (pass@1) and coverage (pass@n) with the paired gain over the base and its interval;
- KL(π‖a) per proof, estimated on the policy's own samples as mean(log π(y) − log a(y)) (the base
  log-probs by teacher forcing on up to 16 samples per theorem);
- distinct accepted proofs per theorem (pipeline/reporting/diversity.py);
- the rare-only theorems (only a rare, compact proof style fits the length budget) the run still
  solves, of those the base solves: the benchmark's trap for mode-seeking.

Writes OUT_DIR/probe.csv and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from pipeline.data import load_theorems  # noqa: E402
from pipeline.model import completion_logprobs, encode_completions, encode_prompts, load, model_dir  # noqa: E402
from pipeline.reporting.diversity import per_theorem as diversity_per_theorem  # noqa: E402
from pipeline.reporting.stats import Bootstrap  # noqa: E402


def heldout_file(out: Path, train_path: str, count: int, train_limit: int) -> Path:
    """The last `count` rows of the train split, written as a dataset file (asserting no overlap
    with the rows training draws from)."""
    train = load_theorems(train_path)
    if count + train_limit > len(train):
        raise SystemExit(f"--heldout {count} + --train-limit {train_limit} exceed the {len(train)} train theorems")
    rows = train.iloc[len(train) - count:]
    path = out / "heldout_train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows.to_dict("records")))
    return path


def run_pipeline(out: Path, method: str, overrides: list[str], threads: int) -> tuple[dict, Path]:
    """Train and evaluate one (method, budget) through the pipeline: the artifact folders it printed
    (stage -> path) and its run folder."""
    run_dir = out / "runs" / method / f"{abs(hash(tuple(overrides))) % 10**8:08d}"
    cmd = [sys.executable, "-m", "pipeline", "stages=[train,evaluate_base,evaluate,bucket]", f"+method={method}", f"output_dir={out}",
           f"threads={threads}", "logger.backend=none", "progress=false", f"hydra.run.dir={run_dir}", *overrides]
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{method} {overrides} failed:\n{done.stderr[-3000:]}")
    paths = {}
    for line in done.stderr.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("evaluate_base", "evaluate", "train"):
            paths[parts[0]] = Path(parts[1])
    return paths, run_dir


def artifact_dir(store: Path, name: str) -> Path:
    """`stage/key` (as metas name their inputs) -> its folder."""
    return store / name


def kl_per_proof(policy_dir: Path, base_dir: Path, samples: pd.DataFrame, template: str, per_theorem: int = 16) -> float:
    """mean over policy samples of log π(y) − log a(y): an estimate of KL(π‖a) in nats per proof."""
    sub = samples.groupby("theorem_id", sort=False).head(per_theorem)
    base, tok = load(base_dir, "cpu", "float32")
    prompts = encode_prompts(tok, [template.format(statement=s) for s in sub["statement"]])
    comps = [list(t) for t in sub["token_ids"]]
    logp_base = []
    with torch.no_grad():
        for i in range(0, len(sub), 256):
            lp, mask = completion_logprobs(base, prompts[i:i + 256], comps[i:i + 256])
            logp_base += (lp * mask).sum(-1).tolist()
    return float(np.mean(sub["logp"].to_numpy(float) - np.array(logp_base)))


def rare_only_ids(theorems: pd.DataFrame, tokenizer, budget: int) -> set:
    """Theorems on which no common style fits `budget` tokens (EOS included) but some style does."""
    from lean_env.propgen import COMMON_STYLES, render_all

    out = set()
    for tid, st in zip(theorems["id"], theorems["statement"]):
        proofs = render_all(st)
        lens = dict(zip(proofs, (len(x) for x in encode_completions(tokenizer, [p[2:] for p in proofs.values()]))))
        common = min(n for (style, _), n in lens.items() if style in COMMON_STYLES)
        if common > budget >= min(lens.values()):
            out.add(tid)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--methods", default="dpg_a0,dpg_a1,grpo")
    ap.add_argument("--budget", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), required=True)
    ap.add_argument("--heldout", type=int, default=300)
    ap.add_argument("--train-limit", type=int, default=512)
    ap.add_argument("--n", type=int, default=64, help="samples per held-out theorem")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    train_path = "pkg://lean_env/data/prop_train.jsonl"
    held = heldout_file(out, train_path, args.heldout, args.train_limit)
    common = [f"dataset.train_limit={args.train_limit}", f"dataset.eval_path={held}", "dataset.eval_limit=0",
              f"eval.samples_per_prompt={args.n}", *args.extra]
    store = out / "store"
    rows, rare = [], None
    for budget, overrides in args.budget:
        for method in args.methods.split(","):
            paths, run_dir = run_pipeline(out, method, common + shlex.split(overrides), args.threads)
            cfg = OmegaConf.load(run_dir / "config.yaml")
            base_eval, trained_eval = paths["evaluate_base"], paths["evaluate"]
            base = pd.read_parquet(base_eval / "per_theorem.parquet").set_index("theorem_id")
            run = pd.read_parquet(trained_eval / "per_theorem.parquet").set_index("theorem_id")
            meta = json.loads((trained_eval / "meta.json").read_text())
            verdicts = pd.read_parquet(meta["verdicts_path"])
            verify_meta = json.loads((Path(meta["verdicts_path"]).parent / "meta.json").read_text())
            samples = pd.read_parquet(artifact_dir(store, verify_meta["spec"]["inputs"]["samples"]) / "samples.parquet")
            policy_dir = Path(model_dir(SimpleNamespace(path=artifact_dir(store, meta["model"]))))
            base_model = json.loads((base_eval / "meta.json").read_text())["model"]
            base_dir = Path(model_dir(SimpleNamespace(path=artifact_dir(store, base_model))))
            if rare is None:
                from transformers import AutoTokenizer

                rare = rare_only_ids(load_theorems(str(held)), AutoTokenizer.from_pretrained(base_dir),
                                     int(cfg.sampler.max_new_tokens))
            k = int(cfg.eval.samples_per_prompt)
            boot = Bootstrap(len(base))
            row = {"budget": budget, "method": method, "overrides": overrides}
            for col in ("pass@1", f"pass@{k}"):
                i = boot.interval(run.loc[base.index, col].to_numpy(float) - base[col].to_numpy(float))
                row.update({col: float(run[col].mean()), f"{col}_base": float(base[col].mean()),
                            f"{col}_gain": i.estimate, f"{col}_gain_lo": i.low, f"{col}_gain_hi": i.high})
            div = diversity_per_theorem(verdicts).set_index("theorem_id")
            row["distinct_proofs"] = float(div["distinct_proofs"].mean())
            base_solved_rare = [t for t in rare if base.loc[t, "c"] > 0]
            row["rare_only_base_solved"] = len(base_solved_rare)
            row["rare_only_kept"] = int(sum(run.loc[t, "c"] > 0 for t in base_solved_rare))
            row["kl_per_proof"] = kl_per_proof(policy_dir, base_dir, samples, cfg.dataset.prompt_template)
            rows.append(row)
            pd.DataFrame(rows).to_csv(out / "probe.csv", index=False)
            print(pd.DataFrame([row]).to_string(index=False, float_format="%.3f"), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format="%.3f"))
    print(f"wrote {out / 'probe.csv'}")


if __name__ == "__main__":
    main()
