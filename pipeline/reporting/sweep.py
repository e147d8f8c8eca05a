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

    python -m pipeline.reporting.sweep SWEEP_DIR [--wandb-mode offline|online|disabled]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.reporting import diversity  # noqa: E402
from pipeline.reporting.metrics import BUCKETS  # noqa: E402

SUMMARY_FILE = "run_summary.json"
REPORT_DIR = "report"
BASE_METHOD = "base model"
VERDICT_COLUMNS = ["theorem_id", "statement", "proof", "verdict"]
# Folders in a sweep folder that are not jobs.
NOT_JOBS = {REPORT_DIR, "shared", "wandb", ".hydra", "__pycache__"}  # "shared": callbacks.SHARED_DIR
BASELINE_MARKERS = ["s", "D", "^", "v", "P", "X", "p", "h", "<", ">", "8", "d"]
# Baseline colours: tab10 without red (the frontier), grey (the α line) and the viridis-like ones.
POWER_COLOUR = "teal"  # the power-sampling points and their γ line
POWER_MARKER = "H"  # a hexagon: no baseline marker (BASELINE_MARKERS) uses it
BASELINE_COLOURS = ["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                    "tab:cyan", "tab:blue", "gold", "navy"]


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


# ---- gathering the runs


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


# ---- diversity


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


def base_summary(runs: list[Run]) -> dict:
    """The shared base evaluation (taken from the first run; a warning if the runs disagree)."""
    base = runs[0].summary["base"]
    paths = {str(r.summary.get("paths", {}).get("base_verdicts")) for r in runs}
    if len(paths) > 1 or any(r.summary["base"] != base for r in runs):
        warn("the runs do not share one base evaluation; the base row uses the first run's")
    return base


# ---- the table


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


# ---- the Pareto frontier


def pareto_frontier(points) -> list[int]:
    """Indices of the points not dominated on both axes (higher is better on each), sorted by x.

    A point is dominated when another is at least as good on both axes and better on one; equal
    points do not dominate each other, so duplicates on the frontier are all kept. NaN points are
    never on it.
    """
    pts = [(float(x), float(y)) for x, y in points]
    valid = [i for i, (x, y) in enumerate(pts) if not (math.isnan(x) or math.isnan(y))]

    def dominated(i: int) -> bool:
        xi, yi = pts[i]
        return any(pts[j][0] >= xi and pts[j][1] >= yi and pts[j] != pts[i] for j in valid)

    return sorted((i for i in valid if not dominated(i)), key=lambda i: (pts[i][0], -pts[i][1]))


# ---- figures


def staircase(xs: np.ndarray, ys: np.ndarray) -> tuple[list, list]:
    """Vertices of the frontier's step line: from each point straight down, then right to the next
    (the boundary of what the frontier points dominate, x ascending and y descending)."""
    sx, sy = [], []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if i:  # down from the previous point to this one's height
            sx.append(sx[-1])
            sy.append(y)
        sx.append(x)
        sy.append(y)
    return sx, sy


def _nice_limits(values: np.ndarray) -> tuple[float, float]:
    """Axis limits on round numbers around the data, inside [0, 1], with room for labels."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    span = hi - lo
    step = 0.1 if span > 0.4 else 0.05 if span > 0.1 else 0.02 if span > 0.04 else 0.01
    pad = max(0.12 * span, step / 2)
    return max(0.0, math.floor((lo - pad) / step) * step), min(1.0, math.ceil((hi + pad) / step) * step)


def _alpha_style(alphas: list[float]):
    # viridis without its palest yellows, which vanish on a white background
    cmap = matplotlib.colors.LinearSegmentedColormap.from_list(
        "viridis_on_white", plt.get_cmap("viridis")(np.linspace(0.0, 0.88, 256)))
    lo, hi = (min(alphas), max(alphas)) if len(alphas) > 1 else (0.0, 1.0)
    norm = matplotlib.colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    return cmap, norm


def _short_label(row) -> str:
    """α-DPG points are labelled by their α (the legend and colourbar name the method), power-sampling
    points by γ and their extra sampling cost."""
    if not math.isnan(row["alpha"]):
        return f"α={row['alpha']:g}"
    if _is_power(row):
        return power_label(row["gamma"], row["token_cost"])
    return str(row["method"])


def _is_power(row) -> bool:
    return "gamma" in row and not pd.isna(row["gamma"])


def power_label(gamma: float, token_cost: float) -> str:
    cost = "" if pd.isna(token_cost) else f" (×{token_cost:.1f} tokens)"
    return f"power γ={gamma:g}{cost}"


def _line_samples(ax, spacing_px: float = 4.0) -> np.ndarray:
    """Points every few pixels along every line drawn on the axes, in display coordinates."""
    samples = []
    for line in ax.get_lines():
        xy = line.get_transform().transform(line.get_xydata())
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
            n = max(2, int(math.hypot(x1 - x0, y1 - y0) / spacing_px))
            samples.append(np.linspace((x0, y0), (x1, y1), n))
    return np.concatenate(samples) if samples else np.empty((0, 2))


def _nearer_to_another(box, own: int, centres: np.ndarray) -> bool:
    """Would a reader attach this label to another point (one nearer to the label's centre)?"""
    distances = np.hypot(centres[:, 0] - (box.x0 + box.x1) / 2, centres[:, 1] - (box.y0 + box.y1) / 2)
    return int(np.argmin(distances)) != own


def _place_labels(ax, xs, ys, labels, fontsize=8) -> None:
    """Greedy label placement: for each point, the nearby offset whose text box overlaps no other
    label, no marker, no line and stays inside the axes (the least bad one when none is free);
    a leader line when it had to go further out."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    markers = [matplotlib.transforms.Bbox.from_bounds(px - 11, py - 11, 22, 22)  # frontier rings included
               for px, py in (to_px((x, y)) for x, y in zip(xs, ys))]
    line_points = _line_samples(ax)
    centres = np.array([to_px((x, y)) for x, y in zip(xs, ys)])
    axes_box = ax.get_window_extent(renderer)
    placed = []
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    for i, (x, y, text) in enumerate(zip(xs, ys, labels)):
        best, best_cost = None, None
        for radius in (7, 14, 24, 36, 50):
            for dx, dy in directions:
                ann = ax.annotate(text, (x, y), xytext=(dx * radius, dy * radius), textcoords="offset points",
                                  fontsize=fontsize, ha="left" if dx > 0 else "right" if dx < 0 else "center",
                                  va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                                  bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
                                  arrowprops=dict(arrowstyle="-", color="0.4", lw=0.7, shrinkA=0, shrinkB=4)
                                  if radius >= 14 else None,
                                  zorder=6)
                # the text's own box: an Annotation's extent would include its leader line
                ann.update_positions(renderer)
                box = matplotlib.text.Text.get_window_extent(ann, renderer).expanded(1.05, 1.15)
                crosses_line = bool(len(line_points)) and bool(np.any(
                    (line_points[:, 0] > box.x0) & (line_points[:, 0] < box.x1) &
                    (line_points[:, 1] > box.y0) & (line_points[:, 1] < box.y1)))
                cost = sum(box.overlaps(b) for b in placed) * 10 + \
                    sum(box.overlaps(m) for j, m in enumerate(markers) if j != i) * 5 + \
                    (0 if axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1) else 20) + \
                    3 * crosses_line + 8 * (radius < 14 and _nearer_to_another(box, i, centres)) + radius / 50
                if best_cost is None or cost < best_cost:
                    if best is not None:
                        best[0].remove()
                    best, best_cost = (ann, box), cost
                else:
                    ann.remove()
                if best_cost < 1:
                    break
            if best_cost < 1:
                break
        placed.append(best[1])


def plot_pareto(table: pd.DataFrame, max_k: int, path: Path, title: str, subtitle: str) -> None:
    xcol, ycol = "pass@1", f"pass@{max_k}"
    data = table.dropna(subset=[xcol, ycol]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 6.8))
    ax.set_xlim(*_nice_limits(data[xcol].to_numpy(float)))
    ax.set_ylim(*_nice_limits(data[ycol].to_numpy(float)))

    xse, yse = f"{xcol}_se", f"{ycol}_se"
    if xse in data and yse in data and data[[xse, yse]].notna().any().any():
        ax.errorbar(data[xcol], data[ycol], xerr=data[xse].fillna(0), yerr=data[yse].fillna(0), fmt="none",
                    ecolor="0.6", elinewidth=0.8, capsize=2, zorder=1.5,
                    label="±1 standard error over theorems (per run; paired gains over the base: table.md)")
        # the limits must hold the bars too
        ax.set_xlim(*_nice_limits(np.concatenate([(data[xcol] - data[xse].fillna(0)).to_numpy(float),
                                                  (data[xcol] + data[xse].fillna(0)).to_numpy(float)])))
        ax.set_ylim(*_nice_limits(np.concatenate([(data[ycol] - data[yse].fillna(0)).to_numpy(float),
                                                  (data[ycol] + data[yse].fillna(0)).to_numpy(float)])))
    frontier = pareto_frontier(list(zip(data[xcol], data[ycol])))
    fx, fy = data.loc[frontier, xcol].to_numpy(float), data.loc[frontier, ycol].to_numpy(float)
    sx, sy = staircase(fx, fy)
    ax.plot(sx, sy, color="tab:red", lw=1.4, ls="--", alpha=0.8, zorder=1,
            label="Pareto frontier (not dominated on both axes)")
    ax.scatter(fx, fy, s=260, facecolors="none", edgecolors="tab:red", lw=1.2, alpha=0.8, zorder=2)

    alpha_rows = data.dropna(subset=["alpha"]).sort_values("alpha")
    if len(alpha_rows):
        cmap, norm = _alpha_style(alpha_rows["alpha"].tolist())
        for n, (objective, line) in enumerate(alpha_rows.groupby("objective", sort=False)):  # one line per estimator
            label = str(line["method"].iloc[0]).rsplit(" α=", 1)[0]  # the label without its α (Objective.label)
            ax.plot(line[xcol], line[ycol], color="0.55", lw=1.2, ls=["-", "-."][n % 2], zorder=3, marker="o", ms=7,
                    mfc=cmap(0.5), mec="black", mew=0.6, label=f"{label} (colour: α), joined in α order")
        points = ax.scatter(alpha_rows[xcol], alpha_rows[ycol], c=alpha_rows["alpha"], cmap=cmap, norm=norm,
                            s=70, edgecolors="black", lw=0.6, zorder=4)
        fig.colorbar(points, ax=ax, pad=0.02, fraction=0.04).set_label("α of α-DPG (0: forward KL … 1: reverse KL)")

    power_rows = data[data["gamma"].notna() & data["alpha"].isna()].sort_values("gamma")
    if len(power_rows):
        ax.plot(power_rows[xcol], power_rows[ycol], color=POWER_COLOUR, lw=1.2, ls=":", marker=POWER_MARKER, ms=9,
                mec="black", mew=0.6, zorder=4, label="power sampling p^γ, untrained (×: token cost)")
    others = data[data["alpha"].isna() & (data["method"] != BASE_METHOD) & data["gamma"].isna()]
    for n, (_, row) in enumerate(others.iterrows()):
        ax.scatter(row[xcol], row[ycol], marker=BASELINE_MARKERS[n % len(BASELINE_MARKERS)], s=70,
                   color=BASELINE_COLOURS[n % len(BASELINE_COLOURS)], edgecolors="black", lw=0.6, zorder=4,
                   label=row["method"])
    base = data[data["method"] == BASE_METHOD]
    ax.scatter(base[xcol], base[ycol], marker="*", s=260, color="black", zorder=5, label=BASE_METHOD)

    ax.set_xlabel("pass@1 — precision (mean unbiased estimate over theorems)")
    ax.set_ylabel(f"pass@{max_k} — coverage (mean unbiased estimate over theorems)")
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.annotate("better ↗", xy=(0.98, 0.98), xycoords="axes fraction", ha="right", va="top",
                fontsize=9, color="0.35")
    legend = fig.legend(loc="lower center", ncol=3, fontsize=8, frameon=False)
    legend_rows = math.ceil(len(legend.get_texts()) / 3)
    fig.tight_layout(rect=(0, 0.01 + 0.025 * legend_rows, 1, 1))  # the legend below the axes, no more
    _place_labels(ax, data[xcol].tolist(), data[ycol].tolist(), [_short_label(r) for _, r in data.iterrows()])
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _line_styles(table: pd.DataFrame) -> list[dict]:
    """One style per row: base black dashed, α-DPG coloured by α, baselines tab10 with markers."""
    alphas = table["alpha"].dropna().tolist()
    cmap, norm = _alpha_style(alphas or [0.0])
    styles, n = [], 0
    gammas = sorted(table["gamma"].dropna().unique()) if "gamma" in table else []
    for _, row in table.iterrows():
        if row["method"] == BASE_METHOD:
            styles.append(dict(color="black", ls="--", lw=2.2, marker="*", ms=8))
        elif _is_power(row) and math.isnan(row["alpha"]):
            # one colour, lighter for small γ, dotted: tells power sampling apart from trained methods
            shade = 0.45 + 0.55 * (gammas.index(row["gamma"]) + 1) / len(gammas)
            styles.append(dict(color=POWER_COLOUR, alpha=shade, ls=":", lw=1.8, marker=POWER_MARKER, ms=6))
        elif not math.isnan(row["alpha"]):
            styles.append(dict(color=cmap(norm(row["alpha"])), lw=1.6, marker="o", ms=4))
        else:
            styles.append(dict(color=BASELINE_COLOURS[n % len(BASELINE_COLOURS)], lw=1.4,
                               marker=BASELINE_MARKERS[n % len(BASELINE_MARKERS)], ms=5))
            n += 1
    return styles


def plot_passk(table: pd.DataFrame, ks: list[int], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for (_, row), style in zip(table.iterrows(), _line_styles(table)):
        label = power_label(row["gamma"], row["token_cost"]) if _is_power(row) else row["method"]
        ax.plot(ks, [row[f"pass@{k}"] for k in ks], label=label, **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (samples per theorem, log scale)")
    ax.set_ylabel("pass@k (mean unbiased estimate over theorems)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}: pass@k")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_transitions(runs: list[Run], path: Path, title: str) -> None:
    """A 4×4 heatmap per run: rows the base bucket, columns the bucket after training, counts in cells."""
    with_matrix = [r for r in runs if (r.summary.get("buckets") or {}).get("transitions")]
    ncols = min(4, max(1, len(with_matrix)))
    nrows = max(1, math.ceil(len(with_matrix) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.3 * nrows + 0.7), squeeze=False)
    for ax in axes.flat[len(with_matrix):]:
        ax.axis("off")
    for ax, run in zip(axes.flat, with_matrix):
        buckets = run.summary["buckets"]
        names = buckets.get("buckets") or list(BUCKETS)
        m = np.array(buckets["transitions"])
        ax.imshow(m, cmap="Blues", vmin=0)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if m[i, j] > m.max() / 2 else "black")
        ax.set_title("\n".join(textwrap.wrap(run.method, 28)), fontsize=9)
        ax.set_xlabel("bucket after training", fontsize=8)
        ax.set_ylabel("bucket of the base model", fontsize=8)
    fig.suptitle(f"{title}: theorem counts by difficulty bucket, base model (rows) → after training (columns)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # leave the suptitle its own strip
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- W&B


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


# ---- the report


README = """# Sweep report

Made by `python -m pipeline.reporting.sweep {sweep_dir}` (also run by the Hydra callback at the end of
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


def write_figures(report_dir: Path, table: pd.DataFrame, runs: list[Run], ks: list[int], experiment: str,
                  base: dict) -> dict[str, Path]:
    figures = {"pareto": report_dir / "pareto.png", "passk": report_dir / "passk.png",
               "transitions": report_dir / "transitions.png"}
    subtitle = (f"{len(runs)} run{'s' * (len(runs) != 1)}; {base.get('theorems', '?')} eval theorems, "
                f"{base.get('samples_per_theorem', '?')} samples each")
    plot_pareto(table, ks[-1], figures["pareto"], f"{experiment}: precision vs coverage", subtitle)
    plot_passk(table, ks, figures["passk"], experiment)
    plot_transitions(runs, figures["transitions"], experiment)
    return figures


def write_readme(report_dir: Path, sweep_dir: Path, runs: int, max_k: int, skipped: list[str]) -> Path:
    path = report_dir / "README.md"
    path.write_text(README.format(
        sweep_dir=sweep_dir, runs=runs, max_k=max_k,
        skipped=("\nSkipped job folders:\n\n" + "".join(f"- {s}\n" for s in skipped)) if skipped else ""))
    return path


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

    base_path = resolve_path(runs[0].summary.get("paths", {}).get("base_verdicts"), runs[0].folder)
    base_theorems, base_div = verdicts_diversity(base_path, BASE_METHOD)
    per_run = [verdicts_diversity(resolve_path(r.summary.get("paths", {}).get("trained_verdicts"), r.folder),
                                  r.method) for r in runs]
    table = build_table(runs, ks, base, base_div, [d for _, d in per_run])
    table = add_standard_errors(table, runs, ["pass@1", f"pass@{ks[-1]}"])

    outputs = {"report_dir": report_dir, **write_tables(report_dir, table, ks, experiment, skipped),
               **write_diversity(report_dir, table, runs, base_theorems, base_div, per_run)}
    figures = write_figures(report_dir, table, runs, ks, experiment, base)
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
    parser = argparse.ArgumentParser(prog="python -m pipeline.reporting.sweep",
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


if __name__ == "__main__":
    sys.exit(main())
