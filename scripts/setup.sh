#!/usr/bin/env bash
# Create .venv with the pinned dependency set (idempotent). CPU torch 2.13.0 is pinned: an
# unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP=.venv/.voicelane-setup
REQ_HASH=$(cat pyproject.toml requirements.lock 2>/dev/null | sha256sum | cut -c1-16)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQ_HASH" ]]; then
  exit 0
fi
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=24" >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c requirements.lock -e ".[test,ray]"
echo "$REQ_HASH" > "$STAMP"
