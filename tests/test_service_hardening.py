"""Issue 11 defects #3-#5 and #7 against real servers: hostile header and body edge cases never
give a 500, a timed-out speak request gives its queue slot back, a child's error code reaches the
job record unchanged."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import svc_inprocess_server
from helpers import NON_STRICT_JSON
from test_service_jobs import sse_events, wait_job


@pytest.fixture(scope="module")
def svc_hard_server(tmp_path_factory, svc_start_server, svc_kal_corpus):
    """Jobs only (no voice)."""
    work = tmp_path_factory.mktemp("svc_hard")
    return svc_start_server(
        work, VOICELANE_BUNDLE_ROOTS=str(work / "none"), VOICELANE_DATA_ROOTS=str(svc_kal_corpus.parent)
    )


@pytest.fixture(scope="module")
def svc_hard_voice(svc_start_voice_server):
    return svc_start_voice_server("svc_hard_voice", VOICELANE_MISSION_BUDGET_CHARS="40")


def _audit(srv) -> list[dict]:
    path = srv.workdir / "var" / "audit" / "speak.jsonl"
    return [json.loads(x) for x in path.read_text("utf-8").splitlines()]


def test_trace_id_that_no_header_can_carry(svc_hard_voice):
    """#4: a non-Latin-1 traceId is a 400 before any budget is charged; the audit says 400."""
    c = svc_hard_voice.client
    mission = "m-" + uuid.uuid4().hex[:8]
    text = "Hello there, operator."  # 22 of the mission's 40 characters
    r = c.post("/api/voice/speak", json={"text": text, "missionId": mission, "traceId": "trace-追踪-1"})
    assert r.status_code == 400 and r.json()["error"] == "voice_invalid_request", r.text
    assert any(i["field"] == "traceId" for i in r.json()["details"]["issues"])
    last = _audit(svc_hard_voice)[-1]
    assert (last["status"], last["outcome"]) == (400, "voice_invalid_request")
    # the budget was not charged: the same text in the same mission still fits once
    ok = c.post("/api/voice/speak", json={"text": text, "missionId": mission, "traceId": "trace-ok-1"})
    assert ok.status_code == 200 and ok.headers["x-trace-id"] == "trace-ok-1", ok.text[:300]
    assert (
        c.post("/api/voice/speak", json={"text": text, "missionId": mission}).json()["error"] == "voice_budget_exceeded"
    )
    r = c.post("/api/voice/speak", json={"text": "hi", "tenantId": "mandant-é"})
    assert r.status_code == 400


