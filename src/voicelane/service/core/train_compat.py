"""What the training routes keep from the service they replace (SPEC §9 "Compatibility").

- **Server-side defaults**: ``POST /api/train/start`` with ``{}`` or ``{"jobType": ...}`` (no
  dataset, no profile) trains the operator's default dataset - by default the embedded ``kal``
  demo corpus with its consent statement, fine-tuned from the shipped base voice - under the
  default profile. ``VOICELANE_TRAIN_DEFAULT_*`` configure it (tests use a tiny preset).
- **Old job types and dataset modes**: ``tts_prod_train_nemo`` is refused (no NeMo engine here);
  ``voice_dataset`` and ``knowledge_audio`` are dataset preparation.
- **The latest status on this machine**: ``GET /api/train/status`` reads the newest
  ``train_status/1`` file, whoever wrote it (service jobs, the CLI, the orchestrator).
- **Old job messages**: "Training complete", "Training failed (exit N)".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from voicelane.paths import REPO_ROOT
from voicelane.service.core.errors import ApiError

NEMO_JOB_TYPES = ("tts_prod_train_nemo",)
# old dataset modes -> what they are here (both prepare a validated, normalised dataset)
OLD_DATASET_MODES = {"voice_dataset": "prepare", "knowledge_audio": "prepare"}
DATA_KEYS = ("dataPath", "data", "datasetPath", "audioPath", "data_path", "dataset_path", "audio_path")
PROFILE_KEYS = ("profile", "voiceProfile", "voice_profile_id", "profileId", "profile_id", "voiceProfileId")
DATASET_STATS_SCHEMA = "voice_dataset/1"
DEFAULT_BASE = "voicelane-slt-base-v1"
DEFAULT_PROFILE = "demo_kal"


def _env(env: Mapping[str, str], name: str) -> str | None:
    v = env.get(name)
    return v.strip() if v is not None and v.strip() else None


@dataclass(frozen=True)
class TrainDefaults:
    """The run a bare ``/api/train/start`` gets (``VOICELANE_TRAIN_DEFAULT_*``)."""

    data: Path
    profile: str = DEFAULT_PROFILE
    consent_statement: Path | None = None
    base: str | None = DEFAULT_BASE
    preset: str = "cpu"
    steps: int | None = None
    heldout: Path | None = None
    min_minutes: float | None = None
    eval_max: int | None = None
    gates: dict[str, float] | None = None
    onnx: bool | None = None
    status_dirs: tuple[Path, ...] = field(default_factory=tuple)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TrainDefaults":
        env = os.environ if env is None else env
        corpus = REPO_ROOT / "corpora" / "kal"
        data = Path(_env(env, "VOICELANE_TRAIN_DEFAULT_DATA") or corpus)
        consent = _env(env, "VOICELANE_TRAIN_DEFAULT_CONSENT")
        heldout = _env(env, "VOICELANE_TRAIN_DEFAULT_HELDOUT")
        base = _env(env, "VOICELANE_TRAIN_DEFAULT_BASE") or DEFAULT_BASE
        steps = _env(env, "VOICELANE_TRAIN_DEFAULT_STEPS")
        min_minutes = _env(env, "VOICELANE_TRAIN_DEFAULT_MIN_MINUTES")
        eval_max = _env(env, "VOICELANE_TRAIN_DEFAULT_EVAL_MAX")
        gates = _env(env, "VOICELANE_TRAIN_DEFAULT_GATES")
        dirs = _env(env, "VOICELANE_TRAIN_STATUS_DIRS")
        onnx = _env(env, "VOICELANE_TRAIN_DEFAULT_ONNX")
        return cls(
            data=data,
            profile=_env(env, "VOICELANE_TRAIN_DEFAULT_PROFILE") or DEFAULT_PROFILE,
            consent_statement=Path(consent)
            if consent
            else (data / "CONSENT.txt" if (data / "CONSENT.txt").is_file() else None),
            base=None if base.lower() == "none" else base,
            preset=_env(env, "VOICELANE_TRAIN_DEFAULT_PRESET") or "cpu",
            steps=int(steps) if steps else None,
            heldout=Path(heldout) if heldout else (REPO_ROOT / "corpora" / "kal_heldout" if data == corpus else None),
            min_minutes=float(min_minutes) if min_minutes else None,
            eval_max=int(eval_max) if eval_max else None,
            gates=json.loads(gates) if gates else None,
            onnx=None if onnx is None else onnx.lower() not in ("0", "false", "no", "off"),
            status_dirs=tuple(Path(p) for p in dirs.split(os.pathsep) if p)
            if dirs
            else (REPO_ROOT / "artifacts", Path.cwd() / "artifacts"),
        )

    def roots(self) -> list[Path]:
        """Folders the defaulted paths live in (added to the data roots for a defaulted run)."""
        paths = [self.data, self.consent_statement, self.heldout]
        return [Path(os.path.realpath(p if p.is_dir() else p.parent)) for p in paths if p is not None]

    def fill_train(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The body with the server-side defaults for what it leaves out; True when the dataset
        itself was defaulted (then consent, base, preset and steps come from the defaults too)."""
        out = dict(body)
        if not any(k in out for k in PROFILE_KEYS):
            out["profile"] = self.profile
        if any(k in out for k in DATA_KEYS):
            return out, False
        out["dataPath"] = str(self.data)
        for key, value in (
            ("consentStatement", self.consent_statement),
            ("base", self.base),
            ("preset", self.preset),
            ("steps", self.steps),
            ("heldout", self.heldout),
            ("minMinutes", self.min_minutes),
            ("evalMax", self.eval_max),
            ("gates", self.gates),
            ("onnx", self.onnx),
        ):
            if value is not None and key not in out:
                out[key] = str(value) if isinstance(value, Path) else value
        return out, True

    def fill_dataset(self, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Map an old dataset mode; default the dataset. Returns (body, the old mode asked for)."""
        out = dict(body)
        old = out.get("mode") if isinstance(out.get("mode"), str) else None
        old = old if old in OLD_DATASET_MODES else None
        if old:
            out["mode"] = OLD_DATASET_MODES[old]
        if not any(k in out for k in DATA_KEYS):
            out["dataPath"] = str(self.data)
            if self.min_minutes is not None and "minMinutes" not in out:
                out["minMinutes"] = self.min_minutes
        return out, old


def refuse_unavailable_job_type(job_type: Any) -> None:
    if job_type in NEMO_JOB_TYPES:
        raise ApiError(
            400,
            "engine_unavailable",
            f"jobType {job_type!r} needs the NeMo engine, which this installation does not have",
            {"jobType": job_type, "engine": "nemo", "use": "tts_prod_train"},
        )


# ----------------------------------------------------------------------------------------------
# the latest status on this machine


def machine_status_files(defaults: TrainDefaults, env: Mapping[str, str] | None = None) -> list[Path]:
    """Status files written outside the service: ``TRAIN_STATUS_PATH`` and ``<dir>/train_status.*.json``."""
    env = os.environ if env is None else env
    found: dict[str, Path] = {}
    explicit = _env(env, "TRAIN_STATUS_PATH")
    candidates = [Path(explicit)] if explicit else []
    for d in defaults.status_dirs:
        try:
            candidates += sorted(d.glob("train_status.*.json"))
        except OSError:
            continue
    for p in candidates:
        if p.is_file():
            found.setdefault(os.path.realpath(p), p)
    return list(found.values())


def newest(paths: list[Path], after_ns: int = 0) -> Path | None:
    """The most recently written file (mtime), ignoring those written at or before ``after_ns``."""
    best: tuple[int, Path] | None = None
    for p in paths:
        try:
            m = p.stat().st_mtime_ns
        except OSError:
            continue
        if m > after_ns and (best is None or m > best[0]):
            best = (m, p)
    return best[1] if best else None


def with_old_keys(doc: dict[str, Any]) -> dict[str, Any]:
    """A train_status document with the keys old readers use (``status``, ``stats.dataset_items``,
    ``stats.bundle_valid``, ``job_type``), derived from the new ones when a writer left them out."""
    out = dict(doc)
    out.setdefault("status", out.get("state"))
    out.setdefault("job_type", out.get("jobType"))
    stats = dict(out.get("stats") or {})
    if "dataset_items" not in stats and isinstance(stats.get("kept"), int):
        stats["dataset_items"] = stats["kept"]
    stats.setdefault("bundle_valid", False)
    out["stats"] = stats
    return out


# ----------------------------------------------------------------------------------------------
# old job messages and dataset stats


def final_message(job_type: str, state: str, exit_code: int | None) -> str | None:
    """The old ``message`` of a finished job (None: keep the new one, e.g. for cancellations)."""
    what = "Dataset" if job_type == "dataset" else "Training"
    if state == "done":
        return f"{what} complete"
    if state == "error":
        return f"{what} failed (exit {exit_code})"
    return None


DATASET_STAT_KEYS = ("schema", "dataset_items", "kept", "rejected", "kept_minutes", "dataset_sha256")


def dataset_stats(metadata: dict[str, Any]) -> dict[str, Any]:
    """``datasetStats`` of a dataset job (``voice_dataset/1`` keys) from its STATS."""
    stats = {k: metadata[k] for k in DATASET_STAT_KEYS if k in metadata}
    if "dataset_items" not in stats and "kept" in stats:
        stats["dataset_items"] = stats["kept"]
    if stats:
        stats.setdefault("schema", DATASET_STATS_SCHEMA)
    report = metadata.get("report")
    if not stats and isinstance(report, dict) and isinstance(report.get("totals"), dict):
        totals = report["totals"]
        stats = {
            "schema": DATASET_STATS_SCHEMA,
            "dataset_items": totals.get("kept"),
            "kept": totals.get("kept"),
            "rejected": totals.get("rejected"),
            "kept_minutes": totals.get("kept_minutes"),
        }
    return stats
