"""`train_status/1` (SPEC §4): written atomically for every outcome, success or failure."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_json

SCHEMA = "train_status/1"
STATES = ("running", "completed", "error", "blocked", "cancelled")
# codes that mean "an operator decision is needed" rather than "something broke"
BLOCKING_CODES = {
    "consent_missing", "allowlist_rejected", "license_noncommercial", "license_unknown",
    "eval_gate_failed", "dataset_too_small", "dataset_empty", "missing_audio_path", "metadata_invalid",
}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_status_path(job_type: str, root: str | os.PathLike = "artifacts") -> Path:
    env = os.environ.get("TRAIN_STATUS_PATH")
    if env:
        return Path(env)
    return Path(root) / f"train_status.{job_type}.json"


class StatusWriter:
    """Keeps the status document and rewrites it atomically on every change."""

    def __init__(self, path: str | os.PathLike, job_type: str, lane: str, total: int = 0):
        self.path = Path(path)
        ts = now_iso()
        self.doc: dict[str, Any] = {
            "schema": SCHEMA,
            "job_type": job_type,
            "lane": lane,
            "state": "running",
            "status": "running",
            "progress": {"current": 0, "total": total},
            "stats": {},
            "artifacts": [],
            "started_at": ts,
            "updated_at": ts,
            "finished_at": None,
        }
        self.flush()

    def flush(self) -> None:
        self.doc["updated_at"] = now_iso()
        atomic_write_json(self.path, self.doc)

    def progress(self, current: int, total: int) -> None:
        self.doc["progress"] = {"current": current, "total": total}
        self.flush()

    def stats(self, stats: dict[str, Any], flush: bool = True) -> None:
        self.doc["stats"].update(stats)
        if flush:
            self.flush()

    def artifact(self, relpath: str) -> None:
        self.doc["artifacts"].append(relpath)
        self.flush()

    def set(self, **fields: Any) -> None:
        self.doc.update(fields)
        self.flush()

    def _finish(self, state: str) -> None:
        self.doc["state"] = state
        self.doc["status"] = state
        self.doc["finished_at"] = now_iso()
        self.flush()

    def completed(self) -> None:
        self._finish("completed")

    def failed(self, err: VoicelaneError) -> None:
        self.doc["error"] = err.to_dict()
        self.doc["next_action"] = err.next_action
        state = "cancelled" if err.code == "cancelled" else (
            "blocked" if err.code in BLOCKING_CODES else "error")
        self._finish(state)


def read_status(path: str | os.PathLike) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        return None
