"""DeepSeek-Prover-V1.5 prompt formatting and proof extraction. The completions below follow the
two shapes that model's outputs take (a continuation of the prompt's open ```lean4 fence, closed by
the model; or a fresh fenced block restating the theorem); they are written in that format for
these tests, not copied from the model's logs."""

from pipeline.prompts import LEAN4_HEADER, deepseek_prompt, extract_proof

STATEMENT = "theorem mathd_algebra_10 : abs ((120 : ℝ) / 100 * 30 - 130 / 100 * 20) = 10 := by"


def test_prompt_is_the_published_template():
    prompt = deepseek_prompt(STATEMENT)
    assert prompt.startswith("Complete the following Lean 4 code:\n\n```lean4\nimport Mathlib\nimport Aesop\n")
    assert prompt.endswith(STATEMENT) and LEAN4_HEADER in prompt
    assert deepseek_prompt(STATEMENT.removesuffix(" := by")) == prompt  # `:= by` added when missing


def test_continuation_of_the_open_fence():
    completion = "\n  norm_num [abs_of_nonneg]\n```\n\nThe proof normalises both products."
    assert extract_proof(STATEMENT, completion) == "\n  norm_num [abs_of_nonneg]"


def test_unclosed_continuation_is_kept_whole():
    assert extract_proof(STATEMENT, "\n  simp\n  norm_num") == "\n  simp\n  norm_num"


def test_restated_theorem_in_its_own_block():
    completion = ("Here is the proof:\n```lean4\n" + LEAN4_HEADER + "/-- informal -/\n" + STATEMENT
                  + "\n  rw [abs_of_nonneg] <;> norm_num\n```")
    assert extract_proof(STATEMENT, completion) == "\n  rw [abs_of_nonneg] <;> norm_num"


def test_no_proof_is_none():
    assert extract_proof(STATEMENT, "```") is None
