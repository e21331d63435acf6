"""Issue 12 §4: the one command ends with a voice that is served.

`scripts/voice/train_production_voice.sh` publishes the validated bundle into the voice registry
(`bundles/<profile>/voice_bundle`, earlier versions kept) that an already-running service reads;
the service picks it up without a restart and speaks with it. A failed gate never publishes.
`voicelane voices rollback` serves the previous version again. The run from the whole
`corpora/kal` corpus is behind -m slow."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from helpers import voicelane_argv
from test_ops_support import BASE_QUICK, CORPORA, TINY, base_env, consent_of, error_line, quick_data, run_script
from voicelane import registry


def _served(srv, profile: str, timeout: float = 60.0, sha: str | None = None) -> dict:
    """Wait for the running service's rescan to serve ``profile`` (with manifest ``sha`` when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        voices = srv.client.get("/api/voice/profiles").json()
        rows = voices.get("profiles", voices) if isinstance(voices, dict) else voices
        row = next((v for v in rows if isinstance(v, dict) and v.get("profileId") == profile), None)
        if row is not None and (sha is None or row.get("manifestSha256") == sha):
            return row
        time.sleep(0.5)
    raise AssertionError(f"{profile} not served: {srv.client.get('/api/voice/profiles').text[:2000]}")


CALLOUT = "Unit four, proceed to gate twelve."
# a two-step tiny voice has barely learned durations: a longer text gives it more than half a second
LONG = (
    "The evening shift starts at seven. Check the north gate, confirm the radio channel, "
    "and report back when the inspection is complete."
)


def _speak(srv, profile: str, text: str = CALLOUT) -> tuple[float, dict]:
    resp = srv.client.post("/api/voice/speak", json={"text": text, "voiceProfile": profile})
    assert resp.status_code == 200, resp.text[:1000]
    assert resp.content[:4] == b"RIFF" and resp.headers["content-type"].startswith("audio/wav")
    audio, sr = sf.read(io.BytesIO(resp.content))
    return len(audio) / sr, dict(resp.headers)


def _voices(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voicelane", "voices", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=base_env(),
    )


def _env(tmp_path: Path, data: Path, registry_dir: Path, profile: str, **extra: str) -> dict[str, str]:
    return base_env(
        TRAIN_BACKEND="local",
        AUDIO_PATH=str(data),
        VOICE_PROFILE_ID=profile,
        OUT_DIR=str(tmp_path / f"out_{profile}"),
        TRAIN_STATUS_PATH=str(tmp_path / f"status_{profile}.json"),
        LOG_PATH=str(tmp_path / f"log_{profile}.txt"),
        CONSENT_STATEMENT=str(consent_of(data)),
        VOICELANE_REGISTRY_DIR=str(registry_dir),
        SOURCE_DATE_EPOCH="315532800",
        **extra,
    )


def test_one_command_publishes_and_a_running_service_speaks_it(tmp_path, svc_start_server):
    """Tiny preset, gates configured for the tiny run: published, picked up without restart, spoken."""
    srv = svc_start_server(tmp_path / "svc", VOICELANE_VOICE_RESCAN_S="1")
    reg = tmp_path / "svc" / "var"  # the service's data dir is the registry it reads
    assert srv.client.post("/api/voice/speak", json={"text": "Hello.", "voiceProfile": "pub_tiny"}).status_code != 200
    data = quick_data(tmp_path / "data")
    run = run_script(_env(tmp_path, data, reg, "pub_tiny", **TINY))
    assert run.rc == 0, run.stdout[-3000:]
    assert run.lines[-1] == "[tts-prod] status=done backend=local served=pub_tiny version=1", run.stdout[-2000:]
    assert any(line.startswith("[tts-prod] published=pub_tiny version=1") for line in run.lines)
    live = reg / "bundles" / "pub_tiny" / "voice_bundle"
    assert registry.read_record(reg, "pub_tiny")["current"] == 1 and (live / "manifest.json").is_file()
    row = _served(srv, "pub_tiny")
    assert row["manifestSha256"] == registry.status(reg)[0]["manifest_sha256"]
    seconds, headers = _speak(srv, "pub_tiny", LONG)
    assert seconds > 0.5 and headers["x-voice-profile"] == "pub_tiny"
    # nothing older to roll back to yet: a clear refusal, the live version untouched
    rb = _voices("rollback", "pub_tiny", "--registry", str(reg))
    assert rb.returncode != 0 and "no earlier version" in rb.stderr
    assert registry.read_record(reg, "pub_tiny")["current"] == 1


