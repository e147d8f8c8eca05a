"""How a model is prompted with a theorem, and how its completion becomes the proof the verifier checks.

The choice is `model.prompt_style`, because the format is the model's (what it was trained on),
while the dataset gives the statement and the Lean header its benchmark pins (`dataset.header`):

* `prop` – the embedded tiny model: prompt = `dataset.prompt_template` (`{statement} := by`), and the
  completion continues the tactic block, so proof = `dataset.proof_prefix` + completion.
* `deepseek_prover` – DeepSeek-Prover-V1.5 SFT/RL, a base-style completion model. Prompt:
  "Complete the following Lean 4 code:" then an open ```lean4 fence holding header, informal
  docstring (column `informal_prefix`, when the dataset has it) and the statement ending in `:= by`
  (source: deepseek-ai/DeepSeek-Prover-V1.5, prover/utils.py `non_cot_prompt`). The model continues
  the file and closes the fence; its own post-processing keeps the text before the first ```.
* `deepseek_prover_cot` – the same model asked for "explanatory comments preceding each line of
  code" (prover/utils.py `cot_prompt`); the α-DPG paper prompts it this way (naver/alpha-dpg,
  examples/data_preprocess/lean.ipynb). Same extraction.
* `kimina_prover` – Kimina-Prover-Distill (Qwen3 chat models). A system and a user message rendered
  with the tokenizer's chat template; the model thinks, then writes the whole Lean file in a
  ```lean4 block. Its authors' extraction keeps the last ```lean4 block that holds a theorem
  (MoonshotAI/Kimina-Prover-Preview, kimina_prover_demo/utils.py `extract_proof_from_text`).

`completion_to_proof` returns what follows `:=` for the given statement (the verifier's
`Item.proof`). When a model restates the theorem in its own block, only the proof body is taken and
it is checked against *our* statement, so a restated (e.g. weakened) statement cannot make a pass.
When nothing can be extracted the proof is `NO_PROOF` (the empty string): the verify stage gives it
the verdict `invalid` with a message saying so, so the sample counts as a failure, never as a pass
and never silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pandas as pd

# The header DeepSeek-Prover-V1.5 evaluates with, and that its datasets/minif2f.jsonl pins in every
# row's `header` field (deepseek-ai/DeepSeek-Prover-V1.5, prover/utils.py LEAN4_DEFAULT_HEADER):
# maxHeartbeats 0 switches Lean's heartbeat limit off; the verifier's wall-clock timeout bounds time.
LEAN4_HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 0\n\nopen BigOperators Real Nat Topology Rat\n\n"

NO_PROOF = ""  # what a completion without an extractable proof becomes (verify: `invalid`)
NO_PROOF_MESSAGE = "no proof could be extracted from the completion (model.prompt_style={style!r})"

DEEPSEEK_NON_COT = "Complete the following Lean 4 code:\n\n```lean4\n"
DEEPSEEK_COT = "Complete the following Lean 4 code with explanatory comments preceding each line of code:\n\n```lean4\n"
KIMINA_SYSTEM = "You are an expert in mathematics and Lean 4."
KIMINA_USER = "Think about and solve the following problem step by step in Lean 4.\n# Problem:{problem}\n# Formal statement:\n```lean4\n{code}\n```\n"

_BLOCK = re.compile(r"```lean4?[ \t]*\n(.*?)(?:\n?```|\Z)", re.S)


@dataclass(frozen=True)
class PromptStyle:
    name: str
    chat: bool  # the prompt is rendered with the tokenizer's chat template (needs the tokenizer)
    prompt: Callable[[dict, object], str]  # (theorem row, context) -> prompt text
    extract: Callable[[str, str, str], str | None]  # (statement, prompt, completion) -> proof or None


# ----------------------------------------------------------------------------- prompts


def lean_statement(statement: str) -> str:
    """The statement as the Lean provers are prompted with it: ending in `:= by` (added when missing)."""
    s = statement.rstrip()
    return s if s.endswith(":= by") else s + " := by"


def _informal(row: dict) -> str:
    value = row.get("informal_prefix")
    return value if isinstance(value, str) else ""


def _deepseek(lead: str):
    def prompt(row: dict, ctx) -> str:
        # The dataset's statement may end in ":= by\n" (miniF2F's does); keep it exactly as given.
        stmt = row["statement"] if row["statement"].rstrip().endswith(":= by") else lean_statement(row["statement"])
        return lead + ctx.header + _informal(row) + stmt
    return prompt


def _kimina_prompt(row: dict, ctx) -> str:
    problem = re.sub(r"^\s*/--\s*|\s*-/\s*$", "", _informal(row))  # the docstring's text, as prose
    code = ctx.header + lean_statement(row["statement"])
    messages = [{"role": "system", "content": KIMINA_SYSTEM},
                {"role": "user", "content": KIMINA_USER.format(problem=problem, code=code)}]
    if ctx.tokenizer is None:
        raise ValueError("model.prompt_style=kimina_prover renders its prompt with the model's chat template: "
                         "a tokenizer is needed")
    return ctx.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _prop_prompt(row: dict, ctx) -> str:
    return ctx.template.format(**row)


@dataclass
class _Context:
    template: str
    header: str
    tokenizer: object = None


# ----------------------------------------------------------------------------- extraction


def _theorem_name(statement: str) -> str | None:
    m = re.search(r"\b(?:theorem|lemma)\s+([^\s(:{\[]+)", statement)
    return m.group(1) if m else None


def _assign_after(text: str, start: int) -> int | None:
    """Index just past the first `:=` at bracket depth 0 from `start`: the one that ends a theorem's
    statement (a `:=` inside binders, e.g. a default argument, is skipped)."""
    depth = 0
    for i in range(start, len(text) - 1):
        ch = text[i]
        if ch in "([{⟨":
            depth += 1
        elif ch in ")]}⟩":
            depth -= 1
        elif ch == ":" and text[i + 1] == "=" and depth == 0:
            return i + 2
    return None


def proof_in_block(block: str, name: str | None) -> str | None:
    """What follows `:=` of the theorem called `name` in a Lean file, or None if it is not there."""
    if not name:
        return None
    m = re.search(rf"\b(?:theorem|lemma)\s+{re.escape(name)}(?![\w'.!?])", block)
    if not m:
        return None
    at = _assign_after(block, m.end())
    if at is None:
        return None
    body = block[at:].strip()
    return body or None


def _blocks(completion: str) -> list[str]:
    return _BLOCK.findall(completion)


def _deepseek_extract(statement: str, prompt: str, completion: str) -> str | None:
    """Two shapes. (1) A fresh ```lean4 block restating the theorem: its proof body. (2) The usual
    continuation of the prompt's open fence: the prompt's text after its last `:=` (`by`, with the
    newline the prompt may end in) followed by the completion up to the closing fence."""
    name = _theorem_name(statement)
    for block in reversed(_blocks(completion)):
        proof = proof_in_block(block, name)
        if proof is not None:
            return proof
    head = completion.split("```", 1)[0].rstrip()
    if not head.strip():
        return None
    tail = prompt[prompt.rfind(":=") + 2:].lstrip(" ") if ":=" in prompt else ""
    return tail + head


