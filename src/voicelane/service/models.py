"""Request and response models of the HTTP API (they also make the OpenAPI document).

Request models are flat (no nested models) so their JSON Schemas can be inlined in OpenAPI.
Unknown keys are ignored everywhere (existing clients send extra fields).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator

from voicelane.runspec import Device, FinetuneScope, Preset
from voicelane.service.core.jobs import JobRecord
from voicelane.service.core.train_compat import dataset_stats

PROFILE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# speak looks profiles up case-insensitively (old clients send `Demo_Voice`); ids stay lower-case
SPEAK_PROFILE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
MODES = ("callout", "briefing", "debrief")
PRIORITIES = ("info", "warn", "critical", "action")
# values the local provider can honour (see service/core/speak_policy.watermark); others -> 400
WATERMARK_MODES = ("none", "off", "metadata")
AUDIO_FORMATS = ("wav", "mp3")


def _lower(v: Any) -> Any:
    return v.strip().lower() if isinstance(v, str) else v


def _int_to_str(v: Any) -> Any:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


Ident = Annotated[str, BeforeValidator(_int_to_str), Field(min_length=1, max_length=128, pattern=NO_CONTROL)]
ShortText = Annotated[str, Field(max_length=32, pattern=NO_CONTROL)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# echoed in the x-trace-id reply header: printable ASCII only (a header cannot carry the rest)
HeaderIdent = Annotated[
    str,
    BeforeValidator(_int_to_str),
    Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"),
]


# ----------------------------------------------------------------------------------------------
# errors


class ErrorEnvelope(BaseModel):
    error: str = Field(description="stable error code")
    message: str
    details: dict[str, Any] | None = None
    traceId: str | None = None


class Suppressed(BaseModel):
    ok: bool = True
    suppressed: Literal[True] = True
    reason: Literal["voice_context_ineligible", "dedupe_cooldown"]
    details: dict[str, Any] | None = None
    traceId: str | None = None


# ----------------------------------------------------------------------------------------------
# speak


class SpeakRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1, max_length=600, description="what to say (1-600 characters)")
    mode: Literal["callout", "briefing", "debrief"] = "callout"
    priority: Literal["info", "warn", "critical", "action"] = "info"
    voiceProfile: str | None = Field(
        default=None, pattern=SPEAK_PROFILE_PATTERN, description="case-insensitive profile id"
    )
    voice_profile_id: str | None = Field(default=None, pattern=SPEAK_PROFILE_PATTERN)
    format: Annotated[Literal["wav", "mp3"], BeforeValidator(_lower)] = "wav"
    consent_asserted: StrictBool = False
    stream: StrictBool = Field(
        default=False,
        description="send audio as it is made (chunked WAV; or send "
        "`Accept: audio/L16` for raw big-endian PCM): sentence by sentence, then by frames",
    )
    watermark_mode: Annotated[str, BeforeValidator(_lower)] = Field(
        default="none",
        max_length=32,
        pattern=NO_CONTROL,
        description="`none`/`off` (no watermark) or `metadata` (a provenance tag in the audio container); "
        "echoed in x-watermark-mode; other values -> 400 voice_watermark_unsupported",
    )
    traceId: HeaderIdent | None = None
    missionId: Ident | None = None
    eventId: Ident | None = None
    referenceAudioHash: Ident | None = None
    dedupe_key: Ident | None = None
    provider: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    contextTier: ShortText | None = None
    sessionState: ShortText | None = None
    voiceMode: ShortText | None = None
    tenantId: HeaderIdent | None = Field(
        default=None,
        description="additive: budget scope; the x-tenant-id / x-customer-id headers win (default `single-tenant`)",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is blank")
        if "\x00" in v:
            raise ValueError("text contains NUL")
        return v


class VoiceProfile(BaseModel):
    profileId: str
    displayName: str | None = None
    lane: str | None = None
    promotable: bool | None = None
    language: str | None = None
    createdAt: str | None = None
    engine: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    consentRecorded: bool
    baseWeights: str | None = None
    bundleVersion: str | None = None
    manifestSha256: str
    filesValidated: int
    runtime: str
    default: bool


class RefusedProfile(BaseModel):
    profileId: str
    code: str
    message: str


class ProfilesReply(BaseModel):
    ok: bool = True
    defaultProfile: str | None
    profiles: list[VoiceProfile]
    refused: list[RefusedProfile]


# ----------------------------------------------------------------------------------------------
# training


def _aliases(*names: str) -> AliasChoices:
    return AliasChoices(*names)


PathStr = Annotated[str, Field(min_length=1, max_length=4096, pattern=NO_CONTROL)]
HumanName = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_CONTROL)]  # a voice's or a speaker's name


class TrainStartRequest(BaseModel):
    """Options of ``voicelane train``. Paths are resolved inside the configured data roots."""

    model_config = ConfigDict(extra="ignore")

    jobType: str | None = Field(default=None, description="train (default) | tts_voice_train | tts_prod_train")
    dataPath: PathStr | None = Field(
        default=None,
        validation_alias=_aliases(
            "dataPath", "data", "datasetPath", "audioPath", "data_path", "dataset_path", "audio_path"
        ),
        description="absent: the server-side default run (VOICELANE_TRAIN_DEFAULT_*: the kal demo corpus with "
        "its consent statement, fine-tuned from the shipped base)",
    )
    profile: str | None = Field(
        default=None,
        pattern=PROFILE_PATTERN,
        validation_alias=_aliases(
            "profile", "voiceProfile", "voice_profile_id", "profileId", "profile_id", "voiceProfileId"
        ),
        description="absent: VOICELANE_TRAIN_DEFAULT_PROFILE (demo_kal)",
    )
    preset: Preset = "cpu"
    base: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    steps: int | None = Field(default=None, ge=1, le=10_000_000)
    language: str | None = Field(default=None, max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    displayName: HumanName | None = Field(default=None, validation_alias=_aliases("displayName", "display_name"))
    minMinutes: float | None = Field(
        default=None, ge=0, le=100000, validation_alias=_aliases("minMinutes", "min_minutes")
    )
    evalMax: int | None = Field(default=None, ge=1, le=100000, validation_alias=_aliases("evalMax", "eval_max"))
    gates: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")], FiniteFloat] | None = Field(
        default=None, max_length=32
    )
    onnx: StrictBool = True
    consentStatement: PathStr | None = Field(
        default=None, validation_alias=_aliases("consentStatement", "consent_statement")
    )
    speakerName: HumanName | None = Field(default=None, validation_alias=_aliases("speakerName", "speaker_name"))
    heldout: PathStr | None = None
    acceptLicenseRisk: StrictBool = Field(
        default=False, validation_alias=_aliases("acceptLicenseRisk", "accept_license_risk")
    )
    threads: int | None = Field(
        default=None, ge=1, le=64, description="torch threads of the run (default VOICELANE_TRAIN_THREADS)"
    )
    finetuneScope: FinetuneScope | None = Field(
        default=None,
        validation_alias=_aliases("finetuneScope", "finetune_scope"),
        description="layers adapted when fine-tuning from base (default: the preset's)",
    )
    device: Device = "auto"
    nproc: int = Field(default=1, ge=1, le=64, description="data-parallel training processes (one per GPU)")
    snapshotEvery: int = Field(
        default=0, ge=0, le=10_000_000, validation_alias=_aliases("snapshotEvery", "snapshot_every")
    )
    selectSnapshot: StrictBool = Field(
        default=False,
        validation_alias=_aliases("selectSnapshot", "select_snapshot"),
        description="bundle the snapshot with the lowest regression-prompt WER",
    )


class DatasetRequest(BaseModel):
    """``voicelane dataset prepare`` (mode `prepare`, default) or ``dataset check`` (mode `check`)."""

    model_config = ConfigDict(extra="ignore")

    mode: Literal["prepare", "check", "voice_dataset", "knowledge_audio"] = Field(
        default="prepare", description="`voice_dataset` and `knowledge_audio` (old modes) mean `prepare`"
    )
    dataPath: PathStr | None = Field(
        default=None,
        validation_alias=_aliases(
            "dataPath", "data", "datasetPath", "audioPath", "data_path", "dataset_path", "audio_path"
        ),
        description="absent: VOICELANE_TRAIN_DEFAULT_DATA (the kal demo corpus)",
    )
    profile: str | None = Field(
        default=None,
        pattern=PROFILE_PATTERN,
        validation_alias=_aliases(
            "profile", "voiceProfile", "voice_profile_id", "profileId", "profile_id", "voiceProfileId"
        ),
    )
    language: str | None = Field(default=None, max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
    minMinutes: float | None = Field(
        default=None, ge=0, le=100000, validation_alias=_aliases("minMinutes", "min_minutes")
    )


class StartReply(BaseModel):
    ok: bool = True
    started: bool = True
    jobId: str
    state: str


class Progress(BaseModel):
    current: int
    total: int


class Job(BaseModel):
    id: str
    type: str
    lane: str
    state: Literal["pending", "running", "done", "error", "cancelled"]
    message: str
    progress: Progress
    metadata: dict[str, Any]
    artifactRefs: list[str]
    logs: list[str]
    startedAt: str | None
    endedAt: str | None
    createdAt: str
    exitCode: int | None = None
    error: dict[str, Any] | None = None
    warnings: list[str] = []
    cancelRequested: bool = False
    options: dict[str, Any] = {}
    outDir: str | None = None
    events: int = 0
    datasetStats: dict[str, Any] | None = Field(
        default=None,
        description="dataset jobs: voice_dataset/1 figures (schema, dataset_items, kept, rejected, "
        "kept_minutes, dataset_sha256)",
    )


class JobList(BaseModel):
    ok: bool = True
    jobs: list[Job]
    total: int


class CancelReply(BaseModel):
    ok: bool = True
    cancelled: bool
    jobId: str
    state: str
    job: Job


def job_out(row: JobRecord, logs: bool = True) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "lane": row.lane,
        "state": row.state,
        "message": row.message or "",
        "progress": {"current": int(row.progress_current or 0), "total": int(row.progress_total or 0)},
        "metadata": row.metadata or {},
        "artifactRefs": row.artifacts or [],
        "logs": (row.logs or []) if logs else [],
        "startedAt": row.started_at,
        "endedAt": row.ended_at,
        "createdAt": row.created_at,
        "exitCode": row.exit_code,
        "error": row.error,
        "warnings": row.warnings or [],
        "cancelRequested": bool(row.cancel_requested),
        "options": row.options or {},
        "outDir": row.out_dir,
        "events": int(row.seq or 0),
        "datasetStats": dataset_stats(row.metadata or {}) if row.type == "dataset" else None,
    }
