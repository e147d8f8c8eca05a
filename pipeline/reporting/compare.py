"""Methods, seeds and paired comparisons of a sweep's runs over the shared eval theorems.

- `group_methods`: runs with the same method label and different `train.seed` are one method with
  several seeds (a sweep over `train.seed` is how a method is reseeded);
- `load_panel`: the per-theorem table of the base evaluation and of every run, read once;
- `gains`, `pairs`, `seed_table`, `seed_pairs`: the paired statistics the report prints (intervals
  from `stats.Bootstrap`, the same resamples for all of them).

A method's per-theorem value is the mean over its seeds of each seed's per-theorem value, so a
method's mean is the mean of its seeds' means, and its interval over theorems is the evaluation's
noise around that mean; the spread across seeds (seed_table) is the training noise beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from pipeline.reporting.metrics import BucketRule, bucket
from pipeline.reporting.runs import Run, read_per_theorem, resolve_path, warn
from pipeline.reporting.stats import NAN, Bootstrap, Interval

EVENTS = ("lost", "gained", "hard_to_unsolvable", "medium_to_easy")


@dataclass
class Method:
    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def seeds(self) -> list:
        return [r.summary.get("seed") for r in self.runs]

    @property
    def summary(self) -> dict:
        return self.first.summary

    @property
    def alpha(self) -> float | None:
        return float(self.summary["alpha"]) if self.first.is_alpha_dpg else None

    @property
    def is_grpo(self) -> bool:
        """A run of the registered `grpo` objective (every KL setting of it, Dr. GRPO included): the
        paper's RL baseline. DS-GRPO, Rewarding the Unlikely, MARA and DPH-RL are objectives of their
        own, built to keep diversity, and are not what the claims call GRPO."""
        return self.summary.get("objective") == "grpo"


def group_methods(runs: list[Run]) -> list[Method]:
    """Runs grouped by method label, in report order; a label whose runs share a seed (or have
    none) stays apart, one method per run, named by the run's unique name."""
    def label_of(run: Run) -> str:
        return str(run.summary.get("method") or run.summary.get("objective") or f"job {run.job}")

    groups: dict[str, Method] = {}
    for run in runs:
        label = label_of(run)
        seeds = [r.summary.get("seed") for r in runs if label_of(r) == label]
        if len(seeds) > 1 and (None in seeds or len(set(seeds)) < len(seeds)):
            label = run.method  # duplicates that are not reseedings: each its own row
        groups.setdefault(label, Method(label)).runs.append(run)
    for method in groups.values():
        method.runs.sort(key=lambda r: (r.summary.get("seed") is None, r.summary.get("seed") or 0))
    return list(groups.values())


def _rule(summary: dict) -> BucketRule:
    rule = (summary.get("buckets") or {}).get("rule")
    return BucketRule(**rule) if rule else BucketRule()


@dataclass
class Panel:
    """Per-theorem values of the base evaluation and of every run, on the theorems all of them share."""
    theorems: pd.Index
    base: pd.DataFrame
    runs: dict[str, pd.DataFrame]  # job -> per-theorem table
    columns: list[str]  # the pass@k columns compared (pass@1 and pass@max-k)
    rule: BucketRule

    def values(self, method: Method, column: str) -> np.ndarray:
        """Per theorem: the mean over the method's seeds of `column` (nan without its tables)."""
        tables = [self.runs[r.job] for r in method.runs if r.job in self.runs]
        if not tables:
            return np.full(len(self.theorems), np.nan)
        return np.mean([t.loc[self.theorems, column].to_numpy(float) for t in tables], axis=0)

    def base_values(self, column: str) -> np.ndarray:
        return self.base.loc[self.theorems, column].to_numpy(float)

    def events(self, method: Method, event: str) -> np.ndarray:
        """Per theorem: the share of the method's seeds in which `event` happened (0/1 for one seed)."""
        base_n, base_c = (self.base.loc[self.theorems, k].to_numpy(int) for k in ("n", "c"))
        base_bucket = np.array([bucket(n, c, self.rule) for n, c in zip(base_n, base_c)])
        out = []
        for r in method.runs:
            if r.job not in self.runs:
                continue
            t = self.runs[r.job].loc[self.theorems]
            n, c = t["n"].to_numpy(int), t["c"].to_numpy(int)
            now = np.array([bucket(a, b, self.rule) for a, b in zip(n, c)])
            out.append({
                "lost": (base_c > 0) & (c == 0),
                "gained": (base_c == 0) & (c > 0),
                "hard_to_unsolvable": (base_bucket == "hard") & (now == "unsolvable"),
                "medium_to_easy": (base_bucket == "medium") & (now == "easy"),
            }[event].astype(float))
        return np.mean(out, axis=0) if out else np.full(len(self.theorems), np.nan)


