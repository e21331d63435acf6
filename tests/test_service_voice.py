"""`/api/voice/*` against a real server speaking with a real (tiny) production bundle, plus an
in-process uvicorn server with a fake slow/failing backend for the queue and timeout paths."""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from conftest import svc_inprocess_server
from helpers import REPO


def _copy_bundle(src: Path, root: Path, profile: str, **manifest_changes) -> Path:
    dst = root / "bundles" / profile / "voice_bundle"
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m.update(voice_profile_id=profile, **manifest_changes)
    (dst / "manifest.json").write_text(json.dumps(m, indent=2))
    return dst


@pytest.fixture(scope="module")
def svc_voice_server(tmp_path_factory, svc_start_server, svc_prod_bundle):
    work = tmp_path_factory.mktemp("svc_voice")
    extra = work / "extra"
    _copy_bundle(svc_prod_bundle.bundle_dir, extra, "exp1", lane="experimental", promotable=False)
    bad = _copy_bundle(svc_prod_bundle.bundle_dir, extra, "bad1")
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    (bad / "model.safetensors").write_bytes(bytes(data))
    _copy_bundle(svc_prod_bundle.bundle_dir, extra, "live1")
    srv = svc_start_server(
        work,
        VOICELANE_BUNDLE_ROOTS=f"{svc_prod_bundle.root}:{extra}",
        VOICELANE_DEFAULT_PROFILE="svc_prod",
        VOICELANE_DATA_ROOTS=str(work / "no_data"),
        VOICELANE_MISSION_BUDGET_CHARS="150",
        VOICELANE_TENANT_DAILY_BUDGET_CHARS="300",
        VOICELANE_RATE_LIMIT_PER_MIN="6",
        VOICELANE_RATE_LIMIT_BURST="6",
        VOICELANE_DEDUPE_COOLDOWN_S="info=30,warn=30,critical=0,action=0",
        VOICELANE_SPEAK_TIMEOUT_S="60",
    )
    srv.extra = extra
    return srv


def body(**kw):
    """A speak request in its own tenant and mission (so budgets and rate limits don't interact)."""
    return {"tenantId": "t-" + uuid.uuid4().hex[:8], "missionId": "m-" + uuid.uuid4().hex[:8], **kw}


def speak(srv, **kw):
    return srv.client.post("/api/voice/speak", json=body(**kw))


def _show(resp) -> str:
    return resp.text[:2000] if "json" in resp.headers.get("content-type", "") else f"{resp.status_code} {resp.headers}"


def assert_error(resp, status, code):
    assert resp.status_code == status, _show(resp)
    b = resp.json()
    assert b["error"] == code and b["message"] and b["traceId"], b
    return b


def assert_suppressed(resp, reason):
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json"), _show(resp)
    b = resp.json()
    assert b["ok"] is True and b["suppressed"] is True and b["reason"] == reason, b
    return b


def assert_wav(resp):
    assert resp.status_code == 200, _show(resp)
    assert resp.headers["content-type"] == "audio/wav"
    audio, sr = sf.read(io.BytesIO(resp.content), dtype="float32")
    assert sr == 16000 and len(audio) > 0
    return audio


def test_speak_returns_the_served_bundles_wav(svc_voice_server, svc_prod_bundle):
    from voicelane.lane import SAMPLE_TEXT

    r = speak(svc_voice_server, text=SAMPLE_TEXT, mode="callout", priority="info", voiceProfile="svc_prod")
    audio = assert_wav(r)
    h = r.headers
    assert h["x-voice-provider"] in ("local-pytorch", "local-onnx") and h["x-voice-profile"] == "svc_prod"
    assert h["x-voice-cache"] == "miss" and h["x-watermark-mode"] == "none"
    assert abs(float(h["x-voice-audio-seconds"]) - len(audio) / 16000) < 0.01
    # the bundle's own sample.wav was rendered from the same text by the same model at export
    sample, _ = sf.read(svc_prod_bundle.bundle_dir / "sample.wav", dtype="float32")
    assert sample.shape == audio.shape and np.allclose(sample, audio, atol=2 / 32768)
    again = speak(svc_voice_server, text=SAMPLE_TEXT, voice_profile_id="svc_prod")
    assert again.headers["x-voice-cache"] == "hit" and again.content == r.content
    # default profile (VOICELANE_DEFAULT_PROFILE) when none is named; briefing is another cache entry
    d = speak(svc_voice_server, text=SAMPLE_TEXT, mode="briefing")
    assert_wav(d)
    assert d.headers["x-voice-profile"] == "svc_prod" and d.headers["x-voice-cache"] == "miss"
    # unknown keys are ignored
    assert_wav(speak(svc_voice_server, text="Check the gauge.", someFutureField={"x": 1}, watermark_mode="none"))


