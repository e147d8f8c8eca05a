"""The sweep report: every run of a multirun side by side, as tables, a Pareto plot and W&B panels.

`report_sweep(sweep_dir)` reads `<sweep_dir>/*/run_summary.json` (one per finished job; a job folder
without one is skipped with a warning, so a failed or unfinished job never kills the report), adds
the diversity of each run's accepted proofs, and writes into `<sweep_dir>/report/`:
`table.csv`, `table.md`, `pareto.png`, `passk.png`, `transitions.png`, `diversity.csv`,
`diversity_per_theorem.csv`, `diversity_correlations.csv` and a `README.md` saying what each is.

Power-sampling runs (`+method=power_g2` …: no training, the base model evaluated on samples from p^γ,
pipeline/sampling/power.py) are their own points, one per γ, labelled with their extra sampling cost
("power γ=2 (×5.1 tokens)": proposal tokens generated per token of the kept samples).

Runs alone over any finished or partly finished sweep folder:

    python -m pipeline.reporting SWEEP_DIR [--wandb-mode offline|online|disabled]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pipeline.reporting import diversity
from pipeline.reporting.claims import check_claims, claims_table
from pipeline.reporting.compare import (gains, group_methods, load_panel, merged_diversity, merged_run, pairs,
                                        seed_pairs, seed_table)
from pipeline.reporting.plots import write_figures
from pipeline.reporting.stats import N_RESAMPLES, Bootstrap
from pipeline.reporting.runs import (BASE_METHOD, REPORT_DIR, SUMMARY_FILE, base_summary, common_ks, gather_runs,
                                     resolve_path, warn)
from pipeline.reporting.tables import add_standard_errors, build_table, write_diversity, write_tables
from pipeline.reporting.wandb_log import log_to_wandb, resolve_wandb_mode

VERDICT_COLUMNS = ["theorem_id", "statement", "proof", "verdict"]


def verdicts_diversity(path: Path | None, what: str) -> tuple[pd.DataFrame | None, dict]:
    """Per-theorem diversity and its averages for one verdicts file; empty (and a warning) if unreadable."""
    if path is None:
        warn(f"{what}: verdicts file not found; its diversity is left empty")
        return None, {}
    try:
        verdicts = pd.read_parquet(path, columns=VERDICT_COLUMNS)
    except Exception as e:  # a truncated or foreign file must not stop the report
        warn(f"{what}: cannot read {path} ({e}); its diversity is left empty")
        return None, {}
    return diversity.diversity(verdicts)

README = """# Sweep report

Made by `python -m pipeline.reporting {sweep_dir}` (also run by the Hydra callback at the end of
the multirun). Runs: {runs}; every value below comes from the jobs' `run_summary.json`.

