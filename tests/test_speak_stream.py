"""Streamed speak replies, synthesis in worker processes, and `voicelane speak --play`,
against a real server and a real (tiny) production bundle."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TEXT = "Caution, gear unsafe on the left side. Check it now, then report back."


@pytest.fixture(scope="module")
def stream_server(svc_start_voice_server):
    return svc_start_voice_server("svc_stream", VOICELANE_SPEAK_WORKERS="2")


def _body(**kw):
    return {"text": TEXT, "tenantId": "t-" + uuid.uuid4().hex[:8], "missionId": "m-" + uuid.uuid4().hex[:8], **kw}


def _one_shot(srv) -> np.ndarray:
    r = srv.client.post("/api/voice/speak", json=_body())
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav", r.text[:500]
    assert r.content[:4] == b"RIFF" and "content-length" in r.headers  # the one-shot reply is unchanged
    audio, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr == 16000
    return audio


def test_stream_true_sends_chunked_wav_of_the_one_shot_length(stream_server):
    one = _one_shot(stream_server)
    with stream_server.client.stream("POST", "/api/voice/speak", json=_body(stream=True)) as r:
        assert r.status_code == 200, r.read()[:500]
        assert r.headers["content-type"] == "audio/wav" and r.headers["x-voice-stream"] == "wav"
        assert "content-length" not in r.headers  # chunked: sent as it is made
        parts = [p for p in r.iter_raw() if p]
    data = b"".join(parts)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data"
    pcm = np.frombuffer(data[44:], dtype="<i2").astype(np.float32) / 32767.0
    assert len(pcm) == len(one)
    env = lambda w: np.log10(np.mean(w[: len(w) // 160 * 160].reshape(-1, 160) ** 2, axis=1) + 1e-8)  # noqa: E731
    assert np.corrcoef(env(pcm), env(one))[0, 1] > 0.9
    # players read "unknown length" WAVs to the end
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == 16000 and len(audio) == len(one)


def test_accept_l16_sends_raw_big_endian_pcm(stream_server):
    one = _one_shot(stream_server)
    r = stream_server.client.post("/api/voice/speak", json=_body(), headers={"Accept": "audio/L16"})
    assert r.status_code == 200
    assert r.headers["content-type"].replace(" ", "").lower() == "audio/l16;rate=16000;channels=1"
    pcm = np.frombuffer(r.content, dtype=">i2")
    assert len(pcm) == len(one) and np.abs(pcm).max() > 1000


def test_stream_errors_keep_their_status_and_code(stream_server):
    r = stream_server.client.post("/api/voice/speak", json=_body(text="...!!!", stream=True))
    assert r.status_code == 400 and r.json()["error"] == "voice_invalid_request", r.text[:500]
    assert r.json()["details"]["code"] == "text_unvoiceable"
    r = stream_server.client.post("/api/voice/speak", json=_body(stream=True, format="mp3"))
    assert r.status_code in (400, 503), r.text[:300]
    r = stream_server.client.post("/api/voice/speak", json=_body(stream="yes"))
    assert r.status_code == 400 and r.json()["error"] == "voice_invalid_request"


def _synth_children(server_pid: int) -> list[int]:
    """The server's spawn children, read from /proc (``ps`` may cut long command lines to the
    terminal width, which hid the resource tracker's name on a machine with a longer venv path)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server_pid)], capture_output=True, text=True)
    kids = []
    for pid in (int(p) for p in out.stdout.split()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # already gone
        if "multiprocessing.spawn" in cmd:
            kids.append(pid)
    return kids


def test_two_workers_synthesise_in_child_processes_that_are_replaced_when_killed(stream_server):
    _one_shot(stream_server)
    kids = _synth_children(stream_server.proc.pid)
    assert len(kids) == 2, kids
    os.kill(kids[0], signal.SIGKILL)
    time.sleep(0.5)
    codes = []
    for _ in range(4):  # one request may land on the dead child: it fails cleanly, the next ones work
        # a fresh text each time (no cache hit), letters only: a token mixing digits and letters is refused
        word = uuid.uuid4().hex[:4].translate(str.maketrans("0123456789", "ghijklmnop"))
        r = stream_server.client.post("/api/voice/speak", json=_body(text=f"Check {word} now."))
        codes.append(r.status_code if r.status_code == 200 else r.json()["error"])
    assert codes.count(200) >= 3 and set(codes) <= {200, "voice_backend_error"}, codes
    assert len(_synth_children(stream_server.proc.pid)) == 2


def _speak_text(bundle_dir, *args, env_extra=None, timeout=300):
    """`voicelane speak --bundle B --text TEXT ARGS`, without the VOICELANE_ settings of this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELANE_")}
    env.update(env_extra or {})
    argv = [sys.executable, "-m", "voicelane", "speak", "--bundle", str(bundle_dir), "--text", TEXT, *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def test_speak_play_streams_into_the_player(tmp_path, svc_prod_bundle):
    played = tmp_path / "played.wav"
    kept = tmp_path / "kept.wav"
    player = f"dd of={played} status=none"
    res = _speak_text(svc_prod_bundle.bundle_dir, "--play", "--out", str(kept), env_extra={"VOICELANE_PLAYER": player})
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["played_with"] == "dd" and info["first_audio_ms"] > 0
    audio, sr = sf.read(played, dtype="float32")
    ref, _ = sf.read(kept, dtype="float32")
    assert sr == 16000 and len(audio) == len(ref) > 1600  # the tiny test voice speaks fast


def test_speak_play_without_a_player_fails_with_a_stable_code(tmp_path, svc_prod_bundle):
    res = _speak_text(svc_prod_bundle.bundle_dir, "--play", env_extra={"VOICELANE_PLAYER": "no-such-player-xyz"})
    assert res.returncode != 0
    assert "audio_player_missing" in res.stdout + res.stderr
    res = _speak_text(svc_prod_bundle.bundle_dir)
    assert res.returncode != 0 and "invalid_argument" in res.stdout + res.stderr
    assert not Path(tmp_path / "x.wav").exists()


def test_one_worker_streams_in_its_own_thread(svc_start_voice_server):
    srv = svc_start_voice_server("svc_stream1", VOICELANE_SPEAK_WORKERS="1")
    one = _one_shot(srv)
    r = srv.client.post("/api/voice/speak", json=_body(stream=True))
    assert r.status_code == 200 and r.headers["x-voice-stream"] == "wav"
    assert len(r.content) == 44 + 2 * len(one)
    assert _synth_children(srv.proc.pid) == []  # no child processes with one worker
