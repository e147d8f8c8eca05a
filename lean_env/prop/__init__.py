"""The `prop` checker: a sound stand-in for Lean 4 on a documented fragment of propositional proofs
(docs/prop_fragment.md), and its backend.  The benchmark generator is `lean_env/propgen/`."""
