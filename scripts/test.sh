#!/usr/bin/env bash
# Fresh machine -> set up, then run the default test suite (long runs are behind -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
