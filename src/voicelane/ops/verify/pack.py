"""The verify pack: a versioned list of HARD/SOFT constraints and the pinned gate policy.

The policy's thresholds are written here, not read from the bundle or the lane: a bundle whose
own ``eval.json`` records looser gates than the policy is a HARD fail (``gate_thresholds_loosened``),
and its metrics are re-checked against the policy's thresholds, never against its own.
Changing a value here is a new pack version (the version is part of every certificate hash).
"""

from __future__ import annotations

from typing import Any

from voicelane.fsutil import canonical_json, sha256_text

POLICY: dict[str, Any] = {
    "id": "voicelane-gates",
    "version": 1,
    # the production gates (SPEC §7): ASR word error rate and mel-cepstral distortion
    "gates": {"wer_max": 0.35, "mcd_db_max": 12.0},
}

# the README test command; `tests_green` accepts only a junit written by it for the default suite
TESTS: dict[str, Any] = {
    "command": "bash scripts/test.sh",
    "junit_env": "VOICELANE_JUNIT",
    "suite_name": "voicelane-default",
}

PACK: dict[str, Any] = {
    "id": "voicelane-lane",
    "version": 2,
    "name": "voicelane-lane/2",
    "policy": POLICY,
    "tests": TESTS,
    "constraints": [
        {
            "id": "status_completed",
            "severity": "HARD",
            "rule": "train_status/1 exists, state=completed, job_type=tts_prod_train, stats agree with the bundle "
            "and the dataset manifest",
        },
        {
            "id": "bundle_valid",
            "severity": "HARD",
            "rule": "validate_voice_bundle ok (re-hashed), manifest lane=production",
        },
        {
            "id": "gate_thresholds_pinned",
            "severity": "HARD",
            "rule": "the bundle was evaluated with gates at least as strict as the pinned policy",
        },
        {
            "id": "eval_gates_passed",
            "severity": "HARD",
            "rule": (
                "eval.json metrics within the pinned policy's thresholds, gates.passed, manifest agrees, promotable"
            ),
        },
        {
            "id": "licence_gate_passed",
            "severity": "HARD",
            "rule": "base_weights null, or the licence gate passes again without override",
        },
        {
            "id": "consent_present",
            "severity": "HARD",
            "rule": "manifest consent.statement_sha256 present (and equal to the statement file when given)",
        },
        {
            "id": "protocol_deterministic",
            "severity": "HARD",
            "rule": "two runs of the tiny preset lane produce byte-identical stdout",
        },
        {
            "id": "routes_compatible",
            "severity": "HARD",
            "rule": "the old request shapes of the train/voice routes get their documented status codes and bodies "
            "from a running service",
        },
        {
            "id": "tests_green",
            "severity": "HARD",
            "rule": "the junit of the README test command (default suite): tests>0, no failures/errors",
        },
        {"id": "rtf_target", "severity": "SOFT", "rule": "synthesis real-time factor <= rtf_max"},
        {"id": "latency_target", "severity": "SOFT", "rule": "warm callout latency <= latency_ms_max"},
    ],
    "targets": {"rtf_max": 1.0, "latency_ms_max": 2000.0},
}
PACK_NAME = PACK["name"]
CONSTRAINT_IDS = [c["id"] for c in PACK["constraints"]]
SEVERITY = {c["id"]: c["severity"] for c in PACK["constraints"]}

CALLOUT_TEXT = "Unit four, proceed to gate twelve."
RTF_TEXT = (
    "The evening shift starts at seven. Check the north gate, confirm the radio channel, "
    "and report back when the inspection is complete."
)

# The old request shapes replayed against a running service (SPEC §9 compatibility):
# (method, path, body, {accepted status: error code, or None for a 2xx JSON body}).
# Only shapes that start no work: a replay must not train or speak on the operator's machine.
ROUTE_REPLAY: list[tuple[str, str, dict | None, dict[int, str | None]]] = [
    ("GET", "/api/train/status", None, {200: None, 404: "status_not_found"}),
    ("GET", "/api/train/job/voicelane-verify-no-such-job", None, {404: "job_not_found"}),
    ("POST", "/api/train/start", {"jobType": "voicelane_verify_no_such_type"}, {400: "invalid_job_type"}),
    ("GET", "/api/voice/profiles", None, {200: None}),
    ("POST", "/api/voice/speak", {"text": ""}, {400: "voice_invalid_request"}),
    (
        "POST",
        "/api/voice/speak",
        {"text": "x" * 601, "voiceProfile": "voicelane-verify-none"},
        {400: "voice_invalid_request"},
    ),
    (
        "POST",
        "/api/voice/speak",
        {
            "text": "Unit four.",
            "voiceProfile": "voicelane-verify-none",
            "priority": "critical",
            "provider": "local-chatterbox",
        },
        {503: "voice_unavailable", 404: "voice_profile_not_found"},
    ),
]


def pack_sha256() -> str:
    return sha256_text(canonical_json(PACK))


def policy_looser(thresholds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pinned gates that ``thresholds`` leaves out or relaxes: {gate: {bundle, policy}}."""
    looser = {}
    for key, pinned in POLICY["gates"].items():
        v = thresholds.get(key) if isinstance(thresholds, dict) else None
        if (
            not isinstance(v, (int, float))
            or isinstance(v, bool)
            or (key.endswith("_max") and v > pinned)
            or (key.endswith("_min") and v < pinned)
        ):
            looser[key] = {"bundle": v, "policy": pinned}
    return looser
