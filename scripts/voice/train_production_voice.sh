#!/usr/bin/env bash
# One-command production voice training (SPEC §10). A thin wrapper: every check and every
# backend (TRAIN_BACKEND=local | local_docker | managed_job) lives in voicelane.ops.orchestrator.
#   AUDIO_PATH=corpora/kal VOICE_PROFILE_ID=kal BASE_WEIGHTS_ID=voicelane-slt-base-v1 \
#     scripts/voice/train_production_voice.sh
# See docs/runbooks/voice-train-prod-lane.md.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${VOICELANE_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m voicelane.ops.orchestrator "$@"
