"""Training routes against a real server (`voicelane serve` on a free loopback port) running
real tiny jobs. Ordered: the last test restarts the server (SIGKILL) to check orphan handling."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from voicelane.protocol import fold

TINY = {"preset": "tiny", "minMinutes": 0, "evalMax": 2, "onnx": False}


@pytest.fixture(scope="module")
def svc_jobs_server(tmp_path_factory, svc_start_server, svc_kal_corpus):
    work = tmp_path_factory.mktemp("svc_jobs")
    return svc_start_server(
        work, VOICELANE_DATA_ROOTS=str(svc_kal_corpus.parent), VOICELANE_BUNDLE_ROOTS=str(work / "no_bundles")
    )


def wait_job(client, job_id, pred, timeout=600.0, every=0.5):
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/train/job/{job_id}").json()
        if pred(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on {job_id}: {json.dumps(job)[:2000]}")
        time.sleep(every)


def start_job(client, **body):
    r = client.post("/api/train/start", json=body)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["ok"] is True and reply["started"] is True and reply["jobId"].startswith("job-")
    return reply["jobId"]


def sse_events(client, job_id, headers=None, timeout=600):
    """Parse an SSE stream into [(id, event, data)] until the server closes it."""
    out, cur = [], {}
    with client.stream("GET", f"/api/train/job/{job_id}/events", headers=headers or {}, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if "event" in cur or "data" in cur:
                    out.append((cur.get("id"), cur.get("event"), json.loads(cur.get("data", "null"))))
                cur = {}
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(":")
            cur[k] = v[1:] if v.startswith(" ") else v
    return out


@pytest.fixture(scope="module")
def svc_done_job(svc_jobs_server, svc_kal_corpus):
    """A tiny tts_voice_train job run to done, watched over SSE from the start; a second job
    submitted meanwhile waits `pending` (limit 1) and is cancelled before it starts."""
    c = svc_jobs_server.client
    job_id = start_job(c, jobType="tts_voice_train", dataPath=str(svc_kal_corpus), profile="svc_a", **TINY)
    seen: dict = {}
    t = threading.Thread(target=lambda: seen.setdefault("events", sse_events(c, job_id)), daemon=True)
    t.start()
    queued = start_job(c, jobType="tts_voice_train", dataPath="kal12", profile="svc_b", **TINY)
    queued_view = c.get(f"/api/train/job/{queued}").json()
    pending_list = c.get("/api/train/jobs", params={"state": "pending"}).json()
    cancel_pending = c.post(f"/api/train/job/{queued}/cancel").json()
    job = wait_job(c, job_id, lambda j: j["state"] not in ("pending", "running"))
    t.join(60)
    return {
        "id": job_id,
        "job": job,
        "events": seen.get("events"),
        "queued": queued,
        "queued_view": queued_view,
        "pending_list": pending_list,
        "cancel_pending": cancel_pending,
    }


def test_tiny_voice_job_runs_to_done(svc_done_job, svc_jobs_server):
    job = svc_done_job["job"]
    assert job["state"] == "done", json.dumps(job)[:3000]
    assert job["type"] == "tts_voice_train" and job["lane"] == "experimental"
    p = job["progress"]
    assert p["total"] > 0 and p["current"] == p["total"]
    assert job["message"] == "Training complete"  # the old clients' wording
    assert job["startedAt"] and job["endedAt"] and job["exitCode"] == 0 and job["error"] is None
    assert job["artifactRefs"] == ["dataset/dataset_manifest.json", "bundles/svc_a/voice_bundle/manifest.json"]
    md = job["metadata"]
    assert md["phase"] == "bundle" and md["bundle_valid"] is True and md["promotable"] is False
    assert md["kept"] == 12 and "dataset_sha256" in md and "wer" in md
    assert 0 < len(job["logs"]) <= 200
    # the record equals what the shared parser folds from the job's own stdout lines
    log = svc_jobs_server.client.get(f"/api/train/job/{svc_done_job['id']}/log")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    view = fold(log.text.splitlines())
    assert view.metadata == md and view.artifacts == job["artifactRefs"]
    assert (view.current, view.total) == (p["current"], p["total"])
    # the bundle the job wrote is really there (experimental: never served)
    manifest = json.loads((Path(job["outDir"]) / job["artifactRefs"][-1]).read_text())
    assert manifest["lane"] == "experimental"


def test_queue_limit_and_pending_cancel(svc_done_job, svc_jobs_server):
    assert svc_done_job["queued_view"]["state"] == "pending"
    assert svc_done_job["queued_view"]["message"] == "Queued"
    assert svc_done_job["queued"] in [j["id"] for j in svc_done_job["pending_list"]["jobs"]]
    rep = svc_done_job["cancel_pending"]
    assert rep["ok"] and rep["cancelled"] and rep["state"] == "cancelled"
    job = svc_jobs_server.client.get(f"/api/train/job/{svc_done_job['queued']}").json()
    assert job["state"] == "cancelled" and job["startedAt"] is None and job["events"] == 0
    status = svc_jobs_server.client.get("/api/train/status", params={"jobId": job["id"]}).json()
    assert status["state"] == "cancelled" and status["error"]["code"] == "cancelled"


def test_sse_delivers_lines_in_order_and_resumes(svc_done_job, svc_jobs_server):
    events = svc_done_job["events"]
    assert events, "no SSE events"
    assert events[-1][1] == "end" and events[-1][2]["state"] == "done"
    lines = [e for e in events if e[1] != "end"]
    assert [int(e[0]) for e in lines] == list(range(1, len(lines) + 1))
    log_lines = svc_jobs_server.client.get(f"/api/train/job/{svc_done_job['id']}/log").text.splitlines()
    protocol_lines = [ln for ln in log_lines if ln.split(" ", 1)[0] in ("PROGRESS", "STATS", "ARTIFACT")]
    assert [e[2]["line"] for e in lines] == protocol_lines
    kinds = {e[1] for e in lines}
    assert {"progress", "stats", "artifact"} <= kinds
    first_progress = next(e[2] for e in lines if e[1] == "progress")
    assert first_progress["current"] == 1 and first_progress["total"] == svc_done_job["job"]["progress"]["total"]
    resumed = sse_events(svc_jobs_server.client, svc_done_job["id"], headers={"Last-Event-ID": "3"})
    assert [int(e[0]) for e in resumed if e[1] != "end"] == list(range(4, len(lines) + 1))
    by_query = svc_jobs_server.client.get(
        f"/api/train/job/{svc_done_job['id']}/events", params={"lastEventId": len(lines)}
    )
    assert "event: end" in by_query.text and "event: progress" not in by_query.text


def test_status_routes(svc_done_job, svc_jobs_server):
    c = svc_jobs_server.client
    st = c.get("/api/train/status")  # the latest job with a status: the queued one, cancelled
    assert st.status_code == 200
    doc = st.json()
    assert doc["schema"] == "train_status/1" and doc["jobId"] == svc_done_job["queued"]
    assert doc["state"] == doc["status"] == "cancelled" and doc["next_action"]
    doc = c.get("/api/train/status", params={"jobId": svc_done_job["id"]}).json()
    assert doc["state"] == "completed" and doc["job_type"] == "tts_voice_train" and doc["lane"] == "experimental"
    assert doc["progress"] == svc_done_job["job"]["progress"]
    assert doc["artifacts"] == svc_done_job["job"]["artifactRefs"]
    assert c.get("/api/train/status", params={"jobType": "tts_prod_train"}).json()["error"] == "status_not_found"
    assert c.post("/api/train/status/reset").json() == {"ok": True, "reset": True}
    gone = c.get("/api/train/status")
    assert gone.status_code == 404 and gone.json()["error"] == "status_not_found"
    # the records are kept
    assert c.get(f"/api/train/job/{svc_done_job['id']}").json()["state"] == "done"
    listing = c.get("/api/train/jobs", params={"state": "done"}).json()
    assert svc_done_job["id"] in [j["id"] for j in listing["jobs"]] and listing["total"] >= 1


def test_dataset_job(svc_jobs_server, svc_kal_corpus):
    c = svc_jobs_server.client
    r = c.post("/api/train/dataset", json={"dataPath": str(svc_kal_corpus), "profile": "svc_ds", "minMinutes": 0})
    assert r.status_code == 200 and r.json()["started"] is True
    job = wait_job(c, r.json()["jobId"], lambda j: j["state"] not in ("pending", "running"), timeout=300)
    assert job["state"] == "done" and job["type"] == "dataset" and job["lane"] == "data", json.dumps(job)[:2000]
    assert job["progress"] == {"current": 1, "total": 1} and job["metadata"]["kept"] == 12
    assert job["artifactRefs"] == ["dataset/dataset_manifest.json"]
    chk = c.post("/api/train/dataset", json={"mode": "check", "dataPath": "kal12", "minMinutes": 0}).json()
    job = wait_job(c, chk["jobId"], lambda j: j["state"] not in ("pending", "running"), timeout=300)
    assert job["state"] == "done" and isinstance(job["metadata"].get("report"), dict)


def test_blocked_job_reports_lane_code(svc_jobs_server, svc_kal_corpus):
    """tts_prod_train without a consent statement: the lane refuses; the job carries its code."""
    c = svc_jobs_server.client
    job_id = start_job(c, jobType="tts_prod_train", dataPath=str(svc_kal_corpus), profile="svc_p", **TINY)
    job = wait_job(c, job_id, lambda j: j["state"] not in ("pending", "running"), timeout=300)
    assert job["state"] == "error" and job["lane"] == "production"
    assert job["error"]["code"] == "consent_missing" and job["error"]["blocked"] is True
    assert job["exitCode"] == 2 and job["error"]["next_action"]


def test_training_route_errors(svc_jobs_server, svc_kal_corpus):
    c = svc_jobs_server.client

    def err(resp, status, code):
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert body["error"] == code and body["message"] and body["traceId"], body
        return body

    err(
        c.post("/api/train/start", json={"jobType": "tts_magic", "dataPath": "kal12", "profile": "x"}),
        400,
        "invalid_job_type",
    )
    err(c.post("/api/train/start", json={"jobType": "", "dataPath": "kal12", "profile": "x"}), 400, "invalid_job_type")
    err(c.post("/api/train/start", json={"dataPath": "kal12", "profile": "Bad Profile!"}), 400, "profile_id_invalid")
    b = err(
        c.post("/api/train/start", json={"dataPath": "kal12", "profile": "ok", "preset": "huge"}),
        400,
        "invalid_request",
    )
    assert b["details"]["issues"][0]["field"] == "preset"
    err(c.post("/api/train/start", json={"dataPath": "/etc", "profile": "ok"}), 400, "path_not_allowed")
    err(c.post("/api/train/start", json={"dataPath": "../../..", "profile": "ok"}), 400, "path_not_allowed")
    err(c.post("/api/train/start", json={"dataPath": "missing_dir", "profile": "ok"}), 400, "missing_audio_path")
    err(
        c.post("/api/train/start", content=b"not json", headers={"content-type": "application/json"}),
        400,
        "invalid_request",
    )
    err(c.post("/api/train/start", json=[1, 2]), 400, "invalid_request")
    err(c.post("/api/train/dataset", json={"mode": "explode", "dataPath": "kal12"}), 400, "invalid_request")
    err(
        c.post("/api/train/start", content=b"{" + b" " * 70000 + b"}", headers={"content-type": "application/json"}),
        413,
        "request_too_large",
    )
    for path in ("/api/train/job/job-nope", "/api/train/job/job-nope/log", "/api/train/job/job-nope/events"):
        err(c.get(path), 404, "job_not_found")
    err(c.post("/api/train/job/job-nope/cancel"), 404, "job_not_found")
    err(c.get("/api/train/jobs", params={"state": "sleeping"}), 400, "invalid_request")
    err(c.get("/api/nothing-here"), 404, "not_found")
    err(c.delete("/api/train/start"), 405, "method_not_allowed")
    # the client's trace id is echoed
    r = c.get("/api/train/job/job-nope", headers={"x-trace-id": "trace-123"})
    assert r.json()["traceId"] == "trace-123" and r.headers["x-trace-id"] == "trace-123"
    done = c.get("/api/train/jobs", params={"state": "done"}).json()["jobs"]
    if done:
        err(c.post(f"/api/train/job/{done[0]['id']}/cancel"), 409, "job_not_cancellable")


def _pid_gone(pid: int) -> bool:
    p = Path(f"/proc/{pid}/cmdline")
    return not p.exists() or not p.read_bytes()  # a zombie has an empty cmdline


def test_cancel_running_job(svc_jobs_server, svc_kal_corpus):
    c = svc_jobs_server.client
    job_id = start_job(
        c, jobType="tts_voice_train", dataPath=str(svc_kal_corpus), profile="svc_c", **(TINY | {"steps": 5000})
    )
    wait_job(c, job_id, lambda j: j["state"] == "running" and j["progress"]["current"] >= 1, timeout=300)
    db_pid = _job_pid(svc_jobs_server, job_id)
    rep = c.post(f"/api/train/job/{job_id}/cancel")
    assert rep.status_code == 200, rep.text
    body = rep.json()
    assert body["cancelled"] is True and body["state"] == "cancelled", body
    job = body["job"]
    assert job["error"]["code"] == "cancelled" and job["endedAt"] and job["message"].startswith("Cancelled at step")
    status = c.get("/api/train/status", params={"jobId": job_id}).json()
    assert status["state"] == "cancelled" and status["finished_at"]
    deadline = time.monotonic() + 10
    while not _pid_gone(db_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pid_gone(db_pid)
    again = c.post(f"/api/train/job/{job_id}/cancel").json()  # idempotent
    assert again["state"] == "cancelled"


def _job_pid(server, job_id: str) -> int:
    import sqlite3

    db = sqlite3.connect(str(server.workdir / "var" / "voicelane.db"))
    try:
        return int(db.execute("SELECT pid FROM jobs WHERE id=?", (job_id,)).fetchone()[0])
    finally:
        db.close()


def test_restart_keeps_records_and_marks_orphans(svc_jobs_server, svc_done_job, svc_kal_corpus):
    """Last in this module: kill -9 the service while a job runs, start it again."""
    c = svc_jobs_server.client
    job_id = start_job(
        c, jobType="tts_voice_train", dataPath=str(svc_kal_corpus), profile="svc_d", **(TINY | {"steps": 5000})
    )
    wait_job(c, job_id, lambda j: j["state"] == "running" and j["progress"]["current"] >= 1, timeout=300)
    pid = _job_pid(svc_jobs_server, job_id)
    assert not _pid_gone(pid)
    svc_jobs_server.restart(kill=True)
    c = svc_jobs_server.client
    job = c.get(f"/api/train/job/{job_id}").json()
    assert job["state"] == "error" and job["error"]["code"] == "orphaned", job
    assert job["endedAt"] and job["error"]["next_action"]
    status = c.get("/api/train/status", params={"jobId": job_id}).json()
    assert status["state"] == "error" and status["error"]["code"] == "orphaned"
    deadline = time.monotonic() + 10
    while not _pid_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pid_gone(pid), "the orphaned job process is still running"
    old = c.get(f"/api/train/job/{svc_done_job['id']}").json()
    assert old["state"] == "done" and old["artifactRefs"] == svc_done_job["job"]["artifactRefs"]
    assert old["metadata"] == svc_done_job["job"]["metadata"]
    assert c.get(f"/api/train/job/{svc_done_job['queued']}").json()["state"] == "cancelled"
    # the SSE history survives too
    assert len([e for e in sse_events(c, svc_done_job["id"]) if e[1] != "end"]) == svc_done_job["job"]["events"]


def test_token_required_beyond_loopback(tmp_path_factory, svc_start_server):
    """Bound to 0.0.0.0: training/admin routes need the bearer token; speak stays open."""
    work = tmp_path_factory.mktemp("svc_token")
    srv = svc_start_server(
        work,
        host="0.0.0.0",
        VOICELANE_API_TOKEN="s3cret",
        VOICELANE_BUNDLE_ROOTS=str(work / "none"),
        VOICELANE_DATA_ROOTS=str(work),
    )
    c = srv.client
    for method, path in (
        ("GET", "/api/train/jobs"),
        ("POST", "/api/train/start"),
        ("GET", "/api/train/status"),
        ("POST", "/api/train/status/reset"),
        ("POST", "/api/voice/reload"),
    ):
        r = c.request(method, path, json={})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        r = c.request(method, path, json={}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
    ok = c.get("/api/train/jobs", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["jobs"] == []
    assert c.get("/api/train/status", headers={"Authorization": "Bearer s3cret"}).json()["error"] == "status_not_found"
    # speak is open (and there is no voice at all here)
    r = c.post("/api/voice/speak", json={"text": "hello"})
    assert r.status_code == 503 and r.json()["error"] == "voice_unavailable"
    h = c.get("/health")
    assert h.status_code == 503 and h.json()["ready"] is False
    assert c.get("/health/live").status_code == 200
    assert os.path.exists(work / "var" / "voicelane.db")