def test_a_failed_gate_never_publishes(tmp_path):
    """Tiny preset under the production gates: the lane refuses, the registry stays empty, and the
    candidate bundle it kept cannot be published by hand either."""
    reg = tmp_path / "registry"
    data = quick_data(tmp_path / "data")
    run = run_script(_env(tmp_path, data, reg, "pub_fail", **{k: v for k, v in TINY.items() if k != "TRAIN_GATES"}))
    assert run.rc == 2 and error_line(run).startswith("[tts-prod][error] eval_gate_failed ")
    assert not any("status=done" in line or "published=" in line for line in run.lines)
    assert not (reg / "bundles" / "pub_fail").exists()
    candidates = list((tmp_path / "out_pub_fail").rglob("candidates/bundles/pub_fail/voice_bundle"))
    assert candidates, "the lane keeps the refused bundle as a candidate"
    pub = _voices("publish", str(candidates[0]), "--registry", str(reg))
    assert pub.returncode == 2 and "eval_gate_failed" in pub.stderr
    assert not (reg / "bundles" / "pub_fail" / "voice_bundle").exists()


def test_old_env_names(tmp_path):
    """WEIGHTS_MANIFEST_PATH runs the allowlist/licence check with the old codes before any work."""
    data = quick_data(tmp_path / "data", n=2)
    bad = tmp_path / "weights_manifest.json"
    bad.write_text(json.dumps({"id": "not-allowlisted-weights", "sha256": "0" * 64}), "utf-8")
    run = run_script(_env(tmp_path, data, tmp_path / "reg", "old_env", WEIGHTS_MANIFEST_PATH=str(bad), **TINY))
    assert run.rc == 2 and error_line(run).startswith("[tts-prod][error] allowlist_rejected ")
    from voicelane.ops.orchestrator import legacy_env

    assert legacy_env({"IMAGE_TAG": "v7"})["DOCKER_IMAGE"] == "voicelane-train-prod:v7"
    assert legacy_env({"IMAGE_TAG": "reg.example/voice:v7"})["DOCKER_IMAGE"] == "reg.example/voice:v7"
    assert legacy_env({"IMAGE_TAG": "v7", "DOCKER_IMAGE": "mine:1"})["DOCKER_IMAGE"] == "mine:1"


@pytest.mark.slow
def test_production_voice_from_corpora_kal_is_served_and_rolled_back(tmp_path, svc_start_server):
    """`TRAIN_BACKEND=local AUDIO_PATH=corpora/kal scripts/voice/train_production_voice.sh` (two
    fine-tuning steps from the shipped base: meets the production gates), then the running service
    speaks the new voice; a second version replaces it and `voices rollback` brings the first back."""
    srv = svc_start_server(tmp_path / "svc", VOICELANE_VOICE_RESCAN_S="1")
    reg = tmp_path / "svc" / "var"
    kal = CORPORA / "kal"
    env = _env(tmp_path, kal, reg, "kal_prod", **BASE_QUICK)
    env["CONSENT_STATEMENT"] = str(kal / "CONSENT.txt")
    env["WEIGHTS_MANIFEST_PATH"] = str(
        Path(__file__).resolve().parents[1] / "weights" / "voicelane-slt-base-v1" / "weights_manifest.json"
    )
    del env["BASE_WEIGHTS_ID"]  # the old name supplies it
    run = run_script(env, timeout=3600)
    assert run.rc == 0, run.stdout[-3000:]
    assert run.lines[-1] == "[tts-prod] status=done backend=local served=kal_prod version=1"
    first = _served(srv, "kal_prod")
    seconds, _ = _speak(srv, "kal_prod")
    assert seconds > 0.5
    env2 = dict(env, TRAIN_STEPS="4", OUT_DIR=str(tmp_path / "out2"), TRAIN_STATUS_PATH=str(tmp_path / "s2.json"))
    run2 = run_script(env2, timeout=3600)
    assert run2.lines[-1] == "[tts-prod] status=done backend=local served=kal_prod version=2", run2.stdout[-2000:]
    second = _served(srv, "kal_prod", sha=registry.status(reg)[0]["manifest_sha256"])
    assert second["manifestSha256"] != first["manifestSha256"]
    rb = _voices("rollback", "kal_prod", "--registry", str(reg))
    assert rb.returncode == 0, rb.stderr
    assert json.loads(rb.stdout)["rollback"]["version"] == 1
    assert _served(srv, "kal_prod", sha=first["manifestSha256"])["manifestSha256"] == first["manifestSha256"]
    assert _speak(srv, "kal_prod")[0] > 0.5


@pytest.mark.slow
def test_train_cli_publish(tmp_path):
    """`voicelane train ... --publish` publishes after a successful production run (~1 min)."""
    data = quick_data(tmp_path / "data")
    reg = tmp_path / "reg"
    proc = subprocess.run(
        voicelane_argv(
            "train",
            "--no-onnx",
            "--publish",
            lane="tts_prod_train",
            data=data,
            profile="cli_pub",
            out=tmp_path / "out",
            preset="tiny",
            steps=2,
            min_minutes=0,
            eval_max=1,
            gates=TINY["TRAIN_GATES"],
            consent_statement=consent_of(data),
            registry=reg,
        ),
        capture_output=True,
        text=True,
        timeout=1800,
        env=base_env(TRAIN_STATUS_PATH=str(tmp_path / "s.json")),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "published: profile=cli_pub version=1" in proc.stderr
    assert registry.status(reg)[0]["profile"] == "cli_pub"
