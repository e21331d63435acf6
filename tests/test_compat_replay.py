"""Existing clients keep working (issue 12 §1-§3): the old request shapes of
``voicelane.compat_shapes`` replayed against a real server, and the old validator contract
through the Python API and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_service_jobs import wait_job
from voicelane import compat_shapes as C

# ----------------------------------------------------------------------------------------------
# helpers


def _minimal_bundle(root: Path, profile: str = "old_voice") -> Path:
    """A bundle in the old minimal layout: the five required manifest fields and its files."""
    d = root / "bundles" / profile / "voice_bundle"
    d.mkdir(parents=True)
    files = []
    for name, data in (("model.pth", b"old-model" * 100), ("config.json", b'{"x": 1}')):
        (d / name).write_bytes(data)
        files.append({"path": name, "sha256": hashlib.sha256(data).hexdigest().upper(), "bytes": len(data)})
    (d / "manifest.json").write_text(
        json.dumps(
            {
                "bundle_version": "voice_bundle/1",
                "voice_profile_id": profile,
                "display_name": "Old Voice",
                "created_at": "2026-01-01T00:00:00Z",
                "files": files,
            }
        )
    )
    return d


def _vl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voicelane", *args], capture_output=True, text=True, timeout=timeout)


def _replay_ok(results: list[dict]) -> None:
    bad = [r for r in results if r["ok"] is False]
    assert not bad, json.dumps(bad, indent=1)


# ----------------------------------------------------------------------------------------------
# §2 speak: the old request shapes against a real server speaking a real tiny bundle


@pytest.fixture(scope="module")
def compat_voice_server(tmp_path_factory, svc_start_server, svc_prod_bundle):
    work = tmp_path_factory.mktemp("compat_voice")
    old_root = work / "old"
    _minimal_bundle(old_root)
    return svc_start_server(
        work,
        VOICELANE_BUNDLE_ROOTS=f"{svc_prod_bundle.root}:{old_root}",
        VOICELANE_DEFAULT_PROFILE=svc_prod_bundle.profile,
        VOICELANE_DATA_ROOTS=str(work / "no_data"),
        VOICELANE_SPEAK_TIMEOUT_S="60",
    )


def test_old_speak_shapes_keep_their_answers(compat_voice_server, svc_prod_bundle):
    results = C.replay(
        compat_voice_server.url,
        C.SPEAK_SHAPES,
        profile=svc_prod_bundle.profile,
        headers=compat_voice_server.auth_headers,
    )
    assert [r["id"] for r in results] == [s["id"] for s in C.SPEAK_SHAPES]
    assert all(r["ok"] is not None for r in results)  # none skipped
    _replay_ok(results)


def test_mp3_is_real_speech_of_the_same_voice(compat_voice_server, svc_prod_bundle):
    c = compat_voice_server.client
    body = {"text": "Check the fuel gauge now.", "voiceProfile": svc_prod_bundle.profile, "missionId": "mp3"}
    wav = c.post("/api/voice/speak", json=body)
    mp3 = c.post("/api/voice/speak", json={**body, "format": "mp3", "watermark_mode": "metadata"})
    assert wav.status_code == 200 and mp3.status_code == 200, mp3.text[:500]
    assert mp3.headers["content-type"] == "audio/mpeg" and mp3.headers["x-watermark-mode"] == "metadata"
    assert mp3.headers["x-voice-cache"] == "miss"  # a separate cache entry from the WAV
    with sf.SoundFile(io.BytesIO(mp3.content)) as f:
        assert f.format == "MP3"
        assert f"profile={svc_prod_bundle.profile}" in f.comment  # the metadata watermark
    decoded, rate = sf.read(io.BytesIO(mp3.content), dtype="float32")
    ref, ref_rate = sf.read(io.BytesIO(wav.content), dtype="float32")
    assert rate == ref_rate and len(ref) > 1000  # (the tiny test voice speaks fast)
    assert abs(len(decoded) - len(ref)) < 0.05 * rate  # libsndfile trims the encoder delay
    n = min(len(decoded), len(ref))
    corr = float(np.dot(ref[:n], decoded[:n]) / (np.linalg.norm(ref[:n]) * np.linalg.norm(decoded[:n])))
    assert corr > 0.9, corr  # the same speech through a lossy codec
    assert int(mp3.headers["x-voice-meter-duration-ms"]) == int(wav.headers["x-voice-meter-duration-ms"]) > 0


def test_metering_and_tenancy_headers(compat_voice_server, svc_prod_bundle):
    c = compat_voice_server.client
    text = "Runway three is clear."
    r = c.post("/api/voice/speak", json={"text": text, "missionId": "meter"}, headers={"x-customer-id": "acme"})
    assert r.status_code == 200, r.text[:300]
    audio, rate = sf.read(io.BytesIO(r.content))
    h = r.headers
    assert h["x-voice-tenant"] == "acme" and h["x-voice-meter-request-count"] == "1"
    assert h["x-voice-meter-char-count"] == str(len(text))
    assert abs(int(h["x-voice-meter-duration-ms"]) - 1000 * len(audio) / rate) <= 1
    # a streamed reply echoes the watermark mode and meters the same way
    with c.stream(
        "POST",
        "/api/voice/speak",
        json={"text": text, "missionId": "meter-s", "stream": True, "watermark_mode": "off"},
        headers={"x-tenant-id": "t1"},
    ) as s:
        assert s.status_code == 200 and s.headers["x-watermark-mode"] == "off"
        assert s.headers["x-voice-tenant"] == "t1" and s.headers["x-voice-meter-char-count"] == str(len(text))
        assert len(s.read()) > 44
    bad = c.post("/api/voice/speak", json={"text": text}, headers={"x-tenant-id": "x" * 200})
    assert bad.status_code == 400 and bad.json()["error"] == "voice_invalid_request"


def test_old_minimal_bundle_is_never_served(compat_voice_server):
    c = compat_voice_server.client
    refused = {r["profileId"]: r for r in c.get("/api/voice/profiles").json()["refused"]}
    assert refused["old_voice"]["code"] == "bundle_compat_only"
    assert "compatibility level" in refused["old_voice"]["message"]
    r = c.post("/api/voice/speak", json={"text": "Hello.", "voiceProfile": "Old_Voice"})
    assert r.status_code == 503, r.text[:300]
    b = r.json()
    assert b["error"] == "voice_unavailable" and b["details"]["reason"] == "bundle_compat_only"
    assert "never served" in b["message"]


# ----------------------------------------------------------------------------------------------
# §3 the bundle validator is a drop-in (Python API and CLI)


def test_validator_old_shape_python_api(tmp_path, svc_prod_bundle):
    from voicelane.bundle import validate_voice_bundle

    full = tmp_path / "full"
    shutil.copytree(svc_prod_bundle.bundle_dir, full)
    res = validate_voice_bundle(full)
    n = len(res.manifest["files"])
    assert res.to_legacy() == {"ok": True, "profileId": svc_prod_bundle.profile, "filesValidated": n}
    assert validate_voice_bundle(full, legacy=True) == res.to_legacy()
    # upper-case sha256 in the manifest (older writers) still validates
    m = json.loads((full / "manifest.json").read_text())
    for f in m["files"]:
        f["sha256"] = f["sha256"].upper()
    (full / "manifest.json").write_text(json.dumps(m))
    assert validate_voice_bundle(full).ok
    # several faults: the old validator's first failure (files in manifest order)
    first, second = m["files"][0]["path"], m["files"][1]["path"]
    data = bytearray((full / first).read_bytes())
    data[len(data) // 2] ^= 0x01
    (full / first).write_bytes(bytes(data))
    (full / second).unlink()
    legacy = validate_voice_bundle(full, legacy=True)
    assert legacy["ok"] is False and set(legacy) == {"ok", "failure"}
    assert legacy["failure"]["code"] == "checksum_mismatch" and legacy["failure"]["details"]["path"] == first
    assert set(legacy["failure"]) == {"code", "message", "details"}


def test_validator_old_shape_cli(tmp_path, svc_prod_bundle):
    full = tmp_path / "full"
    shutil.copytree(svc_prod_bundle.bundle_dir, full)
    r = _vl("validate", str(full), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True and out["profileId"] == svc_prod_bundle.profile and out["filesValidated"] >= 4
    old = _minimal_bundle(tmp_path / "old")
    r = _vl("validate", str(old), "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "profileId": "old_voice", "filesValidated": 2}
    r = _vl("validate", str(old))  # the full level refuses the minimal layout
    assert r.returncode == 1 and json.loads(r.stdout)["error"]["code"] == "required_file_missing"
    r = _vl("validate", str(old), "--level", "compat")
    assert r.returncode == 0 and json.loads(r.stdout)["level"] == "compat"
    (old / "config.json").write_bytes(b"{}")
    r = _vl("validate", str(old), "--json")
    failure = json.loads(r.stdout)["failure"]
    assert r.returncode == 1 and failure["code"] == "bytes_mismatch" and failure["details"]["index"] == 1
    r = _vl("validate", str(tmp_path / "absent"), "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["failure"]["code"] == "manifest_missing"


def test_shapes_are_listed_in_the_service_contract():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "service-contract.md").read_text()
    section = doc[doc.index("## Compatibility") :]
    missing = [s["id"] for s in C.SHAPES if f"`{s['id']}`" not in section]
    assert not missing, missing


# ----------------------------------------------------------------------------------------------
# §1 training routes: old bodies start real work from the server-side defaults


def _wait_final(client, job_id: str, timeout: float = 600.0) -> dict:
    return wait_job(client, job_id, lambda job: job["state"] in ("done", "error", "cancelled"), timeout=timeout)


@pytest.fixture(scope="module")
def compat_train_server(tmp_path_factory, svc_start_server, svc_kal_corpus):
    """Defaults point at the 12-clip kal corpus with its consent statement (no base, tiny preset and
    2 steps are svc_start_server's defaults)."""
    work = tmp_path_factory.mktemp("compat_train")
    srv = svc_start_server(
        work,
        VOICELANE_DATA_ROOTS=str(work / "no_data"),
        VOICELANE_MAX_DATASET_JOBS="2",
        VOICELANE_TRAIN_DEFAULT_DATA=str(svc_kal_corpus),
        VOICELANE_TRAIN_DEFAULT_CONSENT=str(svc_kal_corpus.parent / "consent.txt"),
        VOICELANE_TRAIN_DEFAULT_PROFILE="compat_default",
        VOICELANE_TRAIN_DEFAULT_MIN_MINUTES="0",
        VOICELANE_TRAIN_DEFAULT_EVAL_MAX="1",
        VOICELANE_TRAIN_DEFAULT_GATES='{"wer_max": 5.0}',
    )
    srv.corpus = svc_kal_corpus
    return srv


def test_status_is_the_latest_run_on_the_machine(compat_train_server):
    srv, c = compat_train_server, compat_train_server.client
    gone = c.get("/api/train/status")
    assert gone.status_code == 404 and gone.json()["error"] == "status_not_found"
    # a run the CLI made (not the service): artifacts/train_status.dataset.json in its cwd
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicelane",
            "dataset",
            "prepare",
            "--data",
            str(srv.corpus),
            "--profile",
            "cli_ds",
            "--out",
            str(srv.workdir / "cli_run"),
            "--min-minutes",
            "0",
        ],
        cwd=str(srv.workdir),
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in srv.env.items() if k != "TRAIN_STATUS_PATH"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (srv.workdir / "artifacts" / "train_status.dataset.json").is_file()
    doc = c.get("/api/train/status").json()
    assert doc["job_type"] == "dataset" and doc["status"] == doc["state"] == "completed" and "jobId" not in doc
    assert doc["stats"]["dataset_items"] == 12 and doc["stats"]["bundle_valid"] is False
    assert c.get("/api/train/status", params={"jobType": "tts_prod_train"}).status_code == 404
    # reset forgets it too; a later run shows again
    assert c.post("/api/train/status/reset").json()["reset"] is True
    assert c.get("/api/train/status").status_code == 404


