"""Prompt formats of real Lean provers and the proof extraction from their completions.

DeepSeek-Prover-V1.5 (SFT and RL) is a base-style completion model: the prompt is
"Complete the following Lean 4 code:\n\n```lean4\n" + header + statement (ending `:= by`), and the
model continues the Lean file, usually closing the fence with "\n```". The header is the one the
DeepSeek-Prover-V1.5 evaluation and miniF2F/Lean Workbook releases pin (`LEAN4_HEADER`).

`extract_proof(statement, completion)` returns the tactic block after `:= by` that the verifier
checks: the completion up to the closing fence. When a model restates the whole file (header and
theorem) inside its own ```lean4 block, the proof is what follows the theorem's `:= by` there.
"""

from __future__ import annotations

import re

LEAN4_HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
DEEPSEEK_PROVER_V15 = "Complete the following Lean 4 code:\n\n```lean4\n{header}{statement}"

_FENCE = re.compile(r"```lean4?\n(.*?)(?:```|\Z)", re.S)


def deepseek_prompt(statement: str, header: str = LEAN4_HEADER) -> str:
    """The DeepSeek-Prover-V1.5 prompt for a statement ending in `:= by` (added when missing)."""
    statement = statement.rstrip()
    if not statement.endswith(":= by"):
        statement += " := by"
    return DEEPSEEK_PROVER_V15.format(header=header, statement=statement)


def extract_proof(statement: str, completion: str) -> str | None:
    """The tactic block the completion gives for `statement` (text after `:= by`), or None if none.

    Two shapes: (1) the completion continues the prompt's open fence: everything before the first
    closing ``` is the proof; (2) the completion writes its own ```lean4 block restating the theorem:
    the proof follows the `:= by` of the block's theorem with the statement's name."""
    name = _theorem_name(statement)
    for block in _FENCE.findall(completion):
        proof = _after_header(block, name)
        if proof is not None:
            return proof
    head = completion.split("```", 1)[0]
    return head.rstrip() if head.strip() else None


def _theorem_name(statement: str) -> str | None:
    m = re.search(r"\b(?:theorem|lemma)\s+([^\s(:{\[]+)", statement)
    return m.group(1) if m else None


def _after_header(block: str, name: str | None) -> str | None:
    if not name:
        return None
    m = re.search(rf"\b(?:theorem|lemma)\s+{re.escape(name)}\b.*?:=\s*by", block, re.S)
    if not m:
        return None
    return block[m.end():].rstrip()
