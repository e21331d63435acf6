"""The facts a verify run judges, read once: the status, the bundle (validated, re-hashed), its
eval.json, the dataset manifest, the consent statement, the junit, the code commit.

``load_evidence`` reads the files; the harness adds what has to be measured by running
something (determinism runs, the route replay, the test collection, synthesis speed). Checks
only look at an ``Evidence``; every artifact they rest on is in ``bound`` in load order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelane.errors import VoicelaneError
from voicelane.ops.common import git_head, read_json
from voicelane.ops.verify.certificate import Bound
from voicelane.ops.verify.options import VerifyOptions


@dataclass
class Evidence:
    opts: VerifyOptions
    bound: list[Bound] = field(default_factory=list)
    status_path: Path | None = None
    status: dict[str, Any] | None = None
    bundle: Path | None = None
    validation: Any = None  # bundle.ValidationResult
    manifest: dict[str, Any] | None = None
    eval_doc: dict[str, Any] | None = None
    dataset_manifest_path: Path | None = None
    dataset_manifest: dict[str, Any] | None = None
    consent_file_sha256: str | None = None
    junit: dict[str, Any] | None = None
    licence_regate: str | None = None
    code: dict[str, Any] = field(default_factory=dict)
    # measured by the harness (None = not measured)
    determinism: dict[str, Any] | None = None
    routes: dict[str, Any] | None = None
    tests_expected: dict[str, Any] | None = None
    speech: dict[str, Any] | None = None

    def bind(self, role: str, name: str, path: Path) -> Bound:
        b = Bound(role, name, Path(path).absolute()).read()
        if b.sha256 is not None:
            self.bound.append(b)
        return b

    def bound_sha(self, role: str) -> str | None:
        return next((b.sha256 for b in self.bound if b.role == role), None)

    @property
    def bundle_ok(self) -> bool:
        return bool(self.validation is not None and self.validation.ok)


def load_evidence(opts: VerifyOptions) -> Evidence:
    ev = Evidence(opts)
    ev.status_path = opts.status
    ev.status = read_json(opts.status) if opts.status else None
    ev.bundle = opts.bundle
    if ev.bundle is None and ev.status and ev.status.get("bundle"):
        ev.bundle = Path(ev.status["bundle"])
    _load_bundle(ev)
    if ev.status is not None:
        ev.bind("train_status", "train_status.json", Path(opts.status))
    _load_dataset_manifest(ev)
    if opts.consent_statement is not None:
        ev.consent_file_sha256 = ev.bind("consent_statement", "consent_statement", opts.consent_statement).sha256
    if opts.junit is not None:
        ev.junit = parse_junit(opts.junit)
        if ev.bind("junit", f"junit/{opts.junit.name}", opts.junit).sha256 is None:
            ev.junit["readable"] = False
    ev.licence_regate = _regate(ev.manifest)
    ev.code = {"commit": git_head(), "bundle_commit": ((ev.manifest or {}).get("provenance") or {}).get("commit")}
    return ev


def _load_bundle(ev: Evidence) -> None:
    from voicelane.bundle import MANIFEST_NAME, validate_voice_bundle

    if ev.bundle is None:
        return
    bdir = Path(ev.bundle)
    ev.validation = validate_voice_bundle(bdir)
    ev.manifest = ev.validation.manifest if ev.validation.ok else read_json(bdir / MANIFEST_NAME)
    ev.bind("bundle_manifest", "bundle/manifest.json", bdir / MANIFEST_NAME)
    for f in (ev.manifest or {}).get("files") or []:
        p = f.get("path") if isinstance(f, dict) else None
        if isinstance(p, str) and not p.startswith("/") and ".." not in p.split("/"):
            ev.bind("bundle_file", f"bundle/{p}", bdir / p)
    ev.eval_doc = read_json(bdir / "eval.json")


def _load_dataset_manifest(ev: Evidence) -> None:
    raw = (ev.status or {}).get("dataset_manifest")
    if not isinstance(raw, str) or not raw:
        return
    ev.dataset_manifest_path = Path(raw)
    ev.dataset_manifest = read_json(ev.dataset_manifest_path)
    ev.bind("dataset_manifest", "dataset/dataset_manifest.json", ev.dataset_manifest_path)


def _regate(manifest: dict[str, Any] | None) -> str | None:
    base = ((manifest or {}).get("provenance") or {}).get("base_weights")
    if not isinstance(base, dict):
        return None
    from voicelane import weights

    try:
        weights.licence_gate(str(base.get("id")), accept_license_risk=False)
    except VoicelaneError as err:
        return err.code
    return "ok"


def parse_junit(path: Path) -> dict[str, Any]:
    """Totals, the suite names and the test modules of a junit XML."""
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
    modules = sorted(
        {
            part
            for s in suites
            for c in s.iter("testcase")
            for part in (c.get("classname") or "").split(".")
            if part.startswith("test_")
        }
    )
    return {"readable": True, **tot, "suites": sorted({s.get("name") or "" for s in suites}), "modules": modules}


def default_status() -> Path:
    from voicelane.status import default_status_path

    return default_status_path("tts_prod_train")


def env_token() -> str | None:
    return os.environ.get("VOICELANE_API_TOKEN")
