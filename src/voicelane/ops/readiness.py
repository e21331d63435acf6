"""The readiness report (SPEC §12): ``voicelane readiness`` writes ``reports/readiness.md``.

Every line of the report comes from a check made while writing it: artifacts are stat'ed and
hashed, the bundle is validated, the gates are re-read from the bundle, the licence gate is run
again, and the latest ``voicelane verify`` record is re-checked against the artifacts as they are
now (its certificate hash recomputed). GO only when nothing blocks; each blocking code comes with
its unblock action. Exit 0 GO, 2 NO-GO, 1 error.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelane.errors import NEXT_ACTIONS
from voicelane.fsutil import atomic_write_bytes, sha256_file
from voicelane.ops.common import REPO_ROOT, git_head, read_json
from voicelane.ops.verify import PACK_NAME, VerifyOptions, evaluate, latest_record, load_evidence, recheck_record

OPS_FILES = [
    ("orchestrator script", REPO_ROOT / "scripts" / "voice" / "train_production_voice.sh"),
    ("docker lane Dockerfile", REPO_ROOT / "docker" / "voice-train-prod" / "Dockerfile"),
    ("docker lane entrypoint", REPO_ROOT / "docker" / "voice-train-prod" / "entrypoint.sh"),
    ("runbook", REPO_ROOT / "docs" / "runbooks" / "voice-train-prod-lane.md"),
]
CONSTRAINT_ACTIONS = {
    "status_inconsistent": "The status and the bundle come from different runs: pass the matching --status/--bundle "
    "or rerun the lane.",
    "bundle_not_production": "Train with TRAIN_LANE=tts_prod_train; experimental bundles are never promoted.",
    "protocol_nondeterministic": "Find the wall-clock or unseeded value in the protocol lines (diff the two runs' "
    "stdout) and fix it.",
    "routes_incompatible": "Restore the documented status codes and bodies of the old request shapes "
    "(docs/service-contract.md, compatibility).",
    "tests_missing": "Run the README test command with VOICELANE_JUNIT=FILE and pass --junit FILE (or --run-tests) "
    "to voicelane verify.",
    "tests_failed": "Fix the failing tests, then rerun voicelane verify.",
    "check_error": "Rerun voicelane verify with VOICELANE_DEBUG=1 and fix the reported check error.",
}


@dataclass
class Block:
    code: str
    why: str

    @property
    def action(self) -> str:
        return NEXT_ACTIONS.get(self.code) or CONSTRAINT_ACTIONS.get(self.code) or "See the runbook's failure taxonomy."


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def block(self, code: str | None, why: str) -> None:
        code = code or "internal_error"
        if not any(b.code == code and b.why == why for b in self.blocks):
            self.blocks.append(Block(code, why))


def _rel(p: Path | str | None) -> str:
    if p is None:
        return "-"
    p = Path(p).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(p)


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _gate_row(title: str, result, detail: str) -> list[str]:
    """One row of the gates table: the check's verdict and what it measured (+ why it failed)."""
    return [title, "pass" if result.passed else "FAIL", detail + (f" ({result.reason})" if result.reason else "")]


