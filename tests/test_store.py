import multiprocessing as mp
import os
import signal
import time

import pandas as pd
import pytest

from pipeline.store import ArtifactStore, Shards, stable_hash, write_parquet


def test_key_depends_on_config_inputs_and_version(tmp_path):
    store = ArtifactStore(tmp_path)
    a = store.artifact("sample", {"n": 4})
    assert a.key == store.artifact("sample", {"n": 4}).key
    assert a.key != store.artifact("sample", {"n": 5}).key
    assert a.key != store.artifact("sample", {"n": 4}, version=2).key
    b = store.artifact("verify", {}, inputs={"samples": a})
    c = store.artifact("verify", {}, inputs={"samples": store.artifact("sample", {"n": 5})})
    assert b.key != c.key


def test_commit_is_atomic_and_marks_done(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.artifact("x", {"a": 1})
    assert not art.done
    art.work.mkdir(parents=True)
    write_parquet(art.work / "t.parquet", pd.DataFrame({"v": [1, 2]}))
    assert not art.done  # work in progress is invisible under the final name
    store.commit(art, {"rows": 2})
    assert art.done and not art.work.exists()
    assert art.meta["rows"] == 2
    assert pd.read_parquet(art.file("t.parquet")).v.tolist() == [1, 2]


def test_collective_build_commits_after_every_rank_is_done_with_the_work_folder(tmp_path):
    """Ranks of one torchrun job build an artifact together and the main rank commits (renames the
    work folder): not while another rank still reads it. Two threads stand for two ranks."""
    import threading
    from types import SimpleNamespace

    store = ArtifactStore(tmp_path)
    barrier = threading.Barrier(2)
    errors = []

    def rank(r):
        def make(art):
            if r == 0:
                write_parquet(art.work / "round.parquet", pd.DataFrame({"v": [1]}))
            barrier.wait(timeout=10)
            if r == 1:
                time.sleep(0.3)  # the slower rank still reads when the main rank has finished
                pd.read_parquet(art.work / "round.parquet")
            return {"rank": r}

        try:
            collective = SimpleNamespace(main=r == 0, barrier=lambda: barrier.wait(timeout=10))
            store.build("train", {"a": 1}, make, collective=collective)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert store.artifact("train", {"a": 1}).meta["rank"] == 0


def test_shards_resume_without_duplicates(tmp_path):
    shards = Shards(tmp_path / "w")
    for i in range(3):
        shards.write(i, pd.DataFrame({"i": [i, i]}))
    assert [shards.done(i) for i in range(4)] == [True, True, True, False]
    with pytest.raises(RuntimeError, match="missing"):
        shards.concat(4)
    shards.write(3, pd.DataFrame({"i": [3, 3]}))
    assert shards.concat(4).i.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def _hold_lock(root, key_cfg, hold_s, started):
    store = ArtifactStore(root)
    art = store.artifact("x", key_cfg)
    with store.lock(art):
        started.set()
        time.sleep(hold_s)
        art.work.mkdir(parents=True, exist_ok=True)
        store.commit(art, {"by": os.getpid()})


def test_lock_makes_second_job_wait_then_reuse(tmp_path):
    started = mp.Event()
    p = mp.Process(target=_hold_lock, args=(tmp_path, {"k": 1}, 1.0, started))
    p.start()
    started.wait(10)
    store = ArtifactStore(tmp_path)
    art = store.artifact("x", {"k": 1})
    t = time.time()
    with store.lock(art):
        waited = time.time() - t
        assert art.done  # the first job finished while we waited
    p.join()
    assert waited > 0.5


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
