"""The embedded benchmark under real Lean 4: every shipped eval theorem with its reference proof and
with every generator style must be accepted by `lean` (core, no imports).

Runs only where a `lean` executable is on PATH (a user's machine with elan); here it skips and says why.
This is the test that keeps the `prop` checker honest: the checker claims soundness for its fragment,
and Lean is the judge.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lean_env.propgen import render_all

ROOT = Path(__file__).resolve().parents[1]
LEAN = shutil.which("lean")
pytestmark = [pytest.mark.lean, pytest.mark.skipif(
    LEAN is None, reason="no `lean` executable on PATH (install elan + a Lean 4 toolchain to run this test)")]


def _eval_rows():
    return [json.loads(line) for line in (ROOT / "lean_env/data/prop_eval.jsonl").read_text().splitlines() if line]


def _renamed(statement: str, suffix: str) -> str:
    return re.sub(r"^theorem (\w+)", lambda m: f"theorem {m.group(1)}_{suffix}", statement, count=1)


def _check_file(tmp_path: Path, blocks: list[str]) -> None:
    src = tmp_path / "Check.lean"
    src.write_text("\n\n".join(blocks) + "\n")
    out = subprocess.run([LEAN, str(src)], capture_output=True, text=True, timeout=1800)
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "error" not in text, text[-5000:]
    assert "sorry" not in text, text[-5000:]


def test_reference_proofs_pass_real_lean(tmp_path):
    _check_file(tmp_path, [f"{r['statement']} := {r['proof']}" for r in _eval_rows()])


def test_every_generator_style_passes_real_lean(tmp_path):
    blocks = []
    for r in _eval_rows():
        for i, ((style, naming), proof) in enumerate(sorted(render_all(r["statement"]).items())):
            blocks.append(f"{_renamed(r['statement'], f's{i}')} := {proof}")
    _check_file(tmp_path, blocks)
