"""What the Voices page shows beside a served voice: its readiness decision and the real
held-out recordings it was scored against.

The readiness decision comes from the ``readiness.json`` that ``voicelane readiness`` writes next
to ``readiness.md`` (the service never runs the ops checks itself); it counts only for the bundle
whose manifest hash it names. Held-out recordings are looked up inside the data roots only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from voicelane.fsutil import read_json
from voicelane.service.core.paths import confine
from voicelane.service.studio import datasets as ds

READINESS_FILE = "readiness.json"
CLIP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CLIP_METRICS = ("mcd_db", "f0_rmse_hz", "per", "per_broad", "floor_per", "wer", "floor_wer")
MAX_CLIPS = 200


def readiness(reports_dir: Path, manifest_sha256: str) -> dict[str, Any]:
    path = reports_dir / READINESS_FILE
    doc = read_json(path)
    base = {"report": str(path)}
    if doc is None:
        return {
            **base,
            "state": "not_assessed",
            "reason": "no_report",
            "message": "no readiness report: run `voicelane readiness`",
        }
    if doc.get("bundle_manifest_sha256") != manifest_sha256:
        return {
            **base,
            "state": "not_assessed",
            "reason": "other_bundle",
            "reportProfile": doc.get("profile"),
            "message": "the readiness report is about a different bundle: rerun `voicelane readiness`",
        }
    if doc.get("verdict") not in ("GO", "NO-GO"):
        return {
            **base,
            "state": "not_assessed",
            "reason": "report_unreadable",
            "message": "readiness.json has no GO/NO-GO verdict",
        }
    blocking = [
        {"code": str(b.get("code")), "why": str(b.get("why")), "action": str(b.get("action"))}
        for b in doc.get("blocking") or []
        if isinstance(b, dict)
    ]
    return {
        **base,
        "state": doc["verdict"],
        "blocking": blocking,
        "generatedAt": doc.get("generated_at"),
        "commit": doc.get("commit"),
    }


def heldout_clips(eval_doc: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the eval's ``heldout`` record, [{id, text, metrics}]); bundles exported before the record
    existed still name their clip ids in ``per_clip`` (texts then come from the dataset)."""
    rec = eval_doc.get("heldout") if isinstance(eval_doc.get("heldout"), dict) else {}
    metrics = {
        r["id"]: {k: r[k] for k in CLIP_METRICS if k in r}
        for r in eval_doc.get("per_clip") or []
        if isinstance(r, dict) and isinstance(r.get("id"), str)
    }
    rows = rec.get("clips") if isinstance(rec.get("clips"), list) else [{"id": i} for i in metrics]
    clips = []
    for r in rows[:MAX_CLIPS]:
        cid = r.get("id") if isinstance(r, dict) else None
        if isinstance(cid, str) and CLIP_ID_RE.match(cid):
            text = r.get("text") if isinstance(r.get("text"), str) else None
            clips.append({"id": cid, "text": text, "metrics": metrics.get(cid, {})})
    return rec, clips


def find_dataset(roots: list[Path], name: str | None, ids: list[str]) -> Path | None:
    """The dataset under the data roots holding the most of ``ids`` (same-named folders first)."""
    if not ids:
        return None
    found = ds.list_datasets(roots)
    found.sort(key=lambda d: d["name"] != name)
    best, best_n = None, 0
    for d in found:
        have = set(_metadata(Path(d["path"])))
        n = sum(1 for i in ids if i in have)
        if n > best_n:
            best, best_n = Path(d["path"]), n
        if n == len(ids):
            break
    return best


def _metadata(folder: Path) -> dict[str, str]:
    try:
        return dict(ds.read_metadata(folder))
    except (OSError, ValueError):  # unreadable or not UTF-8: no texts from it
        return {}


def recording_of(folder: Path, clip_id: str, roots: list[Path]) -> Path | None:
    for suffix in ds.AUDIO_SUFFIXES:
        cand = folder / "wavs" / f"{clip_id}{suffix}"
        if cand.is_file():
            return confine(str(cand), roots, "clipId")  # a symlink out of the roots -> path_not_allowed
    return None


def heldout(bundle_dir: Path, roots: list[Path], data_path: str | None) -> dict[str, Any]:
    rec, clips = heldout_clips(read_json(bundle_dir / "eval.json") or {})
    ids = [c["id"] for c in clips]
    folder = confine(data_path, roots, "dataPath") if data_path else find_dataset(roots, rec.get("dataset_name"), ids)
    texts = _metadata(folder) if folder else {}
    for c in clips:
        c["text"] = c["text"] or texts.get(c["id"])
        c["recording"] = bool(folder and recording_of(folder, c["id"], roots))
    return {
        "source": rec.get("source"),
        "datasetName": rec.get("dataset_name"),
        "dataPath": str(folder) if folder else None,
        "clips": clips,
        "recordings": sum(1 for c in clips if c["recording"]),
    }
