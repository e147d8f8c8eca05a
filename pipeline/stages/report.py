"""The `report` stage for one run: base versus trained pass@k, buckets and transitions, as tables and figures.

Writes `table.csv`, `report.md`, `passk.png` and `transitions.png` into its artifact folder and
copies them into the run folder, so a reader finds them next to the run's config and metrics.
"""

from __future__ import annotations

import json
import shutil
import sys

import pandas as pd

from pipeline.config import NO_TRAINING, method_label, power_sampling, sweep_axis
from pipeline.context import Context
from pipeline.reporting.metrics import BUCKETS
from pipeline.reporting.plots import plot_passk, plot_transitions
from pipeline.reporting.runs import BASE_METHOD
from pipeline.store import Artifact, write_json

VERSION = 2  # 2: its figures drawn by pipeline/reporting/plots.py, as the sweep report's are
FILES = ("table.csv", "report.md", "passk.png", "transitions.png")


def report_run(ctx: Context, base_eval: Artifact, trained_eval: Artifact, buckets: Artifact) -> Artifact:
    def make(art: Artifact) -> dict:
        art.work.mkdir(parents=True, exist_ok=True)
        base = json.loads(base_eval.file("summary.json").read_text())
        trained = json.loads(trained_eval.file("summary.json").read_text())
        transitions = json.loads(buckets.file("transitions.json").read_text())
        table = summary_table(base, trained, method_label(ctx.cfg))
        table.to_csv(art.work / "table.csv", index=False)
        (art.work / "report.md").write_text(markdown(table, transitions))
        ks = [int(c.split("@")[1]) for c in table.columns if c.startswith("pass@")]
        plot_passk(table.rename(columns={"model": "method"}).replace({"method": {"base": BASE_METHOD}}), ks,
                   art.work / "passk.png", method_label(ctx.cfg))
        plot_transitions([(method_label(ctx.cfg), transitions)], art.work / "transitions.png", method_label(ctx.cfg))
        return {}

    art = ctx.build("report", {"label": method_label(ctx.cfg)}, make,
                    inputs={"base": base_eval, "trained": trained_eval, "bucket": buckets}, version=VERSION)
    for name in FILES:
        shutil.copy2(art.file(name), ctx.run_dir / name)
    write_json(ctx.run_dir / "run_summary.json", run_summary(ctx, base_eval, trained_eval, buckets))
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
    trajectory = []
    if cfg.train.objective == NO_TRAINING:
        budget = {"rounds": 0, "steps": 0, "train_samples": 0}
    else:
        train_meta = ctx.stage("train").meta
        # the budget and the loss scale, equal across the methods of a sweep, and how often the clip bit
        budget = {"rounds": cfg.train.rounds, **{k: train_meta.get(k) for k in (
            "steps", "train_samples", "loss_agg", "clipped_step_frac", "grad_norm_mean")}}
        trajectory = train_meta.get("trajectory") or []  # the policy on the validation split, round by round
    if trained.get("token_cost") is not None:  # power sampling: its extra sampling cost is part of its budget
        budget["sampling_token_cost"] = trained["token_cost"]
    verdicts = {"base": base_eval.meta["verdicts_path"], "trained": trained_eval.meta["verdicts_path"]}
    axis = sweep_axis(cfg)  # the registry says which runs are points on the α axis
    return {
        "experiment": cfg.experiment, "method": method_label(cfg), "objective": cfg.train.objective,
        "note": cfg.get("report_note", ""),
        "seed": int(cfg.train.seed),  # runs of one method that differ by seed are reseedings of it
        "alpha": axis["value"] if axis and axis["name"] == "alpha" else None,
        "mode": "" if cfg.train.objective == NO_TRAINING else cfg.train.mode,
        # how the policy was sampled at evaluation: a power run is told apart by sampler.name == power
        "sampler": {"name": cfg.sampler.name, **({"gamma": float(cfg.sampler.gamma)} if power_sampling(cfg) else {})},
        "budget": budget,
        "trajectory": trajectory,
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


def run(ctx: Context) -> Artifact:
    buckets = ctx.stage("bucket")
    return report_run(ctx, ctx.stage("evaluate_base"),
                      ctx.stage("evaluate"), buckets)
