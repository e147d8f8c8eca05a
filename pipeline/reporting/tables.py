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
from pipeline.reporting.runs import BASE_METHOD, Run


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
                "lost": _count(buckets.get("lost")), "gained": _count(buckets.get("gained"))})
    row.update(_diversity_columns(div))
    row.update({f"budget_{k}": v for k, v in (s.get("budget") or {}).items()})
    return row


def _count(value) -> float:
    """A list of theorem ids (one run) or a count (a reseeded method's mean over seeds)."""
    if value is None:
        return np.nan
    return float(len(value)) if isinstance(value, (list, tuple)) else float(value)


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


def add_standard_errors(table: pd.DataFrame, panel, methods, columns: list[str], gains: pd.DataFrame | None = None
                        ) -> pd.DataFrame:
    """The `_se` columns for the base row and every method (from the per-theorem panel; a reseeded
    method's values are its seeds' means), and every method's paired gain over the base: `_gain`,
    `_gain_se` and, from `gains` (compare.gains), the bootstrap interval `_gain_lo`, `_gain_hi` and
    p-value `_gain_p`."""
    nan_se = {f"{c}_se": np.nan for c in columns}
    if panel is None:
        return pd.concat([table.reset_index(drop=True), pd.DataFrame([nan_se] * len(table))], axis=1)
    base = panel.base.loc[panel.theorems]
    rows = [standard_errors(base, columns)]
    for m in methods:
        values = pd.DataFrame({c: panel.values(m, c) for c in columns if c in panel.columns}, index=panel.theorems)
        rows.append({**standard_errors(values, columns), **paired_gains(base, values, columns)})
    out = pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    if gains is not None and len(gains):
        extra = [c for c in gains.columns if c.endswith(("_gain_lo", "_gain_hi", "_gain_p"))]
        out = out.merge(gains[["method"] + extra], on="method", how="left")
    return out


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


def _ci(row, prefix: str, digits: int = 3) -> str:
    """`+0.031 [+0.012, +0.050]` from a row's `{prefix}`, `_lo`, `_hi` columns ('' when absent)."""
    if f"{prefix}_lo" not in row or pd.isna(row.get(prefix)):
        return ""
    sign = "+" if digits else ""
    if pd.isna(row[f"{prefix}_lo"]):  # a statistic across seeds (mean, sd) has no interval over theorems
        return f"{row[prefix]:{sign}.{digits}f}"
    return (f"{row[prefix]:{sign}.{digits}f} [{row[f'{prefix}_lo']:{sign}.{digits}f}, "
            f"{row[f'{prefix}_hi']:{sign}.{digits}f}]")


def _stars(p: float) -> str:
    return "" if pd.isna(p) else "**" if p < 0.01 else "*" if p < 0.05 else ""


