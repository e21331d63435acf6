"""The request shapes existing clients send, with the answers they must keep getting (SPEC §9
"Compatibility", issue 12 §1-§2). One list, replayed by ``tests/test_compat_replay.py`` against a
real server and importable by any other check (e.g. the verify gate's ``routes_compatible``).

Pure data plus a stdlib replayer: nothing here imports the service or ops layers.

A shape: ``{id, section, method, path, json?, headers?, starts_job?, needs_voice?, poll_s?, steps: [expect,...]}``.
The request is sent once per step (a second step checks e.g. a dedupe repeat); with ``poll_s`` it
is repeated until the answer matches or that many seconds passed (a just-started job writes its
status when its process starts). Placeholders in
strings: ``{profile}`` (a served production profile), ``{PROFILE}`` (the same, upper-cased),
``{uniq}`` (unique per replay, so budgets, rate limits and dedupe windows don't interact),
``{jobId}`` (the id returned by the latest replayed job start).

An expectation: ``status``; ``content_type`` (prefix); ``headers_equal`` / ``headers_prefix``;
``json`` (subset: every key must match; ``"<str>"`` = any non-empty string, ``"<int>"`` = any
integer, ``"<any>"`` = present); ``body_prefix`` (any of these byte prefixes, hex).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

WAV = ["52494646"]  # RIFF
MP3 = ["494433", "fffb", "fff3", "fff2"]  # ID3 tag or an MPEG layer III frame sync
AUDIO_OK = {
    "status": 200,
    "content_type": "audio/wav",
    "body_prefix": WAV,
    "headers_prefix": {"x-voice-provider": "local"},
    "headers_equal": {"x-voice-profile": "{profile}", "x-voice-meter-request-count": "1"},
}
FUEL_LOW = {"text": "Fuel low.", "voiceProfile": "{profile}"}  # the common speak body
STARTED = {"status": 200, "json": {"ok": True, "started": True, "jobId": "<str>"}}


def _speak(
    sid: str, body: dict[str, Any], *steps: dict[str, Any], headers: dict[str, str] | None = None, section: str = "§2"
) -> dict[str, Any]:
    base = {"missionId": "m-{uniq}-" + sid}
    return {
        "id": sid,
        "section": section,
        "method": "POST",
        "path": "/api/voice/speak",
        "needs_voice": True,
        "json": {**base, **body},
        "headers": {"x-tenant-id": "t-{uniq}", **(headers or {})},
        "steps": list(steps),
    }


def _audio(**extra_headers: str) -> dict[str, Any]:
    exp = json.loads(json.dumps(AUDIO_OK))
    exp["headers_equal"].update(extra_headers)
    return exp


def _error(status: int, code: str) -> dict[str, Any]:
    return {
        "status": status,
        "content_type": "application/json",
        "json": {"error": code, "message": "<str>", "traceId": "<str>"},
    }


def _suppressed(reason: str) -> dict[str, Any]:
    return {
        "status": 200,
        "content_type": "application/json",
        "json": {"ok": True, "suppressed": True, "reason": reason},
    }


def _train(sid: str, method: str, path: str, *steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": sid, "section": "§1", "method": method, "path": path, **extra, "steps": list(steps)}


SPEAK_SHAPES: list[dict[str, Any]] = [
    _speak("speak_minimal", FUEL_LOW, _audio(**{"x-watermark-mode": "none", "x-voice-meter-char-count": "9"})),
    _speak(
        "speak_voice_profile_id",
        {
            "text": "Gear down.",
            "voice_profile_id": "{profile}",
            "mode": "briefing",
            "priority": "warn",
            "format": "wav",
            "consent_asserted": False,
        },
        _audio(),
    ),
    _speak(
        "speak_provider_local_chatterbox",
        {**FUEL_LOW, "provider": "local-chatterbox"},
        _audio(**{"x-voice-provider-requested": "local-chatterbox"}),
    ),
    _speak(
        "speak_format_mp3",
        {**FUEL_LOW, "format": "mp3"},
        {**_audio(), "content_type": "audio/mpeg", "body_prefix": MP3},
    ),
    _speak("speak_watermark_off", {**FUEL_LOW, "watermark_mode": "off"}, _audio(**{"x-watermark-mode": "off"})),
    _speak(
        "speak_watermark_unhonourable",
        {**FUEL_LOW, "watermark_mode": "audible"},
        _error(400, "voice_watermark_unsupported"),
    ),
    _speak("speak_profile_upper_case", {"text": "Fuel low.", "voiceProfile": "{PROFILE}"}, _audio()),
    _speak(
        "speak_critical_only_action",
        {"text": "Pull up.", "voiceProfile": "{profile}", "voiceMode": "critical_only", "priority": "action"},
        _audio(),
    ),
    _speak(
        "speak_critical_only_info",
        {"text": "Pull up.", "voiceProfile": "{profile}", "voiceMode": "critical_only", "priority": "info"},
        _suppressed("voice_context_ineligible"),
    ),
    _speak("speak_tier0", {"text": "Pull up.", "contextTier": "tier0"}, _suppressed("voice_context_ineligible")),
    _speak("speak_tenant_header", FUEL_LOW, _audio(**{"x-voice-tenant": "t-{uniq}"})),
    _speak(
        "speak_customer_header",
        FUEL_LOW,
        _audio(**{"x-voice-tenant": "c-{uniq}"}),
        headers={"x-tenant-id": "", "x-customer-id": "c-{uniq}"},
    ),
    _speak("speak_no_tenant", FUEL_LOW, _audio(**{"x-voice-tenant": "single-tenant"}), headers={"x-tenant-id": ""}),
    _speak(
        "speak_reference_without_consent",
        {"text": "Fuel low.", "referenceAudioHash": "ab" * 32},
        _error(400, "voice_consent_required"),
    ),
    _speak(
        "speak_remote_provider_refused",
        {"text": "Fuel low.", "provider": "acme-cloud"},
        _error(403, "voice_provider_not_allowed"),
    ),
    _speak(
        "speak_remote_provider_critical_local",
        {**FUEL_LOW, "provider": "acme-cloud", "priority": "critical"},
        _audio(**{"x-voice-provider-requested": "acme-cloud"}),
    ),
    _speak(
        "speak_dedupe_event",
        {"text": "Gear down.", "voiceProfile": "{profile}", "eventId": "ev-{uniq}"},
        _audio(),
        _suppressed("dedupe_cooldown"),
    ),
    _speak("speak_text_too_long", {"text": "x" * 601}, _error(400, "voice_invalid_request")),
    _speak(
        "speak_unknown_keys_ignored",
        {
            "text": "Fuel low.",
            "voiceProfile": "{profile}",
            "sessionState": "active",
            "traceId": "tr-{uniq}",
            "someFutureField": {"x": 1},
        },
        _audio(),
    ),
]

TRAIN_SHAPES: list[dict[str, Any]] = [
    _train("train_start_empty", "POST", "/api/train/start", STARTED, json={}, starts_job=True),
    _train(
        "train_status_latest",
        "GET",
        "/api/train/status",
        {"status": 200, "json": {"status": "<str>", "job_type": "<str>", "stats": "<any>"}},
        poll_s=120,
    ),
    _train(
        "train_job",
        "GET",
        "/api/train/job/{jobId}",
        {"status": 200, "json": {"id": "{jobId}", "message": "<str>", "progress": "<any>", "state": "<str>"}},
        needs_job=True,
    ),
    _train(
        "train_start_prod", "POST", "/api/train/start", STARTED, json={"jobType": "tts_prod_train"}, starts_job=True
    ),
    _train(
        "train_start_voice", "POST", "/api/train/start", STARTED, json={"jobType": "tts_voice_train"}, starts_job=True
    ),
    _train(
        "train_start_nemo",
        "POST",
        "/api/train/start",
        _error(400, "engine_unavailable"),
        json={"jobType": "tts_prod_train_nemo"},
    ),
    _train(
        "train_start_unknown",
        "POST",
        "/api/train/start",
        _error(400, "invalid_job_type"),
        json={"jobType": "tts_magic"},
    ),
    _train(
        "train_dataset_voice_dataset",
        "POST",
        "/api/train/dataset",
        STARTED,
        json={"mode": "voice_dataset"},
        starts_job=True,
    ),
    _train(
        "train_dataset_knowledge_audio",
        "POST",
        "/api/train/dataset",
        STARTED,
        json={"mode": "knowledge_audio"},
        starts_job=True,
    ),
    _train("train_job_missing", "GET", "/api/train/job/no-such-job", _error(404, "job_not_found")),
]

SHAPES: list[dict[str, Any]] = SPEAK_SHAPES + TRAIN_SHAPES


# ----------------------------------------------------------------------------------------------
# replay


def fill(value: Any, env: dict[str, str]) -> Any:
    """Substitute the placeholders in every string of ``value``."""
    if isinstance(value, str):
        for k, v in env.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, list):
        return [fill(v, env) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, env) for k, v in value.items()}
    return value


def _match(want: Any, got: Any) -> bool:
    if want == "<str>":
        return isinstance(got, str) and got != ""
    if want == "<int>":
        return isinstance(got, int) and not isinstance(got, bool)
    if want == "<any>":
        return got is not None
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and _match(v, got[k]) for k, v in want.items())
    return want == got


def check(expect: dict[str, Any], status: int, headers: dict[str, str], body: bytes) -> list[str]:
    """What differs between an answer and its expectation ([] = compatible). Header names lower-case."""
    problems: list[str] = []
    if status != expect["status"]:
        problems.append(f"status {status} != {expect['status']}: {body[:300]!r}")
        return problems
    ctype = headers.get("content-type", "")
    if "content_type" in expect and not ctype.startswith(expect["content_type"]):
        problems.append(f"content-type {ctype!r} is not {expect['content_type']!r}")
    for name, value in expect.get("headers_equal", {}).items():
        if headers.get(name) != value:
            problems.append(f"header {name}: {headers.get(name)!r} != {value!r}")
    for name, prefix in expect.get("headers_prefix", {}).items():
        if not (headers.get(name) or "").startswith(prefix):
            problems.append(f"header {name}: {headers.get(name)!r} does not start with {prefix!r}")
    if "body_prefix" in expect and not any(body.startswith(bytes.fromhex(p)) for p in expect["body_prefix"]):
        problems.append(f"body starts with {body[:8].hex()}, expected one of {expect['body_prefix']}")
    if "json" in expect:
        try:
            doc = json.loads(body)
        except ValueError:
            return problems + [f"body is not JSON: {body[:200]!r}"]
        for key, want in expect["json"].items():
            if key not in doc or not _match(want, doc[key]):
                problems.append(f"json {key}: {doc.get(key)!r} does not match {want!r}")
    return problems


def send(
    base_url: str, method: str, path: str, body: Any | None, headers: dict[str, str], timeout: float = 120.0
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with the standard library: (status, lower-case headers, body)."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    hdrs = {k: v for k, v in headers.items() if v != ""}
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def replay(
    base_url: str,
    shapes: list[dict[str, Any]] | None = None,
    profile: str | None = None,
    headers: dict[str, str] | None = None,
    include_jobs: bool = False,
) -> list[dict[str, Any]]:
    """Replay shapes against a running service; one ``{id, ok, problems}`` per shape.

    Shapes that need a served voice are skipped without ``profile``; shapes that start jobs are
    skipped unless ``include_jobs`` (they start real work on the service), and so are shapes with
    ``poll_s``, which wait for the status of such a just-started job."""
    env = {"uniq": uuid.uuid4().hex[:10]}
    if profile:
        env.update(profile=profile, PROFILE=profile.upper())
    results = []
    for shape in shapes if shapes is not None else SHAPES:
        if (
            (shape.get("needs_voice") and not profile)
            or (shape.get("starts_job") and not include_jobs)
            # a shape that waits for a just-started job's status means nothing when none was started
            or (shape.get("poll_s") and not include_jobs)
            or (shape.get("needs_job") and "jobId" not in env)
        ):
            results.append({"id": shape["id"], "ok": None, "problems": ["skipped"]})
            continue
        problems: list[str] = []
        for expect in shape["steps"]:
            problems += _step(base_url, shape, fill(expect, env), env, headers or {}, poll=include_jobs)
        results.append({"id": shape["id"], "ok": not problems, "problems": problems})
    return results


def _step(
    base_url: str,
    shape: dict[str, Any],
    expect: dict[str, Any],
    env: dict[str, str],
    headers: dict[str, str],
    poll: bool,
) -> list[str]:
    deadline = time.monotonic() + (float(shape.get("poll_s", 0)) if poll else 0.0)
    while True:
        status, hdrs, body = send(
            base_url,
            shape["method"],
            fill(shape["path"], env),
            fill(shape.get("json"), env),
            {**headers, **fill(shape.get("headers") or {}, env)},
        )
        problems = check(expect, status, hdrs, body)
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if shape.get("starts_job") and status == 200:
        env["jobId"] = json.loads(body).get("jobId", "")
    return problems