def artifact_row(name: str, path: Path | None) -> tuple[list[str], bool]:
    if path is None:
        return [name, "-", "no", "-", "-"], False
    try:
        digest, size = sha256_file(path)
        return [name, f"`{_rel(path)}`", "yes", str(size), f"`{digest}`"], True
    except OSError:
        return [name, f"`{_rel(path)}`", "no", "-", "-"], False


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def build_report(bundle: Path | None, status: Path, trace: Path) -> tuple[str, bool, list[Block]]:
    from voicelane.status import now_iso

    rep = Report()
    status_doc = read_json(status)
    if bundle is None and status_doc and status_doc.get("bundle"):
        bundle = Path(status_doc["bundle"])

    # --- the facts (the same checks verify makes, minus the expensive ones) -----------------------
    v = load_evidence(VerifyOptions(bundle=bundle, status=status, trace=trace, log=lambda m: None))
    res = {
        r.id: r
        for r in evaluate(
            v,
            only=[
                "bundle_valid",
                "status_completed",
                "gate_thresholds_pinned",
                "eval_gates_passed",
                "licence_gate_passed",
                "consent_present",
            ],
        )
    }

    # --- artifacts ---------------------------------------------------------------------------------
    rows: list[list[str]] = []
    man = v.manifest or {}
    row, ok = artifact_row("bundle manifest", (bundle / "manifest.json") if bundle else None)
    rows.append(row)
    for f in man.get("files") or []:
        if isinstance(f, dict) and isinstance(f.get("path"), str) and bundle is not None:
            rows.append(artifact_row(f"bundle file {f['path']}", bundle / f["path"])[0])
    row, st_ok = artifact_row("train status", status)
    rows.append(row)
    if not st_ok:
        rep.block("status_not_found", f"no train status at {_rel(status)}")
    ds = Path(status_doc["dataset_manifest"]) if status_doc and status_doc.get("dataset_manifest") else None
    row, ds_ok = artifact_row("dataset manifest", ds)
    rows.append(row)
    if not ds_ok:
        rep.block("ops_artifact_missing", f"dataset manifest {_rel(ds)} is missing")
    for name, path in OPS_FILES:
        row, ok = artifact_row(name, path)
        rows.append(row)
        if not ok:
            rep.block("ops_artifact_missing", f"{name} {_rel(path)} is missing")
    rows.append(artifact_row("verify trace", trace)[0])

    # --- gates -------------------------------------------------------------------------------------
    gates: list[list[str]] = []
    st = res["status_completed"]
    gates.append(
        _gate_row("train status", st, f"state={st.measured.get('state')} job_type={st.measured.get('job_type')}")
    )
    if st_ok and not st.passed:
        code = st.measured.get("error_code") or (
            "status_not_completed" if st.measured.get("state") != "completed" else st.code
        )
        rep.block(code if code in NEXT_ACTIONS else (st.code or "internal_error"), st.reason or "status not completed")
    b = res["bundle_valid"]
    gates.append(
        _gate_row(
            "bundle validation (re-hashed)",
            b,
            f"files_validated={b.measured.get('files_validated')} lane={b.measured.get('lane')}",
        )
    )
    if not b.passed:
        rep.block(b.code, b.reason or "bundle invalid")
    pin = res["gate_thresholds_pinned"]
    gates.append(
        _gate_row(
            "gate thresholds vs the pinned policy",
            pin,
            f"policy={pin.measured.get('policy')} pinned={pin.measured.get('pinned')}",
        )
    )
    if not pin.passed:
        rep.block(pin.code, pin.reason or "gate thresholds")
    e = res["eval_gates_passed"]
    thresholds = e.measured.get("thresholds") or {}
    values = e.measured.get("values") or {}
    failed = set(e.measured.get("recomputed_failed") or [])
    for key, limit in sorted(thresholds.items()):
        metric = key.rpartition("_")[0]
        gates.append(
            [f"eval gate {key}", "FAIL" if key in failed else "pass", f"{metric}={values.get(metric)} limit={limit}"]
        )
    gates.append(["eval gates overall", "pass" if e.passed else "FAIL", e.reason or "re-checked from eval.json"])
    if not e.passed:
        rep.block("eval_gate_failed", e.reason or "eval gates failed")
    lic = res["licence_gate_passed"]
    gates.append(
        _gate_row(
            "licence gate",
            lic,
            f"base_weights={lic.measured.get('base_weights')} regate={lic.measured.get('regate', 'n/a')}",
        )
    )
    if not lic.passed:
        rep.block(lic.code if lic.code in NEXT_ACTIONS else "license_unknown", lic.reason or "licence gate")
    c = res["consent_present"]
    gates.append(["consent", "pass" if c.passed else "FAIL", f"statement_sha256={c.measured.get('statement_sha256')}"])
    if not c.passed:
        rep.block("consent_missing", c.reason or "no consent")

    # --- the latest verify -------------------------------------------------------------------------
    verify_lines: list[str] = []
    rec = latest_record(trace)
    if rec is None:
        verify_lines.append(f"No `voicelane verify` record in `{_rel(trace)}`.")
        rep.block("verify_missing", "no verify record")
    else:
        cert = rec.get("certificate") or {}
        now_ok, changed = recheck_record(rec)
        cur_manifest = next((x.sha256 for x in v.bound if x.role == "bundle_manifest"), None)
        rec_manifest = next(
            (x.get("sha256") for x in cert.get("bound") or [] if x.get("role") == "bundle_manifest"), None
        )
        binds_current = cur_manifest is not None and cur_manifest == rec_manifest
        cert_commit = (cert.get("code") or {}).get("commit")
        commit_current = cert_commit is not None and cert_commit == git_head()
        verify_lines += [
            f"- verdict: **{rec.get('verdict')}** (pack `{cert.get('pack', PACK_NAME)}`, seq {rec.get('seq')}, "
            f"{rec.get('ts')}, traceId `{rec.get('traceId')}`, runId `{rec.get('id')}`)",
            f"- firstFail: `{rec.get('firstFail')}`",
            f"- certificate: `{cert.get('certificateId')}` status `{cert.get('status')}`",
            f"- certificateHash: `{cert.get('certificateHash')}`",
            f"- integrity at verify time: {cert.get('integrityOk')}; integrity now (recomputed from the bound "
            f"artifacts): {now_ok}" + (f" (changed: {', '.join(changed)})" if changed else ""),
            f"- binds the current bundle manifest: {binds_current}",
            f"- certified code commit: `{cert_commit}` (the checkout now: {'same' if commit_current else 'different'})",
            f"- policy: `{cert.get('policy')}`",
            "",
        ]
        verify_lines += table(
            ["constraint", "severity", "evaluated", "result"],
            [
                [x.get("id"), x.get("severity"), x.get("evaluated"), "pass" if x.get("pass") else "FAIL"]
                for x in rec.get("constraints") or []
            ],
        )
        if not rec.get("pass"):
            rep.block("verify_failed", f"latest verify is FAIL (firstFail {rec.get('firstFail')})")
        if not now_ok or not binds_current:
            rep.block(
                "certificate_stale",
                "the artifacts changed since the latest verify"
                if not now_ok
                else "the latest verify certified a different bundle",
            )
        elif not commit_current:
            rep.block("certificate_stale", f"the latest verify certified code commit {cert_commit}, not the checkout's")

    go = not rep.blocks
    head = git_head()
    out = [
        "# voicelane readiness report",
        "",
        "Generated by `voicelane readiness` from checks made while writing it; do not edit by hand.",
        "",
        f"- generated_at: {now_iso()}",
        f"- commit: `{head or 'unknown'}`",
        f"- bundle: `{_rel(bundle)}`",
        f"- train status: `{_rel(status)}`",
        f"- verify trace: `{_rel(trace)}`",
        "",
        f"## Decision: {'GO' if go else 'NO-GO'}",
        "",
    ]
    if go:
        out.append(
            "Nothing blocks: the bundle validates, the gates pass, and the latest verify is a PASS whose "
            "certificate still matches the artifacts."
        )
    else:
        out += table(["blocking code", "why", "unblock action"], [[f"`{x.code}`", x.why, x.action] for x in rep.blocks])
    out += ["", "## Artifacts", ""]
    out += table(["artifact", "path", "exists", "bytes", "sha256"], rows)
    out += ["", "## Gates", ""]
    out += table(["gate", "result", "detail"], gates)
    out += ["", "## Latest verify", ""] + verify_lines + [""]
    return "\n".join(out), go, rep.blocks