def test_old_train_shapes_start_real_jobs_from_server_defaults(compat_train_server):
    srv, c = compat_train_server, compat_train_server.client
    results = C.replay(srv.url, C.TRAIN_SHAPES, headers=srv.auth_headers, include_jobs=True)
    by_id = {r["id"]: r for r in results}
    assert all(r["ok"] is not None for r in results)  # none skipped
    _replay_ok(results)
    jobs = {j["options"].get("jobType") or j["type"]: j for j in c.get("/api/train/jobs").json()["jobs"]}
    assert by_id["train_start_empty"]["ok"] and by_id["train_dataset_voice_dataset"]["ok"]

    # the bare `{}` job: the default dataset, consent and profile, trained for real to a bundle
    listed = c.get("/api/train/jobs", params={"type": "train"}).json()["jobs"]
    assert len(listed) == 1
    job = _wait_final(c, listed[0]["id"])
    assert job["state"] == "done", json.dumps(job)[:3000]
    assert job["message"] == "Training complete"
    opts = job["options"]
    assert opts["serverDefaults"] is True and opts["profile"] == "compat_default" and opts["preset"] == "tiny"
    assert Path(opts["dataPath"]) == srv.corpus.resolve() and opts["consentStatement"].endswith("consent.txt")
    assert "bundles/compat_default/voice_bundle/manifest.json" in job["artifactRefs"]
    assert job["datasetStats"] is None
    st = c.get("/api/train/status", params={"jobId": job["id"]}).json()
    assert st["status"] == "completed" and st["job_type"] == "train"
    assert st["stats"]["bundle_valid"] is True and st["stats"]["dataset_items"] == 12

    # old dataset modes: prepared datasets with voice_dataset/1 stats
    for mode in ("voice_dataset", "knowledge_audio"):
        row = next(
            j
            for j in c.get("/api/train/jobs", params={"type": "dataset"}).json()["jobs"]
            if j["options"].get("requestedMode") == mode
        )
        done = _wait_final(c, row["id"])
        assert done["state"] == "done" and done["message"] == "Dataset complete", done
        assert done["options"]["mode"] == "prepare"
        ds = done["datasetStats"]
        assert ds["schema"] == "voice_dataset/1" and ds["dataset_items"] == 12 and ds["rejected"] == 0
    assert set(jobs) >= {"tts_prod_train", "tts_voice_train"}
    for jt in ("tts_prod_train", "tts_voice_train"):  # started for real; not needed to the end here
        c.post(f"/api/train/job/{jobs[jt]['id']}/cancel")
        assert _wait_final(c, jobs[jt]["id"])["state"] in ("cancelled", "done", "error")
    # the latest run on the machine is now a service job
    latest = c.get("/api/train/status").json()
    assert latest["jobId"] and latest["status"] in ("completed", "cancelled", "error")


