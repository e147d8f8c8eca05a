"""Train every method of a sweep on the same base model and print their budgets and loss scales side
by side: optimiser steps, policy samples, reference samples, loss scale, the fraction of steps
whose gradient the clip cut, the mean gradient norm, and (train split only) the acceptance of each
round's policy samples and the k3 KL to the base at the last step. Nothing is evaluated.

    python scripts/compare_objectives.py OUT_DIR [--methods dpg_a05,grpo] [HYDRA_OVERRIDE ...]

Each method is composed as `+experiment=alpha_sweep <overrides> +method=<m>` and its train stage run
through the artifact store under OUT_DIR (the base model, its samples and verdicts are built once
and shared). Default methods: the α-sweep's list in conf/experiment/alpha_sweep.yaml.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import register  # noqa: E402
from pipeline.context import build_context  # noqa: E402

COLUMNS = ["method", "steps", "policy samples", "reference samples", "loss scale", "clipped-step frac",
           "mean grad norm", "skipped steps", "acceptance per round", "k3 KL last step"]


def sweep_methods() -> list[str]:
    text = (ROOT / "conf" / "experiment" / "alpha_sweep.yaml").read_text()
    return re.search(r"\+method:\s*(\S+)", text).group(1).split(",")


def train_one(out: Path, method: str, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=alpha_sweep", f"output_dir={out}", "logger.backend=none",
                                           "progress=false", *overrides, f"+method={method}"])
    run_dir = out / "compare" / "_".join([method] + [re.sub(r"[^\w.=-]", "", o) for o in overrides])
    metrics = run_dir / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    ctx = build_context(cfg, run_dir)
    art = ctx.stage("train")
    ctx.log.finish()
    meta = art.meta
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    rounds = [r for r in rows if r.get("stage") == "train" and "round" in r and "acceptance" in r]
    steps = [r for r in rows if r.get("stage") == "train" and "step" in r and "kl_k3" in r]
    return {"method": method, "steps": meta["steps"], "policy samples": meta["train_samples"],
            "reference samples": meta["reference_samples"], "loss scale": meta["loss_agg"],
            "clipped-step frac": f"{meta['clipped_step_frac']:.3f}", "mean grad norm": f"{meta['grad_norm_mean']:.4g}",
            "skipped steps": meta["skipped_steps"],
            "acceptance per round": " ".join(f"{r['acceptance']:.3f}" for r in rounds) or "(reused)",
            "k3 KL last step": f"{steps[-1]['kl_k3']:.3f}" if steps else "(reused)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--methods", default="", help="comma-separated conf/method names (default: the α-sweep's)")
    args, overrides = ap.parse_known_args()
    register()
    out = args.out.resolve()
    methods = args.methods.split(",") if args.methods else sweep_methods()
    results = []
    for method in methods:
        results.append(train_one(out, method, overrides))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
