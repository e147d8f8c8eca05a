"""The `leandojo` backend: proofs of theorems in a LeanDojo-traced repository, checked tactic by tactic."""