def write_report(out: Path, bundle: Path | None, status: Path, trace: Path) -> tuple[bool, list[Block]]:
    text, go, blocks = build_report(bundle, status, trace)
    sidecar = sidecar_doc(bundle, status, trace, go, blocks)
    atomic_write_bytes(out, text.encode("utf-8"))
    atomic_write_bytes(sidecar_path(out), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return go, blocks


def sidecar_path(out: Path) -> Path:
    """``reports/readiness.md`` -> ``reports/readiness.json`` (what the studio's Voices page reads)."""
    return out.with_suffix(".json")


def sidecar_doc(bundle: Path | None, status: Path, trace: Path, go: bool, blocks: list[Block]) -> dict[str, Any]:
    """The machine-readable decision: the service shows it only for the bundle whose manifest hash it names."""
    from voicelane.status import now_iso

    status_doc = read_json(status)
    if bundle is None and status_doc and status_doc.get("bundle"):
        bundle = Path(status_doc["bundle"])
    manifest = (bundle / "manifest.json") if bundle else None
    try:
        digest = sha256_file(manifest)[0] if manifest else None
    except OSError:
        digest = None
    profile = (read_json(manifest) or {}).get("voice_profile_id") if digest else None
    return {
        "schema": "voicelane_readiness/1",
        "verdict": "GO" if go else "NO-GO",
        "blocking": [{"code": b.code, "why": b.why, "action": b.action} for b in blocks],
        "profile": profile,
        "bundle": str(Path(bundle).resolve()) if bundle else None,
        "bundle_manifest_sha256": digest,
        "generated_at": now_iso(),
        "commit": git_head(),
        "status": str(Path(status).resolve()),
        "trace": str(Path(trace).resolve()),
    }


def run_readiness_cli(a) -> int:
    from voicelane.status import default_status_path

    status = a.status or default_status_path("tts_prod_train")
    try:
        go, blocks = write_report(a.out, a.bundle, status, a.trace)
    except OSError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"readiness: {'GO' if go else 'NO-GO'} -> {a.out}")
    for b in blocks:
        print(f"  blocking: {b.code}: {b.why}")
        print(f"    unblock: {b.action}")
    return 0 if go else 2
