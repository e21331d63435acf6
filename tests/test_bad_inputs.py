"""The bad-input corpus (tests/data/bad/cases.json, issue 11): every case gets its stable code.

Dataset cases are folders built from the case's description and run through the real dataset
step; bundle cases mutate a freshly exported bundle and run the validator; HTTP cases go to one
real `voicelane serve` (no voice loaded; the kal corpus as data root)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicelane import bundle as B
from voicelane.dataset import DatasetConfig, inspect_dataset, prepare_dataset
from voicelane.errors import VoicelaneError

CORPUS = Path(__file__).parent / "data" / "bad" / "cases.json"
CASES = json.loads(CORPUS.read_text("utf-8"))["cases"]
CFG = DatasetConfig(min_total_minutes=0.0, max_clip_s=3.0)


def test_corpus_shape():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) >= 40
    assert {c["kind"] for c in CASES} == {"dataset", "bundle", "http"}
    assert all(c["why"] and c["expect"] for c in CASES)


# ----------------------------------------------------------------------------------------------
# dataset


def _voiced(dur, sr, f0, seed, amp=0.3):
    from test_dataset import voiced

    return voiced(dur, sr, f0, amp=amp, seed=seed)


def _materialise(folder: Path, files: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for rel, spec in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if "voiced" in spec:
            v = spec["voiced"]
            sf.write(path, _voiced(v["dur"], v["sr"], v["f0"], v["seed"]), v["sr"], subtype="PCM_16")
        elif "noise" in spec:
            v = spec["noise"]
            sf.write(path, np.random.default_rng(1).normal(0, 1e-4, int(v["dur"] * v["sr"])), v["sr"], subtype="PCM_16")
        elif "text" in spec:
            path.write_bytes(spec["text"].encode("utf-8"))
        elif "latin1" in spec:
            path.write_bytes(spec["latin1"].encode("latin-1"))
        else:
            links.append((path, spec))
    for path, spec in links:  # after every real file exists
        if "symlink" in spec:
            os.symlink(spec["symlink"], path)
        else:
            path.write_bytes((folder / spec["copy"]).read_bytes())


def _run_dataset(case: dict, tmp_path: Path) -> None:
    data = tmp_path / "case" / "data"
    if case["files"] is not None:
        _materialise(data, case["files"])
    cfg = replace(CFG, **case.get("cfg", {}))
    expect = case["expect"]
    try:
        if case["call"] == "prepare":
            report = prepare_dataset(data, tmp_path / "out", cfg)
        else:
            report = inspect_dataset(data, cfg)
        err = report.get("error")
    except VoicelaneError as exc:
        err, report = exc.to_dict(), exc.details
    if "code" in expect:
        assert err is not None and err["code"] == expect["code"], (err, report)
        for k, v in expect.get("details", {}).items():
            assert err["details"][k] == v, err
        if case["call"] == "prepare":
            assert not (tmp_path / "out" / "dataset_manifest.json").exists()  # nothing partial looks valid
    rejected = {r["id"]: r["reason"] for r in (report or {}).get("rejected", [])}
    for clip, reason in expect.get("rejected", {}).items():
        assert rejected.get(clip) == reason, rejected
    for reason in expect.get("rejected_reasons", []):
        assert reason in rejected.values(), rejected


# ----------------------------------------------------------------------------------------------
# bundle


def _fresh_bundle(tmp_path: Path) -> Path:
    from test_bundle import make_sources

    res = B.export_bundle(tmp_path / "root", "bad_voice", "Bad Voice", make_sources(tmp_path), "2026-01-01T00:00:00Z")
    assert res.ok, res.error
    return B.bundle_dir_for(tmp_path / "root", "bad_voice")


def _mutate(d: Path, op: dict) -> None:
    mpath = d / "manifest.json"
    kind = op["op"]
    if kind == "delete":
        (d / op["path"]).unlink()
    elif kind == "write":
        (d / op["path"]).write_text(op["text"])
    elif kind == "truncate":
        with open(d / op["path"], "r+b") as fh:
            fh.truncate(op["bytes"])
    elif kind == "flip_last_byte":
        data = bytearray((d / op["path"]).read_bytes())
        data[-1] ^= 0xFF
        (d / op["path"]).write_bytes(bytes(data))
    elif kind == "replace_with_symlink":
        (d / op["path"]).unlink()
        os.symlink(op["target"], d / op["path"])
    elif kind == "manifest_raw_replace":
        mpath.write_text(mpath.read_text().replace(op["old"], op["new"], 1))
    else:
        m = json.loads(mpath.read_text())
        if kind == "manifest_set":
            m[op["key"]] = op["value"]
        elif kind == "manifest_del":
            del m[op["key"]]
        elif kind == "entry_set":
            m["files"][op["index"]][op["key"]] = op["value"]
        elif kind == "entry_dup":
            m["files"].append(dict(m["files"][op["index"]]))
        else:
            raise AssertionError(f"unknown op {kind}")
        mpath.write_text(json.dumps(m, indent=2))


def _run_bundle(case: dict, tmp_path: Path) -> None:
    d = _fresh_bundle(tmp_path)
    for op in case["mutate"]:
        _mutate(d, op)
    res = B.validate_voice_bundle(d)
    assert res.ok is False and res.error["code"] == case["expect"]["code"], res.error


# ----------------------------------------------------------------------------------------------
# http


@pytest.fixture(scope="module")
def bad_server(tmp_path_factory, svc_start_server, svc_kal_corpus):
    work = tmp_path_factory.mktemp("svc_bad")
    srv = svc_start_server(
        work, VOICELANE_DATA_ROOTS=str(svc_kal_corpus.parent), VOICELANE_BUNDLE_ROOTS=str(work / "none")
    )
    r = srv.client.post("/api/train/dataset", json={"mode": "check", "dataPath": str(svc_kal_corpus)})
    job_id = r.json()["jobId"]
    _wait(srv.client, job_id)
    srv.subst = {"{dataPath}": str(svc_kal_corpus), "{jobId}": job_id}
    return srv


def _wait(client, job_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/train/job/{job_id}").json()
        if job["state"] in ("done", "error", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


def _fill(value, subst: dict):
    if isinstance(value, str):
        for k, v in subst.items():
            value = value.replace(k, v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, subst) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, subst) for v in value]
    return value


def _headers(raw: dict) -> dict:
    return {k: v["latin1"].encode("latin-1") if isinstance(v, dict) else v for k, v in raw.items()}


def _run_http(case: dict, srv) -> None:
    req = _fill(case["request"], srv.subst)
    expect = case["expect"]
    headers = {**(srv.auth_headers if req.get("token", True) else {}), **_headers(req.get("headers", {}))}
    kw = {"json": req["json"]} if "json" in req else {"content": req.get("body", "").encode("utf-8")}
    with srv.bare_client() as c:
        before = c.get("/api/train/jobs", headers=srv.auth_headers).json()["total"]
        if req["method"] == "SSE":
            with c.stream("GET", req["path"], headers=headers, timeout=60) as r:
                assert r.status_code == expect["status"]
                lines = list(r.iter_lines())
            assert "event: end" in lines, lines[-5:]
            return
        if req["method"] == "JOB":
            r = c.post(req["path"], headers=headers, **kw)
            assert r.status_code == 200, r.text
            job = _wait(srv.client, r.json()["jobId"])
            assert job["state"] == "error" and (job.get("error") or {}).get("code") == expect["job_error"], job
            assert "bug report" not in json.dumps(job["error"])
            return
        r = c.request(req["method"], req["path"], headers=headers, **kw)
        after = c.get("/api/train/jobs", headers=srv.auth_headers).json()["total"]
    assert r.status_code == expect["status"], (r.status_code, r.text[:500])
    body = r.json()
    assert body["error"] == expect["code"] and body["message"], body
    for k, v in expect.get("details", {}).items():
        assert body["details"][k] == v, body
    if "jobs_started" in expect:
        assert after - before == expect["jobs_started"]


# ----------------------------------------------------------------------------------------------
# the one parametrised test


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input(case, tmp_path, request):
    if case["kind"] == "dataset":
        _run_dataset(case, tmp_path)
    elif case["kind"] == "bundle":
        _run_bundle(case, tmp_path)
    else:
        _run_http(case, request.getfixturevalue("bad_server"))


def test_bundle_cases_start_from_a_valid_bundle(tmp_path):
    d = _fresh_bundle(tmp_path)
    assert B.validate_voice_bundle(d).ok
    m = json.loads((d / "manifest.json").read_text())
    assert all(hashlib.sha256((d / f["path"]).read_bytes()).hexdigest() == f["sha256"] for f in m["files"])
