"""Issue 11 strict input, in-process: strict JSON, SSE ids, bounded front-end tokens, NaN gates,
header-safe trace ids, the token file, Host/Origin rules, the synthesis queue's cancel."""

from __future__ import annotations

import os
import stat
import time

import pytest

from helpers import NON_STRICT_JSON
from voicelane.errors import VoicelaneError
from voicelane.evaluate import check_gates
from voicelane.service.core.config import Settings
from voicelane.service.core.security import (
    HostPolicy,
    ensure_token,
    origin_allowed,
    parse_event_id,
    split_host,
    strict_json_loads,
)


@pytest.mark.parametrize("text", NON_STRICT_JSON)
def test_strict_json_refuses(text):
    with pytest.raises(ValueError):
        strict_json_loads(text.encode())


def test_strict_json_keeps_ordinary_numbers():
    assert strict_json_loads(b'{"a": 1.5e3, "b": [1, -2], "c": {"d": 0.0}}') == {
        "a": 1500.0,
        "b": [1, -2],
        "c": {"d": 0.0},
    }


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("3", 3),
        (" 12 ", 12),
        ("²", None),
        ("٣", None),
        ("9" * 5000, None),
        ("-1", None),
        ("1e3", None),
        ("", None),
        ("99999999999999999999", None),
        ("9999999999999999999", 2**62),
    ],
)
def test_last_event_id(value, expected):
    assert parse_event_id(value) == expected


def test_nan_threshold_fails_closed():
    res = {"wer": 0.1, "mcd_db": 5.0}
    assert check_gates(res, {"wer_max": 0.3}) == []
    failed = check_gates(res, {"wer_max": float("nan")})
    assert failed and failed[0]["reason"] == "threshold_invalid"
    assert check_gates(res, {"wer_max": float("inf")})
    assert check_gates({"wer": float("nan")}, {"wer_max": 0.3})  # a NaN measurement never passes
    assert check_gates(res, {"wer_target": 0.3})  # an unknown gate kind is not silently ignored


def test_front_end_bounds_tokens():
    from voicelane.engine.frontend import phonemize_sentences

    with pytest.raises(VoicelaneError) as e:
        phonemize_sentences("say " + "1" * 600)
    assert e.value.code == "text_unvoiceable" and e.value.details["span"] == [4, 604]
    with pytest.raises(VoicelaneError) as e:
        phonemize_sentences("code 1e400")  # the number normaliser raised InvalidOperation before
    assert e.value.code == "text_unvoiceable"
    words = sum(len(u.spoken_words) for u in phonemize_sentences("12345678901234567890"))
    assert words == 20  # a long digit run is read digit by digit


def test_speak_trace_id_must_fit_a_header():
    from pydantic import ValidationError

    from voicelane.service.models import SpeakRequest

    assert SpeakRequest.model_validate({"text": "x", "traceId": "abc-1:2"}).traceId == "abc-1:2"
    for bad in ("追踪", "é", " lead", "tab\there", "x" * 129):
        with pytest.raises(ValidationError):
            SpeakRequest.model_validate({"text": "x", "traceId": bad})


def test_token_file_is_private_and_stable(tmp_path):
    t1 = ensure_token(tmp_path / "var")
    path = tmp_path / "var" / "api_token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(t1) >= 32
    assert ensure_token(tmp_path / "var") == t1
    os.chmod(path, 0o644)
    assert ensure_token(tmp_path / "var") == t1 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_token(tmp_path / "other") != t1


def test_host_and_origin_rules():
    loop = HostPolicy(Settings())
    assert loop.allows("localhost") and loop.allows("127.0.0.1") and loop.allows("::1") and loop.allows("a.localhost")
    assert not loop.allows("evil.example") and not loop.allows("192.168.1.5")
    wide = HostPolicy(Settings(bind_host="0.0.0.0", allowed_hosts=["voice.lan"]))
    assert wide.allows("192.168.1.5") and wide.allows("voice.lan") and not wide.allows("evil.example")
    assert HostPolicy(Settings(allowed_hosts=["*"])).allows("anything.example")
    assert split_host("[::1]:8765") == ("::1", 8765) and split_host("a b") is None and split_host("") is None
    assert origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765", [])
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8765", [])
    assert not origin_allowed("null", "127.0.0.1:8765", [])
    assert not origin_allowed("http://evil.example", "127.0.0.1:8765", [])
    assert origin_allowed("http://studio.example", "127.0.0.1:8765", ["http://studio.example/"])
    assert origin_allowed("http://evil.example", "127.0.0.1:8765", ["*"])


