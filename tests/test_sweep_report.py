"""The sweep report over a synthetic sweep folder: table, Pareto frontier, figures, W&B offline run."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline.reporting import plots
from pipeline.reporting import sweep as sweep_report
from pipeline.reporting.plots import pareto_frontier
from pipeline.reporting.sweep import report_sweep

KS = [1, 2, 4]
STATEMENT = "theorem t1 (p q : Prop) : p ∧ q → q ∧ p"
PROOFS = ["by\n  intro h1\n  exact ⟨h1.2, h1.1⟩", "by\n  intro hpq\n  exact ⟨hpq.2, hpq.1⟩",  # one proof, renamed
          "fun ⟨hp, hq⟩ => ⟨hq, hp⟩", "by intro ⟨hp, hq⟩; exact ⟨hq, hp⟩"]

# job folder -> (method, objective, alpha, pass@1, pass@4, accepted proofs of theorem A, transitions)
EASY_MED = [[1, 0, 0, 0], [1, 0, 0, 0]]
RUNS = {
    "0": ("α-DPG α=0.5", "alpha_dpg", 0.5, 0.45, 0.75, PROOFS[:3], EASY_MED + [[0, 0, 0, 1], [0, 0, 0, 1]]),
    "1": ("α-DPG α=0.1", "alpha_dpg", 0.1, 0.35, 0.80, PROOFS,
          [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]),
    "2": ("GRPO (KL)", "grpo_kl", None, 0.60, 0.58, PROOFS[:1], EASY_MED + [[0, 0, 0, 1], [0, 0, 0, 1]]),
    "3": ("RS-FT", "rsft", None, 0.40, 0.70, PROOFS[:2], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]),
    "4": ("α-DPG α=0.9", "alpha_dpg", 0.9, 0.55, 0.62, PROOFS[:2], EASY_MED + [[0, 0, 1, 0], [0, 0, 0, 1]]),
}
BASE = {"pass@1": 0.30, "pass@2": 0.45, "pass@4": 0.60, "theorems": 4, "samples_per_theorem": 4}


def _verdicts(accepted: list[str]) -> pd.DataFrame:
    """Theorem A gets the accepted proofs (padded with failures to 4 samples), B, C, D only failures."""
    rows = []
    for tid in "ABCD":
        proofs = accepted if tid == "A" else []
        for i in range(4):
            ok = i < len(proofs)
            rows.append({"theorem_id": tid, "statement": STATEMENT, "sample_idx": i, "completion": "",
                         "proof": proofs[i] if ok else "by simp", "logp": -1.0, "sample_logp": -1.0,
                         "num_tokens": 5, "finished": True, "token_ids": [1, 2], "verdict": "pass" if ok else "fail",
                         "message": "", "seconds": 0.01})
    return pd.DataFrame(rows)


def _per_theorem(c_a: int) -> pd.DataFrame:
    from pipeline.reporting.metrics import pass_at_k

    table = pd.DataFrame({"theorem_id": list("ABCD"), "n": 4, "c": [c_a, 0, 0, 0], "errors": 0})
    for k in KS:  # as the evaluate stage writes it
        table[f"pass@{k}"] = [pass_at_k(4, c, k) for c in table["c"]]
    return table


def _passk(p1: float, p4: float) -> dict:
    return {"pass@1": p1, "pass@2": round((p1 + p4) / 2, 3), "pass@4": p4}


def make_sweep(root: Path, runs: dict = RUNS) -> Path:
    sweep = root / "sweep"
    store = root / "store"
    store.mkdir(parents=True)
    _verdicts(PROOFS[:2]).to_parquet(store / "base_verdicts.parquet")
    _per_theorem(2).to_parquet(store / "base_per_theorem.parquet")
    for job, (method, objective, alpha, p1, p4, accepted, transitions) in runs.items():
        folder = sweep / job
        folder.mkdir(parents=True)
        _verdicts(accepted).to_parquet(folder / "verdicts.parquet")
        _per_theorem(len(accepted)).to_parquet(folder / "per_theorem.parquet")
        counts = [sum(col) for col in zip(*transitions)]
        summary = {
            "experiment": "alpha_sweep", "method": method, "objective": objective, "alpha": alpha,
            "mode": "online", "budget": {"rounds": 4, "steps": 120, "train_samples": 8192}, "ks": KS,
            "base": BASE, "trained": {**_passk(p1, p4), "theorems": 4, "samples_per_theorem": 4},
            "buckets": {"buckets": ["easy", "medium", "hard", "unsolvable"], "transitions": transitions,
                        "base_counts": {"easy": 1, "medium": 1, "hard": 1, "unsolvable": 1},
                        "trained_counts": dict(zip(["easy", "medium", "hard", "unsolvable"], counts)),
                        "lost": ["C"] if transitions[2][3] else [], "gained": ["D"] if transitions[3][2] else []},
            "paths": {"base_verdicts": str(store / "base_verdicts.parquet"),
                      "trained_verdicts": str(folder / "verdicts.parquet"),
                      "base_per_theorem": str(store / "base_per_theorem.parquet"),
                      "trained_per_theorem": str(folder / "per_theorem.parquet")},
        }
        (folder / "run_summary.json").write_text(json.dumps(summary, ensure_ascii=False))
    (sweep / "5" / ".hydra").mkdir(parents=True)  # a job that died before writing its summary
    return sweep


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sweep = make_sweep(tmp_path_factory.mktemp("s"))
    outputs = report_sweep(sweep, wandb_mode="disabled")
    return sweep, outputs


def test_pareto_frontier_on_hand_chosen_points():
    points = [(0.3, 0.9), (0.5, 0.8), (0.4, 0.7), (0.5, 0.8), (0.6, 0.5), (0.2, 0.95), (0.6, 0.4),
              (float("nan"), 1.0)]
    # (0.4, 0.7) is dominated by (0.5, 0.8); (0.6, 0.4) by (0.6, 0.5); equal points are both kept
    assert pareto_frontier(points) == [5, 0, 1, 3, 4]
    assert pareto_frontier([(0.5, 0.5)]) == [0]
    assert pareto_frontier([]) == []


def test_table_rows_and_values(report):
    _, outputs = report
    table = pd.read_csv(outputs["table_csv"])
    assert table["method"].tolist() == ["base model", "α-DPG α=0.1", "α-DPG α=0.5", "α-DPG α=0.9",
                                        "GRPO (KL)", "RS-FT"]
    assert list(table.columns[:7]) == ["job", "method", "objective", "alpha", "mode", "pass@1", "pass@4"]
    rows = table.set_index("method")
    assert rows.loc["base model", "pass@1"] == 0.30 and rows.loc["base model", "pass@4"] == 0.60
    assert rows.loc["base model", "unsolvable"] == 1 and math.isnan(rows.loc["base model", "lost"])
    a05 = rows.loc["α-DPG α=0.5"]
    assert (a05["alpha"], a05["pass@1"], a05["pass@4"], a05["pass@2"]) == (0.5, 0.45, 0.75, 0.6)
    assert (a05["easy"], a05["medium"], a05["hard"], a05["unsolvable"]) == (2, 0, 0, 2)
    assert (a05["hard_to_unsolvable"], a05["medium_to_easy"], a05["lost"], a05["gained"]) == (1, 1, 1, 0)
    assert rows.loc["α-DPG α=0.1", "gained"] == 1 and rows.loc["α-DPG α=0.1", "hard_to_unsolvable"] == 0
    assert math.isnan(rows.loc["GRPO (KL)", "alpha"]) and rows.loc["GRPO (KL)", "budget_steps"] == 120
    # diversity: theorem A has 3 accepted proofs (two are one proof renamed) of 4 theorems -> 2 / 4
    assert rows.loc["α-DPG α=0.5", "distinct_proofs"] == pytest.approx(0.5)
    assert rows.loc["α-DPG α=0.1", "distinct_proofs"] == pytest.approx(3 / 4)
    assert rows.loc["base model", "distinct_proofs"] == pytest.approx(1 / 4)
    md = outputs["table_md"].read_text()
    assert "| α-DPG α=0.5 | 0.5 | 0.450 | 0.600 | 0.750 |" in md and "5: no run_summary.json" in md


def test_skipped_job_is_named(tmp_path, capsys):
    sweep = make_sweep(tmp_path, {"0": RUNS["0"]})
    report_sweep(sweep, wandb_mode="disabled")
    captured = capsys.readouterr()
    assert "WARNING: skipping job folder 5: no run_summary.json" in captured.err
    assert "pareto plot:" in captured.out and str(sweep / "report") in captured.out
    assert "5: no run_summary.json" in (sweep / "report" / "README.md").read_text()


def test_figures_and_diversity_files_are_written(report):
    _, outputs = report
    for name in ("pareto_png", "passk_png", "transitions_png"):
        assert outputs[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    div = pd.read_csv(outputs["diversity_csv"]).set_index("method")
    assert div.loc["α-DPG α=0.1", "distinct_proofs_solved"] == 3 and div.loc["α-DPG α=0.1", "solved_theorems"] == 1
    per_theorem = pd.read_csv(outputs["diversity_per_theorem_csv"])
    assert len(per_theorem) == 6 * 4 and per_theorem["solved"].sum() == 6  # only theorem A, in every run
    corr = pd.read_csv(outputs["diversity_correlations_csv"])
    assert set(corr["target"]) == {"pass@1", "pass@4"} and corr["runs"].max() == 5
    assert "pareto.png" in outputs["readme"].read_text()


def test_cli_runs_alone_and_fails_cleanly_on_an_empty_folder(report, tmp_path, capsys):
    sweep, _ = report
    assert sweep_report.main([str(sweep), "--wandb-mode", "disabled"]) == 0
    assert sweep_report.main([str(tmp_path)]) == 1
    assert "no run_summary.json" in capsys.readouterr().err


def test_wandb_offline_run_holds_the_table(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = make_sweep(tmp_path)
    outputs = report_sweep(sweep)  # the mode comes from WANDB_MODE
    run_dir = outputs["wandb_run_dir"]
    assert run_dir.parent == sweep / "report" / "wandb" and run_dir.name.startswith("offline-run-")
    assert list(run_dir.glob("*.wandb"))
    tables = list((run_dir / "files" / "media" / "table").glob("sweep_table_*.table.json"))
    assert tables
    logged = json.loads(tables[0].read_text())
    assert "pass@1" in logged["columns"] and "pass@4" in logged["columns"]
    assert {row[logged["columns"].index("method")] for row in logged["data"]} >= {"base model", "RS-FT"}
    assert list((run_dir / "files" / "media" / "images").glob("pareto_*.png"))


def _hydra_like_config(sweep_dir: Path):
    from omegaconf import OmegaConf

    return OmegaConf.create({"experiment": "alpha_sweep", "logger": {"backend": "none", "project": "dmvr"},
                             "hydra": {"sweep": {"dir": str(sweep_dir)}}})


def test_callback_reports_at_the_end_of_a_multirun(tmp_path):
    from pipeline.callbacks import SweepReport

    sweep = make_sweep(tmp_path)
    SweepReport().on_multirun_end(_hydra_like_config(sweep))  # logger.backend=none: W&B disabled
    assert (sweep / "report" / "pareto.png").exists() and not (sweep / "report" / "wandb").exists()


def test_callback_prints_a_failing_report_without_raising(tmp_path, capsys):
    from pipeline.callbacks import SweepReport

    (tmp_path / "0").mkdir()  # a sweep whose only job left nothing
    SweepReport().on_multirun_end(_hydra_like_config(tmp_path))
    err = capsys.readouterr().err
    assert "sweep report FAILED" in err and f"python -m pipeline.reporting {tmp_path}" in err


# ---- power sampling: untrained runs whose evaluation sampled p^γ, one point per γ with its token cost

POWER_RUNS = {"6": (4.0, 0.52, 0.66, 7.25), "7": (2.0, 0.41, 0.71, 4.5)}  # job -> (γ, pass@1, pass@4, token cost)


def add_power_jobs(sweep: Path) -> None:
    """Power-sampling jobs as report.run_summary writes them: objective none, sampler power with γ,
    the token cost in the evaluation summary and the budget."""
    template = json.loads((sweep / "0" / "run_summary.json").read_text())
    for job, (gamma, p1, p4, cost) in POWER_RUNS.items():
        folder = sweep / job
        folder.mkdir()
        summary = {**template, "method": f"power γ={gamma:g}", "objective": "none", "alpha": None, "mode": "",
                   "sampler": {"name": "power", "gamma": gamma},
                   "budget": {"rounds": 0, "steps": 0, "train_samples": 0, "sampling_token_cost": cost},
                   "trained": {**_passk(p1, p4), "theorems": 4, "samples_per_theorem": 4, "token_cost": cost,
                               "mean_tokens": 40.0, "mean_generated_tokens": 40.0 * cost, "acceptance_rate": 0.3}}
        (folder / "run_summary.json").write_text(json.dumps(summary, ensure_ascii=False))


def test_power_runs_are_their_own_points_with_their_token_cost(tmp_path, monkeypatch):
    sweep = make_sweep(tmp_path)
    add_power_jobs(sweep)
    labels = []
    real_place = plots._place_labels
    monkeypatch.setattr(plots, "_place_labels",
                        lambda ax, xs, ys, texts, **kw: labels.extend(texts) or real_place(ax, xs, ys, texts, **kw))
    outputs = report_sweep(sweep, wandb_mode="disabled")
    table = pd.read_csv(outputs["table_csv"])
    # after the α-DPG runs, in γ order, before the other baselines
    assert table["method"].tolist() == ["base model", "α-DPG α=0.1", "α-DPG α=0.5", "α-DPG α=0.9",
                                        "power γ=2", "power γ=4", "GRPO (KL)", "RS-FT"]
    rows = table.set_index("method")
    assert (rows.loc["power γ=2", "gamma"], rows.loc["power γ=2", "token_cost"]) == (2.0, 4.5)
    assert (rows.loc["power γ=4", "pass@1"], rows.loc["power γ=4", "budget_sampling_token_cost"]) == (0.52, 7.25)
    assert rows[["gamma", "token_cost"]].drop(["power γ=2", "power γ=4"]).isna().all().all()
    assert "power γ=2 (×4.5 tokens)" in labels and "power γ=4 (×7.2 tokens)" in labels
    assert "α=0.5" in labels and "RS-FT" in labels
    md = outputs["table_md"].read_text()
    assert "| power γ=4 |  | 0.520 | 0.590 | 0.660 | 0.188 | 0.250 | 4 | 7.250 |" in md
    assert outputs["pareto_png"].read_bytes()[:4] == b"\x89PNG"


def test_standard_errors_over_theorems(tmp_path):
    from pipeline.reporting.runs import read_per_theorem
    from pipeline.reporting.tables import standard_errors

    path = tmp_path / "per_theorem.parquet"
    pd.DataFrame({"theorem_id": list("ABCD"), "pass@1": [1.0, 0.0, 0.0, 0.0], "pass@4": [1.0, 1.0, 0.0, 0.0]}
                 ).to_parquet(path)
    se = standard_errors(read_per_theorem(path), ["pass@1", "pass@4", "pass@8"])
    # sample std of [1, 0, 0, 0] is 0.5 and of [1, 1, 0, 0] is 0.577..., over sqrt(4) theorems
    assert se["pass@1_se"] == pytest.approx(0.25)
    assert se["pass@4_se"] == pytest.approx(math.sqrt(1 / 3) / 2)
    assert math.isnan(se["pass@8_se"])  # a k the evaluation did not report
    assert math.isnan(standard_errors(read_per_theorem(tmp_path / "missing.parquet"), ["pass@1"])["pass@1_se"])


def test_report_table_has_standard_error_columns(report):
    _, outputs = report
    table = pd.read_csv(outputs["table_csv"])
    assert {"pass@1_se", "pass@4_se"} <= set(table.columns) and len(table) == 6


def test_paired_gain_over_the_base(tmp_path):
    from pipeline.reporting.runs import read_per_theorem
    from pipeline.reporting.tables import paired_gains

    base, run = tmp_path / "base.parquet", tmp_path / "run.parquet"
    pd.DataFrame({"theorem_id": list("ABCD"), "pass@1": [0.5, 0.1, 0.0, 0.2]}).to_parquet(base)
    # E is not in the base evaluation: only the theorems both evaluated are paired
    pd.DataFrame({"theorem_id": list("DCBAE"), "pass@1": [0.4, 0.0, 0.3, 0.5, 1.0]}).to_parquet(run)
    gain = paired_gains(read_per_theorem(base), read_per_theorem(run), ["pass@1", "pass@4"])
    diff = [0.0, 0.2, 0.0, 0.2]  # A, B, C, D
    mean = sum(diff) / 4
    se = math.sqrt(sum((d - mean) ** 2 for d in diff) / 3) / 2
    assert gain["pass@1_gain"] == pytest.approx(0.1) and gain["pass@1_gain_se"] == pytest.approx(se)
    assert math.isnan(gain["pass@4_gain"])  # a k neither evaluation reports
    assert math.isnan(paired_gains(read_per_theorem(base), read_per_theorem(tmp_path / "missing.parquet"), ["pass@1"])["pass@1_gain"])
    assert read_per_theorem(tmp_path / "missing.parquet") is None


def test_report_table_has_paired_gain_columns(report):
    _, outputs = report
    table = pd.read_csv(outputs["table_csv"])
    assert math.isnan(table.loc[0, "pass@1_gain"])  # the base row
    # theorem A has 2 of 4 accepted for the base, len(accepted) for each run; B–D none for either
    runs = table.iloc[1:].set_index("job")
    for job, run in RUNS.items():
        assert runs.loc[int(job), "pass@1_gain"] == pytest.approx((len(run[5]) - 2) / 4 / 4)
    assert "Gain over the base model" in Path(outputs["table_md"]).read_text()


def test_reseeded_runs_are_one_row_with_seed_and_paired_tables(tmp_path):
    """A second seed of α = 0.5 joins the first as one method (its numbers the seeds' means); the
    report adds the gains with intervals, the claims, the seed table and the pairwise matrices."""
    sweep = make_sweep(tmp_path)
    template = json.loads((sweep / "0" / "run_summary.json").read_text())
    folder = sweep / "8"
    folder.mkdir()
    _per_theorem(1).to_parquet(folder / "per_theorem.parquet")
    _verdicts(PROOFS[:1]).to_parquet(folder / "verdicts.parquet")
    summary = {**template, "seed": 1, "trained": {**_passk(0.35, 0.65), "theorems": 4, "samples_per_theorem": 4},
               "paths": {**template["paths"], "trained_per_theorem": str(folder / "per_theorem.parquet"),
                         "trained_verdicts": str(folder / "verdicts.parquet")}}
    (folder / "run_summary.json").write_text(json.dumps(summary, ensure_ascii=False))
    template["seed"] = 0
    (sweep / "0" / "run_summary.json").write_text(json.dumps(template, ensure_ascii=False))
    outputs = report_sweep(sweep, wandb_mode="disabled")
    table = pd.read_csv(outputs["table_csv"]).set_index("method")
    assert list(table.index).count("α-DPG α=0.5") == 1
    assert table.loc["α-DPG α=0.5", "pass@1"] == pytest.approx((0.45 + 0.35) / 2)
    assert {"pass@1_gain_lo", "pass@1_gain_hi", "pass@1_gain_p"} <= set(table.columns)
    seeds = pd.read_csv(outputs["seeds_csv"])
    assert seeds[seeds["method"] == "α-DPG α=0.5"]["seed"].astype(str).tolist() == ["0", "1", "mean", "sd"]
    md = outputs["table_md"].read_text()
    assert "## The paper's claims" in md and "pass@1 rises with α" in md and "## Reseeding" in md
    assert "pass@4 gain [95 % CI] (p)" in md
    pairs_md = outputs["pairs_md"].read_text()
    assert "| row − column |" in pairs_md and "RS-FT" in pairs_md
    assert len(pd.read_csv(outputs["pairs_csv"])) == 5 * 4 // 2  # every pair of the five methods
    claims = pd.read_csv(outputs["claims_csv"])
    assert set(claims["verdict"]) <= {"reproduced", "contradicted", "inconclusive at this power", "not testable"}


def test_trajectories_are_drawn_and_tabled_when_runs_have_them(tmp_path):
    sweep = make_sweep(tmp_path)
    for job, slope in (("0", 0.05), ("2", 0.1)):
        path = sweep / job / "run_summary.json"
        summary = json.loads(path.read_text())
        summary["trajectory"] = [{"round": r, "steps": 8 * r, "k": 16, "pass@1": 0.3 + slope * r,
                                  "pass@16": 0.7 - slope * r / 2} for r in range(4)]
        path.write_text(json.dumps(summary, ensure_ascii=False))
    outputs = report_sweep(sweep, wandb_mode="disabled")
    assert outputs["trajectories_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(sweep / "report" / "trajectories.csv")
    assert set(table["method"]) == {"α-DPG α=0.5", "GRPO (KL)"} and len(table) == 8
    grpo = table[table["method"] == "GRPO (KL)"].sort_values("round")
    assert grpo["pass@1"].tolist() == pytest.approx([0.3, 0.4, 0.5, 0.6])


def test_a_report_note_of_the_runs_heads_the_tables(tmp_path):
    sweep = make_sweep(tmp_path)
    for job in ("0", "1"):
        path = sweep / job / "run_summary.json"
        summary = json.loads(path.read_text())
        summary["note"] = "A first look: too small to conclude."
        path.write_text(json.dumps(summary, ensure_ascii=False))
    md = report_sweep(sweep, wandb_mode="disabled")["table_md"].read_text()
    assert md.splitlines()[2] == "> **A first look: too small to conclude.**" and md.count("too small") == 1
