"""One JSON line per speak request (SPEC §9). Never the text itself: only its length.

Fields: ts, traceId, missionId, eventId, voiceProfile, mode, priority, consent_asserted,
referenceAudioHash, outcome (`ok`, `suppressed:<reason>` or the error code), status (HTTP),
latency (milliseconds), cache (hit|miss), provider, tenant, textChars.

The file is bounded: past ``max_bytes`` it is rotated once (``audit.jsonl.1``)."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

AUDIT_FIELDS = (
    "ts",
    "traceId",
    "missionId",
    "eventId",
    "voiceProfile",
    "mode",
    "priority",
    "consent_asserted",
    "referenceAudioHash",
    "outcome",
    "status",
    "latency",
    "cache",
    "provider",
    "tenant",
    "textChars",
)


def ts_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = 50 * 1024 * 1024):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        rec = {k: record.get(k) for k in AUDIT_FIELDS}
        line = (json.dumps(rec, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self.lock:
            try:
                if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            except OSError:
                pass
            with open(self.path, "ab") as fh:
                fh.write(line)
