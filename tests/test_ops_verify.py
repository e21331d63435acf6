"""`voicelane verify`: every constraint measured for real on a fresh production bundle, the pinned
gate policy (loosened gates are a HARD fail), test evidence bound to the README command's default
suite, tampering caught, the certificate binding code and data, the training trace with deltas and
its export. The full PASS (which needs the whole default suite's junit) is behind -m slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_ops_support import (
    REPO,
    base_env,
    consent_of,
    copy_run,
    junit_evidence,
    local_run,
    run_readiness,
    run_verify,
    session_dir,
    verified_run,
    verify_args,
)
from voicelane.ops import verify as V
from voicelane.ops.verify import checks

HARD = [c["id"] for c in V.PACK["constraints"] if c["severity"] == "HARD"]


def _recompute(doc: dict) -> str:
    cert = doc["certificate"]
    results = [{k: c[k] for k in ("id", "severity", "evaluated", "pass", "measured")} for c in doc["constraints"]]
    return V.certificate_hash(
        results, [{k: b[k] for k in ("role", "name", "sha256", "bytes")} for b in cert["bound"]], cert["code"]
    )


def test_verify_measures_every_constraint_on_a_fresh_bundle():
    v = verified_run()
    doc = v.doc
    by_id = {c["id"]: c for c in doc["constraints"]}
    failing = {c["id"]: c["reason"] for c in doc["constraints"] if not c["pass"]}
    # everything passes except the test evidence: a junit of one file is not the default suite
    assert set(failing) <= {"tests_green", "rtf_target", "latency_target"}, failing
    assert doc["verdict"] == "FAIL" and v.rc == 2 and doc["firstFail"] == "tests_green"
    assert doc["firstFailCode"] == "tests_not_default_suite"
    assert by_id["tests_green"]["measured"]["suites"] == ["voicelane-partial"]
    assert [c["id"] for c in doc["constraints"] if c["severity"] == "HARD"] == HARD
    pinned = by_id["gate_thresholds_pinned"]["measured"]
    assert pinned["pinned"] == V.POLICY["gates"] and pinned["looser"] == {}
    ev = by_id["eval_gates_passed"]["measured"]
    assert ev["thresholds"] == V.POLICY["gates"] and ev["values"]["wer"] <= V.POLICY["gates"]["wer_max"]
    det = by_id["protocol_deterministic"]["measured"]
    assert det["identical"] and det["exit_codes"] == [0, 0] and det["stdout_sha256"][0] == det["stdout_sha256"][1]
    routes = by_id["routes_compatible"]["measured"]["checks"]
    assert all(c["ok"] for c in routes), [c for c in routes if not c["ok"]]
    assert len(routes) >= len(V.ROUTE_REPLAY)  # + the old shapes of voicelane.compat_shapes (served voice)
    assert {(c["method"], c["path"]) for c in routes} >= {("GET", "/api/train/status"), ("POST", "/api/voice/speak")}
    assert by_id["bundle_valid"]["measured"]["files_validated"] >= 4
    assert by_id["consent_present"]["measured"]["matches_statement_file"] is True
    assert by_id["status_completed"]["measured"]["dataset_manifest_matches_bundle"] is True
    assert by_id["rtf_target"]["measured"]["rtf"] is not None  # SOFT, measured
    cert = doc["certificate"]
    assert cert["status"] == "rejected" and cert["integrityOk"] is True
    assert len(cert["certificateHash"]) == 64 and cert["certificateId"] == "vlcert-" + cert["certificateHash"][:16]
    roles = {b["role"] for b in cert["bound"]}
    assert {"train_status", "bundle_manifest", "bundle_file", "dataset_manifest", "junit", "consent_statement"} <= roles
    # the code commit of the checkout (and the one the bundle records) are part of the hash
    assert len(cert["code"]["commit"]) == 40 and cert["code"]["bundle_commit"]
    assert doc["traceId"] == "ops-test-trace" and doc["runId"] and doc["profile"] == "ops_policy"
    # the hash covers the pack, the measured values, the code commit and the bound artifacts
    assert _recompute(doc) == cert["certificateHash"]
    other = dict(cert["code"], commit="0" * 40)
    results = [{k: c[k] for k in ("id", "severity", "evaluated", "pass", "measured")} for c in doc["constraints"]]
    assert (
        V.certificate_hash(
            results, [{k: b[k] for k in ("role", "name", "sha256", "bytes")} for b in cert["bound"]], other
        )
        != cert["certificateHash"]
    )


def test_loosened_gates_are_a_hard_fail_and_readiness_says_no_go(tmp_path):
    """The tiny run was evaluated with TRAIN_GATES {"wer_max": 1.5}: never certified."""
    lr = local_run()
    assert lr.run.rc == 0, lr.run.stdout[-3000:]
    trace = tmp_path / "trace.jsonl"
    rc, doc = run_verify(verify_args(lr.bundle, lr.status, trace, junit_evidence(), "--skip-determinism"), tmp_path)
    assert rc == 2 and doc["verdict"] == "FAIL"
    assert doc["firstFail"] == "gate_thresholds_pinned" and doc["firstFailCode"] == "gate_thresholds_loosened"
    by_id = {c["id"]: c for c in doc["constraints"]}
    assert by_id["status_completed"]["pass"] and by_id["bundle_valid"]["pass"]  # a valid, completed run
    assert by_id["gate_thresholds_pinned"]["measured"]["looser"]["wer_max"] == {"bundle": 1.5, "policy": 0.35}
    out = tmp_path / "readiness.md"
    proc = run_readiness(tmp_path, out, "--status", str(lr.status), "--trace", str(trace))
    text = out.read_text("utf-8")
    assert proc.returncode == 2 and "## Decision: NO-GO" in text
    assert "| `gate_thresholds_loosened` |" in text and "blocking: gate_thresholds_loosened" in proc.stdout
    assert "| gate thresholds vs the pinned policy | FAIL |" in text


def _junit(tmp_path: Path, name: str, suite: str, extra: list[str] | None = None) -> Path:
    path = tmp_path / name
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={path}",
            "-o",
            f"junit_suite_name={suite}",
            str(REPO / "tests" / "test_protocol.py"),
            *(extra or []),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(REPO),
        env=base_env(),
    )
    return path


def test_tests_green_binds_the_default_suite_not_any_junit(tmp_path):
    ev = V.Evidence(V.VerifyOptions(trace=tmp_path / "t.jsonl", log=lambda m: None))
    r = checks.tests_green(ev)
    assert r.evaluated is False and r.code == "tests_missing"
    # the README command narrowed to one file names its suite `voicelane-partial`
    ev.junit = V.parse_junit(junit_evidence())
    assert ev.junit["tests"] > 0 and ev.junit["failures"] == 0 and ev.junit["modules"] == ["test_protocol"]
    r = checks.tests_green(ev)
    assert not r.passed and r.code == "tests_not_default_suite"
    # a junit that only claims the default suite's name is caught by the count the checkout collects
    from voicelane.ops.verify.harness import collect_default_suite

    ev.junit = V.parse_junit(_junit(tmp_path, "claims.xml", "voicelane-default"))
    ev.tests_expected = collect_default_suite(sys.executable)
    r = checks.tests_green(ev)
    assert not r.passed and r.code in ("tests_not_default_suite", "tests_failed")
    if ev.tests_expected.get("tests") is not None:
        assert r.code == "tests_not_default_suite" and r.measured["expected_tests"] > r.measured["tests"]
    # with the count it claims, a failure is still a failure
    ev.junit = {
        **V.parse_junit(_junit(tmp_path, "fail.xml", "voicelane-default", ["-k", "nothing_matches_this"])),
        "failures": 1,
        "tests": 5,
    }
    ev.tests_expected = {"tests": 5}
    r = checks.tests_green(ev)
    assert not r.passed and r.code == "tests_failed"


def test_trace_record_deltas_and_export(tmp_path):
    v = verified_run()
    recs = V.read_trace(v.trace)
    rec = next(r for r in recs if r["id"] == v.doc["runId"])
    assert {
        "kind",
        "version",
        "id",
        "seq",
        "ts",
        "traceId",
        "pass",
        "metrics",
        "firstFail",
        "certificate",
        "profile",
        "deltas",
    } <= set(rec)
    assert rec["kind"] == "training-trace" and rec["version"] == 1 and rec["profile"] == "ops_policy"
    assert rec["certificate"]["certificateHash"] == v.doc["certificate"]["certificateHash"]
    assert V.recheck_record(rec) == (True, [])
    # a second run of the same profile (no determinism evidence now): deltas name what moved
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in recs), "utf-8")
    rc, doc = run_verify(verify_args(v.local.bundle, v.local.status, trace, v.junit, "--skip-determinism"), tmp_path)
    assert rc == 2
    d = doc["deltas"]
    assert d is not None and d["since_id"] == rec["id"]
    assert d["constraints"]["protocol_deterministic"] == {"from": True, "to": False}
    assert any(k.startswith("rtf_target.") or k.startswith("latency_target.") for k in d["metrics"])
    # export: all, by profile, newest N
    out = tmp_path / "export.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "voicelane", "verify", "export", "--trace", str(trace), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=base_env(),
    )
    assert proc.returncode == 0, proc.stderr
    exported = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    assert exported == V.read_trace(trace) and json.loads(proc.stdout)["exported"] == len(exported)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicelane",
            "verify",
            "export",
            "--trace",
            str(trace),
            "--out",
            str(out),
            "--profile",
            "ops_policy",
            "--limit",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=base_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["id"] for x in out.read_text("utf-8").splitlines()] == [doc["runId"]]
    assert V.export_trace(trace, tmp_path / "none.json", profile="no_such_profile") == 0
    out_json = tmp_path / "export.json"
    assert V.export_trace(trace, out_json) == len(exported)
    assert json.loads(out_json.read_text("utf-8")) == exported


def test_tampering_fails_with_the_tampered_constraint(tmp_path):
    v = verified_run()
    lr = v.local
    first_hash = v.doc["certificate"]["certificateHash"]
    trace = tmp_path / "trace.jsonl"
    extra = ("--skip-determinism", "--consent-statement", str(consent_of(lr.data)))

    def verify(bundle: Path, status: Path) -> tuple[int, dict]:
        return run_verify(verify_args(bundle, status, trace, junit_evidence(), *extra), tmp_path)

    # 1. a flipped byte in the model: the re-hash catches it
    bundle, status = copy_run(lr, tmp_path / "a")
    model = bundle / "model.safetensors"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    model.write_bytes(bytes(raw))
    rc, doc = verify(bundle, status)
    assert rc == 2 and doc["verdict"] == "FAIL" and doc["firstFail"] == "bundle_valid"
    assert doc["firstFailCode"] == "checksum_mismatch"
    assert doc["certificate"]["certificateHash"] != first_hash and doc["certificate"]["status"] == "rejected"
    assert doc["certificate"]["integrityOk"] is True  # recomputed over the (tampered) files as read

    # 2. the status rewritten to claim another outcome
    bundle, status = copy_run(lr, tmp_path / "b")
    s = json.loads(status.read_text())
    s["state"] = s["status"] = "error"
    status.write_text(json.dumps(s))
    rc, doc = verify(bundle, status)
    assert rc == 2 and doc["firstFail"] == "status_completed"

    # 3. the manifest's eval summary edited to look better than eval.json
    bundle, status = copy_run(lr, tmp_path / "c")
    m = json.loads((bundle / "manifest.json").read_text())
    m["eval"]["wer"] = 0.01
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    rc, doc = verify(bundle, status)
    # the status binds the manifest's sha256, so the edit alone is caught as a bundle change
    assert rc == 2 and doc["firstFail"] == "bundle_valid"
    # a forger who also rewrites the status' manifest hash is caught by eval.json disagreeing
    import hashlib

    s = json.loads(status.read_text())
    s["bundle_manifest_sha256"] = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    status.write_text(json.dumps(s))
    rc, doc = verify(bundle, status)
    assert rc == 2 and doc["firstFail"] == "eval_gates_passed"
    assert doc["certificate"]["certificateHash"] != first_hash
    assert [r["seq"] for r in V.read_trace(trace)] == [1, 2, 3, 4]


def test_missing_evidence_is_a_failure(tmp_path):
    """No determinism run and no service measured: not evaluated counts as FAIL for HARD constraints."""
    ev = V.Evidence(V.VerifyOptions(trace=tmp_path / "t.jsonl", skip_determinism=True, log=lambda m: None))
    results = {r.id: r for r in V.evaluate(ev)}
    for cid in ("protocol_deterministic", "routes_compatible", "tests_green"):
        assert results[cid].evaluated is False and results[cid].passed is False
    assert results["bundle_valid"].code == "manifest_missing"


def test_certificate_hash_binds_artifact_content():
    results = [{"id": "x", "severity": "HARD", "evaluated": True, "pass": True, "measured": {"a": 1}}]
    a = [{"role": "bundle_file", "name": "bundle/model.safetensors", "sha256": "0" * 64, "bytes": 10}]
    b = [{**a[0], "sha256": "1" * 64}]
    assert V.certificate_hash(results, a) != V.certificate_hash(results, b)
    assert V.certificate_hash(results, a) == V.certificate_hash(results, list(reversed(a)))


def test_the_pinned_policy_is_at_least_as_strict_as_the_lane_defaults():
    from voicelane.lane import DEFAULT_GATES

    assert V.policy_looser(DEFAULT_GATES) == {}
    assert V.policy_looser({"wer_max": 0.5, "mcd_db_max": 12.0}) == {"wer_max": {"bundle": 0.5, "policy": 0.35}}
    assert set(V.policy_looser({})) == set(V.POLICY["gates"])


@pytest.mark.slow
def test_verify_pass_with_the_default_suite_junit_and_readiness_go(tmp_path):
    """The whole default suite through the README command, then a PASS and a GO (tens of minutes)."""
    v = verified_run()
    junit = session_dir("full-suite") / "junit.xml"
    subprocess.run(
        ["bash", str(REPO / "scripts" / "test.sh")],
        capture_output=True,
        text=True,
        timeout=4 * 3600,
        cwd=str(REPO),
        env=base_env(VOICELANE_JUNIT=str(junit)),
    )
    trace = tmp_path / "trace.jsonl"
    consent = ("--consent-statement", str(consent_of(v.local.data)))
    rc, doc = run_verify(verify_args(v.local.bundle, v.local.status, trace, junit, *consent), tmp_path)
    failing = {c["id"]: c["reason"] for c in doc["constraints"] if not c["pass"] and c["severity"] == "HARD"}
    assert rc == 0 and doc["verdict"] == "PASS" and not failing, failing
    assert doc["certificate"]["status"] == "issued" and _recompute(doc) == doc["certificate"]["certificateHash"]
    out = tmp_path / "readiness.md"
    proc = run_readiness(tmp_path, out, "--status", str(v.local.status), "--trace", str(trace))
    text = out.read_text("utf-8")
    assert proc.returncode == 0 and "## Decision: GO" in text, proc.stdout + text
    assert "integrity now (recomputed from the bound artifacts): True" in text