def load_panel(runs: list[Run], columns: list[str]) -> Panel | None:
    """The per-theorem tables of the base evaluation and of every run (read once each); None when the
    base's is missing. Runs without a readable table are left out of the paired statistics (warned)."""
    first = runs[0]
    base = read_per_theorem(resolve_path(first.summary.get("paths", {}).get("base_per_theorem"), first.folder))
    if base is None:
        warn("the base evaluation's per-theorem table is missing: no paired statistics")
        return None
    tables = {}
    for r in runs:
        table = read_per_theorem(resolve_path(r.summary.get("paths", {}).get("trained_per_theorem"), r.folder))
        if table is None:
            warn(f"{r.method}: no per-theorem table; left out of the paired statistics")
            continue
        tables[r.job] = table
    theorems = base.index
    for t in tables.values():
        theorems = theorems.intersection(t.index)
    if len(theorems) < len(base.index):
        warn(f"paired statistics over the {len(theorems)} theorems every evaluation shares (base: {len(base.index)})")
    cols = [c for c in columns if c in base and all(c in t for t in tables.values())]
    return Panel(theorems, base, tables, cols, _rule(first.summary))


# ---- the statistics


def gains(panel: Panel, methods: list[Method], boot: Bootstrap) -> pd.DataFrame:
    """Per method: its gain over the base model on each compared pass@k (paired interval and
    p-value), and the number of theorems of each bucket event (lost, gained, hard → unsolvable,
    medium → easy) with its interval."""
    rows = []
    for m in methods:
        row = {"method": m.label, "seeds": len(m.runs)}
        for col in panel.columns:
            row.update(boot.interval(panel.values(m, col) - panel.base_values(col)).as_dict(f"{col}_gain"))
        for event in EVENTS:
            row.update(boot.interval(panel.events(m, event), total=True).as_dict(event))
        rows.append(row)
    return pd.DataFrame(rows)


def pairs(panel: Panel, methods: list[Method], boot: Bootstrap) -> pd.DataFrame:
    """Every pair of methods (A before B in report order): A − B on each compared pass@k, paired
    over theorems, with its interval and p-value."""
    rows = []
    for a, b in combinations(methods, 2):
        row = {"a": a.label, "b": b.label}
        for col in panel.columns:
            row.update(boot.interval(panel.values(a, col) - panel.values(b, col)).as_dict(col))
        rows.append(row)
    return pd.DataFrame(rows)


def seed_table(panel: Panel, methods: list[Method], boot: Bootstrap) -> pd.DataFrame:
    """For every method run with several seeds: each seed's pass@k and gain over the base (with its
    interval over theorems), then the mean and standard deviation across seeds."""
    rows = []
    for m in methods:
        if len(m.runs) < 2:
            continue
        per_seed = []
        for r in m.runs:
            one = Method(m.label, [r])
            row = {"method": m.label, "seed": r.summary.get("seed")}
            for col in panel.columns:
                row[col] = float(np.nanmean(panel.values(one, col)))
                row.update(boot.interval(panel.values(one, col) - panel.base_values(col)).as_dict(f"{col}_gain"))
            per_seed.append(row)
        rows += per_seed
        for stat, fn in (("mean", np.mean), ("sd", lambda x: np.std(x, ddof=1))):
            rows.append({"method": m.label, "seed": stat,
                         **{c: float(fn([r[c] for r in per_seed])) for c in per_seed[0] if c not in ("method", "seed")
                            and not c.endswith(("_lo", "_hi", "_p"))}})
    return pd.DataFrame(rows)


