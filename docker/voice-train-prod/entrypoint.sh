#!/usr/bin/env bash
# Container entrypoint of the Docker production lane. All logic is in Python
# (voicelane.ops.docker_lane); this wrapper only forwards `docker stop` to it and, should Python
# itself fail to start, still prints the report block. It installs nothing.
set -u
PY="${VOICELANE_PYTHON:-python}"
MARKER="$(mktemp "${TMPDIR:-/tmp}/voicelane-report.XXXXXX")" || MARKER="/tmp/voicelane-report.$$"
rm -f "$MARKER"
export VOICELANE_REPORT_MARKER="$MARKER"
"$PY" -m voicelane.ops.docker_lane entrypoint "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
if [ ! -f "$MARKER" ]; then
  out="${OUT_DIR:-/out}"
  status="${TRAIN_STATUS_PATH:-$out/train_status.${TRAIN_LANE:-tts_prod_train}.json}"
  log="${LOG_PATH:-$out/train.log}"
  present=false; [ -f "$status" ] && present=true
  echo "=== DOCKER PROD TRAIN REPORT ==="
  echo "outcome=failed"
  echo "exit_code=$rc"
  echo "train_status_path=$status"
  echo "log_path=$log"
  echo "train_status_present=$present"
  echo "--- log tail (last 120 lines) ---"
  [ -f "$log" ] && tail -n 120 "$log"
  echo "=== END DOCKER PROD TRAIN REPORT ==="
fi
rm -f "$MARKER"
exit "$rc"
