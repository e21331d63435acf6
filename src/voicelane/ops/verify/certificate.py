"""The certificate: a hash over the pack, the measured results, the code commit and the hashes of
every artifact the results rest on; ``integrityOk`` recomputes it by re-reading those artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicelane.fsutil import canonical_json, sha256_file, sha256_text
from voicelane.ops.verify.pack import PACK, pack_sha256


@dataclass
class Bound:
    """One artifact a certificate binds: its role, a stable name, and its content hash."""

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


def certificate_hash(
    results: list[dict[str, Any]], bound: list[dict[str, Any]], code: dict[str, Any] | None = None
) -> str:
    doc = {
        "pack": {"id": PACK["id"], "version": PACK["version"], "sha256": pack_sha256()},
        "results": results,
        "artifacts": sorted(bound, key=lambda b: (b["role"], b["name"])),
    }
    if code is not None:
        doc["code"] = code
    return sha256_text(canonical_json(doc))


def integrity_ok(
    results: list[dict[str, Any]], bound: list[dict[str, Any]], expected_hash: str, code: dict[str, Any] | None = None
) -> tuple[bool, list[str]]:
    """Re-read every bound artifact and recompute the certificate hash; (ok, names that changed)."""
    fresh, changed = [], []
    for b in bound:
        now = Bound(b["role"], b["name"], Path(b["path"])).read()
        if now.sha256 != b["sha256"] or now.bytes != b["bytes"]:
            changed.append(b["name"])
        fresh.append(now.hashed())
    return certificate_hash(results, fresh, code) == expected_hash, changed


def hashed_results(record: dict[str, Any]) -> list[dict[str, Any]]:
    metrics = record.get("metrics") or {}
    return [
        {
            "id": c["id"],
            "severity": c["severity"],
            "evaluated": c["evaluated"],
            "pass": c["pass"],
            "measured": metrics.get(c["id"], {}),
        }
        for c in record.get("constraints") or []
    ]


def recheck_record(record: dict[str, Any]) -> tuple[bool, list[str]]:
    """Recompute a stored certificate against the artifacts as they are now."""
    cert = record.get("certificate") or {}
    return integrity_ok(
        hashed_results(record), cert.get("bound") or [], cert.get("certificateHash") or "", cert.get("code")
    )
