"""The verification gate (SPEC §11): ``voicelane verify``.

A versioned pack (``voicelane-lane/1``) of HARD and SOFT constraints, each evaluated over facts
measured now (never copied from a report):

HARD, in order (the first failing one is ``firstFail``):
  status_completed        train_status/1 present, ``completed``, production lane, consistent with the bundle
  bundle_valid            ``validate_voice_bundle`` ok (every file re-hashed), a production bundle
  eval_gates_passed       eval.json's metrics re-checked against its thresholds; manifest agrees
  licence_gate_passed     no base weights, or the base passes the licence gate again without override
  consent_present         consent record in the manifest (and = the statement file when given)
  protocol_deterministic  the quick (tiny) lane run twice here: stdout byte for byte identical
  routes_compatible       the train/voice routes replayed against a running service (``--url``, or
                          a service started here on loopback)
  tests_green             a junit XML without failures/errors, or the test command's exit 0
SOFT (reported, never blocking):
  rtf_target              real-time factor of synthesis with the bundle <= rtf_max
  latency_target          warm time to audio for a short callout <= latency_ms_max
  gate_thresholds_default the bundle's gate thresholds are at least as strict as the lane's defaults

Output: ``{traceId, runId, verdict, pass, firstFail, constraints[], certificate{status,
certificateHash, certificateId, integrityOk}}``; exit 0 PASS, 2 FAIL, 1 error.
``certificateHash`` = sha256 of the canonical JSON of {pack id/version/sha256, every constraint's
result and measured values, every bound artifact's role/name/sha256/bytes}; ``integrityOk`` is
recomputed by re-reading every bound artifact. A constraint that was not evaluated (missing
evidence, ``--skip-determinism``) fails. Every run appends one ``training-trace`` record to
``--trace`` (default ``reports/training-trace.jsonl``); ``voicelane verify export`` writes them out.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_bytes, canonical_json, sha256_file, sha256_text
from voicelane.ops import codes  # noqa: F401
from voicelane.ops.common import REPO_ROOT, read_json

PACK: dict[str, Any] = {
    "id": "voicelane-lane",
    "version": 1,
    "name": "voicelane-lane/1",
    "constraints": [
        {"id": "status_completed", "severity": "HARD",
         "rule": "train_status/1 exists, state=completed, job_type=tts_prod_train, stats agree with the bundle"},
        {"id": "bundle_valid", "severity": "HARD",
         "rule": "validate_voice_bundle ok (re-hashed), manifest lane=production"},
        {"id": "eval_gates_passed", "severity": "HARD",
         "rule": "eval.json metrics within its thresholds (re-checked), gates.passed, manifest eval agrees, promotable"},
        {"id": "licence_gate_passed", "severity": "HARD",
         "rule": "base_weights null, or the licence gate passes again without override"},
        {"id": "consent_present", "severity": "HARD",
         "rule": "manifest consent.statement_sha256 present (and equal to the statement file when given)"},
        {"id": "protocol_deterministic", "severity": "HARD",
         "rule": "two runs of the tiny preset lane produce byte-identical stdout"},
        {"id": "routes_compatible", "severity": "HARD",
         "rule": "train/voice routes answer with the documented status codes and error envelopes"},
        {"id": "tests_green", "severity": "HARD",
         "rule": "junit XML with tests>0 and no failures/errors, or the test command exits 0"},
        {"id": "rtf_target", "severity": "SOFT", "rule": "synthesis real-time factor <= rtf_max"},
        {"id": "latency_target", "severity": "SOFT", "rule": "warm callout latency <= latency_ms_max"},
        {"id": "gate_thresholds_default", "severity": "SOFT",
         "rule": "the bundle's gate thresholds are at least as strict as the production defaults"},
    ],
    "targets": {"rtf_max": 1.0, "latency_ms_max": 2000.0},
}
PACK_NAME = PACK["name"]
TRACE_KIND, TRACE_VERSION = "training-trace", 1
DEFAULT_TRACE = Path("reports") / "training-trace.jsonl"
CALLOUT_TEXT = "Unit four, proceed to gate twelve."
RTF_TEXT = ("The evening shift starts at seven. Check the north gate, confirm the radio channel, "
            "and report back when the inspection is complete.")
# the replayed route contract: (method, path, body, accepted {status: error code or None})
ROUTE_REPLAY: list[tuple[str, str, dict | None, dict[int, str | None]]] = [
    ("GET", "/api/train/status", None, {200: None, 404: "status_not_found"}),
    ("GET", "/api/train/job/voicelane-verify-no-such-job", None, {404: "job_not_found"}),
    ("POST", "/api/train/start", {"jobType": "voicelane_verify_no_such_type"}, {400: "invalid_job_type"}),
    ("GET", "/api/voice/profiles", None, {200: None}),
]


def pack_sha256() -> str:
    return sha256_text(canonical_json(PACK))


@dataclass
class VerifyOptions:
    bundle: Path | None = None
    status: Path | None = None
    url: str | None = None
    token: str | None = None
    trace: Path = DEFAULT_TRACE
    junit: Path | None = None
    tests_cmd: str | None = None
    skip_determinism: bool = False
    determinism_data: Path | None = None
    determinism_steps: int = 2
    consent_statement: Path | None = None
    trace_id: str | None = None
    rtf_max: float | None = None
    latency_ms_max: float | None = None
    python: str = sys.executable
    log: Callable[[str], None] = field(default=lambda msg: print(f"[verify] {msg}", file=sys.stderr, flush=True))


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
        return {"id": self.id, "severity": self.severity, "evaluated": self.evaluated, "pass": self.passed,
                "measured": self.measured}

    def to_dict(self) -> dict[str, Any]:
        return {**self.hashed(), "reason": self.reason, "code": self.code, "detail": self.detail}


@dataclass
class Bound:
    role: str
    name: str
    path: Path
    sha256: str | None = None
    bytes: int | None = None

    def read(self) -> "Bound":
        try:
            digest, size = sha256_file(self.path)
        except OSError:
            digest, size = None, None
        return Bound(self.role, self.name, self.path, digest, size)

    def hashed(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name, "sha256": self.sha256, "bytes": self.bytes}

    def to_dict(self) -> dict[str, Any]:
        return {**self.hashed(), "path": str(self.path)}


def certificate_hash(results: list[dict[str, Any]], bound: list[dict[str, Any]]) -> str:
    doc = {"pack": {"id": PACK["id"], "version": PACK["version"], "sha256": pack_sha256()},
           "results": results, "artifacts": sorted(bound, key=lambda b: (b["role"], b["name"]))}
    return sha256_text(canonical_json(doc))


def integrity_ok(results: list[dict[str, Any]], bound: list[dict[str, Any]],
                 expected_hash: str) -> tuple[bool, list[str]]:
    """Re-read every bound artifact and recompute the certificate hash; (ok, names that changed)."""
    fresh, changed = [], []
    for b in bound:
        now = Bound(b["role"], b["name"], Path(b["path"])).read()
        if now.sha256 != b["sha256"] or now.bytes != b["bytes"]:
            changed.append(b["name"])
        fresh.append(now.hashed())
    return certificate_hash(results, fresh) == expected_hash, changed


# --------------------------------------------------------------------------------------------
# the checks


class Verifier:
    def __init__(self, opts: VerifyOptions):
        self.o = opts
        self.bound: list[Bound] = []
        self.status_doc: dict[str, Any] | None = None
        self.manifest: dict[str, Any] | None = None
        self.eval_doc: dict[str, Any] | None = None
        self.bundle_ok = False
        self.targets = dict(PACK["targets"])
        if opts.rtf_max is not None:
            self.targets["rtf_max"] = float(opts.rtf_max)
        if opts.latency_ms_max is not None:
            self.targets["latency_ms_max"] = float(opts.latency_ms_max)

    def bind(self, role: str, name: str, path: Path) -> Bound:
        b = Bound(role, name, Path(path).absolute()).read()
        if b.sha256 is not None:
            self.bound.append(b)
        return b

    # --- HARD -------------------------------------------------------------------------------
    def check_status(self, r: Result) -> None:
        path = self.o.status
        doc = read_json(path) if path else None
        self.status_doc = doc
        if doc is None:
            r.reason, r.code = f"no readable train_status JSON at {path}", "status_not_found"
            r.measured = {"present": False}
            return
        self.bind("train_status", "train_status.json", Path(path))
        stats = doc.get("stats") or {}
        man = self.manifest or {}
        prov = man.get("provenance") or {}
        m = {
            "present": True, "schema": doc.get("schema"), "state": doc.get("state"),
            "status_mirrors_state": doc.get("status") == doc.get("state"), "job_type": doc.get("job_type"),
            "lane": doc.get("lane"), "finished": doc.get("finished_at") is not None,
            "error_code": (doc.get("error") or {}).get("code"),
            "dataset_sha256_matches_bundle": stats.get("dataset_sha256") == prov.get("dataset_sha256")
            if prov.get("dataset_sha256") else None,
            "files_validated_matches_bundle": stats.get("files_validated") == len(man.get("files") or [])
            if man else None,
            "gates_passed_stat": stats.get("gates_passed"),
        }
        r.measured = m
        if self.o.bundle and doc.get("bundle"):
            r.detail["status_bundle_path"] = doc["bundle"]
            r.detail["bundle_path_matches"] = os.path.realpath(doc["bundle"]) == os.path.realpath(self.o.bundle)
        problems = []
        if m["schema"] != "train_status/1":
            problems.append(f"schema is {m['schema']!r}")
        if m["state"] != "completed" or not m["status_mirrors_state"] or not m["finished"]:
            problems.append(f"state is {m['state']!r}" + (f" ({m['error_code']})" if m["error_code"] else ""))
        if m["job_type"] != "tts_prod_train" or m["lane"] != "production":
            problems.append(f"job_type {m['job_type']!r} / lane {m['lane']!r} is not the production lane")
        for key in ("dataset_sha256_matches_bundle", "files_validated_matches_bundle"):
            if m.get(key) is False:
                problems.append(key.replace("_", " ") + ": no")
        if m["gates_passed_stat"] is False:
            problems.append("the run's STATS say the gates failed")
        r.passed = not problems
        r.reason = "; ".join(problems) or None
        if problems:
            r.code = m["error_code"] or "status_inconsistent"

    def check_bundle(self, r: Result) -> None:
        from voicelane.bundle import MANIFEST_NAME, validate_voice_bundle

        bdir = self.o.bundle
        if bdir is None:
            r.reason, r.code = "no bundle (pass --bundle, or a status naming one)", "manifest_missing"
            r.measured = {"ok": False, "code": "manifest_missing"}
            return
        res = validate_voice_bundle(bdir)
        man = res.manifest if res.ok else read_json(Path(bdir) / MANIFEST_NAME)
        self.manifest = man
        self.bind("bundle_manifest", "bundle/manifest.json", Path(bdir) / MANIFEST_NAME)
        for f in (man or {}).get("files") or []:
            p = f.get("path") if isinstance(f, dict) else None
            if isinstance(p, str) and not p.startswith("/") and ".." not in p.split("/"):
                self.bind("bundle_file", f"bundle/{p}", Path(bdir) / p)
        err = res.error or {}
        lane = (man or {}).get("lane")
        # a run that recorded its manifest's hash pins the manifest itself (the validator pins the files)
        status = read_json(self.o.status) if self.o.status else None
        want = (status or {}).get("bundle_manifest_sha256") or ((status or {}).get("stats") or {}).get(
            "bundle_manifest_sha256")
        got = next((b.sha256 for b in self.bound if b.role == "bundle_manifest"), None)
        r.measured = {"ok": res.ok, "code": err.get("code"), "files_validated": res.files_validated,
                      "profile_id": res.profile_id or (man or {}).get("voice_profile_id"), "lane": lane,
                      "bundle_version": (man or {}).get("bundle_version"), "manifest_sha256": got,
                      "manifest_matches_status": (want == got) if want else None}
        if err.get("details"):
            r.detail["validator_details"] = err["details"]
        self.bundle_ok = res.ok
        if not res.ok:
            r.reason, r.code = f"{err.get('code')}: {err.get('message')}", err.get("code")
        elif lane != "production":
            r.reason = f"the bundle's lane is {lane!r}, not production (never promoted)"
            r.code = "bundle_not_production"
        elif want and want != got:
            r.reason, r.code = "manifest.json differs from the one the run recorded", "checksum_mismatch"
        r.passed = res.ok and lane == "production" and (not want or want == got)

    def check_eval(self, r: Result) -> None:
        from voicelane.evaluate import check_gates

        man = self.manifest or {}
        doc = read_json(Path(self.o.bundle) / "eval.json") if self.o.bundle else None
        self.eval_doc = doc
        if doc is None:
            r.reason, r.code = "no readable eval.json in the bundle", "required_file_missing"
            r.measured = {"present": False}
            return
        gates = doc.get("gates") or {}
        thresholds = gates.get("thresholds") or {}
        recomputed = check_gates(doc, thresholds) if isinstance(thresholds, dict) else [{"gate": "thresholds"}]
        metrics = sorted({k.rpartition("_")[0] for k in thresholds})
        man_eval = man.get("eval") or {}
        summary_keys = sorted(k for k in man_eval if k != "gates_passed" and k in doc)
        consistent = all(man_eval[k] == doc[k] for k in summary_keys)
        r.measured = {
            "present": True, "thresholds": thresholds, "values": {k: doc.get(k) for k in metrics},
            "recomputed_failed": [g.get("gate") for g in recomputed], "recorded_passed": gates.get("passed"),
            "manifest_gates_passed": man_eval.get("gates_passed"), "promotable": man.get("promotable"),
            "manifest_summary_consistent": consistent,
        }
        problems = []
        if not thresholds:
            problems.append("eval.json records no gate thresholds")
        if recomputed:
            problems.append("gates fail on re-check: " + ", ".join(str(g.get("gate")) for g in recomputed))
        if gates.get("passed") is not True:
            problems.append("eval.json gates.passed is not true")
        if man_eval.get("gates_passed") is not True:
            problems.append("manifest eval.gates_passed is not true")
        if man.get("promotable") is not True:
            problems.append("manifest promotable is not true")
        if not consistent:
            problems.append("manifest eval summary differs from eval.json")
        r.passed = not problems
        r.reason = "; ".join(problems) or None
        r.code = "eval_gate_failed" if problems else None

    def check_licence(self, r: Result) -> None:
        man = self.manifest
        if not man or "provenance" not in man:
            r.reason, r.code = "the manifest records no provenance", "manifest_invalid"
            r.measured = {"provenance": False}
            return
        base = (man.get("provenance") or {}).get("base_weights")
        override = bool((man.get("provenance") or {}).get("license_override"))
        if base is None:
            r.measured = {"base_weights": None, "override": override}
            r.passed = not override
            r.reason = "licence override recorded without base weights" if override else None
            return
        from voicelane import weights

        regate, code = "ok", None
        try:
            weights.licence_gate(str(base.get("id")), accept_license_risk=False)
        except VoicelaneError as err:
            regate, code = err.code, err.code
        gate = base.get("gate") or {}
        r.measured = {"base_weights": base.get("id"), "gate": gate, "override": override or bool(base.get("override")),
                      "regate": regate, "code_license": base.get("code_license"),
                      "weights_license": base.get("weights_license")}
        problems = []
        if regate != "ok":
            problems.append(f"the licence gate refuses {base.get('id')!r} now: {regate}")
        if any(v != "ok" for v in gate.values()) or not gate:
            problems.append(f"the recorded gate is {gate}")
        if r.measured["override"]:
            problems.append("the licence gate was overridden (--accept-license-risk)")
        r.passed = not problems
        r.reason = "; ".join(problems) or None
        r.code = code or ("license_unknown" if problems else None)

    def check_consent(self, r: Result) -> None:
        import re

        consent = (self.manifest or {}).get("consent")
        sha = consent.get("statement_sha256") if isinstance(consent, dict) else None
        r.measured = {"present": bool(sha and re.fullmatch(r"[0-9a-f]{64}", str(sha))), "statement_sha256": sha,
                      "speaker_name": consent.get("speaker_name") if isinstance(consent, dict) else None,
                      "matches_statement_file": None}
        if self.o.consent_statement is not None:
            b = self.bind("consent_statement", "consent_statement", self.o.consent_statement)
            r.measured["matches_statement_file"] = b.sha256 == sha
        r.passed = r.measured["present"] and r.measured["matches_statement_file"] is not False
        if not r.passed:
            r.code = "consent_missing"
            r.reason = ("the consent statement file does not match the recorded hash" if r.measured["present"]
                        else "the bundle records no consent statement")

    def check_determinism(self, r: Result) -> None:
        if self.o.skip_determinism:
            r.evaluated, r.reason = False, "not evaluated (--skip-determinism)"
            r.measured = {"evaluated": False}
            return
        data = self.o.determinism_data
        with tempfile.TemporaryDirectory(prefix="voicelane-verify-det-") as tmp:
            tmpd = Path(tmp)
            if data is None:
                data = cut_quick_corpus(tmpd / "data")
                if data is None:
                    r.evaluated, r.reason = False, "no dataset for the determinism runs (--determinism-data)"
                    r.measured = {"evaluated": False}
                    return
            consent = tmpd / "consent.txt"
            consent.write_text("speaker_name: verify\nasserted_by: voicelane verify\nI consent.\n", "utf-8")
            digests, codes_, sizes, lines = [], [], [], []
            for i in (1, 2):
                argv = [self.o.python, "-m", "voicelane", "train", "--lane", "tts_prod_train", "--data", str(data),
                        "--profile", "verify_det", "--preset", "tiny", "--out", str(tmpd / f"run{i}"),
                        "--steps", str(self.o.determinism_steps), "--min-minutes", "0", "--eval-max", "1",
                        "--no-onnx", "--consent-statement", str(consent),
                        "--gates", '{"wer_max": 100.0, "mcd_db_max": 1000.0}', "--protocol"]
                env = dict(os.environ, TRAIN_STATUS_PATH=str(tmpd / f"status{i}.json"), PYTHONUNBUFFERED="1",
                           SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
                self.o.log(f"determinism run {i}/2 (tiny preset, {self.o.determinism_steps} steps)")
                proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=1800,
                                      check=False)
                digests.append(sha256_text(proc.stdout.decode("utf-8", "replace")) if proc.stdout else None)
                codes_.append(proc.returncode)
                sizes.append(len(proc.stdout))
                lines.append(proc.stdout.count(b"\n"))
                if proc.returncode != 0:
                    r.detail[f"run{i}_stderr_tail"] = proc.stderr.decode("utf-8", "replace").splitlines()[-15:]
            identical = digests[0] == digests[1] and digests[0] is not None
        r.measured = {"evaluated": True, "runs": 2, "stdout_sha256": digests, "exit_codes": codes_,
                      "bytes": sizes, "lines": lines, "identical": identical, "steps": self.o.determinism_steps,
                      "preset": "tiny"}
        r.passed = identical and codes_ == [0, 0] and sizes[0] > 0
        if not r.passed:
            r.code = "protocol_nondeterministic"
            r.reason = ("the two runs' stdout differ" if codes_ == [0, 0] else f"the runs exited {codes_}")

    def check_routes(self, r: Result) -> None:
        url, server = self.o.url, None
        try:
            if url is None:
                server = LocalService.start(self.o.python, self.o.log)
                if server.error:
                    r.evaluated, r.reason = False, f"no running service: {server.error} (pass --url)"
                    r.measured = {"evaluated": False}
                    return
                url = server.url
            r.detail["url"] = url
            r.detail["service"] = "started here" if server else "given"
            checks = replay_routes(url, self.o.token)
        finally:
            if server is not None:
                server.stop()
        r.measured = {"evaluated": True, "checks": [{k: c[k] for k in ("method", "path", "status", "error", "ok")}
                                                    for c in checks]}
        bad = [c for c in checks if not c["ok"]]
        r.passed = bool(checks) and not bad
        if bad:
            r.code = "routes_incompatible"
            r.reason = "; ".join(f"{c['method']} {c['path']} -> {c['status']} {c['error'] or ''}".strip() for c in bad)

    def check_tests(self, r: Result) -> None:
        if self.o.junit is not None:
            b = self.bind("junit", f"junit/{self.o.junit.name}", self.o.junit)
            r.measured = {"source": "junit", **parse_junit(self.o.junit)}
            if b.sha256 is None:
                r.measured["readable"] = False
            m = r.measured
            r.passed = bool(m.get("readable", True)) and m.get("tests", 0) > 0 and not m.get("failures") \
                and not m.get("errors")
        elif self.o.tests_cmd:
            argv = shlex.split(self.o.tests_cmd)
            self.o.log(f"running the tests: {self.o.tests_cmd}")
            try:
                proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3600,
                                      check=False)
                rc, out = proc.returncode, proc.stdout.decode("utf-8", "replace")
            except (OSError, subprocess.SubprocessError) as exc:
                rc, out = 127, str(exc)
            r.measured = {"source": "command", "command": self.o.tests_cmd, "exit_code": rc}
            r.detail["output_tail"] = out.splitlines()[-10:]
            r.passed = rc == 0
        else:
            r.evaluated, r.reason, r.code = False, "no test evidence (--junit FILE or --tests-cmd CMD)", "tests_missing"
            r.measured = {"evaluated": False}
            return
        if not r.passed:
            r.code = r.code or "tests_failed"
            r.reason = r.reason or f"tests are not green: {r.measured}"

    # --- SOFT -------------------------------------------------------------------------------
    def measure_speech(self) -> dict[str, Any] | None:
        if not self.bundle_ok or self.o.bundle is None:
            return None
        from voicelane.speak import load_bundle_voice

        voice, _ = load_bundle_voice(self.o.bundle, "auto", threads=1)
        voice.synthesize(CALLOUT_TEXT)  # warm-up
        t0 = time.perf_counter()
        syn = voice.synthesize(CALLOUT_TEXT)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        long = voice.synthesize(RTF_TEXT)
        wall = time.perf_counter() - t0
        seconds = float(getattr(long, "seconds", 0.0) or 0.0)
        return {"latency_ms": round(latency_ms, 1), "rtf": round(wall / seconds, 4) if seconds > 0 else None,
                "audio_s": round(seconds, 3), "callout_audio_s": round(float(getattr(syn, "seconds", 0.0)), 3),
                "engine": type(voice).__name__}

    def check_speed(self, rtf: Result, lat: Result) -> None:
        try:
            m = self.measure_speech()
        except Exception as exc:  # noqa: BLE001 - SOFT: report, never crash the gate
            m, err = None, f"{type(exc).__name__}: {exc}"
        else:
            err = "the bundle is not valid" if m is None else None
        if m is None:
            for r in (rtf, lat):
                r.evaluated, r.reason = False, f"not measured: {err}"
                r.measured = {"evaluated": False}
            return
        rtf.measured = {"rtf": m["rtf"], "rtf_max": self.targets["rtf_max"], "audio_s": m["audio_s"],
                        "engine": m["engine"]}
        rtf.passed = m["rtf"] is not None and m["rtf"] <= self.targets["rtf_max"]
        lat.measured = {"latency_ms": m["latency_ms"], "latency_ms_max": self.targets["latency_ms_max"],
                        "text_chars": len(CALLOUT_TEXT), "engine": m["engine"]}
        lat.passed = m["latency_ms"] <= self.targets["latency_ms_max"]
        rtf.reason = None if rtf.passed else f"rtf {m['rtf']} > {self.targets['rtf_max']}"
        lat.reason = None if lat.passed else f"latency {m['latency_ms']} ms > {self.targets['latency_ms_max']} ms"

    def check_thresholds(self, r: Result) -> None:
        from voicelane.lane import DEFAULT_GATES

        thresholds = ((self.eval_doc or {}).get("gates") or {}).get("thresholds") or {}
        looser = {}
        for key, default in DEFAULT_GATES.items():
            v = thresholds.get(key)
            if v is None or (key.endswith("_max") and v > default) or (key.endswith("_min") and v < default):
                looser[key] = {"bundle": v, "default": default}
        r.measured = {"defaults": DEFAULT_GATES, "thresholds": thresholds, "looser": looser}
        r.passed = not looser
        r.reason = None if r.passed else "gates were relaxed below the production defaults: " + ", ".join(looser)

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> tuple[list[Result], list[Bound]]:
        results = {c["id"]: Result(c["id"], c["severity"]) for c in PACK["constraints"]}
        # the bundle is read first (the status check compares against it); results stay in pack order
        steps: list[tuple[str, Callable[..., None]]] = [
            ("bundle_valid", self.check_bundle), ("status_completed", self.check_status),
            ("eval_gates_passed", self.check_eval), ("licence_gate_passed", self.check_licence),
            ("consent_present", self.check_consent), ("protocol_deterministic", self.check_determinism),
            ("routes_compatible", self.check_routes), ("tests_green", self.check_tests),
        ]
        for cid, fn in steps:
            self.o.log(f"checking {cid}")
            try:
                fn(results[cid])
            except VoicelaneError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken check is a failed check, with the reason
                r = results[cid]
                r.passed, r.code, r.reason = False, "check_error", f"{type(exc).__name__}: {exc}"
        self.o.log("measuring rtf and latency")
        self.check_speed(results["rtf_target"], results["latency_target"])
        self.check_thresholds(results["gate_thresholds_default"])
        for r in results.values():
            if not r.evaluated:
                r.passed = False
        return [results[c["id"]] for c in PACK["constraints"]], self.bound


# --------------------------------------------------------------------------------------------
# helpers


def cut_quick_corpus(dest: Path, n: int = 6) -> Path | None:
    """The first n clips of an embedded corpus (kal, else slt) as a tiny LJSpeech folder."""
    for name in ("kal", "slt"):
        src = REPO_ROOT / "corpora" / name
        meta = src / "metadata.csv"
        if not meta.is_file():
            continue
        rows = [r for r in meta.read_text("utf-8").splitlines() if r.strip()][:n]
        (dest / "wavs").mkdir(parents=True, exist_ok=True)
        for row in rows:
            cid = row.split("|", 1)[0]
            found = next((p for p in (src / "wavs").glob(f"{cid}.*")), None)
            if found is None:
                break
            shutil.copyfile(found, dest / "wavs" / found.name)
        else:
            (dest / "metadata.csv").write_text("\n".join(rows) + "\n", "utf-8")
            return dest
    return None


def parse_junit(path: Path) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        return {"readable": False, "error": str(exc)[:200], "tests": 0}
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tot = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        for k in tot:
            try:
                tot[k] += int(s.get(k, 0))
            except ValueError:
                pass
    return {"readable": True, **tot}


def replay_routes(url: str, token: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    out = []
    for method, path, body, accepted in ROUTE_REPLAY:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
        req.add_header("accept", "application/json")
        if data is not None:
            req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        status, payload = None, None
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
                status, raw = resp.status, resp.read(1 << 20)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(1 << 20)
        except (urllib.error.URLError, OSError) as exc:
            out.append({"method": method, "path": path, "status": None, "error": f"unreachable: {exc}"[:200],
                        "ok": False})
            continue
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        err = payload.get("error") if isinstance(payload, dict) else None
        want = accepted.get(status, "__reject__")
        ok = isinstance(payload, (dict, list)) and (
            (want is None and status == 200) or (want not in (None, "__reject__") and err == want
                                                 and isinstance(payload.get("message"), str)))
        out.append({"method": method, "path": path, "status": status, "error": err, "ok": bool(ok)})
    return out


class LocalService:
    """``voicelane serve`` on a free loopback port with a throw-away data dir."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.url = ""
        self.error: str | None = None

    @classmethod
    def start(cls, python: str, log: Callable[[str], None], timeout: float = 120.0) -> "LocalService":
        svc = cls()
        try:
            import voicelane.service.main  # noqa: F401
        except ImportError as exc:
            svc.error = f"the service is not installed ({exc})"
            return svc
        svc.tmp = tempfile.TemporaryDirectory(prefix="voicelane-verify-svc-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        svc.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, VOICELANE_DATA_DIR=svc.tmp.name, VOICELANE_BUNDLE_ROOTS=svc.tmp.name,
                   VOICELANE_VOICE_RESCAN_S="0")
        env.pop("VOICELANE_API_TOKEN", None)
        env.pop("TRAIN_STATUS_PATH", None)
        log(f"starting the service on {svc.url}")
        svc.proc = subprocess.Popen([python, "-m", "voicelane", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                    cwd=svc.tmp.name, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.proc.poll() is not None:
                tail = (svc.proc.stderr.read() if svc.proc.stderr else b"").decode("utf-8", "replace")
                svc.error = f"the service exited with {svc.proc.returncode}: {tail.strip().splitlines()[-1:]}"
                return svc
            try:
                with urllib.request.urlopen(svc.url + "/health/live", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return svc
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        svc.error = "the service did not answer within the timeout"
        return svc

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        if self.tmp is not None:
            self.tmp.cleanup()


# --------------------------------------------------------------------------------------------
# trace


def _utc_now() -> str:
    from voicelane.status import now_iso

    return now_iso()


def read_trace(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        with open(path, "r", encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("kind") == TRACE_KIND:
                    out.append(rec)
    except FileNotFoundError:
        return []
    return out


def append_trace(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one record under an exclusive lock; ``seq`` = previous records + 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.seek(0)
            seq = 0
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("kind") == TRACE_KIND:
                    seq = max(seq, int(rec.get("seq") or 0))
            record = {**record, "seq": seq + 1}
            fh.seek(0, os.SEEK_END)
            fh.write(canonical_json(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return record


def export_trace(trace: Path, out: Path) -> int:
    records = read_trace(trace)
    if out.suffix == ".json":
        data = json.dumps(records, sort_keys=True, indent=2) + "\n"
    else:
        data = "".join(canonical_json(r) + "\n" for r in records)
    atomic_write_bytes(out, data.encode("utf-8"))
    return len(records)


def latest_record(trace: Path) -> dict[str, Any] | None:
    recs = read_trace(trace)
    return max(recs, key=lambda r: int(r.get("seq") or 0)) if recs else None


# --------------------------------------------------------------------------------------------
# entry points


def verify(opts: VerifyOptions) -> dict[str, Any]:
    """Evaluate the pack, certify, append the trace record; returns the output document."""
    if opts.bundle is None and opts.status is not None:
        doc = read_json(opts.status)
        if doc and doc.get("bundle"):
            opts.bundle = Path(doc["bundle"])
    results, bound = Verifier(opts).run()
    hashed = [r.hashed() for r in results]
    bound_d = [b.to_dict() for b in bound]
    cert_hash = certificate_hash(hashed, [b.hashed() for b in bound])
    ok_now, changed = integrity_ok(hashed, bound_d, cert_hash)
    hard_fail = [r for r in results if r.severity == "HARD" and not r.passed]
    passed = not hard_fail
    run_id = uuid.uuid4().hex
    trace_id = opts.trace_id or os.environ.get("TRACE_ID") or uuid.uuid4().hex
    certificate = {"status": "issued" if passed else "rejected", "certificateHash": cert_hash,
                   "certificateId": f"vlcert-{cert_hash[:16]}", "integrityOk": ok_now,
                   "pack": PACK_NAME, "packSha256": pack_sha256(), "bound": bound_d}
    if changed:
        certificate["changedDuringVerify"] = changed
    doc = {
        "traceId": trace_id, "runId": run_id, "pack": PACK_NAME, "verdict": "PASS" if passed else "FAIL",
        "pass": passed, "firstFail": hard_fail[0].id if hard_fail else None,
        "firstFailCode": hard_fail[0].code if hard_fail else None,
        "softFailures": [r.id for r in results if r.severity == "SOFT" and not r.passed],
        "bundle": str(opts.bundle) if opts.bundle else None, "status": str(opts.status) if opts.status else None,
        "constraints": [r.to_dict() for r in results], "certificate": certificate,
    }
    record = {
        "kind": TRACE_KIND, "version": TRACE_VERSION, "id": run_id, "ts": _utc_now(), "traceId": trace_id,
        "pass": passed, "verdict": doc["verdict"], "firstFail": doc["firstFail"],
        "metrics": {r.id: r.measured for r in results},
        "constraints": [{"id": r.id, "severity": r.severity, "evaluated": r.evaluated, "pass": r.passed}
                        for r in results],
        "certificate": certificate, "bundle": doc["bundle"], "status": doc["status"],
    }
    rec = append_trace(opts.trace, record)
    doc["trace"] = {"path": str(opts.trace), "seq": rec["seq"]}
    return doc


def recheck_record(record: dict[str, Any]) -> tuple[bool, list[str]]:
    """Recompute a stored certificate against the artifacts as they are now."""
    metrics = record.get("metrics") or {}
    results = [{"id": c["id"], "severity": c["severity"], "evaluated": c["evaluated"], "pass": c["pass"],
                "measured": metrics.get(c["id"], {})} for c in record.get("constraints") or []]
    cert = record.get("certificate") or {}
    return integrity_ok(results, cert.get("bound") or [], cert.get("certificateHash") or "")


# --------------------------------------------------------------------------------------------
# CLI glue (voicelane verify / voicelane verify export)


def run_verify_cli(a) -> int:
    """``voicelane verify``: JSON on stdout; exit 0 PASS, 2 FAIL, 1 error."""
    try:
        opts = VerifyOptions(
            bundle=a.bundle, status=a.status or _default_status(), url=a.url,
            token=a.token or os.environ.get("VOICELANE_API_TOKEN"), trace=a.trace, junit=a.junit,
            tests_cmd=a.tests_cmd, skip_determinism=a.skip_determinism, determinism_data=a.determinism_data,
            determinism_steps=a.determinism_steps, consent_statement=a.consent_statement, trace_id=a.trace_id,
            rtf_max=a.rtf_max, latency_ms_max=a.latency_ms_max)
        doc = verify(opts)
    except VoicelaneError as err:
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        print(f"next: {err.next_action}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(doc, sort_keys=True, indent=2)
    print(text)
    if a.json_out:
        atomic_write_bytes(a.json_out, (text + "\n").encode("utf-8"))
    print(f"[verify] verdict={doc['verdict']} firstFail={doc['firstFail']} "
          f"certificate={doc['certificate']['certificateId']} integrityOk={doc['certificate']['integrityOk']}",
          file=sys.stderr)
    return 0 if doc["pass"] else 2


def run_export_cli(a) -> int:
    try:
        n = export_trace(a.trace, a.out)
    except OSError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"exported": n, "out": str(a.out), "trace": str(a.trace)}, sort_keys=True))
    return 0


def _default_status() -> Path:
    from voicelane.status import default_status_path

    return default_status_path("tts_prod_train")
