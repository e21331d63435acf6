"""The training trace: one ``training-trace`` JSONL record per verify run, appended under a lock.

Each record carries ``deltas``: how its numeric metrics and constraint results moved since the
previous record of the same profile (``null`` for a profile's first record)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from voicelane.fsutil import atomic_write_bytes, canonical_json

TRACE_KIND, TRACE_VERSION = "training-trace", 1


def _records(lines) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("kind") == TRACE_KIND:
            out.append(rec)
    return out


def read_trace(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return _records(fh)
    except FileNotFoundError:
        return []


def _numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Flatten the numeric leaves of a metrics tree: {"eval_gates_passed.values.wer": 0.12, ...}."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = obj
    return out


def deltas(previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any] | None:
    """Metric changes since ``previous`` (same profile): numbers that moved, verdicts that flipped."""
    if previous is None:
        return None
    before, after = _numbers(previous.get("metrics") or {}), _numbers(record.get("metrics") or {})
    metrics = {
        k: {"from": before[k], "to": v, "delta": round(v - before[k], 6)}
        for k, v in sorted(after.items())
        if k in before and v != before[k]
    }
    was = {c["id"]: c["pass"] for c in previous.get("constraints") or []}
    flipped = {
        c["id"]: {"from": was[c["id"]], "to": c["pass"]}
        for c in record.get("constraints") or []
        if c["id"] in was and was[c["id"]] != c["pass"]
    }
    return {
        "since_seq": previous.get("seq"),
        "since_id": previous.get("id"),
        "metrics": metrics,
        "constraints": flipped,
        "verdict": None
        if previous.get("verdict") == record.get("verdict")
        else {"from": previous.get("verdict"), "to": record.get("verdict")},
    }


def append_trace(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one record under an exclusive lock; ``seq`` = previous records + 1, ``deltas`` against
    the previous record of the same profile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.seek(0)
            existing = _records(fh)
            seq = max((int(r.get("seq") or 0) for r in existing), default=0)
            same = [r for r in existing if r.get("profile") == record.get("profile")]
            prev = max(same, key=lambda r: int(r.get("seq") or 0)) if same else None
            record = {**record, "seq": seq + 1}
            record["deltas"] = deltas(prev, record)
            fh.seek(0, os.SEEK_END)
            fh.write(canonical_json(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return record


def select(records: list[dict[str, Any]], profile: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Records of ``profile`` (all when None), the newest ``limit`` of them, in seq order."""
    out = sorted(
        (r for r in records if profile is None or r.get("profile") == profile), key=lambda r: int(r.get("seq") or 0)
    )
    return out[max(len(out) - limit, 0) :] if limit is not None and limit >= 0 else out


def export_trace(trace: Path, out: Path, profile: str | None = None, limit: int | None = None) -> int:
    records = select(read_trace(trace), profile, limit)
    if out.suffix == ".json":
        data = json.dumps(records, sort_keys=True, indent=2) + "\n"
    else:
        data = "".join(canonical_json(r) + "\n" for r in records)
    atomic_write_bytes(out, data.encode("utf-8"))
    return len(records)


def latest_record(trace: Path, profile: str | None = None) -> dict[str, Any] | None:
    recs = select(read_trace(trace), profile)
    return recs[-1] if recs else None
