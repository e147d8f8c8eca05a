"""The `report` stage for one run: base versus trained pass@k, buckets and transitions, as tables and figures.

Writes `table.csv`, `report.md`, `passk.png` and `transitions.png` into its artifact folder and
copies them into the run folder, so a reader finds them next to the run's config and metrics.
"""

from __future__ import annotations

import json
import shutil
import sys

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.context import Context  # noqa: E402
from pipeline.reporting.metrics import BUCKETS  # noqa: E402
from pipeline.store import Artifact, write_json  # noqa: E402
from pipeline.config import NO_TRAINING, method_label, power_sampling, sweep_axis  # noqa: E402

VERSION = 1
FILES = ("table.csv", "report.md", "passk.png", "transitions.png")


def report_run(ctx: Context, base_eval: Artifact, trained_eval: Artifact, buckets: Artifact) -> Artifact:
    art = ctx.store.artifact("report", {"label": method_label(ctx.cfg)},
                             inputs={"base": base_eval, "trained": trained_eval, "bucket": buckets},
                             version=VERSION)
    reused = art.done
    if not reused:
        with ctx.store.lock(art):
            if not art.done:
                art.work.mkdir(parents=True, exist_ok=True)
                base = json.loads(base_eval.file("summary.json").read_text())
                trained = json.loads(trained_eval.file("summary.json").read_text())
                transitions = json.loads(buckets.file("transitions.json").read_text())
                table = summary_table(base, trained, method_label(ctx.cfg))
                table.to_csv(art.work / "table.csv", index=False)
                (art.work / "report.md").write_text(markdown(table, transitions))
                plot_passk(table, art.work / "passk.png")
                plot_transitions(transitions, art.work / "transitions.png")
                ctx.store.commit(art, {})
    for name in FILES:
        shutil.copy2(art.file(name), ctx.run_dir / name)
    write_json(ctx.run_dir / "run_summary.json", run_summary(ctx, base_eval, trained_eval, buckets))
    ctx.announce("report", art, reused=reused)
    print(f"report: {ctx.run_dir / 'report.md'}", file=sys.stderr)
    return art


def summary_table(base: dict, trained: dict, label: str) -> pd.DataFrame:
    ks = sorted(int(k.split("@")[1]) for k in base if k.startswith("pass@"))
    rows = [{"model": "base", **{f"pass@{k}": base[f"pass@{k}"] for k in ks}},
            {"model": label, **{f"pass@{k}": trained[f"pass@{k}"] for k in ks}}]
    return pd.DataFrame(rows)


def run_summary(ctx: Context, base_eval: Artifact, trained_eval: Artifact, buckets: Artifact) -> dict:
    """What the sweep report reads from each job's folder (pipeline/reporting/sweep.py)."""
    cfg = ctx.cfg
    base, trained = _read(base_eval, "summary.json"), _read(trained_eval, "summary.json")
    from pipeline.stages import train

    if cfg.train.objective == NO_TRAINING:
        budget = {"rounds": 0, "steps": 0, "train_samples": 0}
    else:
        train_meta = ctx.stage("train", train.run).meta
        # the budget and the loss scale, equal across the methods of a sweep, and how often the clip bit
        budget = {"rounds": cfg.train.rounds, **{k: train_meta.get(k) for k in (
            "steps", "train_samples", "loss_agg", "clipped_step_frac", "grad_norm_mean")}}
    if trained.get("token_cost") is not None:  # power sampling: its extra sampling cost is part of its budget
        budget["sampling_token_cost"] = trained["token_cost"]
    verdicts = {"base": base_eval.meta["verdicts_path"], "trained": trained_eval.meta["verdicts_path"]}
    axis = sweep_axis(cfg)  # the registry says which runs are points on the α axis
    return {
        "experiment": cfg.experiment, "method": method_label(cfg), "objective": cfg.train.objective,
        "alpha": axis["value"] if axis and axis["name"] == "alpha" else None,
        "mode": "" if cfg.train.objective == NO_TRAINING else cfg.train.mode,
        # how the policy was sampled at evaluation: a power run is told apart by sampler.name == power
        "sampler": {"name": cfg.sampler.name, **({"gamma": float(cfg.sampler.gamma)} if power_sampling(cfg) else {})},
        "budget": budget,
        "ks": sorted(int(k.split("@")[1]) for k in base if k.startswith("pass@")),
        "base": base, "trained": trained,
        "buckets": _read(buckets, "transitions.json"),
        "paths": {"base_verdicts": str(verdicts["base"]), "trained_verdicts": str(verdicts["trained"]),
                  "base_per_theorem": str(base_eval.file("per_theorem.parquet")),
                  "trained_per_theorem": str(trained_eval.file("per_theorem.parquet"))},
    }


def _read(art: Artifact, name: str) -> dict:
    return json.loads(art.file(name).read_text())



def markdown(table: pd.DataFrame, transitions: dict) -> str:
    head = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "".join("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |\n"
                   for row in table.itertuples(index=False))
    m = transitions["transitions"]
    trans = "| base \\ trained | " + " | ".join(BUCKETS) + " |\n|---|" + "---|" * 4 + "\n"
    trans += "".join(f"| {b} | " + " | ".join(str(x) for x in m[i]) + " |\n" for i, b in enumerate(BUCKETS))
    return (f"# Run report\n\n## pass@k\n\n{head}{body}\n## Bucket transitions (theorem counts)\n\n{trans}\n"
            f"Lost (solved by base, never by the run): {len(transitions['lost'])}; "
            f"gained: {len(transitions['gained'])}.\n")


def plot_passk(table: pd.DataFrame, path) -> None:
    ks = [int(c.split("@")[1]) for c in table.columns if c.startswith("pass@")]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for row in table.to_dict("records"):
        ax.plot(ks, [row[f"pass@{k}"] for k in ks], marker="o", label=row["model"])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k (unbiased)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_transitions(transitions: dict, path) -> None:
    m = np.array(transitions["transitions"])
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(4), BUCKETS)
    ax.set_yticks(range(4), BUCKETS)
    ax.set_xlabel("after training")
    ax.set_ylabel("base model")
    for i in range(4):
        for j in range(4):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_title("theorems by difficulty bucket")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(ctx: Context) -> Artifact:
    from pipeline.stages import bucket, evaluate

    buckets = ctx.stage("bucket", bucket.run)
    return report_run(ctx, ctx.stage("evaluate_base", evaluate.run_base),
                      ctx.stage("evaluate", evaluate.run), buckets)
