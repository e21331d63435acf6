"""The studio's HTTP routes against a real ``voicelane serve`` child (no browser): bounded,
atomic uploads confined to the data roots, stable error codes, token, OpenAPI, offline /docs."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import CORPORA


def _wav(seconds: float = 1.0, amp: float = 0.3, rate: int = 22050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.fixture(scope="module")
def srv(svc_start_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("studio_api")
    (work / "outside").mkdir()
    return svc_start_server(work, VOICELANE_DATA_ROOTS=str(work / "var"))


def _post(srv, path: str, body: bytes, media: str):
    return srv.client.post(path, content=body, headers={"content-type": media})


def test_pages_assets_and_offline_docs(srv):
    with srv.bare_client() as bare:
        page = bare.get("/studio")
    assert page.status_code == 200 and "voicelane studio" in page.text
    for ref in (
        "/studio/static/js/main.js",
        "/studio/static/vendor/uplot/uPlot.iife.min.js",
        "/studio/static/studio.css",
    ):
        assert ref in page.text
        assert srv.client.get(ref).status_code == 200
    docs = srv.client.get("/docs").text
    assert "cdn." not in docs and "/studio/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
    assert srv.client.get("/studio/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert "cdn." not in srv.client.get("/redoc", follow_redirects=True).text
    paths = srv.client.get("/openapi.json").json()["paths"]
    for p in (
        "/api/data/prompts",
        "/api/data/datasets",
        "/api/data/clip",
        "/api/data/recordings/{name}",
        "/api/data/recordings/{name}/takes",
        "/api/data/recordings/{name}/consent",
        "/api/data/uploads",
        "/api/train/bases",
        "/api/voice/profiles/{profile}/bundle",
    ):
        assert p in paths, p


def test_data_routes_need_the_token(srv):
    with srv.bare_client() as bare:
        assert bare.get("/api/data/datasets").status_code == 401
        r = bare.post("/api/data/uploads?name=x", content=b"PK", headers={"content-type": "application/zip"})
        assert r.status_code == 401
    assert srv.client.get("/api/data/datasets").status_code == 200


def test_prompts_and_bases(srv):
    p = srv.client.get("/api/data/prompts", params={"language": "en-us"}).json()
    assert p["license"] == "CC0-1.0" and len(p["prompts"]) >= 40 and "{speaker}" in p["consent"]
    assert srv.client.get("/api/data/prompts", params={"language": "xx"}).json()["error"] == "language_unsupported"
    assert {"en-us", "de", "es", "fr"} <= set(p["available"])
    bases = {b["id"]: b for b in srv.client.get("/api/train/bases").json()["bases"]}
    assert bases["coqui-xtts-v2"]["verdict"] == "noncommercial"
    assert any(b["verdict"] == "ok" for b in bases.values())


def test_recording_session_takes_consent_and_resume(srv):
    root = Path(srv.workdir) / "var" / "datasets" / "sess"
    r = _post(srv, "/api/data/recordings/sess/takes?clipId=a1&text=Hello%20there", _wav(), "audio/wav")
    assert r.status_code == 409 and r.json()["error"] == "consent_missing"
    r = _post(
        srv,
        "/api/data/recordings/sess/consent?speakerName=Ann&statement=I%20consent&language=de",
        _wav(2.0),
        "audio/wav",
    )
    assert r.status_code == 200, r.text
    assert "speaker_name: Ann" in (root / "consent.txt").read_text()
    for clip, amp in (("a1", 0.3), ("a2", 0.3), ("a1", 0.5)):  # the third is a re-take of a1
        r = _post(srv, f"/api/data/recordings/sess/takes?clipId={clip}&text=Take%20{clip}", _wav(1.5, amp), "audio/wav")
        assert r.status_code == 200, r.text
    state = srv.client.get("/api/data/recordings/sess").json()
    listed = {d["name"]: d for d in srv.client.get("/api/data/datasets").json()["datasets"]}
    assert listed["sess"]["language"] == "de" and listed["sess"]["consent"]
    assert [t["clipId"] for t in state["takes"]] == ["a2", "a1"] and state["consent"]
    assert abs(state["minutes"] - 3.0 / 60) < 0.01
    loud, _ = sf.read(str(root / "wavs" / "a1.wav"))
    assert np.max(np.abs(loud)) > 0.45  # the re-take replaced the first take
    clipped = _post(srv, "/api/data/recordings/sess/takes?clipId=a3&text=Loud", _wav(1.0, 1.5), "audio/wav")
    assert clipped.status_code == 200 and "clipped" in clipped.json()["warnings"]
    quiet = _post(srv, "/api/data/recordings/sess/takes?clipId=a4&text=Soft", _wav(1.0, 0.01), "audio/wav")
    assert quiet.status_code == 200 and "too_quiet" in quiet.json()["warnings"]
    before = (root / "metadata.csv").read_bytes()
    for body, code, status in (
        (b"", "upload_empty", 400),
        (_wav(1.0, 0.0), "recording_silent", 422),
        (b"RIFF....WAVEjunk", "recording_invalid", 400),
        (_wav(0.2), "recording_invalid", 400),
        (_wav(1.0, rate=8000), "recording_invalid", 400),
    ):
        r = _post(srv, "/api/data/recordings/sess/takes?clipId=a2&text=Bad", body, "audio/wav")
        assert (r.status_code, r.json()["error"]) == (status, code)
    assert (root / "metadata.csv").read_bytes() == before  # a refused take changes nothing
    r = _post(srv, "/api/data/recordings/sess/takes?clipId=a9&text=Big", b"\0" * (9 * 1024 * 1024), "audio/wav")
    assert r.status_code == 413 and r.json()["error"] == "request_too_large"
    for bad in ("../x", "UPPER", "a" * 70):
        r = _post(srv, f"/api/data/recordings/{bad}/consent?speakerName=A&statement=B", _wav(), "audio/wav")
        assert r.status_code in (400, 404)
    assert not list((Path(srv.workdir) / "var").glob("x*"))


def test_zip_uploads_are_checked_before_anything_is_written(srv):
    var = Path(srv.workdir) / "var"
    cases = {
        "dotdot": _zip({"metadata.csv": b"a|b\n", "../evil.txt": b"x"}),
        "deep": _zip({"metadata.csv": b"a|b\n", "wavs/../../evil.txt": b"x"}),
        "absolute": _zip({"metadata.csv": b"a|b\n", "/tmp/evil.txt": b"x"}),
        "symlink": _zip({"metadata.csv": b"a|b\n"}, symlink="wavs/link.wav"),
    }
    for name, body in cases.items():
        r = _post(srv, f"/api/data/uploads?name={name}", body, "application/zip")
        assert (r.status_code, r.json()["error"]) == (400, "upload_unsafe"), name
        assert not (var / "datasets" / name).exists()
    assert not list(Path(srv.workdir).rglob("evil.txt"))
    assert _post(srv, "/api/data/uploads?name=e0", b"", "application/zip").json()["error"] == "upload_empty"
    assert _post(srv, "/api/data/uploads?name=e1", b"not a zip", "application/zip").json()["error"] == "upload_invalid"
    no_meta = _zip({"wavs/a.wav": _wav()})
    assert _post(srv, "/api/data/uploads?name=e2", no_meta, "application/zip").json()["error"] == "upload_invalid"
    assert (
        not [p for p in (var / "datasets").iterdir() if p.name.startswith(("e", "."))]
        if (var / "datasets").exists()
        else True
    )

    rows = (CORPORA / "kal" / "metadata.csv").read_text("utf-8").splitlines()[:2]
    good = {"kal2/metadata.csv": ("\n".join(rows) + "\n").encode()}
    for row in rows:
        cid = row.split("|")[0]
        good[f"kal2/wavs/{cid}.flac"] = (CORPORA / "kal" / "wavs" / f"{cid}.flac").read_bytes()
    r = _post(srv, "/api/data/uploads?name=kal_two", _zip(good), "application/zip")
    assert r.status_code == 200 and r.json()["files"] == 3, r.text
    assert (var / "datasets" / "kal_two" / "wavs").is_dir()  # the common top folder was stripped
    again = _post(srv, "/api/data/uploads?name=kal_two", _zip(good), "application/zip")
    assert (again.status_code, again.json()["error"]) == (409, "dataset_exists")
    listed = srv.client.get("/api/data/datasets").json()["datasets"]
    assert any(d["name"] == "kal_two" and d["rows"] == 2 for d in listed)
    cid = rows[0].split("|")[0]
    clip = srv.client.get("/api/data/clip", params={"dataPath": str(var / "datasets" / "kal_two"), "clipId": cid})
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/flac"
    out = srv.client.get("/api/data/clip", params={"dataPath": str(Path(srv.workdir) / "outside"), "clipId": cid})
    assert out.json()["error"] == "path_not_allowed"
    al = srv.client.get("/api/data/alignment", params={"dataPath": str(var / "datasets" / "kal_two"), "clipId": cid})
    assert al.status_code == 200, al.text
    doc = al.json()
    assert [w["label"].lower() for w in doc["words"]][:3] == ["when", "we", "finally"]
    assert len(doc["phones"]) > 20 and doc["implausible"] is None
    assert all(0 <= p["start"] < p["end"] <= doc["durationS"] + 0.01 for p in doc["phones"])
    assert len(doc["envelope"]) == 600


def test_unusable_paths_and_corrupt_zips_are_client_errors(srv):
    long = srv.client.get(
        "/api/data/clip", params={"dataPath": str(Path(srv.workdir) / "var" / ("a" * 300)), "clipId": "x"}
    )
    assert long.status_code == 400, long.text
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.csv", b"a|hello there\n" * 200)
    data = bytearray(buf.getvalue())
    data[60:80] = b"\xff" * 20  # inside the deflated member: its CRC or stream no longer checks out
    r = _post(srv, "/api/data/uploads?name=corrupt", bytes(data), "application/zip")
    assert (r.status_code, r.json()["error"]) == (400, "upload_invalid"), r.text
    assert not (Path(srv.workdir) / "var" / "datasets" / "corrupt").exists()
    leftovers = list((Path(srv.workdir) / "var" / "datasets").glob(".corrupt.*"))
    assert leftovers == []  # the temp folder is removed


def test_every_prompt_and_consent_statement_is_voiceable():
    """The shipped prompt lists: unique ids, and every sentence passes the lane's front end."""
    import json

    from voicelane.engine import frontend
    from voicelane.service.studio.api import PROMPTS_DIR

    files = sorted(PROMPTS_DIR.glob("*.json"))
    assert {f.stem for f in files} >= {"en-us", "de", "es", "fr"}
    for f in files:
        doc = json.loads(f.read_text("utf-8"))
        assert doc["language"] == f.stem and doc["license"] == "CC0-1.0" and doc["source"]
        ids = [p["id"] for p in doc["prompts"]]
        assert len(ids) == len(set(ids)) >= 20
        for text in [p["text"] for p in doc["prompts"]] + [doc["consent"].replace("{speaker}", "Ann")]:
            assert "|" not in text and len(text) <= 600
            assert frontend.phonemize(text, doc["language"]).tokens, (f.name, text)