def test_old_failure_message(compat_train_server):
    c = compat_train_server.client
    # explicit paths stay confined to the data roots (the defaults are the operator's, not the client's)
    r = c.post(
        "/api/train/start",
        json={"jobType": "tts_prod_train", "dataPath": str(compat_train_server.corpus), "profile": "x"},
    )
    assert r.status_code == 400 and r.json()["error"] == "path_not_allowed"
    b = c.post("/api/train/start", json={"jobType": "tts_prod_train_nemo"}).json()
    assert b["error"] == "engine_unavailable" and b["details"]["use"] == "tts_prod_train"
    # a real job that fails (an unlisted base): the old message, the stable code in `error`
    r = c.post("/api/train/start", json={"jobType": "tts_voice_train", "base": "not-a-listed-base"})
    assert r.status_code == 200 and r.json()["started"] is True, r.text
    job = _wait_final(c, r.json()["jobId"])
    assert job["state"] == "error" and job["error"]["code"] == "allowlist_rejected", job
    assert job["message"] == f"Training failed (exit {job['exitCode']})" and job["exitCode"] != 0


def test_checker_catches_changed_answers():
    """The replay's checker fails on what an old client would trip over (no server needed)."""
    exp = C.fill(C.SPEAK_SHAPES[0]["steps"][0], {"profile": "p", "uniq": "u"})
    wav_headers = {
        "content-type": "audio/wav",
        "x-voice-provider": "local-onnx",
        "x-voice-profile": "p",
        "x-voice-meter-request-count": "1",
        "x-watermark-mode": "none",
        "x-voice-meter-char-count": "9",
    }
    assert C.check(exp, 200, wav_headers, b"RIFF....") == []
    assert C.check(exp, 400, wav_headers, b"{}")[0].startswith("status 400")
    assert any("x-voice-provider" in p for p in C.check(exp, 200, {**wav_headers, "x-voice-provider": "acme"}, b"RIFF"))
    assert any("body starts" in p for p in C.check(exp, 200, wav_headers, b"ID3\x03"))
    started = C.STARTED
    assert C.check(started, 200, {}, json.dumps({"ok": True, "started": True, "jobId": "j1"}).encode()) == []
    assert C.check(started, 200, {}, json.dumps({"ok": True, "started": True, "jobId": ""}).encode())
    assert C.check(started, 200, {}, b"not json")
    ids = [s["id"] for s in C.SHAPES]
    assert len(ids) == len(set(ids))
