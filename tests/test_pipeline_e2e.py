"""End to end: the smoke experiment runs, reruns as pure reuse, and resumes exactly after SIGKILLs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_smoke(out: Path, *overrides: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("DMVR_FAULT", None)
    if fault:
        env["DMVR_FAULT"] = fault
    cmd = [sys.executable, "-m", "pipeline", "+experiment=smoke", f"output_dir={out}", "progress=false", *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def only(store: Path, stage: str, pattern: str = "*") -> Path:
    found = [p for p in (store / stage).glob(pattern) if p.is_dir() and not p.name.endswith(".partial")]
    assert found, f"no {stage} artifact in {store}"
    return found[0]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    t = time.time()
    first = run_smoke(out)
    first_s = time.time() - t
    assert first.returncode == 0, first.stderr[-4000:]
    return out, first, first_s


def test_smoke_runs_every_stage_and_reports(clean_run):
    out, first, seconds = clean_run
    for stage in ("pretrain", "sample", "verify", "train", "evaluate", "bucket", "report"):
        assert f"[{stage}] built" in first.stderr or f"[{stage}[" in first.stderr, stage
    assert "report:" in first.stderr
    runs = list((out / "runs" / "smoke").glob("*/report.md"))
    assert runs and "pass@1" in runs[0].read_text()
    assert seconds < 180, f"smoke took {seconds:.0f}s"


def test_rerun_reuses_everything(clean_run):
    out, _, _ = clean_run
    t = time.time()
    again = run_smoke(out)
    assert again.returncode == 0, again.stderr[-4000:]
    assert " built:" not in again.stderr, again.stderr
    assert again.stderr.count(" reused:") >= 7
    assert time.time() - t < 30


def test_sigkill_during_sampling_and_training_resumes_to_identical_artifacts(clean_run, tmp_path):
    reference, _, _ = clean_run
    out = tmp_path / "killed"
    died = run_smoke(out, fault="sample:shard=1")
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert list((out / "store" / "sample").glob("*.partial/shard-00001.parquet"))
    died = run_smoke(out, fault="train:step=3")
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert list((out / "store" / "train").glob("*.partial/checkpoint.pt"))
    done = run_smoke(out)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resuming at step 2" in done.stdout + done.stderr

    ref_store, store = reference / "store", out / "store"
    for stage in ("sample", "verify", "train", "evaluate"):
        assert sorted(p.name for p in (ref_store / stage).iterdir() if p.is_dir()) == \
               sorted(p.name for p in (store / stage).iterdir() if p.is_dir()), stage
    for sample_dir in (ref_store / "sample").iterdir():
        if sample_dir.is_dir():
            a = pd.read_parquet(sample_dir / "samples.parquet")
            b = pd.read_parquet(store / "sample" / sample_dir.name / "samples.parquet")
            pd.testing.assert_frame_equal(a, b)
    train_dir = only(ref_store, "train")
    a = load_file(train_dir / "model" / "model.safetensors")
    b = load_file(store / "train" / train_dir.name / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k


def test_toy_alpha_sweep_runs_jobs_in_parallel_and_reports(clean_run):
    """The real alpha_sweep experiment (joblib launcher, shared stages built first, report at the
    end) at smoke size, three methods, on the smoke run's store."""
    out, _, _ = clean_run
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("DMVR_FAULT", None)
    smoke = ["model.path=", "model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=1", "model.num_heads=2",
             "model.vocab_size=384", "pretrain.extra_theorems=100", "pretrain.proofs_per_theorem=4",
             "pretrain.steps=60", "pretrain.batch_size=32", "pretrain.checkpoint_every=20",
             "dataset.train_limit=24", "dataset.eval_limit=12", "sampler.samples_per_prompt=4",
             "sampler.max_new_tokens=48", "sampler.prompts_per_shard=8", "eval.samples_per_prompt=8",
             "eval.ks=[1,2,4,8]", "train.prompts_per_round=8", "train.rounds=2", "train.batch_size=16"]
    cmd = [sys.executable, "-m", "pipeline", "+experiment=alpha_sweep", f"output_dir={out}", "progress=false",
           "logger.backend=none", *smoke, "+method=dpg_a05,rsft,grpo"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    log = done.stdout + done.stderr
    assert "building what every job shares" in log and "Joblib.Parallel(n_jobs=2" in log
    # the jobs found the shared artifacts built before them
    assert "[pretrain] built" not in log.split("Launching jobs")[1]
    sweep = sorted((out / "sweeps" / "alpha_sweep").iterdir())[-1]
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    table = pd.read_csv(sweep / "report" / "table.csv")
    assert {"α-DPG α=0.5", "RS-FT", "GRPO (β=0.04)"} <= set(table["method"])
    assert (sweep / "report" / "pareto.png").stat().st_size > 0
