# Each stage is a target; ARGS passes Hydra overrides, e.g. `make train ARGS="+experiment=smoke train.alpha_dpg.alpha=0.5"`.
# Stages resolve their inputs through the artifact store, so `make evaluate` builds or reuses what it needs.
PYTHON ?= python
ARGS ?=
# The stage names come from pipeline/stages (STAGES), the one list of them.
STAGES := $(shell $(PYTHON) -m pipeline.stages)

.PHONY: install install-dev test test-fast smoke sweep splits bench lean-setup bench-lean-repl $(STAGES)

install:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e .

install-dev:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

test:
	$(PYTHON) -m pytest -q

test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

smoke:
	$(PYTHON) -m pipeline +experiment=smoke $(ARGS)

sweep:
	$(PYTHON) -m pipeline +experiment=alpha_sweep $(ARGS)

$(STAGES):
	$(PYTHON) -m pipeline 'stages=[$@]' $(ARGS)

splits:
	$(PYTHON) scripts/make_prop_splits.py

bench:
	$(PYTHON) scripts/bench_prop_checker.py
	$(PYTHON) scripts/bench_sampler.py

# Real Lean for the lean_repl backend (needs internet and elan; see README "Real Lean").
LEAN_DIR ?= $(HOME)/.cache/dmvr/lean
lean-setup:
	scripts/setup_lean_repl.sh $(LEAN_DIR)

# Throughput of the REPL pool on the embedded benchmark's reference proofs (core Lean header).
bench-lean-repl:
	$(PYTHON) scripts/bench_lean_repl.py lean_env/data/prop_eval.jsonl --project $(LEAN_DIR)/project $(ARGS)
