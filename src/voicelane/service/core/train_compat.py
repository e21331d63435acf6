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

import os
from pathlib import Path
from typing import Annotated, Any, Mapping

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voicelane.paths import REPO_ROOT
from voicelane.service.core.config import settings_from_env
from voicelane.service.core.errors import ApiError

NEMO_JOB_TYPES = ("tts_prod_train_nemo",)
# old dataset modes -> what they are here (both prepare a validated, normalised dataset)
OLD_DATASET_MODES = {"voice_dataset": "prepare", "knowledge_audio": "prepare"}
DATA_KEYS = ("dataPath", "data", "datasetPath", "audioPath", "data_path", "dataset_path", "audio_path")
PROFILE_KEYS = ("profile", "voiceProfile", "voice_profile_id", "profileId", "profile_id", "voiceProfileId")
DATASET_STATS_SCHEMA = "voice_dataset/1"
DEFAULT_BASE = "voicelane-slt-base-v1"
DEFAULT_PROFILE = "demo_kal"


KAL = REPO_ROOT / "corpora" / "kal"


def _env(env: Mapping[str, str], name: str) -> str | None:
    v = env.get(name)
    return v.strip() if v is not None and v.strip() else None


class TrainDefaults(BaseSettings):
    """The run a bare ``/api/train/start`` gets: ``VOICELANE_TRAIN_DEFAULT_<FIELD>`` (docs/service-contract.md)."""

    model_config = SettingsConfigDict(
        env_prefix="VOICELANE_TRAIN_DEFAULT_", extra="ignore", frozen=True, populate_by_name=True
    )

    data: Path = Field(default=KAL, description="the dataset (default: the embedded kal demo corpus)")
    profile: str = DEFAULT_PROFILE
    consent: Path | None = Field(default=None, description="default: <data>/CONSENT.txt when there is one")
    base: str | None = Field(default=DEFAULT_BASE, description="'none': from scratch")
    preset: str = "cpu"
    steps: int | None = Field(default=None, description="default: the preset's")
    heldout: Path | None = Field(default=None, description="default: corpora/kal_heldout with the kal corpus")
    min_minutes: float | None = None
    eval_max: int | None = None
    gates: dict[str, float] | None = Field(default=None, description="JSON")
    onnx: bool | None = None
    status_dirs: Annotated[tuple[Path, ...], NoDecode] = Field(
        default_factory=lambda: (REPO_ROOT / "artifacts", Path.cwd() / "artifacts"),
        validation_alias="voicelane_train_status_dirs",
        description="VOICELANE_TRAIN_STATUS_DIRS: where other runs' train_status.*.json are read",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings,)  # the environment is read by from_env() only

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TrainDefaults":
        return settings_from_env(cls, env)

    @field_validator("base", mode="before")
    @classmethod
    def _none_is_scratch(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.lower() == "none" else v

    @field_validator("status_dirs", mode="before")
    @classmethod
    def _path_list(cls, v: Any) -> Any:
        return tuple(Path(p) for p in v.split(os.pathsep) if p) if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_dataset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        data = Path(values.get("data") or KAL)
        if values.get("consent") is None and (data / "CONSENT.txt").is_file():
            values = {**values, "consent": data / "CONSENT.txt"}
        if values.get("heldout") is None and data == KAL:
            values = {**values, "heldout": REPO_ROOT / "corpora" / "kal_heldout"}
        return values

    def roots(self) -> list[Path]:
        """Folders the defaulted paths live in (added to the data roots for a defaulted run)."""
        paths = [self.data, self.consent, self.heldout]
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
            ("consentStatement", self.consent),
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
