"""The one-command orchestrator (scripts/voice/train_production_voice.sh): every error code it
owns, a lane failure passed through, and a real local production run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from test_ops_support import (
    SCRIPT,
    TINY,
    base_env,
    consent_of,
    error_line,
    free_port,
    git_sha,
    kv_of,
    local_run,
    quick_data,
    run_script,
)
from voicelane.bundle import validate_voice_bundle
from voicelane.protocol import fold


def _env(tmp_path, **kw):
    return base_env(
        LOG_PATH=str(tmp_path / "orch.log"),
        TRAIN_STATUS_PATH=str(tmp_path / "status.json"),
        OUT_DIR=str(tmp_path / "out"),
        **kw,
    )


def _assert_refused(run, code, exit_code, tmp_path):
    assert run.lines[0].startswith("[tts-prod] head="), run.stdout
    line = error_line(run)
    assert line.startswith(f"[tts-prod][error] {code} "), line
    assert run.rc == exit_code, (run.rc, run.stdout, run.stderr)
    assert "status=done" not in run.stdout
    assert "log tail (last" in run.stdout
    assert run.lines[-1].startswith("[tts-prod] next: ")
    status = json.loads((tmp_path / "status.json").read_text("utf-8"))  # fail closed
    assert status["error"]["code"] == code and status["state"] in ("error", "blocked")
    return kv_of(line)


def test_script_is_a_thin_wrapper():
    text = SCRIPT.read_text("utf-8")
    assert "exec " in text and "voicelane.ops.orchestrator" in text
    assert "TRAIN_BACKEND" not in text.replace("# ", "").split("set -u", 1)[1]  # no backend logic in bash


def test_head_printed_first_and_sha8(tmp_path):
    run = run_script(_env(tmp_path, TRAIN_BACKEND="nope", AUDIO_PATH=str(tmp_path)))
    assert run.lines[0] == f"[tts-prod] head={git_sha()[:8]}"


def test_invalid_backend(tmp_path):
    run = run_script(_env(tmp_path, TRAIN_BACKEND="kubernetes", AUDIO_PATH=str(tmp_path)))
    kv = _assert_refused(run, "invalid_backend", 1, tmp_path)
    assert kv["backend"] == "kubernetes" and kv["allowed"] == "local,local_docker,managed_job"


def test_expected_head_mismatch(tmp_path):
    run = run_script(_env(tmp_path, EXPECTED_HEAD="0000000", TRAIN_BACKEND="local", AUDIO_PATH=str(tmp_path)))
    kv = _assert_refused(run, "deterministic_head_mismatch", 1, tmp_path)
    assert kv["expected"] == "0000000" and kv["actual"] == git_sha()[:8]


def test_expected_head_match_passes_the_check(tmp_path):
    run = run_script(_env(tmp_path, EXPECTED_HEAD=git_sha()[:7], TRAIN_BACKEND="bogus", AUDIO_PATH=str(tmp_path)))
    assert "invalid_backend" in error_line(run)  # went past the head check


@pytest.mark.parametrize("audio", [None, "does/not/exist"])
def test_missing_audio_path(tmp_path, audio):
    env = _env(tmp_path, TRAIN_BACKEND="local")
    if audio:
        env["AUDIO_PATH"] = str(tmp_path / audio)
    run = run_script(env)
    kv = _assert_refused(run, "missing_audio_path", 2, tmp_path)
    assert ("audio_path" in kv) == bool(audio)


def test_invalid_lane_is_refused(tmp_path):
    run = run_script(_env(tmp_path, TRAIN_LANE="tts_unknown", AUDIO_PATH=str(tmp_path)))
    kv = _assert_refused(run, "invalid_argument", 1, tmp_path)
    assert kv["variable"] == "TRAIN_LANE"


def _docker_engine_up() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def test_docker_build_failed_with_the_real_client(tmp_path):
    """No engine here: the real `docker build` fails and its own words reach the operator."""
    if _docker_engine_up():
        pytest.skip("a docker engine is running here; this test covers the engine-less failure")
    data = quick_data(tmp_path / "data", n=2)
    run = run_script(_env(tmp_path, TRAIN_BACKEND="local_docker", AUDIO_PATH=str(data)))
    kv = _assert_refused(run, "docker_build_failed", 1, tmp_path)
    if shutil.which("docker"):
        assert "docker" in kv["docker_error"].lower() and kv["exit_code"] != "0"
    else:
        assert kv["docker_error"] == "docker client not found"


def test_docker_run_failed_with_the_real_client(tmp_path):
    if not shutil.which("docker"):
        pytest.skip("no docker client installed")
    if _docker_engine_up():
        pytest.skip("a docker engine is running here; this test covers the engine-less failure")
    data = quick_data(tmp_path / "data", n=2)
    run = run_script(
        _env(
            tmp_path,
            TRAIN_BACKEND="local_docker",
            AUDIO_PATH=str(data),
            DOCKER_SKIP_BUILD="1",
            DOCKER_IMAGE="voicelane-train-prod:ops-test",
        )
    )
    kv = _assert_refused(run, "docker_run_failed", 1, tmp_path)
    assert kv["image"] == "voicelane-train-prod:ops-test"
    assert kv["exit_code"] not in ("0", "") and kv["docker_error"]


def test_managed_job_unavailable_names_the_address(tmp_path):
    data = quick_data(tmp_path / "data", n=2)
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = run_script(_env(tmp_path, TRAIN_BACKEND="managed_job", AUDIO_PATH=str(data), RAY_ADDRESS=address))
    kv = _assert_refused(run, "managed_job_unavailable", 1, tmp_path)
    assert kv["address"] == address


def test_lane_failure_passes_its_code_through(tmp_path):
    """The lane runs and refuses (no consent): the operator sees the lane's code and exit code."""
    data = quick_data(tmp_path / "data", n=2, with_consent=False)
    run = run_script(_env(tmp_path, TRAIN_BACKEND="local", AUDIO_PATH=str(data), **TINY))
    line = error_line(run)
    assert line.startswith("[tts-prod][error] consent_missing "), run.stdout
    assert run.rc == 2 and kv_of(line)["exit_code"] == "2"
    tail = run.stdout.split("log tail", 1)[1]
    assert "consent" in tail  # the lane's own log lines are in the tail
    status = json.loads((tmp_path / "status.json").read_text("utf-8"))
    assert status["state"] == "blocked" and status["error"]["code"] == "consent_missing"


