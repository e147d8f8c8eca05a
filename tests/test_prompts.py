"""Prompt formats and proof extraction per prover (pipeline/prompts.py), on published outputs.

tests/data/prover_outputs/*.json name their sources:
- deepseek_prover_v15.json: the prompt and expected output of DeepSeek-Prover-V1.5's quick_start.py
  (a continuation of the prompt's open ```lean4 fence). No published DeepSeek-Prover-V1.5 output that
  restates the theorem in a fresh block was found, so that shape is tested on a block built here.
- kimina_prover.json: final Lean files Kimina-Prover Preview published for miniF2F-test; the
  reasoning text before them is written for the test (the published one is far too long to store).
"""

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.prompts import (LEAN4_HEADER, NO_PROOF, build_prompts, completion_to_proof, get_style,
                              proof_in_block)

DATA = Path(__file__).parent / "data" / "prover_outputs"


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _cfg(style: str, header: str = LEAN4_HEADER):
    return OmegaConf.create({"model": {"prompt_style": style},
                             "dataset": {"prompt_template": "{statement} := by", "proof_prefix": "by",
                                         "header": header}})


def test_header_is_the_one_deepseek_pins():
    # DeepSeek-Prover-V1.5's datasets/minif2f.jsonl and prover/utils.py: maxHeartbeats 0.
    assert "set_option maxHeartbeats 0\n" in LEAN4_HEADER
    assert _load("deepseek_prover_v15.json")["header"] == LEAN4_HEADER


# ----------------------------------------------------------------------------- DeepSeek-Prover-V1.5


def test_deepseek_prompt_is_the_published_one():
    ex = _load("deepseek_prover_v15.json")
    row = pd.DataFrame([{"id": ex["id"], "statement": ex["statement"], "informal_prefix": ex["informal_prefix"]}])
    [prompt] = build_prompts(_cfg("deepseek_prover", ex["header"]), row)
    # quick_start.py sends "Complete the following Lean 4 code:\n\n```lean4\n" + header + docstring + statement.
    assert prompt == ("Complete the following Lean 4 code:\n\n```lean4\n" + ex["header"] + ex["informal_prefix"]
                      + ex["statement"])
    [cot] = build_prompts(_cfg("deepseek_prover_cot", ex["header"]), row)
    assert cot.startswith("Complete the following Lean 4 code with explanatory comments preceding each line of code:")


def test_deepseek_continuation_becomes_the_text_after_the_statement():
    ex = _load("deepseek_prover_v15.json")
    row = pd.DataFrame([{"id": ex["id"], "statement": ex["statement"], "informal_prefix": ex["informal_prefix"]}])
    [prompt] = build_prompts(_cfg("deepseek_prover", ex["header"]), row)
    proof = completion_to_proof("deepseek_prover", ex["statement"], prompt, ex["completion"], "by")
    # `by`, the newline the prompt ends with, then the model's tactics up to its closing fence:
    # exactly what follows `:=` in the file quick_start.py hands to Lean.
    body = ex["completion"].split("```")[0].rstrip()
    assert proof == "by\n" + body
    assert proof.splitlines()[1].startswith("  simp_all only") and proof.endswith("simpa [h₀] using h₄")
    assert (ex["statement"].rstrip().removesuffix("by") + proof).count(":= by\n  simp_all") == 1


def test_deepseek_restated_theorem_in_a_fresh_block():
    ex = _load("deepseek_prover_v15.json")
    body = ex["completion"].split("```")[0].rstrip()
    completion = "\n  sorry\n```\nA cleaner version:\n```lean4\n" + ex["header"] + ex["statement"] + body + "\n```\n"
    proof = completion_to_proof("deepseek_prover", ex["statement"], "...:= by\n", completion, "by")
    assert proof == "by\n" + body  # the restated theorem's body, not the `sorry` continuation


def test_deepseek_completion_without_a_proof_is_no_proof():
    stmt = _load("deepseek_prover_v15.json")["statement"]
    for completion in ["```", "\n\n```\nI cannot prove this.", ""]:
        assert completion_to_proof("deepseek_prover", stmt, "x := by\n", completion, "by") == NO_PROOF


