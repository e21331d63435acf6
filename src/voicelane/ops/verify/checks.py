"""The constraints as pure functions over an ``Evidence``: each returns one ``Result`` and reads
nothing else (no files, no clock, no shared state), so their order cannot matter."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from voicelane.ops.verify.evidence import Evidence
from voicelane.ops.verify.pack import CONSTRAINT_IDS, PACK, POLICY, SEVERITY, TESTS, policy_looser


@dataclass
class Result:
    id: str
    severity: str
    evaluated: bool = True
    passed: bool = False
    measured: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    code: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # volatile context, not hashed

    def hashed(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "evaluated": self.evaluated,
            "pass": self.passed,
            "measured": self.measured,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.hashed(), "reason": self.reason, "code": self.code, "detail": self.detail}

    def fail(self, code: str, problems: list[str]) -> "Result":
        self.passed = not problems
        self.reason = "; ".join(problems) or None
        self.code = code if problems else None
        return self

    def not_evaluated(self, reason: str, code: str | None = None) -> "Result":
        self.evaluated, self.passed, self.reason, self.code = False, False, reason, code
        self.measured = {"evaluated": False}
        return self


def _new(cid: str) -> Result:
    return Result(cid, SEVERITY[cid])


# --- HARD -------------------------------------------------------------------------------------


def status_completed(ev: Evidence) -> Result:
    r = _new("status_completed")
    doc = ev.status
    if doc is None:
        r.measured = {"present": False}
        r.reason, r.code = f"no readable train_status JSON at {ev.status_path}", "status_not_found"
        return r
    stats = doc.get("stats") or {}
    man = ev.manifest or {}
    prov = man.get("provenance") or {}
    ds_sha = (ev.dataset_manifest or {}).get("dataset_sha256")
    m = {
        "present": True,
        "schema": doc.get("schema"),
        "state": doc.get("state"),
        "status_mirrors_state": doc.get("status") == doc.get("state"),
        "job_type": doc.get("job_type"),
        "lane": doc.get("lane"),
        "finished": doc.get("finished_at") is not None,
        "error_code": (doc.get("error") or {}).get("code"),
        "dataset_sha256_matches_bundle": stats.get("dataset_sha256") == prov.get("dataset_sha256")
        if prov.get("dataset_sha256")
        else None,
        "dataset_manifest_present": ev.dataset_manifest is not None,
        "dataset_manifest_matches_bundle": (ds_sha == prov.get("dataset_sha256"))
        if ev.dataset_manifest is not None and prov.get("dataset_sha256")
        else None,
        "files_validated_matches_bundle": stats.get("files_validated") == len(man.get("files") or []) if man else None,
        "gates_passed_stat": stats.get("gates_passed"),
    }
    r.measured = m
    if ev.bundle is not None and doc.get("bundle"):
        r.detail["status_bundle_path"] = doc["bundle"]
        r.detail["bundle_path_matches"] = os.path.realpath(doc["bundle"]) == os.path.realpath(ev.bundle)
    problems = []
    if m["schema"] != "train_status/1":
        problems.append(f"schema is {m['schema']!r}")
    if m["state"] != "completed" or not m["status_mirrors_state"] or not m["finished"]:
        problems.append(f"state is {m['state']!r}" + (f" ({m['error_code']})" if m["error_code"] else ""))
    if m["job_type"] != "tts_prod_train" or m["lane"] != "production":
        problems.append(f"job_type {m['job_type']!r} / lane {m['lane']!r} is not the production lane")
    for key in ("dataset_sha256_matches_bundle", "dataset_manifest_matches_bundle", "files_validated_matches_bundle"):
        if m.get(key) is False:
            problems.append(key.replace("_", " ") + ": no")
    if not m["dataset_manifest_present"]:
        problems.append("the run's dataset manifest is missing")
    if m["gates_passed_stat"] is False:
        problems.append("the run's STATS say the gates failed")
    return r.fail(m["error_code"] or "status_inconsistent", problems)


def bundle_valid(ev: Evidence) -> Result:
    r = _new("bundle_valid")
    if ev.bundle is None or ev.validation is None:
        r.measured = {"ok": False, "code": "manifest_missing"}
        r.reason, r.code = "no bundle (pass --bundle, or a status naming one)", "manifest_missing"
        return r
    res, man = ev.validation, ev.manifest or {}
    err = res.error or {}
    lane = man.get("lane")
    # a run that recorded its manifest's hash pins the manifest itself (the validator pins the files)
    status = ev.status or {}
    want = status.get("bundle_manifest_sha256") or (status.get("stats") or {}).get("bundle_manifest_sha256")
    got = ev.bound_sha("bundle_manifest")
    r.measured = {
        "ok": res.ok,
        "code": err.get("code"),
        "files_validated": res.files_validated,
        "profile_id": res.profile_id or man.get("voice_profile_id"),
        "lane": lane,
        "bundle_version": man.get("bundle_version"),
        "manifest_sha256": got,
        "manifest_matches_status": (want == got) if want else None,
    }
    if err.get("details"):
        r.detail["validator_details"] = err["details"]
    if not res.ok:
        return r.fail(err.get("code") or "bundle_invalid", [f"{err.get('code')}: {err.get('message')}"])
    if lane != "production":
        return r.fail("bundle_not_production", [f"the bundle's lane is {lane!r}, not production (never promoted)"])
    if want and want != got:
        return r.fail("checksum_mismatch", ["manifest.json differs from the one the run recorded"])
    return r.fail("", [])


def _thresholds(ev: Evidence) -> dict[str, Any]:
    gates = (ev.eval_doc or {}).get("gates") or {}
    t = gates.get("thresholds")
    return t if isinstance(t, dict) else {}


def gate_thresholds_pinned(ev: Evidence) -> Result:
    r = _new("gate_thresholds_pinned")
    if ev.eval_doc is None:
        r.measured = {"present": False}
        r.reason, r.code = "no readable eval.json in the bundle", "required_file_missing"
        return r
    looser = policy_looser(_thresholds(ev))
    r.measured = {
        "policy": f"{POLICY['id']}/{POLICY['version']}",
        "pinned": POLICY["gates"],
        "bundle_thresholds": _thresholds(ev),
        "looser": looser,
    }
    return r.fail(
        "gate_thresholds_loosened",
        [
            f"the bundle was evaluated with gates looser than the pinned policy: {k} "
            f"{v['bundle']} (policy {v['policy']})"
            for k, v in sorted(looser.items())
        ],
    )


def eval_gates_passed(ev: Evidence) -> Result:
    from voicelane.evaluate import check_gates

    r = _new("eval_gates_passed")
    doc, man = ev.eval_doc, ev.manifest or {}
    if doc is None:
        r.measured = {"present": False}
        r.reason, r.code = "no readable eval.json in the bundle", "required_file_missing"
        return r
    pinned = POLICY["gates"]
    recomputed = check_gates(doc, pinned)
    man_eval = man.get("eval") or {}
    summary_keys = sorted(k for k in man_eval if k != "gates_passed" and k in doc)
    consistent = all(man_eval[k] == doc[k] for k in summary_keys)
    gates = doc.get("gates") or {}
    r.measured = {
        "present": True,
        "thresholds": pinned,
        "policy": f"{POLICY['id']}/{POLICY['version']}",
        "values": {k: doc.get(k) for k in sorted({k.rpartition("_")[0] for k in pinned})},
        "recomputed_failed": [g.get("gate") for g in recomputed],
        "recorded_passed": gates.get("passed"),
        "manifest_gates_passed": man_eval.get("gates_passed"),
        "promotable": man.get("promotable"),
        "manifest_summary_consistent": consistent,
    }
    problems = []
    if recomputed:
        problems.append(
            "metrics fail the pinned policy: "
            + ", ".join(f"{g.get('gate')} {g.get('value')} (limit {g.get('limit')})" for g in recomputed)
        )
    if gates.get("passed") is not True:
        problems.append("eval.json gates.passed is not true")
    if man_eval.get("gates_passed") is not True:
        problems.append("manifest eval.gates_passed is not true")
    if man.get("promotable") is not True:
        problems.append("manifest promotable is not true")
    if not consistent:
        problems.append("manifest eval summary differs from eval.json")
    return r.fail("eval_gate_failed", problems)


def licence_gate_passed(ev: Evidence) -> Result:
    r = _new("licence_gate_passed")
    man = ev.manifest
    if not man or "provenance" not in man:
        r.measured = {"provenance": False}
        r.reason, r.code = "the manifest records no provenance", "manifest_invalid"
        return r
    prov = man.get("provenance") or {}
    base, override = prov.get("base_weights"), bool(prov.get("license_override"))
    if base is None:
        r.measured = {"base_weights": None, "override": override}
        return r.fail("license_unknown", ["licence override recorded without base weights"] if override else [])
    gate = base.get("gate") or {}
    r.measured = {
        "base_weights": base.get("id"),
        "gate": gate,
        "override": override or bool(base.get("override")),
        "regate": ev.licence_regate,
        "code_license": base.get("code_license"),
        "weights_license": base.get("weights_license"),
    }
    problems = []
    if ev.licence_regate != "ok":
        problems.append(f"the licence gate refuses {base.get('id')!r} now: {ev.licence_regate}")
    if any(v != "ok" for v in gate.values()) or not gate:
        problems.append(f"the recorded gate is {gate}")
    if r.measured["override"]:
        problems.append("the licence gate was overridden (--accept-license-risk)")
    code = ev.licence_regate if ev.licence_regate not in (None, "ok") else "license_unknown"
    return r.fail(code, problems)


def consent_present(ev: Evidence) -> Result:
    r = _new("consent_present")
    consent = (ev.manifest or {}).get("consent")
    sha = consent.get("statement_sha256") if isinstance(consent, dict) else None
    present = bool(sha and re.fullmatch(r"[0-9a-f]{64}", str(sha)))
    matches = None if ev.opts.consent_statement is None else ev.consent_file_sha256 == sha
    r.measured = {
        "present": present,
        "statement_sha256": sha,
        "matches_statement_file": matches,
        "speaker_name": consent.get("speaker_name") if isinstance(consent, dict) else None,
    }
    if not present:
        return r.fail("consent_missing", ["the bundle records no consent statement"])
    if matches is False:
        return r.fail("consent_missing", ["the consent statement file does not match the recorded hash"])
    return r.fail("", [])


def protocol_deterministic(ev: Evidence) -> Result:
    r = _new("protocol_deterministic")
    d = ev.determinism
    if d is None or not d.get("evaluated"):
        return r.not_evaluated((d or {}).get("reason") or "not evaluated")
    r.measured = {
        k: d[k]
        for k in ("evaluated", "runs", "stdout_sha256", "exit_codes", "bytes", "lines", "identical", "steps", "preset")
    }
    r.detail.update(d.get("detail") or {})
    if d["exit_codes"] != [0, 0]:
        return r.fail("protocol_nondeterministic", [f"the runs exited {d['exit_codes']}"])
    ok = d["identical"] and d["bytes"][0] > 0
    return r.fail("protocol_nondeterministic", [] if ok else ["the two runs' stdout differ"])


def routes_compatible(ev: Evidence) -> Result:
    r = _new("routes_compatible")
    rt = ev.routes
    if rt is None or not rt.get("evaluated"):
        return r.not_evaluated((rt or {}).get("reason") or "not evaluated")
    checks = rt["checks"]
    r.measured = {
        "evaluated": True,
        "shapes": rt.get("shapes"),
        "checks": [{k: c[k] for k in ("method", "path", "status", "error", "ok")} for c in checks],
    }
    r.detail.update({"url": rt.get("url"), "service": rt.get("service")})
    bad = [c for c in checks if not c["ok"]]
    problems = (
        ["; ".join(f"{c['method']} {c['path']} -> {c['status']} {c['error'] or ''}".strip() for c in bad)]
        if bad
        else ([] if checks else ["no request shape was replayed"])
    )
    return r.fail("routes_incompatible", problems)


def tests_green(ev: Evidence) -> Result:
    r = _new("tests_green")
    j = ev.junit
    if j is None:
        return r.not_evaluated(
            f"no test evidence (--junit FILE written by `{TESTS['command']}` with "
            f"{TESTS['junit_env']}=FILE, or --run-tests)",
            "tests_missing",
        )
    expected = (ev.tests_expected or {}).get("tests")
    r.measured = {
        "source": "junit",
        "command": TESTS["command"],
        "readable": j.get("readable", False),
        "tests": j.get("tests", 0),
        "failures": j.get("failures", 0),
        "errors": j.get("errors", 0),
        "skipped": j.get("skipped", 0),
        "suites": j.get("suites"),
        "expected_tests": expected,
    }
    if not j.get("readable"):
        return r.fail("tests_failed", [f"the junit is not readable: {j.get('error', '')}".strip()])
    problems = []
    if j.get("suites") != [TESTS["suite_name"]]:
        return r.fail(
            "tests_not_default_suite",
            [
                f"the junit's suite is {j.get('suites')}, not {TESTS['suite_name']!r}: it was not written by "
                f"`{TESTS['command']}` over the default suite"
            ],
        )
    if ev.tests_expected is not None and expected is None:
        return r.fail(
            "tests_failed",
            ["the default suite does not collect in this checkout: " + str(ev.tests_expected.get("error", ""))[-200:]],
        )
    if expected is not None and j.get("tests") != expected:
        return r.fail(
            "tests_not_default_suite",
            [f"the junit has {j.get('tests')} tests, the default suite of this checkout collects {expected}"],
        )
    if not j.get("tests"):
        problems.append("the junit records no tests")
    if j.get("failures") or j.get("errors"):
        problems.append(f"{j.get('failures')} failures and {j.get('errors')} errors")
    return r.fail("tests_failed", problems)


# --- SOFT -------------------------------------------------------------------------------------


def _targets(ev: Evidence) -> dict[str, float]:
    t = dict(PACK["targets"])
    if ev.opts.rtf_max is not None:
        t["rtf_max"] = float(ev.opts.rtf_max)
    if ev.opts.latency_ms_max is not None:
        t["latency_ms_max"] = float(ev.opts.latency_ms_max)
    return t


def _speed_target(ev: Evidence, cid: str, key: str, label: str, unit: str, context: dict[str, Any]) -> Result:
    """A SOFT speed constraint: the speech measurement's ``key`` is at most the target ``<key>_max``."""
    r = _new(cid)
    m = ev.speech
    if not m or m.get("error"):
        return r.not_evaluated(f"not measured: {(m or {}).get('error') or 'the bundle is not valid'}")
    limit = _targets(ev)[f"{key}_max"]
    value = m[key]
    r.measured = {key: value, f"{key}_max": limit, **context, "engine": m["engine"]}
    ok = value is not None and value <= limit
    return r.fail(cid, [] if ok else [f"{label} {value}{unit} > {limit}{unit}"])


