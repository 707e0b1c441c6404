#!/usr/bin/env bash
# Run on a GPU machine that has PyTorch but not this project's venv (e.g. the lent H100/H200):
# installs the few missing pure-Python wheels from .whl/ and runs scripts/gpu_check.py.
# Needs TAEF2 weights in $VAEEDOF_ASSET_MIRROR (default .gpu/mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 VAEEDOF_ASSET_MIRROR="${VAEEDOF_ASSET_MIRROR:-$PWD/.gpu/mirror}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 scripts/gpu_check.py --out "${OUT:-/tmp/gpu-check-out}" "$@"
