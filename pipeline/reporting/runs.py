"""The runs of a sweep folder: one `Run` per job with a readable run_summary.json, in report order.

A job folder without a summary (a failed or unfinished job) is skipped with a warning, never fatal.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SUMMARY_FILE = "run_summary.json"

REPORT_DIR = "report"

BASE_METHOD = "base model"

# Folders in a sweep folder that are not jobs.
NOT_JOBS = {REPORT_DIR, "shared", "wandb", ".hydra", "__pycache__"}  # "shared": callbacks.SHARED_DIR


@dataclass


class Run:
    job: str          # the job folder's name
    folder: Path
    summary: dict
    method: str = ""  # unique display name (the summary's method, made unique if two jobs share it)

    @property
    def is_alpha_dpg(self) -> bool:
        """A point on the α axis: the run summary states α only for objectives whose registered
        sweep axis is α (pipeline/stages/report.py asks the registry)."""
        return self.summary.get("alpha") is not None

    @property
    def gamma(self) -> float | None:
        """γ of a power-sampling run (its evaluation sampled p^γ), else None."""
        sampler = self.summary.get("sampler") or {}
        return float(sampler["gamma"]) if sampler.get("name") == "power" and "gamma" in sampler else None


def warn(message: str) -> None:
    print(f"sweep_report: WARNING: {message}", file=sys.stderr, flush=True)


def _job_sort_key(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def job_folders(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name not in NOT_JOBS
                   and not p.name.startswith(".")), key=lambda p: _job_sort_key(p.name))


def gather_runs(sweep_dir: Path) -> tuple[list[Run], list[str]]:
    """Every job with a readable run_summary.json, and a note for each job folder skipped."""
    runs, skipped = [], []
    for folder in job_folders(sweep_dir):
        path = folder / SUMMARY_FILE
        if not path.exists():
            skipped.append(f"{folder.name}: no {SUMMARY_FILE} (job failed or unfinished)")
            continue
        try:
            summary = json.loads(path.read_text())
            if not isinstance(summary, dict) or "trained" not in summary or "base" not in summary:
                raise ValueError("missing 'base' or 'trained'")
        except (OSError, ValueError) as e:
            skipped.append(f"{folder.name}: unreadable {SUMMARY_FILE} ({e})")
            continue
        runs.append(Run(folder.name, folder, summary))
    for note in skipped:
        warn(f"skipping job folder {note}")
    return order_runs(runs), skipped


def order_runs(runs: list[Run]) -> list[Run]:
    """α-DPG runs by α first, then power sampling by γ, then the baselines in job order; method
    names made unique."""
    alpha = sorted((r for r in runs if r.is_alpha_dpg), key=lambda r: float(r.summary["alpha"]))
    power = sorted((r for r in runs if r.gamma is not None and not r.is_alpha_dpg), key=lambda r: r.gamma)
    ordered = alpha + power + [r for r in runs if not r.is_alpha_dpg and r.gamma is None]
    names = [str(r.summary.get("method") or r.summary.get("objective") or f"job {r.job}") for r in ordered]
    for run, name in zip(ordered, names):
        run.method = name if names.count(name) == 1 else f"{name} (job {run.job})"
    return ordered


def pass_ks(results: dict) -> list[int]:
    return sorted(int(k.split("@")[1]) for k in results if k.startswith("pass@"))


def common_ks(runs: list[Run]) -> list[int]:
    """The k of pass@k present for the base and every run (warns when runs disagree)."""
    sets = [set(pass_ks(r.summary["trained"])) for r in runs] + [set(pass_ks(runs[0].summary["base"]))]
    common = set.intersection(*sets)
    if any(s != common for s in sets):
        warn(f"runs report different k; using the common ones {sorted(common)}")
    if not common:
        raise ValueError("no pass@k is reported by every run")
    return sorted(common)


def resolve_path(value: str | None, job_folder: Path) -> Path | None:
    """An artifact path from a summary; relative paths (a moved sweep) are tried against the job folder."""
    if not value:
        return None
    path = Path(value)
    for candidate in (path, job_folder / path, job_folder / path.name):
        if candidate.exists():
            return candidate
    return None


def base_summary(runs: list[Run]) -> dict:
    """The shared base evaluation (taken from the first run; a warning if the runs disagree)."""
    base = runs[0].summary["base"]
    paths = {str(r.summary.get("paths", {}).get("base_verdicts")) for r in runs}
    if len(paths) > 1 or any(r.summary["base"] != base for r in runs):
        warn("the runs do not share one base evaluation; the base row uses the first run's")
    return base


def read_per_theorem(path: Path | None) -> pd.DataFrame | None:
    """An evaluation's per_theorem.parquet indexed by theorem, or None when it is missing or
    unreadable (a warning for the unreadable: that row gets no error bars and no gains)."""
    if path is None or not path.exists():
        return None
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        warn(f"unreadable per-theorem table {path} ({e}); no error bars for it")
        return None
    return table.set_index("theorem_id") if "theorem_id" in table else table