# ----------------------------------------------------------------------------- Kimina-Prover


@pytest.mark.parametrize("ex", _load("kimina_prover.json")["examples"], ids=lambda e: e["id"])
def test_kimina_final_block_is_the_proof(ex):
    completion = ("<think>\nFirst a tactic to try:\n```tactics\n  nlinarith\n```\nThat should close it.\n</think>\n"
                  "```lean4\n" + ex["final_file"] + "\n```")
    assert completion_to_proof("kimina_prover", ex["statement"], "", completion, "by") == ex["proof"]


def test_kimina_takes_the_last_block_stating_our_theorem():
    ex = _load("kimina_prover.json")["examples"][0]
    wrong = ex["final_file"].replace("nlinarith", "linarith")
    other = "```lean4\ntheorem helper : True := by trivial\n```"
    completion = f"```lean4\n{wrong}\n```\nFixed:\n```lean4\n{ex['final_file']}\n```\n{other}"
    assert completion_to_proof("kimina_prover", ex["statement"], "", completion, "by") == ex["proof"]


def test_kimina_without_a_final_block_is_no_proof():
    stmt = _load("kimina_prover.json")["examples"][0]["statement"]
    assert completion_to_proof("kimina_prover", stmt, "", "<think>\nRan out of tokens", "by") == NO_PROOF
    # A block for some other theorem is not a proof of this one.
    assert completion_to_proof("kimina_prover", stmt, "", "```lean4\ntheorem foo : 1 = 1 := by rfl\n```", "by") == NO_PROOF


class _ChatTokenizer:
    """Stands in for the Qwen3 tokenizer's chat template: records the messages it renders."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        self.messages = messages
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def test_kimina_prompt_messages():
    ex = _load("kimina_prover.json")["examples"][0]
    tok = _ChatTokenizer()
    [prompt] = build_prompts(_cfg("kimina_prover"), pd.DataFrame([{"id": ex["id"], "statement": ex["statement"]}]), tok)
    system, user = tok.messages
    assert system == {"role": "system", "content": "You are an expert in mathematics and Lean 4."}
    assert user["content"].startswith("Think about and solve the following problem step by step in Lean 4.\n# Problem:")
    assert ("# Formal statement:\n```lean4\n" + LEAN4_HEADER + ex["statement"] + " := by\n```\n") in user["content"]
    assert prompt.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="tokenizer"):
        build_prompts(_cfg("kimina_prover"), pd.DataFrame([{"id": "x", "statement": ex["statement"]}]))


# ----------------------------------------------------------------------------- prop and plumbing


def test_prop_style_keeps_the_continuation_behaviour():
    assert completion_to_proof("prop", "theorem t (p : Prop) (hp : p) : p", "theorem t ... := by", " exact hp", "by") == "by exact hp"
    [prompt] = build_prompts(_cfg("prop"), pd.DataFrame([{"id": "t", "statement": "theorem t : True"}]))
    assert prompt == "theorem t : True := by"


def test_statement_internal_assign_is_not_the_proof_start():
    block = "theorem t (f : ℕ → ℕ := fun n => n) : f 0 = 0 := by\n  rfl"
    assert proof_in_block(block, "t") == "by\n  rfl"
    assert proof_in_block("theorem t' : True := trivial", "t") is None  # t' is another theorem


def test_unknown_style_is_an_error():
    with pytest.raises(ValueError, match="prompt_style"):
        get_style("gpt")


def test_no_proof_is_an_invalid_verdict_never_a_pass():
    from lean_env.verifier import Item, get_backend
    from pipeline.stages.verify import verify_proofs

    items = [Item("a#0", "theorem prop_eval_1 (p : Prop) : p → p", NO_PROOF),
             Item("a#1", "theorem prop_eval_1 (p : Prop) : p → p", "by intro h1; exact h1")]
    with get_backend("prop") as backend:
        results = verify_proofs(items, backend, prompt_style="kimina_prover", timeout=10.0, workers=0)
    assert [r.verdict for r in results] == ["invalid", "pass"]
    assert "no proof could be extracted" in results[0].message and "kimina_prover" in results[0].message
