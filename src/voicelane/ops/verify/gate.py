"""One verify run: load the evidence, measure, evaluate the pack, certify, append the trace."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from voicelane.ops.verify import harness
from voicelane.ops.verify.certificate import certificate_hash, integrity_ok
from voicelane.ops.verify.checks import Result, evaluate
from voicelane.ops.verify.evidence import Evidence, load_evidence
from voicelane.ops.verify.options import VerifyOptions
from voicelane.ops.verify.pack import PACK_NAME, POLICY, pack_sha256
from voicelane.ops.verify.trace import TRACE_KIND, TRACE_VERSION, append_trace


def _utc_now() -> str:
    from voicelane.status import now_iso

    return now_iso()


def gather(opts: VerifyOptions) -> Evidence:
    ev = load_evidence(opts)
    if opts.run_tests and opts.junit is None:
        junit = Path(tempfile.mkdtemp(prefix="voicelane-verify-tests-")) / "junit.xml"
        harness.attach_junit(ev, harness.run_readme_tests(ev, junit))
    return harness.measure(ev)


def certify(ev: Evidence, results: list[Result]) -> dict[str, Any]:
    hashed = [r.hashed() for r in results]
    bound = [b.to_dict() for b in ev.bound]
    cert_hash = certificate_hash(hashed, [b.hashed() for b in ev.bound], ev.code)
    ok_now, changed = integrity_ok(hashed, bound, cert_hash, ev.code)
    passed = all(r.passed for r in results if r.severity == "HARD")
    cert = {
        "status": "issued" if passed else "rejected",
        "certificateHash": cert_hash,
        "certificateId": f"vlcert-{cert_hash[:16]}",
        "integrityOk": ok_now,
        "pack": PACK_NAME,
        "packSha256": pack_sha256(),
        "policy": f"{POLICY['id']}/{POLICY['version']}",
        "code": ev.code,
        "bound": bound,
    }
    if changed:
        cert["changedDuringVerify"] = changed
    return cert


def profile_of(ev: Evidence) -> str | None:
    pid = (ev.manifest or {}).get("voice_profile_id")
    return pid if isinstance(pid, str) else None


def verify(opts: VerifyOptions) -> dict[str, Any]:
    """Evaluate the pack, certify, append the trace record; returns the output document."""
    ev = gather(opts)
    results = evaluate(ev)
    certificate = certify(ev, results)
    hard_fail = [r for r in results if r.severity == "HARD" and not r.passed]
    passed = not hard_fail
    run_id = uuid.uuid4().hex
    trace_id = opts.trace_id or os.environ.get("TRACE_ID") or uuid.uuid4().hex
    bundle = str(ev.bundle) if ev.bundle else None
    status = str(opts.status) if opts.status else None
    doc = {
        "traceId": trace_id,
        "runId": run_id,
        "pack": PACK_NAME,
        "verdict": "PASS" if passed else "FAIL",
        "pass": passed,
        "firstFail": hard_fail[0].id if hard_fail else None,
        "firstFailCode": hard_fail[0].code if hard_fail else None,
        "softFailures": [r.id for r in results if r.severity == "SOFT" and not r.passed],
        "profile": profile_of(ev),
        "bundle": bundle,
        "status": status,
        "constraints": [r.to_dict() for r in results],
        "certificate": certificate,
    }
    record = {
        "kind": TRACE_KIND,
        "version": TRACE_VERSION,
        "id": run_id,
        "ts": _utc_now(),
        "traceId": trace_id,
        "profile": doc["profile"],
        "pass": passed,
        "verdict": doc["verdict"],
        "firstFail": doc["firstFail"],
        "metrics": {r.id: r.measured for r in results},
        "constraints": [
            {"id": r.id, "severity": r.severity, "evaluated": r.evaluated, "pass": r.passed} for r in results
        ],
        "certificate": certificate,
        "bundle": bundle,
        "status": status,
    }
    rec = append_trace(opts.trace, record)
    doc["trace"] = {"path": str(opts.trace), "seq": rec["seq"]}
    doc["deltas"] = rec["deltas"]
    return doc