def rtf_target(ev: Evidence) -> Result:
    audio_s = (ev.speech or {}).get("audio_s")
    return _speed_target(ev, "rtf_target", "rtf", "rtf", "", {"audio_s": audio_s})


def latency_target(ev: Evidence) -> Result:
    from voicelane.ops.verify.pack import CALLOUT_TEXT

    return _speed_target(ev, "latency_target", "latency_ms", "latency", " ms", {"text_chars": len(CALLOUT_TEXT)})


CHECKS: dict[str, Callable[[Evidence], Result]] = {
    "status_completed": status_completed,
    "bundle_valid": bundle_valid,
    "gate_thresholds_pinned": gate_thresholds_pinned,
    "eval_gates_passed": eval_gates_passed,
    "licence_gate_passed": licence_gate_passed,
    "consent_present": consent_present,
    "protocol_deterministic": protocol_deterministic,
    "routes_compatible": routes_compatible,
    "tests_green": tests_green,
    "rtf_target": rtf_target,
    "latency_target": latency_target,
}
assert list(CHECKS) == CONSTRAINT_IDS, "every pack constraint has exactly one check, in pack order"


def evaluate(ev: Evidence, only: list[str] | None = None) -> list[Result]:
    """Every constraint (or ``only`` those) in pack order; a check that raises fails with the reason."""
    out = []
    for cid in only or CONSTRAINT_IDS:
        try:
            r = CHECKS[cid](ev)
        except Exception as exc:  # noqa: BLE001 - a broken check is a failed check, with the reason
            r = _new(cid)
            r.passed, r.code, r.reason = False, "check_error", f"{type(exc).__name__}: {exc}"
        if not r.evaluated:
            r.passed = False
        out.append(r)
    return out