def test_voices_readiness_and_real_heldout_recordings(
    svc_start_server, svc_prod_bundle, svc_kal_corpus, tmp_path_factory
):
    work = tmp_path_factory.mktemp("studio_voices")
    reports, outside = work / "reports", work / "outside"
    outside.mkdir()
    s = svc_start_server(
        work,
        VOICELANE_DATA_ROOTS=str(svc_kal_corpus.parent),
        VOICELANE_BUNDLE_ROOTS=str(svc_prod_bundle.root),
        VOICELANE_REPORTS_DIR=str(reports),
    )
    prof, bdir = svc_prod_bundle.profile, svc_prod_bundle.bundle_dir
    paths = s.client.get("/openapi.json").json()["paths"]
    assert "/api/voice/profiles/{profile}/readiness" in paths and "/api/voice/profiles/{profile}/heldout" in paths
    ready = s.client.get(f"/api/voice/profiles/{prof}/readiness").json()
    assert (ready["state"], ready["reason"]) == ("not_assessed", "no_report")
    cmd = [
        sys.executable,
        "-m",
        "voicelane",
        "readiness",
        "--bundle",
        str(bdir),
        "--status",
        str(svc_prod_bundle.root / "train_status.json"),
        "--trace",
        str(work / "trace.jsonl"),
        "--out",
        str(reports / "readiness.md"),
    ]
    res = subprocess.run(cmd, cwd=str(work), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr  # no verify record yet: NO-GO
    side = json.loads((reports / "readiness.json").read_text())
    assert side["verdict"] == "NO-GO" and side["profile"] == prof and (reports / "readiness.md").is_file()
    ready = s.client.get(f"/api/voice/profiles/{prof}/readiness").json()
    assert ready["state"] == "NO-GO" and "verify_missing" in [b["code"] for b in ready["blocking"]]
    (reports / "readiness.json").write_text(json.dumps(side | {"bundle_manifest_sha256": "0" * 64}))
    ready = s.client.get(f"/api/voice/profiles/{prof}/readiness").json()
    assert (ready["state"], ready["reason"]) == ("not_assessed", "other_bundle")
    assert s.client.get("/api/voice/profiles/nope/readiness").json()["error"] == "voice_profile_not_found"

    # the held-out clips eval.json names, found as real recordings inside the data roots
    ev = json.loads((bdir / "eval.json").read_text())["heldout"]
    assert ev["dataset_name"] == svc_kal_corpus.name and ev["clips"] and all(c["text"] for c in ev["clips"])
    held = s.client.get(f"/api/voice/profiles/{prof}/heldout").json()
    assert [c["id"] for c in held["clips"]] == [c["id"] for c in ev["clips"]]
    assert held["dataPath"] == str(svc_kal_corpus.resolve()) and held["recordings"] == len(ev["clips"])
    assert all("mcd_db" in c["metrics"] for c in held["clips"])
    real = s.client.get("/api/data/clip", params={"dataPath": held["dataPath"], "clipId": held["clips"][0]["id"]})
    assert real.status_code == 200 and sf.info(io.BytesIO(real.content)).duration > 0.5
    link = svc_kal_corpus.parent / f"escape_{work.name}"
    link.symlink_to(outside, target_is_directory=True)
    try:
        for bad in (str(outside), str(link), "../" * 8 + "etc"):
            r = s.client.get(f"/api/voice/profiles/{prof}/heldout", params={"dataPath": bad})
            assert (r.status_code, r.json()["error"]) == (400, "path_not_allowed"), bad
    finally:
        link.unlink()
