"""`voicelane readiness`: reports/readiness.md generated from a real run and its verify record."""

from __future__ import annotations

import json

from test_ops_support import copy_run, run_readiness, verified_run


def _readiness(tmp_path, *args):
    out = tmp_path / "reports" / "readiness.md"
    return run_readiness(tmp_path, out, *args), out


def test_readiness_reports_a_real_run(tmp_path):
    """The artifacts, gates and the latest verify of a real run; its verify is a FAIL only because the
    junit was not the default suite's (the GO path is test_ops_verify's slow test)."""
    v = verified_run()
    assert v.doc["firstFailCode"] == "tests_not_default_suite"
    proc, out = _readiness(tmp_path, "--status", str(v.local.status), "--trace", str(v.trace))
    text = out.read_text("utf-8")
    assert proc.returncode == 2, proc.stdout + text
    assert "## Decision: NO-GO" in text and "do not edit by hand" in text
    blocking = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `")}
    assert blocking <= {"verify_failed", "certificate_stale"}, blocking  # certificate_stale: HEAD moved
    assert "| gate thresholds vs the pinned policy | pass |" in text
    # artifact table with real paths, sizes and hashes
    from voicelane.fsutil import sha256_file

    digest, size = sha256_file(v.local.bundle / "model.safetensors")
    row = next(line for line in text.splitlines() if line.startswith("| bundle file model.safetensors |"))
    assert f"| {size} |" in row and digest in row
    for name in ("train status", "dataset manifest", "orchestrator script", "docker lane Dockerfile", "runbook"):
        assert any(line.startswith(f"| {name} |") and "| yes |" in line for line in text.splitlines()), name
    assert "| eval gate wer_max | pass |" in text
    cert = v.doc["certificate"]
    assert cert["certificateId"] in text and cert["certificateHash"] in text
    assert "integrity now (recomputed from the bound artifacts): True" in text
    assert "binds the current bundle manifest: True" in text


def test_readiness_no_go_names_codes_and_unblock_actions(tmp_path):
    v = verified_run()
    bundle, status = copy_run(v.local, tmp_path / "run")
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"] = [f for f in m["files"] if f["path"] != "sample.wav"]
    (bundle / "manifest.json").write_text(json.dumps(m))
    proc, out = _readiness(tmp_path, "--bundle", str(bundle), "--status", str(status), "--trace", str(v.trace))
    text = out.read_text("utf-8")
    assert proc.returncode == 2
    assert "## Decision: NO-GO" in text
    assert "| `required_file_missing` |" in text  # the validator's code, with its unblock action
    assert "| `certificate_stale` |" in text  # the latest verify certified another bundle
    assert "blocking: required_file_missing" in proc.stdout and "unblock:" in proc.stdout
    empty = tmp_path / "none.jsonl"
    proc, out = _readiness(tmp_path, "--bundle", str(bundle), "--status", str(status), "--trace", str(empty))
    assert "| `verify_missing` |" in out.read_text("utf-8")