@pytest.mark.parametrize(
    "ctx",
    [
        {"contextTier": "tier0"},
        {"sessionState": "paused"},
        {"voiceMode": "off"},
        {"voiceMode": "dnd"},
        {"voiceMode": "critical_only", "priority": "warn"},
        {"voiceMode": "critical_only", "priority": "info"},
    ],
)
def test_context_gate_suppresses(svc_voice_server, ctx):
    b = assert_suppressed(speak(svc_voice_server, text="Fuel low.", **ctx), "voice_context_ineligible")
    assert b["details"]["rule"]


def test_context_gate_lets_critical_through(svc_voice_server):
    assert_wav(
        speak(
            svc_voice_server,
            text="Fuel low.",
            voiceMode="critical_only",
            priority="critical",
            contextTier="tier2",
            sessionState="active",
        )
    )


def test_consent_required_for_reference_audio(svc_voice_server):
    b = assert_error(
        speak(svc_voice_server, text="Fuel low.", referenceAudioHash="ab" * 32), 400, "voice_consent_required"
    )
    assert b["details"]["field"] == "consent_asserted"
    assert_error(
        speak(svc_voice_server, text="Fuel low.", referenceAudioHash="ab" * 32, consent_asserted="true"),
        400,
        "voice_invalid_request",
    )  # strictly a boolean
    assert_wav(speak(svc_voice_server, text="Fuel low.", referenceAudioHash="ab" * 32, consent_asserted=True))


def test_provider_policy(svc_voice_server):
    b = assert_error(
        speak(svc_voice_server, text="Fuel low.", provider="acme-cloud"), 403, "voice_provider_not_allowed"
    )
    assert b["details"]["reason"] == "remote_providers_disabled"
    r = speak(svc_voice_server, text="Fuel low.", provider="acme-cloud", priority="critical")
    assert_wav(r)
    assert r.headers["x-voice-provider"].startswith("local-")
    assert r.headers["x-voice-provider-requested"] == "acme-cloud"
    assert_wav(speak(svc_voice_server, text="Fuel low.", provider="local", priority="action"))


def test_mission_budget(svc_voice_server):
    mission = "mission-budget-" + uuid.uuid4().hex[:6]
    tenant = "tenant-" + uuid.uuid4().hex[:6]
    text = "Runway three is clear for departure, wind two seven zero at eight knots. " * 2  # 146 chars
    # a request that delivers nothing does not spend the budget
    assert_error(
        speak(svc_voice_server, text=text, missionId=mission, tenantId=tenant, voiceProfile="nobody"),
        404,
        "voice_profile_not_found",
    )
    assert_wav(speak(svc_voice_server, text=text, missionId=mission, tenantId=tenant))
    b = assert_error(
        speak(svc_voice_server, text="Again.", missionId=mission, tenantId=tenant), 429, "voice_budget_exceeded"
    )
    assert b["details"]["scope"] == "mission" and b["details"]["usedChars"] == len(text)
    assert_wav(speak(svc_voice_server, text="Again.", tenantId=tenant))  # another mission: fine


def test_tenant_daily_budget(svc_voice_server):
    tenant = "tenant-" + uuid.uuid4().hex[:6]
    text = "Taxi to holding point alpha one, hold short of runway three, and report ready."  # 80 chars
    for _ in range(3):
        assert_wav(speak(svc_voice_server, text=text, tenantId=tenant))
    b = assert_error(speak(svc_voice_server, text=text, tenantId=tenant), 429, "voice_budget_exceeded")
    assert b["details"]["scope"] == "tenant_daily" and b["details"]["limitChars"] == 300


def test_rate_limit(svc_voice_server):
    mission, tenant = "mission-rate-" + uuid.uuid4().hex[:6], "tenant-rate"
    for _ in range(6):  # burst 6, then one token per 10 s
        assert_wav(speak(svc_voice_server, text="Ok.", missionId=mission, tenantId=tenant))
    r = speak(svc_voice_server, text="Ok.", missionId=mission, tenantId=tenant)
    b = assert_error(r, 429, "voice_rate_limited")
    assert int(r.headers["retry-after"]) >= 1 and b["details"]["retryAfterS"] >= 1


