# Each stage is a target; ARGS passes Hydra overrides, e.g. `make train ARGS="+experiment=smoke train.alpha=0.5"`.
# Stages resolve their inputs through the artifact store, so `make evaluate` builds or reuses what it needs.
PYTHON ?= python
ARGS ?=
STAGES := pretrain sample verify train evaluate bucket report

.PHONY: install install-dev test test-fast smoke sweep splits bench $(STAGES)

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