def _kimina_extract(statement: str, prompt: str, completion: str) -> str | None:
    """The last ```lean4 block that states the theorem (the final answer after the thinking)."""
    name = _theorem_name(statement)
    for block in reversed(_blocks(completion)):
        proof = proof_in_block(block, name)
        if proof is not None:
            return proof
    return None


STYLES = {
    "prop": PromptStyle("prop", False, _prop_prompt, lambda statement, prompt, completion: None),
    "deepseek_prover": PromptStyle("deepseek_prover", False, _deepseek(DEEPSEEK_NON_COT), _deepseek_extract),
    "deepseek_prover_cot": PromptStyle("deepseek_prover_cot", False, _deepseek(DEEPSEEK_COT), _deepseek_extract),
    "kimina_prover": PromptStyle("kimina_prover", True, _kimina_prompt, _kimina_extract),
}


def get_style(name: str) -> PromptStyle:
    if name not in STYLES:
        raise ValueError(f"model.prompt_style={name!r}: expected one of {sorted(STYLES)}")
    return STYLES[name]


# ----------------------------------------------------------------------------- what the stages call


def build_prompts(cfg, theorems: pd.DataFrame, tokenizer=None) -> list[str]:
    """One prompt per theorem row for `cfg.model.prompt_style` (chat styles need the tokenizer)."""
    style = get_style(cfg.model.prompt_style)
    ctx = _Context(template=cfg.dataset.prompt_template, header=cfg.dataset.header, tokenizer=tokenizer)
    return [style.prompt(row, ctx) for row in theorems.to_dict("records")]


def completion_to_proof(style_name: str, statement: str, prompt: str, completion: str, proof_prefix: str) -> str:
    """The text after `:=` that the verifier checks, or NO_PROOF when the completion holds none."""
    if style_name == "prop":
        return proof_prefix + completion  # the tiny model continues right after `:= by`
    proof = get_style(style_name).extract(statement, prompt, completion)
    return NO_PROOF if proof is None else proof


def proofs_for(cfg, statements, prompts, completions) -> list[str]:
    """completion_to_proof over aligned columns, with the config's style and proof prefix."""
    style, prefix = cfg.model.prompt_style, cfg.dataset.proof_prefix
    return [completion_to_proof(style, s, p, c, prefix) for s, p, c in zip(statements, prompts, completions)]


def needs_tokenizer(cfg) -> bool:
    return get_style(cfg.model.prompt_style).chat
