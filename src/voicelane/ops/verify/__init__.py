"""The verification gate (SPEC §11): ``voicelane verify``.

A versioned pack (``pack.py``) of HARD and SOFT constraints with a pinned gate policy, judged over
facts measured now, never copied from a report:

- ``evidence.py``    the files, read once (status, bundle re-hashed, eval.json, dataset manifest,
                     consent statement, junit, code commit) and every artifact bound;
- ``harness.py``     what has to be run: a real service over HTTP (``python -m voicelane serve`` +
                     httpx; the service is never imported), the tiny lane twice, the default test
                     suite's collection (and ``bash scripts/test.sh`` with ``--run-tests``), speed;
- ``checks.py``      one pure function per constraint over the evidence;
- ``certificate.py`` the certificate hash over pack, results, code commit and bound artifacts;
                     ``integrityOk`` recomputed by re-reading them;
- ``trace.py``       the ``training-trace`` JSONL store (with ``deltas``) and its export;
- ``gate.py`` / ``cli.py`` the run and the CLI glue.

HARD, in order (the first failing one is ``firstFail``): status_completed, bundle_valid,
gate_thresholds_pinned (``gate_thresholds_loosened``), eval_gates_passed, licence_gate_passed,
consent_present, protocol_deterministic, routes_compatible, tests_green. SOFT: rtf_target,
latency_target. A constraint that was not evaluated fails. Exit 0 PASS, 2 FAIL, 1 error.
"""

from voicelane.ops.verify.certificate import Bound, certificate_hash, integrity_ok, recheck_record
from voicelane.ops.verify.checks import CHECKS, Result, evaluate
from voicelane.ops.verify.cli import run_export_cli, run_verify_cli
from voicelane.ops.verify.evidence import Evidence, load_evidence, parse_junit
from voicelane.ops.verify.gate import verify
from voicelane.ops.verify.harness import LocalService, replay_routes
from voicelane.ops.verify.options import DEFAULT_TRACE, VerifyOptions
from voicelane.ops.verify.pack import PACK, PACK_NAME, POLICY, ROUTE_REPLAY, pack_sha256, policy_looser
from voicelane.ops.verify.trace import TRACE_KIND, TRACE_VERSION, export_trace, latest_record, read_trace

__all__ = [
    "Bound",
    "certificate_hash",
    "integrity_ok",
    "recheck_record",
    "CHECKS",
    "Result",
    "evaluate",
    "run_export_cli",
    "run_verify_cli",
    "Evidence",
    "load_evidence",
    "parse_junit",
    "verify",
    "LocalService",
    "replay_routes",
    "DEFAULT_TRACE",
    "VerifyOptions",
    "PACK",
    "PACK_NAME",
    "POLICY",
    "ROUTE_REPLAY",
    "pack_sha256",
    "policy_looser",
    "TRACE_KIND",
    "TRACE_VERSION",
    "export_trace",
    "latest_record",
    "read_trace",
]