def seed_pairs(panel: Panel, methods: list[Method], boot: Bootstrap) -> pd.DataFrame:
    """For every pair of reseeded methods: the difference seed by seed (matched by seed value), each
    with its interval over theorems, and whether it survives reseeding: `survives` when every seed's
    interval excludes 0 on the same side, `sign only` when the signs agree but some interval holds 0,
    `no` when the seeds disagree in sign."""
    multi = [m for m in methods if len(m.runs) >= 2]
    rows = []
    for a, b in combinations(multi, 2):
        shared = [s for s in a.seeds if s in b.seeds]
        for col in panel.columns:
            diffs: list[Interval] = []
            for s in shared:
                ra = Method(a.label, [r for r in a.runs if r.summary.get("seed") == s])
                rb = Method(b.label, [r for r in b.runs if r.summary.get("seed") == s])
                diffs.append(boot.interval(panel.values(ra, col) - panel.values(rb, col)))
            if not diffs:
                continue
            estimates = np.array([d.estimate for d in diffs])
            signs = set(np.sign(estimates[estimates != 0]))
            if len(signs) > 1:
                verdict = "no"
            elif all(d.excludes_zero for d in diffs):
                verdict = "survives"
            else:
                verdict = "sign only"
            rows.append({"a": a.label, "b": b.label, "metric": col, "seeds": len(shared),
                         "per_seed": "; ".join(f"seed {s}: {d.text()}" for s, d in zip(shared, diffs)),
                         "mean": float(estimates.mean()),
                         "sd": float(estimates.std(ddof=1)) if len(estimates) > 1 else math.nan,
                         "survives_reseeding": verdict})
    return pd.DataFrame(rows)


__all__ = ["EVENTS", "Method", "NAN", "Panel", "gains", "group_methods", "load_panel", "pairs", "seed_pairs",
           "seed_table"]


def merged_run(method: Method) -> Run:
    """The Run that stands for a method in the table and the figures: its only run, or for several
    seeds a summary whose numbers are the seeds' means (pass@k, bucket counts and transitions, lost
    and gained counts, budget), named by the method."""
    if len(method.runs) == 1:
        run = method.first
        return Run(run.job, run.folder, run.summary, method.label)
    summaries = [r.summary for r in method.runs]

    def mean_of(values):
        values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return float(np.mean(values)) if values else None

    def merge(dicts: list[dict]) -> dict:
        out = {}
        for key, value in dicts[0].items():
            if isinstance(value, dict):
                out[key] = merge([d.get(key) or {} for d in dicts])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = mean_of([d.get(key) for d in dicts])
            else:
                out[key] = value
        return out

    summary = dict(summaries[0])
    summary["trained"] = merge([s["trained"] for s in summaries])
    summary["budget"] = merge([s.get("budget") or {} for s in summaries])
    buckets = dict(summaries[0].get("buckets") or {})
    if buckets:
        buckets["trained_counts"] = merge([s["buckets"].get("trained_counts") or {} for s in summaries])
        if all(s["buckets"].get("transitions") for s in summaries):
            buckets["transitions"] = np.mean([s["buckets"]["transitions"] for s in summaries], axis=0).tolist()
        for key in ("lost", "gained"):
            buckets[key] = mean_of([len(s["buckets"].get(key) or []) for s in summaries])
    summary["buckets"] = buckets
    paths = [s.get("trajectory") or [] for s in summaries]
    if paths[0] and all(len(t) == len(paths[0]) for t in paths):  # round by round, the seeds' mean
        summary["trajectory"] = [merge(list(points)) for points in zip(*paths)]
    summary["seeds"] = method.seeds
    first = method.first
    return Run(first.job, first.folder, summary, method.label)


def merged_diversity(method: Method, per_run: dict[str, tuple]) -> tuple[pd.DataFrame | None, dict]:
    """A method's diversity: its run's, or the mean over its seeds of the per-theorem tables and averages."""
    tables = [per_run[r.job][0] for r in method.runs if per_run.get(r.job, (None,))[0] is not None]
    averages = [per_run[r.job][1] for r in method.runs if per_run.get(r.job, (None, {}))[1]]
    if len(method.runs) == 1 or not tables:
        return per_run.get(method.first.job, (None, {}))
    table = pd.concat(tables).groupby("theorem_id", sort=False).mean(numeric_only=True).reset_index()
    merged = {k: float(np.mean([a[k] for a in averages if k in a])) for k in averages[0]} if averages else {}
    return table, merged
