"""Unit tests of the service's pure parts: speak policy, synthesis pool, config, paths, runner."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path

import pytest

from voicelane.paths import REPO_ROOT
from voicelane.runner import LocalRunner, decoded_chunks
from voicelane.service.core.config import Settings, SettingsError, is_loopback
from voicelane.service.core.errors import ApiError
from voicelane.service.core.paths import confine
from voicelane.service.core.speak_policy import (
    Budgets,
    CachedAudio,
    Dedupe,
    FakeClock,
    ProviderPolicy,
    RateLimiter,
    ResponseCache,
    check_consent,
    context_gate,
)
from voicelane.service.core.synth import QueueFull, SynthPool
from voicelane.service.core.train_compat import TrainDefaults
from voicelane.service.models import SpeakRequest

# --- context gate / consent / provider ------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, rule",
    [
        ({"context_tier": "tier0"}, "context_tier"),
        ({"context_tier": "TIER0"}, "context_tier"),
        ({"session_state": "paused"}, "session_state"),
        ({"session_state": "ended"}, "session_state"),
        ({"voice_mode": "off"}, "voice_mode"),
        ({"voice_mode": "dnd"}, "voice_mode"),
        ({"voice_mode": "critical_only"}, "voice_mode_critical_only"),
    ],
)
def test_context_gate_suppresses(kw, rule):
    args = {"context_tier": None, "session_state": None, "voice_mode": None} | kw
    assert context_gate("info", **args)["rule"] == rule


def test_context_gate_allows():
    assert context_gate("info", "tier1", "active", "on") is None
    assert context_gate("info", None, None, None) is None
    assert context_gate("critical", None, "active", "critical_only") is None
    assert context_gate("action", None, None, "critical_only") is None  # the old contract: action passes too
    assert context_gate("warn", None, None, "critical_only") is not None


def test_consent():
    check_consent(None, False)
    check_consent("abc", True)
    for bad in (False, None):
        with pytest.raises(ApiError) as ei:
            check_consent("abc", bad)
        assert ei.value.code == "voice_consent_required" and ei.value.status == 400


def test_provider_policy():
    local_only = ProviderPolicy()
    assert local_only.decide(None, "info").provider == "local"
    assert local_only.decide("local", "info").provider == "local"
    # any `local*` name is local (`local-chatterbox` was the old default)
    for name in ("local-chatterbox", "LOCAL-piper", "local_x"):
        assert local_only.decide(name, "info").provider == "local"
    with pytest.raises(ApiError) as ei:
        local_only.decide("acme-cloud", "info")
    assert (ei.value.status, ei.value.code, ei.value.details["reason"]) == (
        403,
        "voice_provider_not_allowed",
        "remote_providers_disabled",
    )
    # critical / action always route local, even when a remote provider is asked for
    d = local_only.decide("acme-cloud", "critical")
    assert (d.provider, d.rerouted, d.requested) == ("local", True, "acme-cloud")
    enabled = ProviderPolicy(["acme-cloud"])
    assert enabled.decide("acme-cloud", "info").provider == "acme-cloud"
    assert enabled.decide("acme-cloud", "action").provider == "local"
    with pytest.raises(ApiError) as ei:
        enabled.decide("other", "warn")
    assert ei.value.details["reason"] == "provider_not_enabled"


# --- budgets / rate limit / dedupe (injected clock) -------------------------------------------------


def test_mission_budget_and_release():
    clock = FakeClock()
    b = Budgets(mission_chars=10, tenant_daily_chars=0, clock=clock)
    r1 = b.reserve("t", "m1", 6)
    with pytest.raises(ApiError) as ei:
        b.reserve("t", "m1", 5)
    assert ei.value.status == 429 and ei.value.code == "voice_budget_exceeded"
    assert ei.value.details["scope"] == "mission" and ei.value.details["usedChars"] == 6
    b.reserve("t", "m2", 10)  # another mission has its own budget
    r1.release()  # nothing was delivered: the characters come back
    r1.release()  # idempotent
    b.reserve("t", "m1", 10)
    b.reserve("t", None, 1000)  # no mission: no mission budget


def test_tenant_daily_budget_resets_next_day():
    clock = FakeClock()
    b = Budgets(mission_chars=0, tenant_daily_chars=20, clock=clock)
    b.reserve("acme", "a", 15)
    with pytest.raises(ApiError) as ei:
        b.reserve("acme", "b", 10)
    assert ei.value.details["scope"] == "tenant_daily" and ei.value.details["day"] == "2026-01-01"
    b.reserve("other", "b", 20)
    clock.advance(86400)
    b.reserve("acme", "c", 20)


def test_rate_limiter_token_bucket():
    clock = FakeClock()
    rl = RateLimiter(per_min=60, burst=2, clock=clock)
    rl.take("m")
    rl.take("m")
    with pytest.raises(ApiError) as ei:
        rl.take("m")
    assert ei.value.status == 429 and ei.value.code == "voice_rate_limited"
    assert ei.value.headers["Retry-After"] == "1"
    rl.take("other")
    clock.advance(1.0)
    rl.take("m")
    with pytest.raises(ApiError):
        rl.take("m")
    RateLimiter(per_min=0, burst=1, clock=clock).take("x")  # 0 = off


def test_dedupe_cooldown_by_priority():
    clock = FakeClock()
    d = Dedupe({"info": 30, "warn": 10, "critical": 2, "action": 0}, clock)
    assert d.check_and_mark("t", "m", None, "info") == (None, None)  # no key: no dedupe
    m1, sup = d.check_and_mark("t", "m", "ev1", "info")
    assert m1 is not None and sup is None
    _, sup = d.check_and_mark("t", "m", "ev1", "info")
    assert sup is not None and sup["cooldownS"] == 30
    _, sup = d.check_and_mark("t", "other-mission", "ev1", "info")
    assert sup is None  # scoped by mission
    clock.advance(3)
    mk, sup = d.check_and_mark("t", "m", "ev1", "critical")  # critical: 2 s cooldown
    assert sup is None
    mk2, sup = d.check_and_mark("t", "m", "ev1", "action")  # action: no cooldown
    assert sup is None
    clock.advance(11)
    _, sup = d.check_and_mark("t", "m", "ev1", "warn")
    assert sup is None


def test_dedupe_undo_lets_a_retry_through():
    clock = FakeClock()
    d = Dedupe({"info": 30}, clock)
    mark, _ = d.check_and_mark("t", "m", "k", "info")
    mark.undo()
    mark2, sup = d.check_and_mark("t", "m", "k", "info")
    assert sup is None and mark2 is not None


def test_response_cache_lru_bounds():
    c = ResponseCache(max_entries=2, max_bytes=10)
    k = [ResponseCache.key("p", "f", str(i), "wav", "callout") for i in range(3)]
    c.put(k[0], CachedAudio(b"aaaa", 1.0, 16000))
    c.put(k[1], CachedAudio(b"bbbb", 1.0, 16000))
    assert c.get(k[0]) is not None
    c.put(k[2], CachedAudio(b"cccc", 1.0, 16000))  # evicts k1 (least recently used)
    assert c.get(k[1]) is None and c.get(k[0]) is not None and c.get(k[2]) is not None
    c.put(k[1], CachedAudio(b"x" * 11, 1.0, 16000))  # larger than the byte bound: not cached
    assert c.get(k[1]) is None and c.size <= 10
    off = ResponseCache(0, 100)
    off.put(k[0], CachedAudio(b"a", 1.0, 16000))
    assert off.get(k[0]) is None


def test_response_cache_stays_within_its_caps_and_releases_what_it_evicts():
    rng = random.Random(3)
    c = ResponseCache(max_entries=8, max_bytes=300_000)
    held = []
    for i in range(200):
        wav = rng.randbytes(rng.randrange(20_000, 120_000))
        key = ResponseCache.key("p", "f", f"text {i % 40}", "wav", "callout")
        c.put(key, CachedAudio(wav, 1.0, 22050))
        held.extend(c.d.values())
        assert len(c) <= 8 and c.size <= 300_000
        assert c.size == sum(v.n for v in c.d.values())
        got = c.get(key)
        assert got.wav == wav and isinstance(got.wav, bytes) and got.sample_rate == 22050
    live = {id(v) for v in c.d.values()}
    assert all(v.buf.closed for v in held if id(v) not in live)  # evicted: its mapping is gone
    assert not any(v.buf.closed for v in c.d.values())
    empty = ResponseCache.key("p", "f", "nothing", "wav", "callout")
    c.put(empty, CachedAudio(b"", 0.0, 22050))
    assert c.get(empty).wav == b""


def test_front_end_caches_are_bounded():
    from voicelane.engine import frontend

    assert frontend._phonemize_cached.cache_info().maxsize == frontend.PHONEMIZE_CACHE_SIZE <= 1024
    assert frontend._phonemize_sentences_cached.cache_info().maxsize == frontend.SENTENCE_CACHE_SIZE <= 1024


# --- synthesis pool -------------------------------------------------------------------------------


def test_pool_priority_order_and_bounded_queue():
    pool = SynthPool(workers=1, queue_size=3)
    gate = threading.Event()
    order: list[str] = []
    try:
        first = pool.submit(2, lambda: gate.wait(10) and order.append("busy"))
        deadline = time.monotonic() + 5
        while pool.running == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        futs = [
            pool.submit(2, lambda: order.append("info")),
            pool.submit(1, lambda: order.append("warn")),
            pool.submit(0, lambda: order.append("critical")),
        ]
        with pytest.raises(QueueFull):
            pool.submit(0, lambda: None)
        gate.set()
        for f in [first, *futs]:
            f.result(10)
        assert order == ["busy", "critical", "warn", "info"]
    finally:
        gate.set()
        pool.shutdown()


def test_pool_skips_cancelled_and_reports_errors():
    pool = SynthPool(workers=1, queue_size=4)
    gate = threading.Event()
    ran: list[int] = []
    try:
        busy = pool.submit(0, lambda: gate.wait(10))
        while pool.running == 0:
            time.sleep(0.01)
        f = pool.submit(0, lambda: ran.append(1))
        assert f.cancel()
        boom = pool.submit(0, lambda: 1 / 0)
        gate.set()
        busy.result(10)
        with pytest.raises(ZeroDivisionError):
            boom.result(10)
        assert ran == []
    finally:
        gate.set()
        pool.shutdown()


# --- request model ----------------------------------------------------------------------------------


def test_speak_request_model():
    r = SpeakRequest.model_validate({"text": "hi", "unknownKey": 1, "eventId": 42})
    assert r.mode == "callout" and r.priority == "info" and r.format == "wav" and r.eventId == "42"
    assert r.watermark_mode == "none"
    for bad in (
        {"text": ""},
        {"text": "   "},
        {"text": "x" * 601},
        {"text": "hi", "mode": "shout"},
        {"text": "hi", "priority": "urgent"},
        {"text": "hi", "format": "ogg"},
        {"text": "hi", "consent_asserted": "yes"},
        {"text": "hi", "voiceProfile": "Bad Id"},
        {"text": "hi", "missionId": "x" * 200},
    ):
        with pytest.raises(ValueError):
            SpeakRequest.model_validate(bad)


# --- config / paths ----------------------------------------------------------------------------------


def test_settings_from_env(tmp_path):
    s = Settings.from_env(
        {
            "VOICELANE_DATA_DIR": str(tmp_path),
            "VOICELANE_MAX_TRAIN_JOBS": "2",
            "VOICELANE_DEDUPE_COOLDOWN_S": "info=1,critical=0",
            "VOICELANE_REMOTE_PROVIDERS": "Acme, other",
            "VOICELANE_DATA_ROOTS": f"{tmp_path}/a{':'}{tmp_path}/b",
        }
    ).resolved()
    assert s.max_train_jobs == 2 and s.dedupe_cooldown_s["info"] == 1 and s.dedupe_cooldown_s["warn"] == 15
    assert s.remote_providers == ["acme", "other"]
    assert s.db_path == tmp_path / "voicelane.db"
    assert s.data_roots == [tmp_path / "a", tmp_path / "b"]
    assert s.bundle_roots[0] == tmp_path
    with pytest.raises(SettingsError):
        Settings.from_env({"VOICELANE_RUNNER": "k8s"})
    with pytest.raises(SettingsError):
        Settings.from_env({"VOICELANE_DEDUPE_COOLDOWN_S": "loud=3"})


def test_train_defaults_from_env(tmp_path):
    """The run a bare /api/train/start gets: the kal demo run unless VOICELANE_TRAIN_DEFAULT_* say
    otherwise; blank variables are unset, 'none' base is from scratch, bad values are refused."""
    kal = TrainDefaults.from_env({"VOICELANE_TRAIN_DEFAULT_PROFILE": " "})
    assert kal.data == REPO_ROOT / "corpora" / "kal" and kal.profile == "demo_kal"
    assert kal.consent == kal.data / "CONSENT.txt" and kal.heldout == REPO_ROOT / "corpora" / "kal_heldout"
    assert kal.base == "voicelane-slt-base-v1" and kal.steps is None and kal.onnx is None
    (tmp_path / "CONSENT.txt").write_text("I consent.\n")
    own = TrainDefaults.from_env(
        {
            "VOICELANE_TRAIN_DEFAULT_DATA": str(tmp_path),
            "VOICELANE_TRAIN_DEFAULT_BASE": "None",
            "VOICELANE_TRAIN_DEFAULT_STEPS": "2",
            "VOICELANE_TRAIN_DEFAULT_GATES": '{"wer_max": 5}',
            "VOICELANE_TRAIN_DEFAULT_ONNX": "0",
            "VOICELANE_TRAIN_STATUS_DIRS": f"{tmp_path}/a{os.pathsep}{tmp_path}/b",
        }
    )
    assert own.consent == tmp_path / "CONSENT.txt" and own.heldout is None and own.base is None
    assert (own.steps, own.gates, own.onnx) == (2, {"wer_max": 5.0}, False)
    assert own.status_dirs == (tmp_path / "a", tmp_path / "b")
    filled, defaulted = own.fill_train({"jobType": "tts_prod_train"})
    assert defaulted and filled["dataPath"] == str(tmp_path) and filled["steps"] == 2 and "base" not in filled
    with pytest.raises(SettingsError, match="VOICELANE_TRAIN_DEFAULT_"):
        TrainDefaults.from_env({"VOICELANE_TRAIN_DEFAULT_STEPS": "two"})


def test_serve_refuses_bad_settings_before_it_listens(tmp_path):
    """`voicelane serve` checks every VOICELANE_* setting, the train defaults too, at start."""
    import subprocess

    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICELANE_")}
    for name, value, field in (
        ("VOICELANE_RUNNER", "k8s", "runner"),
        ("VOICELANE_TRAIN_DEFAULT_STEPS", "two", "steps"),
    ):
        env = clean | {"VOICELANE_DATA_DIR": str(tmp_path / "var"), name: value}
        argv = [sys.executable, "-m", "voicelane", "serve", "--port", "9"]
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "error: invalid_argument" in r.stderr, r.stderr[-500:]
        assert name.removesuffix(field.upper()) in r.stderr and field in r.stderr


def test_token_required_by_default_and_always_beyond_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("::")
    # a per-install token even on loopback (docs/security.md), unless the operator turns it off
    assert Settings(bind_host="127.0.0.1").admin_token_required
    assert not Settings(bind_host="127.0.0.1", auth="off").admin_token_required
    # off loopback the token stays required whatever auth says
    assert Settings(bind_host="0.0.0.0").admin_token_required
    assert Settings(bind_host="0.0.0.0", auth="off").admin_token_required
    assert Settings(bind_host="127.0.0.1", auth="off", require_token=True).admin_token_required


def test_confine_paths(tmp_path):
    root = tmp_path / "root"
    (root / "ds").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    assert confine("ds", [root], "dataPath") == root / "ds"
    assert confine(str(root / "ds"), [root], "dataPath") == root / "ds"
    for bad in ("../outside", str(tmp_path / "outside"), "link", "/etc"):
        with pytest.raises(ApiError) as ei:
            confine(bad, [root], "dataPath")
        assert ei.value.code == "path_not_allowed", bad
    with pytest.raises(ApiError) as ei:
        confine("nope", [root], "dataPath")
    assert ei.value.code == "missing_audio_path"


# --- runner ---------------------------------------------------------------------------------------------


def test_decoded_chunks_keep_split_characters_and_lines():
    from voicelane.protocol import iter_lines

    data = 'PROGRESS 1 2\nSTATS {"name":"é✓"}\nARTIFACT a/b\n'.encode()
    chunks = [data[i : i + 3] for i in range(0, len(data), 3)]  # splits lines and UTF-8 characters
    it = iter(chunks)
    lines = list(iter_lines(decoded_chunks(lambda: next(it, b""))))
    assert lines == ["PROGRESS 1 2", 'STATS {"name":"é✓"}', "ARTIFACT a/b"]
    it2 = iter([b"x" * 50, b"y" * 50, b""])
    assert [len(x) for x in iter_lines(decoded_chunks(lambda: next(it2, b""), limit=60))] == [100]


def test_local_runner_terminates_process_group(tmp_path):
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('PROGRESS 0 1', flush=True); print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    h = LocalRunner().start([sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"}, tmp_path)
    lines = h.lines()
    assert next(lines) == ("stdout", "PROGRESS 0 1")
    grandchild = int(next(lines)[1])
    t0 = time.monotonic()
    h.terminate(grace_s=5)
    assert h.wait(5) == -15 and time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while (
        time.monotonic() < deadline
        and Path(f"/proc/{grandchild}/cmdline").exists()
        and Path(f"/proc/{grandchild}/cmdline").read_bytes()
    ):
        time.sleep(0.05)
    assert not Path(f"/proc/{grandchild}/cmdline").exists() or not Path(f"/proc/{grandchild}/cmdline").read_bytes()
    with pytest.raises(TypeError):
        LocalRunner().start("echo hi", {}, tmp_path)  # type: ignore[arg-type]


# --- compatibility with the old speak callers ------------------------------------------------------


def test_tenant_from_headers():
    from voicelane.service.core.speak_policy import tenant_of

    assert tenant_of({}, None) == "single-tenant"
    assert tenant_of({}, "body-t") == "body-t"
    assert tenant_of({"x-customer-id": "cust"}, "body-t") == "cust"
    assert tenant_of({"x-tenant-id": "ten", "x-customer-id": "cust"}, None) == "ten"
    with pytest.raises(ApiError) as ei:
        tenant_of({"x-tenant-id": "x" * 129}, None)
    assert ei.value.code == "voice_invalid_request"


def test_watermark_modes():
    from voicelane.service.core.speak_policy import check_watermark

    assert [check_watermark(m) for m in ("none", "off", "metadata")] == ["none", "off", "metadata"]
    with pytest.raises(ApiError) as ei:
        check_watermark("audible")
    assert (ei.value.status, ei.value.code) == (400, "voice_watermark_unsupported")
    r = SpeakRequest.model_validate(
        {"text": "hi", "watermark_mode": " OFF ", "format": "MP3", "voiceProfile": "Demo_Voice"}
    )
    assert (r.watermark_mode, r.format, r.voiceProfile) == ("off", "mp3", "Demo_Voice")


def test_mp3_encoding_is_real_mp3():
    import io

    import numpy as np
    import soundfile as sf

    from voicelane.service.core import audio_out

    assert audio_out.mp3_available()
    x = (0.3 * np.sin(np.arange(22050) * 2 * np.pi * 220 / 22050)).astype(np.float32)
    data = audio_out.encode(x, 22050, "mp3", tag="synthetic speech; voicelane profile=p")
    assert data[:3] == b"ID3" and b"voicelane profile=p" in data
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert f.format == "MP3" and f.samplerate == 22050
        y = f.read(dtype="float32")
    assert abs(len(y) - len(x)) < 2400  # encoder delay/padding only
    spec = np.abs(np.fft.rfft(y[2000:18000]))
    assert abs(np.argmax(spec) * 22050 / 16000 - 220) < 5  # the tone survives the codec
    assert audio_out.encode(x, 22050, "wav")[:4] == b"RIFF"