def test_settings_from_env():
    s = Settings.from_env(
        {
            "VOICELANE_AUTH": "off",
            "VOICELANE_ALLOWED_HOSTS": "a.lan, b.lan",
            "VOICELANE_CORS_ORIGINS": "http://x.example",
        }
    )
    assert s.auth == "off" and s.allowed_hosts == ["a.lan", "b.lan"] and s.cors_origins == ["http://x.example"]
    assert not s.admin_token_required
    assert Settings().admin_token_required  # the default: a token even on loopback
    assert Settings.from_env({"VOICELANE_AUTH": "off"}, bind_host="0.0.0.0").admin_token_required


def test_queue_cancel_frees_the_slot_at_once():
    from voicelane.service.core.synth import QueueFull, SynthPool

    pool = SynthPool(workers=1, queue_size=2)
    try:
        busy = pool.submit(0, lambda: time.sleep(0.5))
        time.sleep(0.05)
        waiting = [pool.submit(1, lambda: 1), pool.submit(1, lambda: 2)]
        with pytest.raises(QueueFull):
            pool.submit(1, lambda: 3)
        assert pool.cancel(waiting[0]) and pool.queued == 1
        assert pool.submit(1, lambda: 4).result(5) == 4
        assert waiting[1].result(5) == 2 and busy.result(5) is None
    finally:
        pool.shutdown()


def test_child_reported_error_keeps_its_code():
    from voicelane.service.core.jobs import reported_error

    report = '{"error": {"code": "dataset_too_small", "message": "m", "details": {"required_minutes": 5}}}'
    err = reported_error([report], [], 2)
    assert err["code"] == "dataset_too_small" and err["details"] == {"required_minutes": 5} and err["next_action"]
    err = reported_error([], ["[voicelane] dataset ...", "error: consent_missing: no consent", "next: pass it"], 2)
    assert (err["code"], err["message"]) == ("consent_missing", "no consent")
    assert reported_error([], ["error: internal_error: TypeError: x"], 1) is None  # a crash stays a crash
    assert reported_error(["not json"], ["error: made_up_code: x"], 1) is None


def test_reported_code_reads_the_cli_error_line():
    from voicelane.errors import reported_code

    assert reported_code(["PROGRESS 1 9", "error: dataset_too_small: 0.7 min kept", "next: record more"]) == (
        "dataset_too_small",
        "0.7 min kept",
    )
    assert reported_code(["error: internal_error: boom"]) is None
    assert reported_code(["error: not_a_code: x", "warning: dataset_empty: y"]) is None


def test_orchestrator_keeps_a_code_reported_without_a_status(tmp_path):
    """#3 for the orchestrator: a lane that failed before writing its status is not internal_error."""
    from voicelane.ops.orchestrator import Orchestrator

    log = tmp_path / "lane.log"
    log.write_text("[voicelane] dataset ...\nerror: consent_missing: no consent statement\nnext: pass one\n")
    orch = object.__new__(Orchestrator)  # only the paths lane_failure reads
    orch.log_path, orch.status_path = log, tmp_path / "missing.json"
    failed = orch.lane_failure(2, None)
    assert (failed.code, failed.message) == ("consent_missing", "no consent statement")
    log.write_text("Traceback ...\n")
    assert orch.lane_failure(1, None).code == "internal_error"
    assert orch.lane_failure(130, None).code == "cancelled"


@pytest.mark.parametrize("gates", ['{"wer_max": NaN}', '{"wer_max": Infinity}', '{"wer_max": 1e999}'])
def test_cli_refuses_non_finite_gates(tmp_path, gates):
    """#7 on the command line: a NaN threshold would silently pass every run."""
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicelane",
            "train",
            "--lane",
            "tts_voice_train",
            "--data",
            str(tmp_path),
            "--profile",
            "g1",
            "--preset",
            "tiny",
            "--out",
            str(tmp_path / "out"),
            "--gates",
            gates,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "invalid_argument" in r.stderr and "gates.wer_max" in r.stderr, r.stderr[-500:]
    assert not (tmp_path / "out").exists()