def test_local_backend_real_run():
    r = local_run()
    assert r.run.rc == 0, r.run.stdout[-4000:] + r.run.stderr[-2000:]
    lines = r.run.lines
    assert re.fullmatch(r"\[tts-prod\] head=[0-9a-f]{8}", lines[0])
    # the last line names the profile the registry serves now (published into the session's registry)
    assert lines[-1] == "[tts-prod] status=done backend=local served=ops_local version=1"
    assert any(line.startswith("[tts-prod] progress=") for line in lines)
    status = json.loads(r.status.read_text("utf-8"))
    assert status["state"] == "completed" and status["job_type"] == "tts_prod_train"
    assert validate_voice_bundle(r.bundle).ok
    # the log holds the lane's protocol lines, parsed by the one parser
    view = fold(r.log.read_text("utf-8").splitlines())
    assert view.total > 0 and view.current == view.total
    assert "bundles/ops_local/voice_bundle/manifest.json" in view.artifacts
    assert consent_of(r.data).is_file()


def test_sigterm_cancels_the_run(tmp_path):
    """SIGTERM to the orchestrator stops the lane it started: exit 130, status `cancelled`."""
    import signal
    import time

    data = quick_data(tmp_path / "data", n=4)
    env = _env(
        tmp_path,
        TRAIN_BACKEND="local",
        AUDIO_PATH=str(data),
        CONSENT_STATEMENT=str(consent_of(data)),
        **dict(TINY, TRAIN_STEPS="400"),
    )
    proc = subprocess.Popen([str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if line.startswith("[tts-prod] progress=2/"):  # features done, training under way
            break
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    lines = seen + rest.splitlines()
    assert proc.returncode == 130, "\n".join(lines[-30:])
    assert any(x.startswith("[tts-prod][error] cancelled ") for x in lines)
    status = json.loads((tmp_path / "status.json").read_text("utf-8"))
    assert status["state"] == "cancelled" and status["error"]["code"] == "cancelled"
