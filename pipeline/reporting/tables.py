"""The sweep report's tables: one row per run plus the base model, standard errors and paired gains
over theorems, written as table.csv, table.md and the diversity tables.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.reporting import diversity
from pipeline.reporting.metrics import BUCKETS
from pipeline.reporting.runs import BASE_METHOD, Run, read_per_theorem, resolve_path


def _pass_columns(ks: list[int]) -> list[str]:
    """pass@1 and pass@max-k first (the Pareto axes), then the other k in order."""
    first = [ks[0], ks[-1]] if len(ks) > 1 else [ks[0]]
    return [f"pass@{k}" for k in first + [k for k in ks if k not in first]]


def base_row(base: dict, base_counts: dict, ks: list[int], div: dict) -> dict:
    row = {"job": "", "method": BASE_METHOD, "objective": "base", "alpha": np.nan, "mode": ""}
    row.update({c: base.get(c, np.nan) for c in _pass_columns(ks)})
    row.update({"gamma": np.nan, "token_cost": np.nan})
    row.update({b: base_counts.get(b, np.nan) for b in BUCKETS})
    row.update({"hard_to_unsolvable": np.nan, "medium_to_easy": np.nan, "lost": np.nan, "gained": np.nan})
    return {**row, **_diversity_columns(div)}


def run_row(run: Run, ks: list[int], div: dict) -> dict:
    s = run.summary
    buckets = s.get("buckets") or {}
    matrix = buckets.get("transitions")
    order = buckets.get("buckets") or list(BUCKETS)
    at = {b: i for i, b in enumerate(order)}

    def moved(src: str, dst: str) -> float:
        return matrix[at[src]][at[dst]] if matrix and src in at and dst in at else np.nan

    row = {"job": run.job, "method": run.method, "objective": s.get("objective", ""),
           "alpha": float(s["alpha"]) if run.is_alpha_dpg else np.nan, "mode": s.get("mode", "")}
    row.update({c: s["trained"].get(c, np.nan) for c in _pass_columns(ks)})
    # power sampling: γ and the tokens its evaluation generated per kept token (plain sampling: 1)
    cost = s["trained"].get("token_cost")
    row.update({"gamma": run.gamma if run.gamma is not None else np.nan,
                "token_cost": float(cost) if cost is not None else np.nan})
    row.update({b: (buckets.get("trained_counts") or {}).get(b, np.nan) for b in BUCKETS})
    row.update({"hard_to_unsolvable": moved("hard", "unsolvable"), "medium_to_easy": moved("medium", "easy"),
                "lost": len(buckets["lost"]) if "lost" in buckets else np.nan,
                "gained": len(buckets["gained"]) if "gained" in buckets else np.nan})
    row.update(_diversity_columns(div))
    row.update({f"budget_{k}": v for k, v in (s.get("budget") or {}).items()})
    return row


def standard_errors(table: pd.DataFrame | None, columns: list[str]) -> dict:
    """`{col}_se`: the standard error over theorems of each mean pass@k, from an evaluation's
    per-theorem table (read_per_theorem; NaN without one). With tens of theorems one theorem moves
    pass@256 by several points; the error bars keep a reader from taking that for an effect."""
    out = {}
    for col in columns:
        if table is None or col not in table or len(table) < 2:
            out[f"{col}_se"] = np.nan
        else:
            values = table[col].to_numpy(float)
            out[f"{col}_se"] = float(values.std(ddof=1) / math.sqrt(len(values)))
    return out


def paired_gains(base: pd.DataFrame | None, run: pd.DataFrame | None, columns: list[str]) -> dict:
    """`{col}_gain` and `{col}_gain_se`: the run's mean pass@k minus the base model's (both tables from
    read_per_theorem), and its standard error paired over the theorems both evaluated. Every run is
    evaluated on the same theorems, so a difference is far better known than the two unpaired error
    bars suggest (NaN when a table is missing)."""
    out = {f"{col}_{what}": np.nan for col in columns for what in ("gain", "gain_se")}
    if base is None or run is None:
        return out
    common = base.index.intersection(run.index)
    for col in columns:
        if col in base and col in run and len(common) >= 2:
            diff = (run.loc[common, col] - base.loc[common, col]).to_numpy(float)
            out[f"{col}_gain"] = float(diff.mean())
            out[f"{col}_gain_se"] = float(diff.std(ddof=1) / math.sqrt(len(diff)))
    return out


def add_standard_errors(table: pd.DataFrame, runs: list[Run], columns: list[str]) -> pd.DataFrame:
    """The `_se` columns for the base row (the shared base evaluation) and every run, and every run's
    paired gain over the base (`_gain`, `_gain_se`)."""
    first = runs[0]
    base_path = resolve_path(first.summary.get("paths", {}).get("base_per_theorem"), first.folder)
    base = read_per_theorem(base_path)
    rows = [standard_errors(base, columns)]
    for r in runs:
        run = read_per_theorem(resolve_path(r.summary.get("paths", {}).get("trained_per_theorem"), r.folder))
        rows.append({**standard_errors(run, columns), **paired_gains(base, run, columns)})
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def _diversity_columns(div: dict) -> dict:
    return {m: div.get(m, np.nan) for m in diversity.METRICS}


def build_table(runs: list[Run], ks: list[int], base: dict, base_div: dict, run_divs: list[dict]) -> pd.DataFrame:
    """The base row, then one row per run in report order."""
    base_counts = (runs[0].summary.get("buckets") or {}).get("base_counts") or {}
    rows = [base_row(base, base_counts, ks, base_div)]
    rows += [run_row(r, ks, d) for r, d in zip(runs, run_divs)]
    return pd.DataFrame(rows)


def _fmt(value, column: str) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if column in ("alpha", "gamma") or float(value).is_integer():
            return f"{value:g}"
        return f"{value:.3f}"
    return str(value)


def markdown_table(table: pd.DataFrame, columns: list[str]) -> str:
    columns = [c for c in columns if c in table.columns]
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(_fmt(v, c) for v, c in zip(row, columns)) + " |\n"
                          for row in table[columns].itertuples(index=False))


def write_markdown(table: pd.DataFrame, ks: list[int], path: Path, title: str, skipped: list[str]) -> None:
    """Five narrow tables keyed by method rather than one 40-column table nobody can read."""
    key = ["method", "alpha"]
    budget = [c for c in table.columns if c.startswith("budget_")]
    se = [f"pass@{k}_se" for k in (ks[0], ks[-1]) if f"pass@{k}_se" in table]
    power = ["gamma", "token_cost"] if "gamma" in table and table["gamma"].notna().any() else []
    precision = ("Precision and coverage (mean unbiased pass@k over theorems; `_se`: its standard error over "
                 "theorems)" + ("; token_cost: sampling tokens per kept token of power sampling (plain sampling: 1)"
                                if power else ""))
    sections = [
        (precision, key + [f"pass@{k}" for k in ks] + se + power),
        ("Gain over the base model (paired over theorems: `_gain_se` is the standard error of the "
         "per-theorem difference)", key + [c for k in (ks[0], ks[-1]) for c in (f"pass@{k}_gain", f"pass@{k}_gain_se")
                                            if c in table]),
        ("Difficulty buckets after training (base row: before) and movements",
         key + list(BUCKETS) + ["hard_to_unsolvable", "medium_to_easy", "lost", "gained"]),
        ("Diversity of accepted proofs (mean per theorem; unsolved theorems count as 0)",
         key + list(diversity.METRICS)),
        ("Budget", key + ["objective", "mode", "job"] + budget),
    ]
    text = f"# {title}\n\n" + "".join(f"## {name}\n\n{markdown_table(table, cols)}\n" for name, cols in sections)
    if skipped:
        text += "## Skipped job folders\n\n" + "".join(f"- {s}\n" for s in skipped)
    path.write_text(text)


def write_tables(report_dir: Path, table: pd.DataFrame, ks: list[int], experiment: str,
                 skipped: list[str]) -> dict[str, Path]:
    paths = {"table_csv": report_dir / "table.csv", "table_md": report_dir / "table.md"}
    table.to_csv(paths["table_csv"], index=False)
    write_markdown(table, ks, paths["table_md"], f"Sweep report: {experiment}", skipped)
    return paths


def write_diversity(report_dir: Path, table: pd.DataFrame, runs: list[Run], base_theorems, base_div: dict,
                    per_run: list) -> dict[str, Path]:
    """diversity.csv (averages), diversity_per_theorem.csv, diversity_correlations.csv."""
    labels = [(BASE_METHOD, "base", np.nan)] + [
        (r.method, r.summary.get("objective", ""), float(r.summary["alpha"]) if r.is_alpha_dpg else np.nan)
        for r in runs]
    divs = [base_div] + [d for _, d in per_run]
    averages = pd.DataFrame([{"method": m, "objective": o, "alpha": a, **d} for (m, o, a), d in zip(labels, divs)])
    theorem_tables = [t.assign(method=m) for (m, _, _), t in zip(labels, [base_theorems] + [t for t, _ in per_run])
                      if t is not None]
    per_theorem = pd.concat(theorem_tables, ignore_index=True) if theorem_tables else pd.DataFrame()
    if len(per_theorem):
        per_theorem = per_theorem[["method"] + [c for c in per_theorem.columns if c != "method"]]

    runs_table = table[table["method"] != BASE_METHOD].merge(
        averages.drop(columns=["objective", "alpha", *diversity.METRICS], errors="ignore"), on="method", how="left")
    paths = {"diversity_csv": report_dir / "diversity.csv",
             "diversity_per_theorem_csv": report_dir / "diversity_per_theorem.csv",
             "diversity_correlations_csv": report_dir / "diversity_correlations.csv"}
    averages.to_csv(paths["diversity_csv"], index=False)
    per_theorem.to_csv(paths["diversity_per_theorem_csv"], index=False)
    diversity.correlations(runs_table).to_csv(paths["diversity_correlations_csv"], index=False)
    return paths