def test_unreadable_text_is_a_400_with_its_span(svc_hard_voice):
    """#4: 600 digits (the number normaliser raised -> 502 before) and 1e400 are 400 (details:
    text_unvoiceable with the span); 20 digits are read digit by digit."""
    c = svc_hard_voice.client
    r = c.post("/api/voice/speak", json={"text": "1" * 600})
    assert r.status_code == 400 and r.json()["error"] == "voice_invalid_request", r.text  # the code clients know
    assert r.json()["details"]["code"] == "text_unvoiceable" and r.json()["details"]["span"] == [0, 600]
    r = c.post("/api/voice/speak", json={"text": "code 1e400 now"})
    assert r.status_code == 400 and r.json()["details"]["code"] == "text_unvoiceable", r.text
    r = c.post("/api/voice/speak", json={"text": "call 12345678901234567890"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav", r.text[:300]


@pytest.mark.parametrize("body", NON_STRICT_JSON)
def test_json_is_parsed_strictly(svc_hard_server, body):
    """#7: NaN/Infinity (and numbers that overflow to them, and deep nesting) are refused."""
    r = svc_hard_server.client.post("/api/train/start", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text[:300]
    assert svc_hard_server.client.get("/api/train/jobs").json()["total"] == 0


def test_last_event_id_edge_cases(svc_hard_server, svc_kal_corpus):
    """#4: Last-Event-ID `²`, 5000 digits, 20 nines: no 500, the stream ends with `end`."""
    c = svc_hard_server.client
    r = c.post("/api/train/dataset", json={"mode": "check", "dataPath": str(svc_kal_corpus)})
    assert r.status_code == 200, r.text
    job_id = r.json()["jobId"]
    wait_job(c, job_id, lambda j: j["state"] in ("done", "error"), timeout=300)
    full = sse_events(c, job_id)
    assert full[-1][1] == "end"
    for value in ("²".encode("latin-1"), b"9" * 5000, b"99999999999999999999", b"-1", b"1e3", b"x"):
        evs = sse_events(c, job_id, headers={"Last-Event-ID": value})
        assert evs and evs[-1][1] == "end", value[:20]
    assert sse_events(c, job_id, headers={"Last-Event-ID": b"99999999999999999999"}) == full  # ignored
    clamped = sse_events(c, job_id, headers={"Last-Event-ID": b"9999999999999999999"})
    assert [(e[1], e[2]["state"]) for e in clamped] == [("end", full[-1][2]["state"])]
    r = c.get(f"/api/train/job/{job_id}/events", params={"lastEventId": "9" * 5000})
    assert r.status_code == 400


def test_child_error_code_reaches_the_job_record(svc_hard_server, svc_kal_corpus):
    """#3: a dataset job on a too-small dataset shows dataset_too_small, not internal_error."""
    c = svc_hard_server.client
    r = c.post(
        "/api/train/dataset",
        json={"mode": "prepare", "dataPath": str(svc_kal_corpus), "profile": "small", "minMinutes": 500},
    )
    assert r.status_code == 200, r.text
    job_id = r.json()["jobId"]
    job = wait_job(c, job_id, lambda j: j["state"] in ("done", "error"), timeout=300)
    assert job["state"] == "error", job
    err = job.get("error") or {}
    assert err.get("code") == "dataset_too_small", job
    assert "bug report" not in json.dumps(job)
    end = sse_events(c, job_id)[-1]
    assert end[1] == "end" and end[2].get("error", {}).get("code") == "dataset_too_small", end
    # check mode writes no status file: the code comes from its report (exit 2 was internal_error)
    r = c.post("/api/train/dataset", json={"mode": "check", "dataPath": str(svc_kal_corpus), "minMinutes": 500})
    job = wait_job(c, r.json()["jobId"], lambda j: j["state"] in ("done", "error"), timeout=300)
    report_error = job["metadata"]["report"]["error"]
    assert job["error"]["code"] == "dataset_too_small", job["error"]
    assert job["error"]["details"] == report_error["details"]  # unchanged
    assert job["error"]["details"]["required_minutes"] == 500


# --------------------------------------------------------------------------------------------------
# #5: the queue gives slots back (an in-process uvicorn with a slow fake backend)


class SlowVoice:
    def synthesize(self, text: str, length_scale: float = 1.0):
        time.sleep(0.6)
        return SimpleNamespace(audio=np.zeros(1600, dtype=np.float32), sample_rate=16000, seconds=0.1, compute_s=0.6)


@pytest.fixture
def svc_slow_server(tmp_path):
    """Factory: an in-process uvicorn whose only voice takes 0.6 s, one worker, 4 queue slots."""
    with contextlib.ExitStack() as stack:

        def start(timeout_s: float):
            return stack.enter_context(
                svc_inprocess_server(
                    tmp_path,
                    "slow",
                    SlowVoice(),
                    speak_workers=1,
                    speak_queue_size=4,
                    speak_timeout_s=timeout_s,
                    speak_cache_entries=0,
                    rate_limit_per_min=0,
                    mission_budget_chars=0,
                    tenant_daily_budget_chars=0,
                )
            )

        yield start


def _queued(srv) -> int:
    return srv.client.get("/health").json()["speakQueue"]["queued"]


def test_timed_out_requests_give_their_slots_back(svc_slow_server):
    """#5: waves of callers that all time out (504) never leave the queue full for the next."""
    import httpx

    srv = svc_slow_server(0.2)
    codes: list[int] = []

    def call(i: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            codes.append(c.post("/api/voice/speak", json={"text": f"slow {i}"}).status_code)

    for _ in range(3):  # each wave: one runs (0.6 s), up to 4 wait; all give up after 0.2 s
        wave = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in wave:
            t.start()
        for t in wave:
            t.join(30)
    assert codes.count(504) == 12, codes
    assert _queued(srv) == 0
    h = srv.client.get("/health").json()["speakQueue"]
    assert {"oldestWaitMs", "lastWaitMs", "running", "size"} <= set(h)
    m = srv.client.get("/metrics")
    assert m.status_code == 200 and "voicelane_speak_queue_depth 0.0" in m.text, m.text
    assert 'voicelane_speak_requests_total{code="voice_backend_timeout"} 12.0' in m.text
    assert 'voicelane_http_errors_total{code="voice_backend_timeout",status="504"} 12.0' in m.text
    assert "voicelane_speak_queue_wait_seconds_bucket" in m.text and 'voicelane_jobs{state="running"}' in m.text


def test_client_that_went_away_gives_its_slot_back(svc_slow_server):
    """#5: callers that hang up long before the 30 s budget free their slots within a second."""
    import httpx

    srv = svc_slow_server(30.0)

    def call(i: int) -> None:
        try:
            with httpx.Client(base_url=srv.url, timeout=0.3) as c:
                c.post("/api/voice/speak", json={"text": f"gone {i}"})
        except httpx.TimeoutException:
            pass

    threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and _queued(srv):
        time.sleep(0.05)
    assert _queued(srv) == 0
    r = srv.client.post("/api/voice/speak", json={"text": "still served"})
    assert r.status_code == 200, r.text
    assert 'voicelane_speak_requests_total{code="client_disconnected"}' in srv.client.get("/metrics").text