def test_dedupe_cooldown_by_priority(svc_voice_server):
    mission, tenant = "mission-dd-" + uuid.uuid4().hex[:6], "tenant-dd"
    assert_wav(speak(svc_voice_server, text="Gear down.", eventId="ev-1", missionId=mission, tenantId=tenant))
    b = assert_suppressed(
        speak(svc_voice_server, text="Gear down.", eventId="ev-1", missionId=mission, tenantId=tenant),
        "dedupe_cooldown",
    )
    assert b["details"]["cooldownS"] == 30
    # critical has no cooldown here (VOICELANE_DEDUPE_COOLDOWN_S critical=0)
    assert_wav(
        speak(
            svc_voice_server, text="Gear down.", eventId="ev-1", priority="critical", missionId=mission, tenantId=tenant
        )
    )
    # dedupe_key wins over eventId
    assert_wav(speak(svc_voice_server, text="Flaps.", dedupe_key="k1", eventId="a", missionId=mission, tenantId=tenant))
    assert_suppressed(
        speak(svc_voice_server, text="Flaps.", dedupe_key="k1", eventId="b", missionId=mission, tenantId=tenant),
        "dedupe_cooldown",
    )


@pytest.mark.parametrize(
    "bad, field",
    [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 601}, "text"),
        ({"text": "hi", "mode": "shout"}, "mode"),
        ({"text": "hi", "priority": "urgent"}, "priority"),
        ({"text": "hi", "format": "ogg"}, "format"),
        ({"text": "hi", "voiceProfile": "Not Valid"}, "voiceProfile"),
        ({"text": "hi", "voiceProfile": "svc_prod", "voice_profile_id": "live1"}, "voiceProfile"),
        ({"text": "☃☃☃ ☃☃"}, "text"),
    ],
)
def test_invalid_requests(svc_voice_server, bad, field):
    b = assert_error(svc_voice_server.client.post("/api/voice/speak", json=bad), 400, "voice_invalid_request")
    assert field in [i["field"] for i in b["details"]["issues"]], b


def test_invalid_bodies(svc_voice_server):
    c = svc_voice_server.client
    assert_error(
        c.post("/api/voice/speak", content=b"{nope", headers={"content-type": "application/json"}),
        400,
        "voice_invalid_request",
    )
    assert_error(c.post("/api/voice/speak", json=["text"]), 400, "voice_invalid_request")
    assert_error(c.post("/api/voice/speak", json={"text": "a" * 70000}), 413, "request_too_large")


def test_profiles_and_refused_bundles(svc_voice_server):
    p = svc_voice_server.client.get("/api/voice/profiles").json()
    served = {x["profileId"]: x for x in p["profiles"]}
    assert set(served) == {"svc_prod", "live1"} and p["defaultProfile"] == "svc_prod"
    assert served["svc_prod"]["default"] is True and served["svc_prod"]["lane"] == "production"
    assert served["svc_prod"]["filesValidated"] >= 4 and served["svc_prod"]["consentRecorded"] is True
    refused = {x["profileId"]: x["code"] for x in p["refused"]}
    assert refused == {"exp1": "lane_not_servable", "bad1": "checksum_mismatch"}
    b = assert_error(speak(svc_voice_server, text="Hello.", voiceProfile="exp1"), 503, "voice_unavailable")
    assert b["details"]["reason"] == "lane_not_servable"
    b = assert_error(speak(svc_voice_server, text="Hello.", voiceProfile="bad1"), 503, "voice_unavailable")
    assert b["details"]["reason"] == "checksum_mismatch"
    assert_error(speak(svc_voice_server, text="Hello.", voiceProfile="nobody"), 404, "voice_profile_not_found")
    h = svc_voice_server.client.get("/health")
    assert h.status_code == 200 and h.json()["ready"] is True and h.json()["voices"] == 2


def test_manifest_change_revalidates(svc_voice_server):
    c = svc_voice_server.client
    mpath = svc_voice_server.extra / "bundles" / "live1" / "voice_bundle" / "manifest.json"
    before = {x["profileId"]: x for x in c.get("/api/voice/profiles").json()["profiles"]}["live1"]
    assert_wav(speak(svc_voice_server, text="Live one.", voiceProfile="live1"))
    m = json.loads(mpath.read_text())
    m["display_name"] = "Live One (renamed)"
    mpath.write_text(json.dumps(m, indent=2))
    changes = c.post("/api/voice/reload").json()
    assert changes["loaded"] == ["live1"]
    after = {x["profileId"]: x for x in c.get("/api/voice/profiles").json()["profiles"]}["live1"]
    assert after["displayName"] == "Live One (renamed)" and after["manifestSha256"] != before["manifestSha256"]
    # the cache is keyed on the manifest: the new bundle renders afresh
    assert speak(svc_voice_server, text="Live one.", voiceProfile="live1").headers["x-voice-cache"] == "miss"
    m["lane"] = "experimental"
    mpath.write_text(json.dumps(m, indent=2))
    assert c.post("/api/voice/reload").json()["refused"] == ["live1"]
    b = assert_error(speak(svc_voice_server, text="Live one.", voiceProfile="live1"), 503, "voice_unavailable")
    assert b["details"]["reason"] == "lane_not_servable"


