"""Base weights: the allowlist and the licence gate (SPEC §6).

Base checkpoints are named by id in an allowlist (``data/weights_allowlist.json``). The gate
checks the code licence and the weights licence separately (and the training-data licence,
which is what actually restricts most public TTS checkpoints): a non-commercial licence fails
with ``license_noncommercial``, an unknown or missing one with ``license_unknown``; an id that
is not allowlisted, or whose files do not match their recorded sha256, with
``allowlist_rejected``. ``--accept-license-risk`` turns the licence failures into a recorded
override (it never admits an unlisted or tampered file).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelane.errors import VoicelaneError
from voicelane.fsutil import sha256_file
from voicelane.paths import REPO_ROOT

PACKAGE_DATA = Path(__file__).parent / "data"

# SPDX ids (and a few spelled-out licences) known to allow commercial use.
COMMERCIAL_OK = {
    "MIT",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "Apache-2.0",
    "MPL-2.0",
    "ISC",
    "CC0-1.0",
    "CC-BY-4.0",
    "CC-BY-SA-4.0",
    "Unlicense",
    "Zlib",
    "LicenseRef-Festival-EST-BSD-style",
    "Public-Domain",
}
NONCOMMERCIAL_MARKERS = (
    "-NC",
    "NonCommercial",
    "non-commercial",
    "CPML",
    "Coqui-Public-Model-License",
    "LicenseRef-Blizzard",
    "research-only",
)


@dataclass
class LicenceCheck:
    which: str  # code | weights | data
    license: str | None
    verdict: str  # ok | noncommercial | unknown


@dataclass
class GateResult:
    weights_id: str
    entry: dict[str, Any]
    checks: list[LicenceCheck] = field(default_factory=list)
    override: bool = False

    @property
    def passed(self) -> bool:
        return all(c.verdict == "ok" for c in self.checks)

    def provenance(self) -> dict[str, Any]:
        e = self.entry
        return {
            "id": self.weights_id,
            "engine": e.get("engine"),
            "sha256": e.get("sha256"),
            "code_license": e.get("code_license"),
            "weights_license": e.get("weights_license"),
            "data_license": e.get("data_license"),
            "license_url": e.get("license_url"),
            "commercial_use_allowed": bool(e.get("commercial_use_allowed")) and self.passed,
            "gate": {c.which: c.verdict for c in self.checks},
            "override": self.override,
        }


def allowlist_path() -> Path:
    return Path(os.environ.get("VOICELANE_WEIGHTS_ALLOWLIST", PACKAGE_DATA / "weights_allowlist.json"))


def _read_json(path: Path, what: str, detail_key: str) -> Any:
    """A JSON file of the weights gate; unreadable or not JSON is ``allowlist_rejected``."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise VoicelaneError(
            "allowlist_rejected", f"cannot read the {what} {path}: {exc}", {detail_key: str(path)}
        ) from exc


def load_allowlist(path: Path | None = None) -> dict[str, dict[str, Any]]:
    path = path or allowlist_path()
    doc = _read_json(path, "weights allowlist", "path")
    return {w["id"]: w for w in doc.get("weights", [])}


def classify(license_id: str | None) -> str:
    if not license_id or not str(license_id).strip() or str(license_id).strip().lower() in {"unknown", "none", "n/a"}:
        return "unknown"
    lic = str(license_id).strip()
    if any(m.lower() in lic.lower() for m in NONCOMMERCIAL_MARKERS):
        return "noncommercial"
    if lic in COMMERCIAL_OK:
        return "ok"
    return "unknown"


def resolve_dir(entry: dict[str, Any], allowlist_file: Path) -> Path:
    p = Path(entry["path"])
    if not p.is_absolute():
        p = (REPO_ROOT / p) if (REPO_ROOT / p).exists() else (allowlist_file.parent / p)
    return p


def licence_gate(weights_id: str, accept_license_risk: bool = False, allowlist_file: Path | None = None) -> GateResult:
    """Resolve `weights_id` in the allowlist and check its licences; raise on refusal."""
    allowlist_file = allowlist_file or allowlist_path()
    entries = load_allowlist(allowlist_file)
    if weights_id not in entries:
        raise VoicelaneError(
            "allowlist_rejected",
            f"base weights {weights_id!r} are not in the allowlist",
            {"weights_id": weights_id, "allowlisted": sorted(entries)},
        )
    entry = entries[weights_id]
    checks = [
        LicenceCheck(w, entry.get(f"{w}_license"), classify(entry.get(f"{w}_license")))
        for w in ("code", "weights", "data")
    ]
    if entry.get("commercial_use_allowed") is False:
        checks.append(LicenceCheck("commercial_use_allowed", "false", "noncommercial"))
    result = GateResult(weights_id, entry, checks)
    bad = [c for c in checks if c.verdict != "ok"]
    if bad and not accept_license_risk:
        code = "license_noncommercial" if any(c.verdict == "noncommercial" for c in bad) else "license_unknown"
        raise VoicelaneError(
            code,
            f"base weights {weights_id!r} fail the licence gate: "
            + ", ".join(f"{c.which} licence {c.license or 'missing'} is {c.verdict}" for c in bad),
            {"weights_id": weights_id, "checks": [c.__dict__ for c in checks]},
        )
    result.override = bool(bad)
    return result


def verify_files(gate: GateResult, allowlist_file: Path | None = None) -> Path:
    """Check the weights files against the allowlist's sha256; returns the weights folder."""
    allowlist_file = allowlist_file or allowlist_path()
    wdir = resolve_dir(gate.entry, allowlist_file)
    weights_file = wdir / gate.entry.get("file", "model.safetensors")
    if not weights_file.exists():
        raise VoicelaneError(
            "base_weights_missing",
            f"base weights file {weights_file} is missing",
            {"weights_id": gate.weights_id, "path": str(weights_file)},
        )
    digest, _ = sha256_file(weights_file)
    if digest != gate.entry.get("sha256"):
        raise VoicelaneError(
            "allowlist_rejected",
            "base weights file does not match the allowlisted sha256",
            {"weights_id": gate.weights_id, "expected": gate.entry.get("sha256"), "actual": digest},
        )
    return wdir


def check_weights_manifest(path: Path, allowlist_file: Path | None = None) -> GateResult:
    """The old orchestrator's ``WEIGHTS_MANIFEST_PATH`` check, with its codes: the manifest names
    allowlisted weights (``allowlist_rejected`` otherwise, or when its sha256 differs from the
    allowlist's), whose licences pass the gate (``license_noncommercial`` / ``license_unknown``)."""
    doc = _read_json(path, "weights manifest", "weights_manifest")
    wid = doc.get("id") if isinstance(doc, dict) else None
    if not isinstance(wid, str) or not wid:
        raise VoicelaneError(
            "allowlist_rejected", f"the weights manifest {path} names no weights id", {"weights_manifest": str(path)}
        )
    gate = licence_gate(wid, accept_license_risk=False, allowlist_file=allowlist_file)
    if doc.get("sha256") and doc.get("sha256") != gate.entry.get("sha256"):
        raise VoicelaneError(
            "allowlist_rejected",
            "the weights manifest's sha256 differs from the allowlisted one",
            {"weights_manifest": str(path), "weights_id": wid},
        )
    return gate
