"""Local-service protection (issue 11 #1, docs/security.md) against a real `voicelane serve`:
token by default even on loopback, Host allowlist, Origin check, JSON content type, CORS off
unless configured. No web page can start a training job."""

from __future__ import annotations

import os
import stat

import pytest

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def svc_sec_server(tmp_path_factory, svc_start_server):
    work = tmp_path_factory.mktemp("svc_sec")
    (work / "data").mkdir()
    return svc_start_server(work, VOICELANE_DATA_ROOTS=str(work / "data"), VOICELANE_BUNDLE_ROOTS=str(work / "none"))


def _jobs(srv) -> int:
    return srv.client.get("/api/train/jobs").json()["total"]


def test_hostile_page_cannot_start_a_job(svc_sec_server):
    """The issue's repro: text/plain + a foreign Origin, no token -> refused, nothing started."""
    srv = svc_sec_server
    body = '{"mode":"check","dataPath":"' + str(srv.workdir / "data") + '"}'
    with srv.bare_client() as c:
        r = c.post("/api/train/dataset", content=body, headers={"Content-Type": "text/plain", "Origin": EVIL})
        assert r.status_code == 403 and r.json()["error"] == "origin_not_allowed", r.text
        # each protection on its own
        r = c.post("/api/train/dataset", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = srv.client.post("/api/train/dataset", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type", r.text
    r = srv.client.post(
        "/api/train/dataset", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 415
    r = srv.client.post(
        "/api/train/dataset", content=body, headers={"Content-Type": "application/json", "Origin": EVIL}
    )
    assert r.status_code == 403 and r.json()["error"] == "origin_not_allowed"
    assert _jobs(srv) == 0
    # the same page served by the service itself (same origin) may
    r = srv.client.post(
        "/api/train/dataset",
        content=body,
        headers={"Content-Type": "application/json; charset=utf-8", "Origin": srv.url},
    )
    assert r.status_code == 200 and r.json()["started"], r.text
    assert _jobs(srv) == 1


def test_host_allowlist(svc_sec_server):
    srv = svc_sec_server
    for host in ("evil.example", "evil.example:%d" % srv.port, "127.0.0.1.nip.io"):
        r = srv.client.get("/health/live", headers={"Host": host})
        assert r.status_code == 403 and r.json()["error"] == "host_not_allowed", (host, r.text)
    for host in (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", "localhost"):
        assert srv.client.get("/health/live", headers={"Host": host}).status_code == 200, host
    assert srv.client.get("/api/train/jobs", headers={"Host": "evil.example"}).status_code == 403
    assert 'voicelane_http_errors_total{code="host_not_allowed",status="403"}' in srv.client.get("/metrics").text


def test_token_file_and_announcement(svc_sec_server):
    srv = svc_sec_server
    path = srv.workdir / "var" / "api_token"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)
    assert len(srv.token) >= 32
    assert f"/studio?token={srv.token}" in srv.log()
    with srv.bare_client() as c:
        assert c.get("/api/train/jobs").status_code == 401
        assert c.get("/api/train/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/api/train/jobs", headers={"X-Voicelane-Token": srv.token}).status_code == 200
        # speak keeps its old rule (open on loopback): no voice here, so 503, not 401
        r = c.post("/api/voice/speak", json={"text": "hello"})
        assert r.status_code == 503 and r.json()["error"] == "voice_unavailable"
        # a GET with ?token= leaves a SameSite=Strict HttpOnly cookie (the studio's way in)
        r = c.get("/health/live", params={"token": srv.token})
        cookie = r.headers.get("set-cookie", "")
        assert "voicelane_token=" in cookie and "SameSite=Strict" in cookie and "HttpOnly" in cookie
        assert c.get("/api/train/jobs").status_code == 200  # the cookie now rides along
    with srv.bare_client() as c:
        assert "set-cookie" not in c.get("/health/live", params={"token": "wrong-token-123456"}).headers


def test_cors_off_by_default(svc_sec_server):
    r = svc_sec_server.client.get("/api/voice/profiles", headers={"Origin": EVIL})
    assert "access-control-allow-origin" not in r.headers
    r = svc_sec_server.client.options(
        "/api/voice/speak",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in r.headers


def test_configured_cors_and_hosts_and_auth_off(tmp_path_factory, svc_start_server):
    work = tmp_path_factory.mktemp("svc_sec_cfg")
    studio = "http://studio.example:9000"
    srv = svc_start_server(
        work,
        VOICELANE_BUNDLE_ROOTS=str(work / "none"),
        VOICELANE_DATA_ROOTS=str(work),
        VOICELANE_CORS_ORIGINS=studio,
        VOICELANE_ALLOWED_HOSTS="voice.lan",
        VOICELANE_AUTH="off",
    )
    assert srv.token is None and not (work / "var" / "api_token").exists()
    with srv.bare_client() as c:
        assert c.get("/api/train/jobs").status_code == 200  # auth off on loopback
        pre = c.options(
            "/api/train/start",
            headers={
                "Origin": studio,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == studio
        r = c.post("/api/train/start", json={"jobType": "nope"}, headers={"Origin": studio})
        assert r.status_code == 400 and r.json()["error"] == "invalid_job_type"
        assert r.headers["access-control-allow-origin"] == studio
        r = c.post("/api/train/start", json={"jobType": "nope"}, headers={"Origin": EVIL})
        assert r.status_code == 403 and r.json()["error"] == "origin_not_allowed"
        assert c.get("/health/live", headers={"Host": "voice.lan"}).status_code == 200
        assert c.get("/health/live", headers={"Host": "other.lan"}).status_code == 403
