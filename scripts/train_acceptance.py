"""Train-split acceptance of every policy of a finished sweep, against its base model.

    python scripts/train_acceptance.py SWEEP_DIR [--theorems 128] [--n 8] [--threads 0]

Each job's trained policy and the shared base model sample `--n` proofs of the same first
`--theorems` train-split theorems of the job's dataset (the theorems training draws from), with the
same seed; the verifier of the job's config decides them. Prints, per method, the acceptance rate,
its standard error over theorems and the difference from the base, and writes
`SWEEP_DIR/report/train_acceptance.csv`. Nothing here touches the eval split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lean_env.verifier import Item, get_backend, verify_items  # noqa: E402
from pipeline.sampling import hf as sampler  # noqa: E402
from pipeline.config import backend_options  # noqa: E402
from pipeline.data import load_theorems, prompts  # noqa: E402
from pipeline.model import load, model_dir  # noqa: E402
from pipeline.reporting.runs import gather_runs  # noqa: E402
from pipeline.stages.verify import per_theorem  # noqa: E402


def policy_dir(per_theorem_path: str) -> Path:
    """The model folder an evaluation artifact was computed from (its meta names the artifact)."""
    meta = json.loads((Path(per_theorem_path).parent / "meta.json").read_text())
    store = Path(per_theorem_path).parents[2]
    return Path(model_dir(SimpleNamespace(path=store / meta["model"])))


def acceptance(model_path: Path, theorems: pd.DataFrame, cfg, n: int) -> pd.DataFrame:
    """Per theorem: n decided samples and c accepted ones, counted as the verify stage counts them."""
    model, tokenizer = load(model_path)
    texts = prompts(theorems, cfg.dataset.prompt_template)
    records = sampler.sample(model, tokenizer, texts, n=n, max_new_tokens=cfg.sampler.max_new_tokens,
                             batch_size=cfg.sampler.batch_size, seed=cfg.sampler.seed, progress=True,
                             desc=model_path.parent.name)
    items = [Item(i, theorems["statement"].iloc[r["prompt_idx"]], cfg.dataset.proof_prefix + r["completion"])
             for i, r in enumerate(records)]
    with get_backend(cfg.verifier.backend, **backend_options(cfg.verifier)) as backend:
        results = verify_items(items, backend, timeout=cfg.verifier.timeout)
    verdicts = pd.DataFrame({"theorem_id": [theorems["id"].iloc[r["prompt_idx"]] for r in records],
                             "verdict": [r.verdict for r in results]})
    return per_theorem(verdicts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--theorems", type=int, default=128)
    ap.add_argument("--n", type=int, default=8, help="samples per theorem")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs, _ = gather_runs(args.sweep_dir)
    if not runs:
        raise SystemExit(f"{args.sweep_dir}: no finished job")
    cfg = OmegaConf.load(runs[0].folder / "config.yaml")
    if cfg.model.prompt_style != "prop":
        raise SystemExit(f"model.prompt_style={cfg.model.prompt_style}: this script prompts like the embedded "
                         "benchmark (prompt_style=prop) only")
    limit = min(args.theorems, cfg.dataset.train_limit or args.theorems)
    theorems = load_theorems(cfg.dataset.train_path, limit)
    models = [("base", policy_dir(runs[0].summary["paths"]["base_per_theorem"]))]
    models += [(r.method, policy_dir(r.summary["paths"]["trained_per_theorem"])) for r in runs]
    rows = []
    for method, path in models:
        counts = acceptance(path, theorems, cfg, args.n)
        rate = (counts["c"] / counts["n"].clip(lower=1)).to_numpy(float)  # a verifier `error` is no sample
        rows.append({"method": method, "acceptance": rate.mean(), "se": rate.std(ddof=1) / np.sqrt(len(rate)),
                     "theorems_solved": int((counts["c"] > 0).sum()), "errors": int(counts["errors"].sum()),
                     "model": str(path)})
    table = pd.DataFrame(rows)
    table["vs_base"] = table["acceptance"] - table.loc[0, "acceptance"]
    out = args.sweep_dir / "report" / "train_acceptance.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"train-split acceptance: first {len(theorems)} train theorems × {args.n} samples, seed {cfg.sampler.seed}")
    print(table[["method", "acceptance", "se", "vs_base", "theorems_solved", "errors"]].to_string(
        index=False, float_format="%.3f"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
