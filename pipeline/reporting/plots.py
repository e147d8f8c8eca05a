"""The report's figures: the Pareto plot of precision against coverage (with its label placement),
pass@k curves and bucket-transition matrices. The run report (pipeline/stages/report.py) draws its
pass@k and transitions figures with the same functions.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.reporting.metrics import BUCKETS  # noqa: E402
from pipeline.reporting.runs import BASE_METHOD, Run  # noqa: E402

BASELINE_MARKERS = ["s", "D", "^", "v", "P", "X", "p", "h", "<", ">", "8", "d"]

# Baseline colours: tab10 without red (the frontier), grey (the α line) and the viridis-like ones.
POWER_COLOUR = "teal"  # the power-sampling points and their γ line

POWER_MARKER = "H"  # a hexagon: no baseline marker (BASELINE_MARKERS) uses it

BASELINE_COLOURS = ["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                    "tab:cyan", "tab:blue", "gold", "navy"]


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


def _paired_bars(data: pd.DataFrame, xcol: str, ycol: str):
    """Error bar extents (below, above) on each axis and their legend label: a run's 95 % interval of
    its gain over the base model, paired over theorems, drawn around the run's point (it says how well
    the run's offset from the base is known; two runs' own difference: pairs.md); without the
    intervals, ±1 standard error over theorems."""
    def extent(col):
        lo, hi, gain = data.get(f"{col}_gain_lo"), data.get(f"{col}_gain_hi"), data.get(f"{col}_gain")
        if lo is None or hi is None or gain is None or not lo.notna().any():
            return None
        return (gain - lo).clip(lower=0).fillna(0), (hi - gain).clip(lower=0).fillna(0)

    x, y = extent(xcol), extent(ycol)
    if x is not None and y is not None:
        return x, y, "95 % CI of the gain over the base, paired over theorems"
    xse, yse = data.get(f"{xcol}_se"), data.get(f"{ycol}_se")
    if xse is None or yse is None or not (xse.notna().any() or yse.notna().any()):
        return None
    return ((xse.fillna(0), xse.fillna(0)), (yse.fillna(0), yse.fillna(0)),
            "±1 standard error over theorems (per run; paired gains over the base: table.md)")


def plot_pareto(table: pd.DataFrame, max_k: int, path: Path, title: str, subtitle: str) -> None:
    xcol, ycol = "pass@1", f"pass@{max_k}"
    data = table.dropna(subset=[xcol, ycol]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(10, 7.2))
    ax.set_xlim(*_nice_limits(data[xcol].to_numpy(float)))
    ax.set_ylim(*_nice_limits(data[ycol].to_numpy(float)))

    bars = _paired_bars(data, xcol, ycol)
    if bars is not None:
        (xlo, xhi), (ylo, yhi), label = bars
        ax.errorbar(data[xcol], data[ycol], xerr=[xlo, xhi], yerr=[ylo, yhi], fmt="none", ecolor="0.6",
                    elinewidth=0.8, capsize=2, zorder=1.5, label=label)
        # the limits must hold the bars too
        ax.set_xlim(*_nice_limits(np.concatenate([(data[xcol] - xlo).to_numpy(float),
                                                  (data[xcol] + xhi).to_numpy(float)])))
        ax.set_ylim(*_nice_limits(np.concatenate([(data[ycol] - ylo).to_numpy(float),
                                                  (data[ycol] + yhi).to_numpy(float)])))
    frontier = pareto_frontier(list(zip(data[xcol], data[ycol])))
    fx, fy = data.loc[frontier, xcol].to_numpy(float), data.loc[frontier, ycol].to_numpy(float)
    sx, sy = staircase(fx, fy)
    ax.plot(sx, sy, color="tab:red", lw=1.4, ls="--", alpha=0.8, zorder=1,
            label="Pareto frontier (not dominated on both axes)")
    ax.scatter(fx, fy, s=260, facecolors="none", edgecolors="tab:red", lw=1.2, alpha=0.8, zorder=2)

    alpha_rows = data.dropna(subset=["alpha"]).sort_values("alpha")
    if len(alpha_rows):
        cmap, norm = _alpha_style(alpha_rows["alpha"].tolist())
        for n, (_, line) in enumerate(alpha_rows.groupby("objective", sort=False)):  # one line per estimator
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
    # below the axes, in as many columns as fit the figure's width (long labels take two)
    ncol = 3 if max(len(t) for t in ax.get_legend_handles_labels()[1]) > 40 else 4
    legend = fig.legend(loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    legend_rows = math.ceil(len(legend.get_texts()) / ncol)
    fig.tight_layout(rect=(0, 0.01 + 0.025 * legend_rows, 1, 1))  # the legend below the axes, no more
    _place_labels(ax, data[xcol].tolist(), data[ycol].tolist(), [_short_label(r) for _, r in data.iterrows()])
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _line_styles(table: pd.DataFrame) -> list[dict]:
    """One style per row: base black dashed, α-DPG coloured by α, baselines tab10 with markers."""
    table = table.assign(**{c: table[c] if c in table else np.nan for c in ("objective", "alpha", "gamma", "token_cost")})
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
    """pass@k against k, one line per row of `table` (columns `method`, `pass@k`…; optional
    `objective`, `alpha`, `gamma`, `token_cost` choose the line's style)."""
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


def plot_transitions(panels: list[tuple[str, dict]], path: Path, title: str) -> None:
    """A 4×4 heatmap per (name, buckets) panel — `buckets` as the bucket stage's transitions.json —:
    rows the base bucket, columns the bucket after training, counts in cells."""
    with_matrix = [(name, buckets) for name, buckets in panels if (buckets or {}).get("transitions")]
    ncols = min(4, max(1, len(with_matrix)))
    nrows = max(1, math.ceil(len(with_matrix) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.3 * nrows + 0.7), squeeze=False)
    for ax in axes.flat[len(with_matrix):]:
        ax.axis("off")
    for ax, (panel, buckets) in zip(axes.flat, with_matrix):
        names = buckets.get("buckets") or list(BUCKETS)
        m = np.array(buckets["transitions"])
        ax.imshow(m, cmap="Blues", vmin=0)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if m[i, j] > m.max() / 2 else "black")
        ax.set_title("\n".join(textwrap.wrap(panel, 28)), fontsize=9)
        ax.set_xlabel("bucket after training", fontsize=8)
        ax.set_ylabel("bucket of the base model", fontsize=8)
    fig.suptitle(f"{title}: theorem counts by difficulty bucket, base model (rows) → after training (columns)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # leave the suptitle its own strip
    fig.savefig(path, dpi=120)
    plt.close(fig)


def trajectory_table(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, round) from the runs' `trajectory` (the train stage's validation of the policy
    after each round; round 0 is the base model): method, round, k, pass@1, pass@k."""
    rows = []
    for r in runs:
        for point in r.summary.get("trajectory") or []:
            rows.append({"method": r.method, "objective": r.summary.get("objective", ""),
                         "alpha": float(r.summary["alpha"]) if r.is_alpha_dpg else np.nan, **point})
    return pd.DataFrame(rows)


def _trajectory_panels(trajectories: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """The methods in three panels: α-DPG by α, the runs of the `grpo` objective (the paper's RL
    baseline), and the other baselines; one panel when there are few runs."""
    methods = list(dict.fromkeys(trajectories["method"]))
    first = trajectories.drop_duplicates("method").set_index("method")
    alpha = [m for m in methods if not pd.isna(first.loc[m, "alpha"])]
    grpo = [m for m in methods if m not in alpha and first.loc[m, "objective"] == "grpo"]
    rest = [m for m in methods if m not in alpha and m not in grpo]
    panels = [(name, ms) for name, ms in (("α-DPG", alpha), ("GRPO", grpo), ("other baselines", rest)) if ms]
    return panels if len(methods) > 6 else [("all runs", methods)]


def plot_trajectories(trajectories: pd.DataFrame, path: Path, title: str) -> None:
    """Each method's path through the precision–coverage plane on the validation split, round by round,
    from the base model (round 0, a black star) to the policy it ended with (its marker); the methods
    in panels (α-DPG, GRPO, the other baselines) on shared axes, every other path faint behind."""
    k = int(trajectories["k"].max())
    ycol = f"pass@{k}"
    panels = _trajectory_panels(trajectories)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.6), sharex=True, sharey=True,
                             squeeze=False)
    table = trajectories.drop_duplicates("method").assign(gamma=np.nan, token_cost=np.nan)
    styles = dict(zip(table["method"], _line_styles(table)))
    start = trajectories[trajectories["round"] == 0]
    for ax, (name, methods) in zip(axes[0], panels):
        for other in dict.fromkeys(trajectories["method"]):
            if other not in methods:
                faint = trajectories[trajectories["method"] == other].sort_values("round")
                ax.plot(faint["pass@1"], faint[ycol], color="0.85", lw=0.8, zorder=1)
        for method in methods:
            path_ = trajectories[trajectories["method"] == method].sort_values("round")
            style = dict(styles[method])
            marker, ms = style.pop("marker", "o"), style.pop("ms", 5)
            ax.plot(path_["pass@1"], path_[ycol], **{**style, "lw": 1.3}, marker=".", ms=4, label=method, zorder=3)
            last = path_.iloc[-1]
            ax.plot([last["pass@1"]], [last[ycol]], marker=marker, ms=ms + 4, ls="none",
                    color=style.get("color"), mec="black", mew=0.6, zorder=4)
        if len(start):
            ax.scatter(start["pass@1"].mean(), start[ycol].mean(), marker="*", s=220, color="black", zorder=5,
                       label="base model (round 0)")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("pass@1 on the validation split")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7.5, ncol=2, frameon=False)
    axes[0][0].set_ylabel(f"pass@{k} on the validation split")
    fig.suptitle(f"{title}: each method's path round by round (dots) to its final policy (marker); "
                 "validation-split noise is large, compare start and end", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_figures(report_dir: Path, table: pd.DataFrame, runs: list[Run], ks: list[int], experiment: str,
                  base: dict) -> dict[str, Path]:
    figures = {"pareto": report_dir / "pareto.png", "passk": report_dir / "passk.png",
               "transitions": report_dir / "transitions.png"}
    subtitle = (f"{len(runs)} run{'s' * (len(runs) != 1)}; {base.get('theorems', '?')} eval theorems, "
                f"{base.get('samples_per_theorem', '?')} samples each")
    plot_pareto(table, ks[-1], figures["pareto"], f"{experiment}: precision vs coverage", subtitle)
    plot_passk(table, ks, figures["passk"], experiment)
    plot_transitions([(r.method, r.summary.get("buckets")) for r in runs], figures["transitions"], experiment)
    trajectories = trajectory_table(runs)
    if len(trajectories):
        figures["trajectories"] = report_dir / "trajectories.png"
        plot_trajectories(trajectories, figures["trajectories"], f"{experiment}: training trajectories")
        trajectories.to_csv(report_dir / "trajectories.csv", index=False)
    return figures
