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