def gains_markdown(table: pd.DataFrame, stats: dict, ks: list[int]) -> str:
    """Each method's gain over the base (paired bootstrap 95 % interval over theorems, sign-flip
    p-value) and its bucket events as theorem counts with their intervals."""
    cols = [f"pass@{k}" for k in (ks[0], ks[-1])]
    rows = table[table["method"] != BASE_METHOD]
    lines = ["| method | seeds | " + " | ".join(f"{c} gain [95 % CI] (p)" for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    gains = stats.get("gains")
    by_method = gains.set_index("method") if gains is not None and len(gains) else None
    for _, row in rows.iterrows():
        g = by_method.loc[row["method"]] if by_method is not None and row["method"] in by_method.index else None
        cells = []
        for c in cols:
            if g is None or pd.isna(g.get(f"{c}_gain")):
                cells.append("")
            else:
                cells.append(f"{_ci(g, f'{c}_gain')} (p={g[f'{c}_gain_p']:.3g}){_stars(g[f'{c}_gain_p'])}")
        seeds = int(g["seeds"]) if g is not None else 1
        lines.append(f"| {row['method']} | {seeds} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if by_method is not None:
        from pipeline.reporting.compare import EVENTS

        text += ("\nBucket events (theorem counts; a reseeded method's mean over seeds), each with its 95 % "
                 "bootstrap interval over theorems:\n\n| method | " + " | ".join(EVENTS) + " |\n|---|"
                 + "---|" * len(EVENTS) + "\n")
        for method, g in by_method.iterrows():
            text += f"| {method} | " + " | ".join(_ci(g, e, 1) for e in EVENTS) + " |\n"
    return text


def claims_markdown(claims: pd.DataFrame | None) -> str:
    if claims is None or not len(claims):
        return "No claim could be checked (the per-theorem tables are missing).\n"
    lines = ["| # | claim | statistic | predicted | estimate [95 % CI] | verdict | runs compared |",
             "|---|---|---|---|---|---|---|"]
    for _, c in claims.iterrows():
        est = "n/a" if pd.isna(c["estimate"]) else f"{c['estimate']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
        lines.append(f"| {c['claim']} | {c['statement']} | {c['statistic']} | {c['predicted']} | {est} | "
                     f"**{c['verdict']}** | {c['note']} |")
    return ("Verdicts: *reproduced* when the 95 % interval over theorems lies on the predicted side of 0, "
            "*contradicted* when it lies on the other side, *inconclusive at this power* otherwise. The "
            "intervals resample theorems (evaluation noise); training noise is in the reseeding table.\n\n"
            + "\n".join(lines) + "\n")


def seeds_markdown(stats: dict, ks: list[int]) -> str:
    seeds, pairs = stats.get("seeds"), stats.get("seed_pairs")
    if seeds is None or not len(seeds):
        return ""
    cols = [f"pass@{k}" for k in (ks[0], ks[-1])]
    text = "| method | seed | " + " | ".join(cols + [f"{c} gain" for c in cols]) + " |\n|---|---|" + \
        "---|" * (2 * len(cols)) + "\n"
    for _, r in seeds.iterrows():
        text += f"| {r['method']} | {r['seed']} | " + " | ".join(
            "" if pd.isna(r.get(c)) else f"{r[c]:.3f}" for c in cols) + " | " + " | ".join(
            _ci(r, f"{c}_gain") or ("" if pd.isna(r.get(f"{c}_gain")) else f"{r[f'{c}_gain']:+.3f}")
            for c in cols) + " |\n"
    if pairs is not None and len(pairs):
        text += ("\nDifferences between reseeded methods, seed by seed (A − B, 95 % interval over theorems), "
                 "their mean and standard deviation across seeds, and whether they survive reseeding:\n\n"
                 "| A | B | metric | per seed | mean | sd | survives reseeding |\n|---|---|---|---|---|---|---|\n")
        for _, r in pairs.iterrows():
            text += (f"| {r['a']} | {r['b']} | {r['metric']} | {r['per_seed']} | {r['mean']:+.3f} | "
                     f"{r['sd']:.3f} | {r['survives_reseeding']} |\n")
    return text


def pairs_markdown(pairs: pd.DataFrame | None, columns: list[str]) -> str:
    """One matrix per compared pass@k: row − column, paired over theorems, * p < 0.05, ** p < 0.01."""
    if pairs is None or not len(pairs):
        return "No paired comparison (the per-theorem tables are missing).\n"
    names = list(dict.fromkeys(list(pairs["a"]) + list(pairs["b"])))
    text = ("# Pairwise differences between methods\n\nEach cell: row − column of the mean over the "
            "shared eval theorems, paired over theorems; `*` p < 0.05, `**` p < 0.01 (sign-flip test). "
            "Intervals and p-values of every pair: `pairs.csv`.\n")
    for col in columns:
        if col not in pairs:
            continue
        cell = {}
        for _, r in pairs.iterrows():
            cell[(r["a"], r["b"])] = f"{r[col]:+.3f}{_stars(r[f'{col}_p'])}"
            cell[(r["b"], r["a"])] = f"{-r[col]:+.3f}{_stars(r[f'{col}_p'])}"
        text += f"\n## {col}\n\n| row − column | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
        for a in names:
            text += f"| {a} | " + " | ".join(cell.get((a, b), "·") for b in names) + " |\n"
    return text


def write_markdown(table: pd.DataFrame, ks: list[int], path: Path, title: str, skipped: list[str],
                   stats: dict | None = None) -> None:
    """Narrow tables keyed by method rather than one 40-column table nobody can read."""
    stats = stats or {}
    key = ["method", "alpha"]
    budget = [c for c in table.columns if c.startswith("budget_")]
    se = [f"pass@{k}_se" for k in (ks[0], ks[-1]) if f"pass@{k}_se" in table]
    power = ["gamma", "token_cost"] if "gamma" in table and table["gamma"].notna().any() else []
    precision = ("Precision and coverage (mean unbiased pass@k over theorems; `_se`: its standard error over "
                 "theorems)" + ("; token_cost: sampling tokens per kept token of power sampling (plain sampling: 1)"
                                if power else ""))
    rule = stats.get("rule")
    buckets = "Difficulty buckets after training (base row: before) and movements" + (
        f"; buckets: {rule['buckets'].iloc[0]}" if rule is not None else "")
    sections = [
        (precision, markdown_table(table, key + [f"pass@{k}" for k in ks] + se + power)),
        ("Gain over the base model (paired over theorems: 95 % bootstrap interval, sign-flip p-value)",
         gains_markdown(table, stats, ks) if stats.get("gains") is not None else markdown_table(
             table, key + [c for k in (ks[0], ks[-1]) for c in (f"pass@{k}_gain", f"pass@{k}_gain_se") if c in table])),
        ("The paper's claims", claims_markdown(stats.get("claims"))),
        (buckets, markdown_table(table, key + list(BUCKETS) + ["hard_to_unsolvable", "medium_to_easy", "lost",
                                                                "gained"])),
        ("Diversity of accepted proofs (mean per theorem; unsolved theorems count as 0)",
         markdown_table(table, key + list(diversity.METRICS))),
        ("Reseeding: each seed, and which differences survive it", seeds_markdown(stats, ks)),
        ("Budget", markdown_table(table, key + ["objective", "mode", "job"] + budget)),
    ]
    text = f"# {title}\n\n" + "".join(f"> **{note}**\n\n" for note in stats.get("notes", []))
    if stats.get("pairs") is not None:
        text += "Pairwise differences between every two methods: `pairs.md`.\n\n"
    text += "".join(f"## {name}\n\n{body}\n" for name, body in sections if body)
    if skipped:
        text += "## Skipped job folders\n\n" + "".join(f"- {s}\n" for s in skipped)
    path.write_text(text)


def write_tables(report_dir: Path, table: pd.DataFrame, ks: list[int], experiment: str,
                 skipped: list[str], stats: dict | None = None) -> dict[str, Path]:
    """table.csv and table.md; with paired statistics also pairs.csv/.md, claims.csv, seeds.csv and
    seed_pairs.csv."""
    stats = stats or {}
    paths = {"table_csv": report_dir / "table.csv", "table_md": report_dir / "table.md"}
    table.to_csv(paths["table_csv"], index=False)
    write_markdown(table, ks, paths["table_md"], f"Sweep report: {experiment}", skipped, stats)
    for name in ("pairs", "claims", "seeds", "seed_pairs"):
        if stats.get(name) is not None and len(stats[name]):
            paths[f"{name}_csv"] = report_dir / f"{name}.csv"
            stats[name].to_csv(paths[f"{name}_csv"], index=False)
    if stats.get("pairs") is not None:
        paths["pairs_md"] = report_dir / "pairs.md"
        paths["pairs_md"].write_text(pairs_markdown(stats["pairs"], [f"pass@{k}" for k in (ks[0], ks[-1])]))
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
