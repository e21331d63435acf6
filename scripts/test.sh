#!/usr/bin/env bash
# Fresh machine -> set up, then run the default test suite (long runs are behind -m slow).
# VOICELANE_JUNIT=FILE also writes a junit XML there: its suite is named `voicelane-default` only
# when no arguments narrow the run (the evidence `voicelane verify --junit FILE` accepts).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${VOICELANE_SKIP_SETUP:-}" ] || bash scripts/setup.sh  # set to skip the (idempotent) set-up
junit=()
if [ -n "${VOICELANE_JUNIT:-}" ]; then
  suite=voicelane-default
  [ "$#" -eq 0 ] || suite=voicelane-partial
  junit=("--junitxml=$VOICELANE_JUNIT" -o "junit_suite_name=$suite")
fi
exec .venv/bin/python -m pytest -q "${junit[@]}" "$@"
