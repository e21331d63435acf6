#!/usr/bin/env bash
# Fresh machine -> set up, then run the main job on the embedded demo corpus:
# fine-tune the shipped base voice to the `kal` speaker, evaluate, bundle, validate, speak.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/voicelane demo "$@"
