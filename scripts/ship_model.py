"""Ship a pretrained embedded model: copy its folder into pipeline/assets/ with its provenance.

    python scripts/ship_model.py RUN_DIR [--name tiny_prop] [--command "…"] [--evaluation RUN_DIR]

RUN_DIR is the run folder of the `pretrain` run (it holds config.yaml and metrics.jsonl; the pretrain
artifact is the one its metrics name). Writes pipeline/assets/NAME/: the model and tokenizer as
save_pretrained wrote them, `config.yaml` (the resolved config of the run), `train_log.csv` (the
training curve from metrics.jsonl), `corpus_stats.json`, and `PROVENANCE.md` (the command, the commit,
the artifact key, the training figures and, with --evaluation, the base evaluation's figures of a
`stages=[bucket] train=none` run on the whole eval split).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def artifact_path(run_dir: Path, stage: str) -> Path:
    found = [e["path"] for e in events(run_dir) if e.get("event") and e.get("stage") == stage]
    if not found:
        raise SystemExit(f"{run_dir}/metrics.jsonl names no {stage} artifact")
    return Path(found[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--name", default="tiny_prop")
    ap.add_argument("--command", default="", help="the command that made RUN_DIR, as typed")
    ap.add_argument("--reproduce", default="", help="the command that reproduces it with today's configs")
    ap.add_argument("--commit", default="", help="the commit it ran at (default: HEAD)")
    ap.add_argument("--evaluation", type=Path, default=None, help="run folder of the base evaluation")
    args = ap.parse_args()
    art = artifact_path(args.run_dir, "pretrain")
    meta = json.loads((art / "meta.json").read_text())
    out = ROOT / "pipeline" / "assets" / args.name
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(art / "model", out)
    shutil.copy2(args.run_dir / "config.yaml", out / "config.yaml")
    shutil.copy2(art / "corpus_stats.json", out / "corpus_stats.json")
    log = pd.DataFrame([e for e in events(args.run_dir) if e.get("stage") == "pretrain" and "loss" in e])
    log = log[[c for c in ("step", "loss", "lr", "grad_norm", "tokens_per_s") if c in log]]
    log.to_csv(out / "train_log.csv", index=False)
    commit = args.commit or subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                           text=True).stdout.strip()
    stats = json.loads((art / "corpus_stats.json").read_text())
    lines = [
        f"# {args.name}: provenance",
        "",
        f"- Made by: `{args.command or '(not given)'}`",
        *([f"- Reproduce with: `{args.reproduce}`"] if args.reproduce else []),
        f"- At commit: `{commit}`",
        f"- Artifact: `pretrain/{meta['key']}` (the store key of that run; `meta.json` spec below)",
        f"- Parameters: {meta.get('parameters'):,}; steps: {meta.get('steps'):,}; final loss "
        f"{meta.get('final_loss'):.4f} nats/token; training {meta.get('train_seconds', 0) / 60:.1f} min "
        f"({meta.get('tokens_per_s', 0):,.0f} tokens/s), whole stage {meta.get('seconds', 0) / 60:.1f} min",
        f"- Corpus: {stats.get('theorems'):,} theorems ({stats.get('train_theorems'):,} train, "
        f"{stats.get('extra_theorems'):,} extra), {stats.get('examples_used'):,} examples, vocabulary "
        f"{stats.get('vocab_size')}",
        "- Files: the model and tokenizer as `save_pretrained` wrote them; `config.yaml` the run's resolved "
        "config; `train_log.csv` its training curve; `corpus_stats.json` its corpus.",
        "",
        "Spec the artifact key hashes:",
        "",
        "```json",
        json.dumps(meta.get("spec"), indent=2, ensure_ascii=False),
        "```",
    ]
    if args.evaluation:
        bucket = json.loads((artifact_path(args.evaluation, "bucket") / "transitions.json").read_text())
        summary = json.loads((artifact_path(args.evaluation, "evaluate[base]") / "summary.json").read_text())
        passk = ", ".join(f"{k} {summary[k]:.3f}" for k in sorted(
            (k for k in summary if k.startswith("pass@")), key=lambda k: int(k.split("@")[1])))
        counts = bucket["base_counts"]
        n = sum(counts.values())
        lines += ["", "## Evaluation (whole eval split)", "",
                  f"{summary['theorems']} theorems × {summary['samples_per_theorem']} samples: {passk}.",
                  "Buckets: " + ", ".join(f"{b} {c} ({c / n:.0%})" for b, c in counts.items()) + "."]
    (out / "PROVENANCE.md").write_text("\n".join(lines) + "\n")
    print(f"shipped {art / 'model'} -> {out}")


if __name__ == "__main__":
    sys.exit(main())
