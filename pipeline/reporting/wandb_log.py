"""The sweep report's W&B run (job_type `report`): the table, a pass@1-vs-pass@max-k scatter, the
figures and per-method summary metrics. Offline unless asked otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pipeline.reporting import diversity


def resolve_wandb_mode(mode: str | None) -> str:
    """The argument, else WANDB_MODE, else offline: never online unless asked."""
    return mode or os.environ.get("WANDB_MODE") or "offline"


def log_to_wandb(table: pd.DataFrame, correlations: pd.DataFrame, figures: dict[str, Path], max_k: int, *,
                 mode: str, project: str, group: str, report_dir: Path, sweep_dir: Path) -> Path | None:
    """One run (job_type=report) with the sweep table, a pass@1-vs-pass@max-k scatter built on it,
    the figures, and per-method summary metrics. Returns the run's local folder."""
    import wandb

    run = wandb.init(project=project, group=group, job_type="report", mode=mode, dir=str(report_dir),
                     name=f"report-{group}", config={"sweep_dir": str(sweep_dir), "runs": len(table) - 1},
                     reinit="finish_previous")
    try:
        wb_table = wandb.Table(dataframe=table.astype(object).where(table.notna(), None))
        ycol = f"pass@{max_k}"
        run.log({
            "sweep_table": wb_table,
            "pareto_scatter": wandb.plot.scatter(wb_table, "pass@1", ycol, title=f"pass@1 vs {ycol}"),
            "diversity_correlations": wandb.Table(dataframe=correlations.astype(object)
                                                  .where(correlations.notna(), None)),
            **{name: wandb.Image(str(p)) for name, p in figures.items()},
        })
        metrics = [c for c in table.columns if c.startswith("pass@") or c in diversity.METRICS
                   or c in ("hard_to_unsolvable", "medium_to_easy", "lost", "gained")]
        for _, row in table.iterrows():
            for metric in metrics:
                if pd.notna(row[metric]):
                    run.summary[f"{row['method']}/{metric}"] = float(row[metric])
        run_dir = Path(run.dir).parent
    finally:
        run.finish()
    return run_dir
