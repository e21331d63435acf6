"""`train_status/1` (SPEC §4): written atomically for every outcome, success or failure."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from voicelane.errors import NEXT_ACTIONS, VoicelaneError
from voicelane.fsutil import atomic_write_json

SCHEMA = "train_status/1"
STATES = ("running", "completed", "error", "blocked", "cancelled")
# codes that mean "an operator decision is needed" rather than "something broke"
BLOCKING_CODES = {
    "consent_missing",
    "allowlist_rejected",
    "license_noncommercial",
    "license_unknown",
    "eval_gate_failed",
    "dataset_too_small",
    "dataset_empty",
    "missing_audio_path",
    "metadata_invalid",
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
        self.doc: dict[str, Any] = new_doc(job_type, lane, total)
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


def new_doc(job_type: str, lane: str, total: int = 0) -> dict[str, Any]:
    ts = now_iso()
    return {
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


def state_for(error: VoicelaneError | Mapping[str, Any] | None) -> str:
    code = _error_dict(error)["code"] if error is not None else None
    if code is None:
        return "completed"
    return "cancelled" if code == "cancelled" else "blocked" if code in BLOCKING_CODES else "error"


def _error_dict(error: VoicelaneError | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(error, VoicelaneError):
        return error.to_dict()
    return {"code": error.get("code"), "message": error.get("message"), "details": error.get("details") or {}}


def finalize(
    path: str | os.PathLike,
    error: VoicelaneError | Mapping[str, Any] | None = None,
    *,
    state: str | None = None,
    doc: dict[str, Any] | None = None,
    job_type: str = "tts_prod_train",
    fresh: bool = False,
    only_if_running: bool = False,
    next_action: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The one writer of a final train_status/1 document (atomic, fail closed).

    Starts from ``doc`` (the run's own, in memory), else the file at ``path`` (unless ``fresh``),
    else a new document for ``job_type``. ``only_if_running``: a document that is already final is
    left as it is (a supervisor never un-finishes what the run wrote). The state is ``state``, or
    what the error's code means (``state_for``); ``fields`` are added to the document."""
    from voicelane.runspec import LANES

    if doc is None:
        doc = None if fresh else read_status_object(path)
        if doc is None:
            doc = new_doc(job_type, LANES.get(job_type, "production"))
        elif only_if_running and doc.get("state") not in (None, "running"):
            return doc
    if error is not None:
        err = _error_dict(error)
        doc["error"] = err
        doc["next_action"] = next_action or (
            error.next_action
            if isinstance(error, VoicelaneError)
            else NEXT_ACTIONS.get(str(err["code"]), NEXT_ACTIONS["internal_error"])
        )
    doc.update(fields)
    doc["state"] = doc["status"] = state or state_for(error)
    ts = now_iso()
    doc["updated_at"] = ts
    doc["finished_at"] = doc.get("finished_at") or ts
    atomic_write_json(path, doc)
    return doc


def read_status_object(path: str | os.PathLike) -> dict[str, Any] | None:
    """The status document at ``path``; None when absent, unreadable or not a JSON object."""
    from voicelane.fsutil import read_json

    return read_json(path)


def read_status(path: str | os.PathLike) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        return None
