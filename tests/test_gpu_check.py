"""scripts/gpu_check.py: its CPU dry run (every part at tiny size, through the pipeline's stages) and
its offline install of what a GPU node lacks."""

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_runs_every_part_and_prints_one_table(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out"), "--fsdp-procs", "2"]
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HOME": str(tmp_path)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout.split("== gpu_check:")[1].splitlines()
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in table if "|" in line}
    assert set(rows) == {"check", "pretrain (embedded base model)", "hf sampler", "train step: alpha-DPG",
                         "train step: GRPO", "FSDP train step"}
    for name, (_, status, figure, _detail) in rows.items():
        if name != "check":
            assert status == "ok", rows[name]
    assert rows["pretrain (embedded base model)"][2].endswith("s/1000 steps")
    assert rows["hf sampler"][2].endswith("tok/s")
    assert rows["train step: GRPO"][2].endswith("s/step")
    assert "on 2 ranks" in rows["FSDP train step"][3]


def test_without_cuda_it_points_to_the_dry_run(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the full check would run")
    assert load_script().main(["--out", str(tmp_path)]) == 2
    assert "use --dry-run" in capsys.readouterr().err


def test_missing_packages_come_from_the_wheel_folder_with_no_index(monkeypatch):
    gpu_check = load_script()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec",
                        lambda name: None if name in ("hydra", "pyarrow") else real_find_spec(name))
    with pytest.raises(SystemExit, match="missing hydra-core, pyarrow.*scripts/gpu_wheels.sh"):
        gpu_check.ensure_packages(None)
    ran = []
    monkeypatch.setattr(gpu_check.subprocess, "run", lambda cmd: ran.append(cmd) or SimpleNamespace(returncode=0))
    gpu_check.ensure_packages("/wheels")
    assert ran == [[sys.executable, "-m", "pip", "install", "--no-index", "--find-links", "/wheels",
                    "hydra-core", "pyarrow"]]
    monkeypatch.setattr(gpu_check.subprocess, "run", lambda cmd: SimpleNamespace(returncode=1))
    with pytest.raises(SystemExit, match="failed .*scripts/gpu_wheels.sh made for this Python"):
        gpu_check.ensure_packages("/wheels")
