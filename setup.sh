#!/usr/bin/env bash
# One-command setup: creates .venv (Python 3.11) with the pinned dependencies, installs this
# package editable, and the system libraries Blender's bpy needs (when run as root; otherwise it
# names them). Idempotent: a second run only checks.
#   ./setup.sh            the pipeline
#   ./setup.sh --peers    and the evaluation's peers (openfocus: StackMFF V1-V3; requirements-peers.txt)
set -euo pipefail
cd "$(dirname "$0")"

peers=0
for arg in "$@"; do
  case "$arg" in
    --peers) peers=1 ;;
    *) echo "setup: unknown option $arg (known: --peers)" >&2; exit 2 ;;
  esac
done

BLENDER_LIBS=(libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1)
PYTHON=${PYTHON:-python3.11}

missing_libs=()
for lib in "${BLENDER_LIBS[@]}"; do
  dpkg -s "$lib" >/dev/null 2>&1 || missing_libs+=("$lib")
done
if ((${#missing_libs[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system libraries for Blender: ${missing_libs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_libs[@]}"
  else
    echo "setup: Blender (bpy) needs these system libraries; install them as root:" >&2
    echo "  apt-get install --no-install-recommends ${missing_libs[*]}" >&2
  fi
fi

if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found: bpy 5.0.1 needs Python 3.11 exactly" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.requirements.sha256
requirements=(requirements.txt requirements-nodeps.txt pyproject.toml)
((peers)) && requirements+=(requirements-peers.txt)
want=$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  if ((peers)); then
    .venv/bin/python -m pip install -q --no-deps -r requirements-peers.txt
    .venv/bin/openfocus --help >/dev/null  # its imports resolve: the peers can run
  fi
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import bpy, torch, vaeedof; print('setup: ok (Blender', bpy.app.version_string, '| torch', torch.__version__, ')')"