def _documented_audit_fields() -> list[str]:
    """The audit line's fields as docs/service-contract.md lists them (a parenthesis explains a value)."""
    doc = (REPO / "docs" / "service-contract.md").read_text("utf-8")
    listed = re.search(r"\*\*Audit\.\*\*.*?:\n`(.*?)` — never the text", doc, re.S)
    assert listed, "docs/service-contract.md lost its **Audit.** field list"
    return [name.strip() for name in re.sub(r"\([^)]*\)", "", listed.group(1)).split(",")]


def test_audit_line_per_request_without_text(svc_voice_server):
    trace = "audit-" + uuid.uuid4().hex
    secret = "Zebra crossing quartz umbrella"
    r = speak(
        svc_voice_server,
        text=secret,
        traceId=trace,
        eventId="ev-audit",
        referenceAudioHash="cd" * 32,
        consent_asserted=True,
        priority="warn",
        mode="briefing",
    )
    assert_wav(r)
    assert r.headers["x-trace-id"] == trace
    sup = speak(svc_voice_server, text=secret, traceId=trace + "-2", contextTier="tier0")
    assert_suppressed(sup, "voice_context_ineligible")
    path = svc_voice_server.workdir / "var" / "audit" / "speak.jsonl"
    raw = path.read_text("utf-8")
    assert secret not in raw and "Zebra" not in raw
    lines = [json.loads(x) for x in raw.splitlines()]
    mine = [x for x in lines if x["traceId"] == trace]
    assert len(mine) == 1
    a = mine[0]
    assert sorted(a) == sorted(_documented_audit_fields()), a
    assert (a["eventId"], a["voiceProfile"], a["mode"], a["priority"], a["consent_asserted"], a["outcome"]) == (
        "ev-audit",
        "svc_prod",
        "briefing",
        "warn",
        True,
        "ok",
    )
    assert a["referenceAudioHash"] == "cd" * 32 and a["latency"] > 0 and a["textChars"] == len(secret)
    assert [x["outcome"] for x in lines if x["traceId"] == trace + "-2"] == ["suppressed:voice_context_ineligible"]


# --------------------------------------------------------------------------------------------------
# queue full / timeout / backend error: a real uvicorn server (in this process) with a fake backend


class FakeVoice:
    def synthesize(self, text: str, length_scale: float = 1.0):
        if "slow" in text:
            time.sleep(1.5)
        if "boom" in text:
            raise RuntimeError("backend exploded")
        return SimpleNamespace(audio=np.zeros(1600, dtype=np.float32), sample_rate=16000, seconds=0.1, compute_s=0.0)


@pytest.fixture
def svc_fake_backend_server(tmp_path):
    with svc_inprocess_server(
        tmp_path,
        "fake",
        FakeVoice(),
        speak_workers=1,
        speak_queue_size=1,
        speak_timeout_s=0.5,
        speak_cache_entries=0,
        rate_limit_per_min=0,
    ) as srv:
        yield srv


def test_queue_full_timeout_and_backend_error(svc_fake_backend_server):
    import httpx

    url = svc_fake_backend_server.url
    results: dict[str, httpx.Response] = {}

    def call(name: str, text: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            results[name] = c.post("/api/voice/speak", json={"text": text})

    t1 = threading.Thread(target=call, args=("running", "slow one"))
    t1.start()
    time.sleep(0.25)  # the worker is now busy for 1.5 s
    t2 = threading.Thread(target=call, args=("queued", "slow two"))
    t2.start()
    time.sleep(0.15)  # the one queue slot is taken
    c = svc_fake_backend_server.client
    full = c.post("/api/voice/speak", json={"text": "third"})
    b = assert_error(full, 503, "voice_queue_full")
    assert b["details"]["queueSize"] == 1 and full.headers["retry-after"] == "1"
    t1.join(30)
    t2.join(30)
    assert_error(results["running"], 504, "voice_backend_timeout")
    assert_error(results["queued"], 504, "voice_backend_timeout")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        q = c.get("/health").json()["speakQueue"]
        if q["running"] == 0 and q["queued"] == 0:
            break
        time.sleep(0.05)
    assert_error(c.post("/api/voice/speak", json={"text": "boom"}), 502, "voice_backend_error")
    assert_wav(c.post("/api/voice/speak", json={"text": "fine", "priority": "critical"}))
