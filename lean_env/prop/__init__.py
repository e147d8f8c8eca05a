"""The embedded benchmark: propositional theorems in core Lean 4, their checker and generators."""
