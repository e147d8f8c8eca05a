"""The `lean_repl` backend: a warm pool of Lean REPL processes (leanprover-community/repl).

* `classify` – turns one REPL reply into a verdict (pure, tested on fixtures without Lean);
* `setup`    – finds the Lean project, `lake` and the REPL binary, or says exactly what is missing;
* `backend`  – `LeanReplBackend`, the pool behind the verifier interface.
"""
