"""The store's get-or-build protocol under concurrency: several processes ask for one key at once.

Exactly one builds; every other waits on the key's lock and reuses what it built; a finished
artifact is never removed or replaced, so a process reading it never sees a missing file.
The stage exercised is `bucket` (the cheapest stage with real inputs); its build is slowed down so
that every process is already waiting on the lock when the first one commits.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.context import Context
from pipeline.store import ArtifactStore, write_json, write_parquet
from pipeline.tracking import RunLogger

PROCESSES = 4


def _evaluation(store: ArtifactStore, label: str, counts: list[tuple[int, int]]):
    """A finished `evaluate` artifact with a per-theorem table."""
    art = store.artifact("evaluate", {"label": label})
    art.work.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"theorem_id": [f"t{i}" for i in range(len(counts))],
                          "n": [n for n, _ in counts], "c": [c for _, c in counts]})
    write_parquet(art.work / "per_theorem.parquet", table)
    write_json(art.work / "summary.json", {"pass@1": 0.5})
    return store.commit(art, {"label": label})


def _ask(root: str, run_dir: str, start_at: float, out: str) -> None:
    """One job: wait for the common start, ask for the bucket artifact, then read it repeatedly."""
    from pipeline.stages import bucket

    real_compare = bucket.compare

    def slow_compare(*args, **kwargs):
        with open(Path(out).with_suffix(".built"), "a") as f:
            f.write("1\n")
        time.sleep(0.8)  # every other job is now waiting on the lock
        return real_compare(*args, **kwargs)

    bucket.compare = slow_compare
    store = ArtifactStore(root)
    base = store.artifact("evaluate", {"label": "base"})
    trained = store.artifact("evaluate", {"label": "trained"})
    cfg = OmegaConf.create({"logger": {"backend": "none"}, "progress": False})
    ctx = Context(cfg=cfg, store=store, run_dir=Path(run_dir), log=RunLogger(Path(run_dir)))
    time.sleep(max(0.0, start_at - time.time()))
    art = bucket.bucket_runs(ctx, base, trained)
    missing = 0
    for _ in range(200):  # keep reading while the other jobs finish: the files must stay there
        try:
            json.loads(art.file("transitions.json").read_text())
            pd.read_parquet(art.file("buckets.parquet"))
        except (FileNotFoundError, OSError, ValueError):
            missing += 1
        time.sleep(0.01)
    Path(out).write_text(json.dumps({"key": art.key, "missing": missing}))


def test_one_key_asked_by_several_processes_is_built_once_and_never_replaced(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    _evaluation(store, "base", [(8, 0), (8, 3), (8, 8)])
    _evaluation(store, "trained", [(8, 1), (8, 2), (8, 8)])
    start_at = time.time() + 3.0
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ask, args=(str(tmp_path / "store"), str(tmp_path / f"run{i}"), start_at,
                                            str(tmp_path / f"out{i}.json")))
             for i in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(PROCESSES)]
    built = sum(len((tmp_path / f"out{i}.built").read_text().split()) for i in range(PROCESSES)
                if (tmp_path / f"out{i}.built").exists())
    assert built == 1, f"{built} processes built the same artifact"
    assert len({r["key"] for r in results}) == 1
    assert all(r["missing"] == 0 for r in results), results


def test_commit_refuses_to_replace_a_finished_artifact(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.artifact("x", {"a": 1})
    art.work.mkdir(parents=True)
    (art.work / "data.txt").write_text("first")
    store.commit(art, {})
    art.work.mkdir(parents=True)
    (art.work / "data.txt").write_text("second")
    with pytest.raises(RuntimeError, match="finished"):
        store.commit(art, {})
    assert art.file("data.txt").read_text() == "first"


@pytest.mark.slow
def test_a_multirun_builds_each_shared_stage_once(tmp_path):
    """Two jobs of a multirun start together with no prepare_shared callback (the smoke experiment has
    none): each shared artifact (base model, its samples and verdicts, the base evaluation) is built
    by exactly one job; the other waits and reuses it."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pipeline", "-m", "+experiment=smoke", "hydra/launcher=local",
           "hydra.launcher.n_jobs=2", "threads=1", f"output_dir={tmp_path}", "progress=false",
           "+method=dpg_a05,rsft"]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    events = []
    for metrics in tmp_path.glob("sweeps/smoke/*/*/metrics.jsonl"):
        events += [json.loads(line) for line in metrics.read_text().splitlines() if '"event": true' in line]
    assert len({str(m.parent) for m in tmp_path.glob("sweeps/smoke/*/*/metrics.jsonl")}) == 2
    for label in ("pretrain", "sample", "verify", "evaluate[base]"):
        built = [e for e in events if e["stage"] == label and not e["reused"]]
        reused = [e for e in events if e["stage"] == label and e["reused"]]
        assert len(built) == 1 and len(reused) == 1, (label, built, reused)
        assert built[0]["artifact"] == reused[0]["artifact"]