| file | what it is |
|---|---|
| `table.csv` | one row per method plus the base model: objective, α, pass@1, pass@{max_k}, every pass@k, γ and `token_cost` of power-sampling runs (sampling tokens per kept token; plain sampling 1), bucket counts after training (base row: before), `hard_to_unsolvable` and `medium_to_easy` theorem counts, `lost` (solved by the base, never by the run) and `gained`, diversity averages, budget |
| `table.md` | the same, as five narrow markdown tables (one of them the paired gains over the base) |
| `pareto.png` | pass@1 (precision) against pass@{max_k} (coverage); α-DPG points joined in α order and coloured by α, power-sampling points (teal hexagons, labelled with γ and their token cost) joined in γ order, baselines with their own markers, the base model as a black star, the Pareto frontier as a dashed step line |
| `passk.png` | pass@k against k (log scale), one line per run and the base |
| `transitions.png` | per run, the 4×4 matrix of theorem counts: base bucket (rows) → bucket after training (columns) |
| `diversity.csv` | per run and base: averages over all theorems (unsolved count as 0) and over solved theorems only (`*_solved`) of distinct proofs (up to whitespace and hypothesis names), distinct tactic sequences, tactic entropy (bits), distinct premises |
| `diversity_per_theorem.csv` | the same per theorem; `solved = False` marks theorems with no accepted proof (all zeros) |
| `diversity_correlations.csv` | across the runs (base excluded): Pearson and Spearman correlation of each diversity average with pass@1 and pass@{max_k}; NaN with fewer than 3 runs or a constant column |
| `wandb/` | the W&B run (job_type `report`) when W&B was not disabled; `wandb sync` uploads an offline one |
{skipped}"""


def write_readme(report_dir: Path, sweep_dir: Path, runs: int, max_k: int, skipped: list[str]) -> Path:
    path = report_dir / "README.md"
    path.write_text(README.format(
        sweep_dir=sweep_dir, runs=runs, max_k=max_k,
        skipped=("\nSkipped job folders:\n\n" + "".join(f"- {s}\n" for s in skipped)) if skipped else ""))
    return path


def paired_statistics(panel, methods, per_method, n_resamples: int = N_RESAMPLES) -> dict[str, pd.DataFrame]:
    """Gains over the base, every pair of methods, the seed tables and the claims, all with
    intervals from one set of theorem resamples (empty without the per-theorem tables)."""
    if panel is None or len(panel.theorems) < 2:
        return {}
    boot = Bootstrap(len(panel.theorems), n_resamples)
    diversity_tables = {m.label: t.set_index("theorem_id") for m, (t, _) in zip(methods, per_method) if t is not None}
    return {"gains": gains(panel, methods, boot), "pairs": pairs(panel, methods, boot),
            "seeds": seed_table(panel, methods, boot), "seed_pairs": seed_pairs(panel, methods, boot),
            "claims": claims_table(check_claims(panel, methods, boot, diversity_tables)),
            "rule": pd.DataFrame([{"buckets": panel.rule.name}])}


def report_sweep(sweep_dir, *, wandb_mode: str | None = None, project: str = "dmvr",
                 group: str | None = None) -> dict[str, Path]:
    """Report over every finished job of a sweep folder; returns the paths written (see README)."""
    sweep_dir = Path(sweep_dir).resolve()
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep_report: no sweep folder at {sweep_dir}")
    runs, skipped = gather_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"sweep_report: no {SUMMARY_FILE} in any job folder of {sweep_dir}")
    report_dir = sweep_dir / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    ks = common_ks(runs)
    experiment = str(runs[0].summary.get("experiment") or sweep_dir.name)
    base = base_summary(runs)

    methods = group_methods(runs)  # reseeded runs of one method become one row
    rows = [merged_run(m) for m in methods]
    columns = ["pass@1", f"pass@{ks[-1]}"]

    base_path = resolve_path(runs[0].summary.get("paths", {}).get("base_verdicts"), runs[0].folder)
    base_theorems, base_div = verdicts_diversity(base_path, BASE_METHOD)
    per_run = {r.job: verdicts_diversity(resolve_path(r.summary.get("paths", {}).get("trained_verdicts"), r.folder),
                                         r.method) for r in runs}
    per_method = [merged_diversity(m, per_run) for m in methods]

    panel = load_panel(runs, columns)
    stats = paired_statistics(panel, methods, per_method)
    stats["notes"] = sorted({str(r.summary["note"]) for r in runs if r.summary.get("note")})
    table = build_table(rows, ks, base, base_div, [d for _, d in per_method])
    table = add_standard_errors(table, panel, methods, columns, stats.get("gains"))

    outputs = {"report_dir": report_dir,
               **write_tables(report_dir, table, ks, experiment, skipped, stats),
               **write_diversity(report_dir, table, rows, base_theorems, base_div, per_method)}
    figures = write_figures(report_dir, table, rows, ks, experiment, base)
    outputs.update({f"{name}_png": path for name, path in figures.items()})
    outputs["readme"] = write_readme(report_dir, sweep_dir, len(runs), ks[-1], skipped)

    mode = resolve_wandb_mode(wandb_mode)
    if mode != "disabled":
        outputs["wandb_run_dir"] = log_to_wandb(
            table, pd.read_csv(outputs["diversity_correlations_csv"]), figures, ks[-1], mode=mode,
            project=project, group=group or experiment, report_dir=report_dir, sweep_dir=sweep_dir)

    print(f"sweep report: {report_dir}")
    print(f"pareto plot:  {figures['pareto']}")
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.reporting",
                                     description="Report over a finished (or partly finished) sweep folder.")
    parser.add_argument("sweep_dir")
    parser.add_argument("--wandb-mode", choices=["offline", "online", "disabled"], default=None,
                        help="default: $WANDB_MODE, else offline")
    parser.add_argument("--project", default="dmvr")
    parser.add_argument("--group", default=None, help="W&B group (default: the experiment name)")
    args = parser.parse_args(argv)
    try:
        report_sweep(args.sweep_dir, wandb_mode=args.wandb_mode, project=args.project, group=args.group)
    except (FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    return 0
