#!/usr/bin/env bash
# The wheel folder for scripts/gpu_check.py on a GPU node that has torch and transformers but no
# package index: the project's other needs (hydra-core, omegaconf, antlr4, pandas, pyarrow and their
# small dependencies), about 56 MB. Run it where PyPI is reachable; copy DIR with the checkout and
# run `python scripts/gpu_check.py --wheels DIR` on the node.
# Usage: scripts/gpu_wheels.sh DIR [PYTHON_VERSION]   (the node's Python, default 3.11; x86-64 Linux)
set -euo pipefail
DIR="${1:?usage: scripts/gpu_wheels.sh DIR [PYTHON_VERSION]}"
PYV="${2:-3.11}"
PY="${PYTHON:-python3}"
mkdir -p "$DIR"
# Binary wheels for the node's Python and platform; --no-deps with the dependencies listed, so that
# nothing the node already has (numpy, PyYAML, packaging: torch and transformers bring them) is fetched;
# omegaconf < 2.4 is what hydra-core 1.3 accepts.
# pyarrow < 20 keeps the folder small (pyarrow 26's wheel alone is 55 MB).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DIR" "hydra-core>=1.3.2,<1.4" "omegaconf>=2.3,<2.4" "pandas>=2.1" "pyarrow>=15,<20" \
  python-dateutil pytz tzdata six
# hydra's parser runtime is published as a source archive only; it is pure Python, so build its wheel here.
"$PY" -m pip wheel -q --no-deps -w "$DIR" "antlr4-python3-runtime==4.9.3"
du -sh "$DIR"
