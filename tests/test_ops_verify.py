"""`voicelane verify`: PASS on a fresh production bundle (real determinism runs, real route replay,
real test evidence), FAIL with the right firstFail and a different certificate after tampering,
the training trace and its export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_ops_support import base_env, consent_of, copy_run, junit_evidence, verified_run

from voicelane.ops import verify as V

HARD = [c["id"] for c in V.PACK["constraints"] if c["severity"] == "HARD"]


def _verify(args: list[str], cwd: Path) -> tuple[int, dict]:
    proc = subprocess.run(["nice", "-n", "10", sys.executable, "-m", "voicelane", "verify", *args],
                          capture_output=True, text=True, timeout=1200, env=base_env(), cwd=str(cwd))
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout)


def test_verify_pass_on_a_fresh_bundle():
    v = verified_run()
    doc = v.doc
    failing = {c["id"]: c["reason"] for c in doc["constraints"] if not c["pass"]}
    assert v.rc == 0 and doc["verdict"] == "PASS" and doc["pass"] is True, failing
    assert doc["firstFail"] is None
    assert [c["id"] for c in doc["constraints"] if c["severity"] == "HARD"] == HARD
    by_id = {c["id"]: c for c in doc["constraints"]}
    det = by_id["protocol_deterministic"]["measured"]
    assert det["identical"] and det["exit_codes"] == [0, 0] and det["stdout_sha256"][0] == det["stdout_sha256"][1]
    routes = by_id["routes_compatible"]["measured"]["checks"]
    assert {(c["method"], c["path"].split("/")[3]) for c in routes} >= {("GET", "status"), ("POST", "start")}
    assert by_id["tests_green"]["measured"]["source"] == "junit" and by_id["tests_green"]["measured"]["tests"] > 0
    assert by_id["bundle_valid"]["measured"]["files_validated"] >= 4
    assert by_id["consent_present"]["measured"]["matches_statement_file"] is True
    assert by_id["rtf_target"]["measured"]["rtf"] is not None  # SOFT, measured
    cert = doc["certificate"]
    assert cert["status"] == "issued" and cert["integrityOk"] is True
    assert len(cert["certificateHash"]) == 64 and cert["certificateId"] == "vlcert-" + cert["certificateHash"][:16]
    roles = {b["role"] for b in cert["bound"]}
    assert {"train_status", "bundle_manifest", "bundle_file", "junit", "consent_statement"} <= roles
    assert doc["traceId"] == "ops-test-trace" and doc["runId"]
    # the hash covers the pack, the measured values and the bound artifacts: recompute it
    results = [{k: c[k] for k in ("id", "severity", "evaluated", "pass", "measured")} for c in doc["constraints"]]
    assert V.certificate_hash(results, [{k: b[k] for k in ("role", "name", "sha256", "bytes")}
                                        for b in cert["bound"]]) == cert["certificateHash"]


def test_trace_record_and_export(tmp_path):
    v = verified_run()
    recs = V.read_trace(v.trace)
    rec = next(r for r in recs if r["id"] == v.doc["runId"])
    assert {"kind", "version", "id", "seq", "ts", "traceId", "pass", "metrics", "firstFail", "certificate"} <= set(rec)
    assert rec["kind"] == "training-trace" and rec["version"] == 1 and rec["pass"] is True
    assert rec["certificate"]["certificateHash"] == v.doc["certificate"]["certificateHash"]
    assert V.recheck_record(rec) == (True, [])
    out = tmp_path / "export.jsonl"
    proc = subprocess.run([sys.executable, "-m", "voicelane", "verify", "export", "--trace", str(v.trace),
                           "--out", str(out)], capture_output=True, text=True, timeout=120, env=base_env())
    assert proc.returncode == 0, proc.stderr
    exported = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    assert exported == recs and json.loads(proc.stdout)["exported"] == len(recs)
    out_json = tmp_path / "export.json"
    assert V.export_trace(v.trace, out_json) == len(recs)
    assert json.loads(out_json.read_text("utf-8")) == recs


def test_tampering_fails_with_the_tampered_constraint(tmp_path):
    v = verified_run()
    lr = v.local
    pass_hash = v.doc["certificate"]["certificateHash"]
    trace = tmp_path / "trace.jsonl"
    common = ["--trace", str(trace), "--junit", str(junit_evidence()), "--skip-determinism",
              "--consent-statement", str(consent_of(lr.data))]

    # 1. a flipped byte in the model: the re-hash catches it
    bundle, status = copy_run(lr, tmp_path / "a")
    model = bundle / "model.safetensors"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    model.write_bytes(bytes(raw))
    rc, doc = _verify(["--bundle", str(bundle), "--status", str(status), *common], tmp_path)
    assert rc == 2 and doc["verdict"] == "FAIL" and doc["firstFail"] == "bundle_valid"
    assert doc["firstFailCode"] == "checksum_mismatch"
    assert doc["certificate"]["certificateHash"] != pass_hash and doc["certificate"]["status"] == "rejected"
    assert doc["certificate"]["integrityOk"] is True  # recomputed over the (tampered) files as read

    # 2. the status rewritten to claim another outcome
    bundle, status = copy_run(lr, tmp_path / "b")
    s = json.loads(status.read_text())
    s["state"] = s["status"] = "error"
    status.write_text(json.dumps(s))
    rc, doc = _verify(["--bundle", str(bundle), "--status", str(status), *common], tmp_path)
    assert rc == 2 and doc["firstFail"] == "status_completed"

    # 3. the manifest's eval summary edited to look better than eval.json
    bundle, status = copy_run(lr, tmp_path / "c")
    m = json.loads((bundle / "manifest.json").read_text())
    m["eval"]["wer"] = 0.01
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    rc, doc = _verify(["--bundle", str(bundle), "--status", str(status), *common], tmp_path)
    # the status binds the manifest's sha256, so the edit alone is caught as a bundle change
    assert rc == 2 and doc["firstFail"] == "bundle_valid"
    # a forger who also rewrites the status' manifest hash is caught by eval.json disagreeing
    import hashlib

    s = json.loads(status.read_text())
    s["bundle_manifest_sha256"] = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    status.write_text(json.dumps(s))
    rc, doc = _verify(["--bundle", str(bundle), "--status", str(status), *common], tmp_path)
    assert rc == 2 and doc["firstFail"] == "eval_gates_passed"
    assert doc["certificate"]["certificateHash"] != pass_hash
    assert len(V.read_trace(trace)) == 4 and [r["seq"] for r in V.read_trace(trace)] == [1, 2, 3, 4]


def test_missing_evidence_is_a_failure(tmp_path):
    """No test evidence and no determinism run: not evaluated counts as FAIL for HARD constraints."""
    verifier = V.Verifier(V.VerifyOptions(trace=tmp_path / "t.jsonl", skip_determinism=True, log=lambda m: None))
    r = V.Result("tests_green", "HARD")
    verifier.check_tests(r)
    assert r.evaluated is False and r.code == "tests_missing"
    d = V.Result("protocol_deterministic", "HARD")
    verifier.check_determinism(d)
    assert d.evaluated is False
    junit = tmp_path / "j.xml"
    junit.write_text('<testsuites><testsuite tests="3" failures="1" errors="0" skipped="0"/></testsuites>')
    verifier = V.Verifier(V.VerifyOptions(trace=tmp_path / "t.jsonl", junit=junit, log=lambda m: None))
    r = V.Result("tests_green", "HARD")
    verifier.check_tests(r)
    assert r.evaluated and not r.passed and r.measured["failures"] == 1


def test_certificate_hash_binds_artifact_content():
    results = [{"id": "x", "severity": "HARD", "evaluated": True, "pass": True, "measured": {"a": 1}}]
    a = [{"role": "bundle_file", "name": "bundle/model.safetensors", "sha256": "0" * 64, "bytes": 10}]
    b = [{**a[0], "sha256": "1" * 64}]
    assert V.certificate_hash(results, a) != V.certificate_hash(results, b)
    assert V.certificate_hash(results, a) == V.certificate_hash(results, list(reversed(a)))
