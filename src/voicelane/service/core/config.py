"""Service settings, read from the environment (``VOICELANE_*``).

Every setting has a default that is safe on a 2-core CPU machine bound to loopback. Paths are
resolved once, when the settings are built. ``Settings.from_env()`` is what ``serve()`` uses;
tests build ``Settings(...)`` directly or pass an explicit environment mapping.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

REPO_ROOT = Path(__file__).resolve().parents[4]
PRIORITIES = ("info", "warn", "critical", "action")


class SettingsError(ValueError):
    """A ``VOICELANE_*`` variable holds a value the service cannot use."""


def _split_paths(value: str) -> list[Path]:
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- where things live ---------------------------------------------------------------
    data_dir: Path = Field(default=Path("var"), description="VOICELANE_DATA_DIR")
    db_path: Path | None = Field(default=None, description="VOICELANE_DB_PATH (default <data_dir>/voicelane.db)")
    data_roots: list[Path] | None = Field(
        default=None, description="VOICELANE_DATA_ROOTS: dataset paths must resolve inside one "
                                  "(default: the repository's corpora/ and the data dir)")
    bundle_roots: list[Path] | None = Field(
        default=None, description="VOICELANE_BUNDLE_ROOTS: folders scanned for bundles/*/voice_bundle "
                                  "(default: the data dir and the repository's runs/demo)")
    default_profile: str | None = Field(default=None, description="VOICELANE_DEFAULT_PROFILE")

    # --- security --------------------------------------------------------------------------
    bind_host: str = Field(default="127.0.0.1", description="set by serve(); decides whether tokens are required")
    api_token: str | None = Field(default=None, description="VOICELANE_API_TOKEN")
    require_token: bool = Field(default=False, description="VOICELANE_REQUIRE_TOKEN: require it even on loopback")
    speak_require_token: bool = Field(default=False, description="VOICELANE_SPEAK_REQUIRE_TOKEN")
    auth: str = Field(default="on", description="VOICELANE_AUTH: on (training/admin routes need the token, "
                                                "even on loopback) | off (loopback only: no token)")
    allowed_hosts: list[str] = Field(default_factory=list,
                                     description="VOICELANE_ALLOWED_HOSTS: Host names accepted besides the "
                                                 "loopback names (comma list; '*' = any)")
    cors_origins: list[str] = Field(default_factory=list,
                                    description="VOICELANE_CORS_ORIGINS: origins allowed cross-origin requests "
                                                "(comma list; empty = CORS off; '*' = any)")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="VOICELANE_MAX_BODY_BYTES")

    # --- jobs ------------------------------------------------------------------------------
    runner: str = Field(default="local", description="VOICELANE_RUNNER: local | ray")
    max_train_jobs: int = Field(default=1, ge=1, description="VOICELANE_MAX_TRAIN_JOBS")
    max_dataset_jobs: int = Field(default=1, ge=1, description="VOICELANE_MAX_DATASET_JOBS")
    train_threads: int = Field(default=2, ge=1, description="VOICELANE_TRAIN_THREADS (passed as --threads)")
    cancel_grace_s: float = Field(default=10.0, ge=0, description="VOICELANE_CANCEL_GRACE_S: SIGTERM -> SIGKILL")
    log_tail_lines: int = Field(default=200, ge=1, le=10000, description="VOICELANE_LOG_TAIL_LINES")
    max_log_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="VOICELANE_MAX_LOG_BYTES")
    max_events_per_job: int = Field(default=50000, ge=10, description="VOICELANE_MAX_EVENTS_PER_JOB")

    # --- speak -----------------------------------------------------------------------------
    speak_engine: str = Field(default="auto", description="VOICELANE_SPEAK_ENGINE: auto | pytorch | onnx")
    speak_workers: int = Field(default=1, ge=1, le=64, description="VOICELANE_SPEAK_WORKERS")
    speak_threads: int = Field(default=1, ge=1, le=64,
                               description="VOICELANE_SPEAK_THREADS (torch threads per synthesis)")
    speak_queue_size: int = Field(default=16, ge=1, description="VOICELANE_SPEAK_QUEUE_SIZE")
    speak_timeout_s: float = Field(default=15.0, gt=0, description="VOICELANE_SPEAK_TIMEOUT_S")
    speak_cache_entries: int = Field(default=256, ge=0, description="VOICELANE_SPEAK_CACHE_ENTRIES (0 = off)")
    speak_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0, description="VOICELANE_SPEAK_CACHE_BYTES")
    mission_budget_chars: int = Field(default=20000, ge=0, description="VOICELANE_MISSION_BUDGET_CHARS (0 = no limit)")
    tenant_daily_budget_chars: int = Field(default=500000, ge=0,
                                           description="VOICELANE_TENANT_DAILY_BUDGET_CHARS (0 = no limit)")
    rate_limit_per_min: float = Field(default=120.0, ge=0, description="VOICELANE_RATE_LIMIT_PER_MIN (0 = off)")
    rate_limit_burst: int = Field(default=20, ge=1, description="VOICELANE_RATE_LIMIT_BURST")
    dedupe_cooldown_s: dict[str, float] = Field(
        default_factory=lambda: {"info": 30.0, "warn": 15.0, "critical": 5.0, "action": 2.0},
        description="VOICELANE_DEDUPE_COOLDOWN_S: info=30,warn=15,critical=5,action=2")
    remote_providers: list[str] = Field(
        default_factory=list, description="VOICELANE_REMOTE_PROVIDERS: remote providers explicitly enabled "
                                          "(empty = local only)")
    voice_rescan_s: float = Field(default=5.0, ge=0, description="VOICELANE_VOICE_RESCAN_S (0 = only at start "
                                                                   "and on POST /api/voice/reload)")
    audit_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="VOICELANE_AUDIT_MAX_BYTES")

    @field_validator("runner")
    @classmethod
    def _runner(cls, v: str) -> str:
        if v not in ("local", "ray"):
            raise ValueError("runner must be local or ray")
        return v

    @field_validator("auth", mode="before")
    @classmethod
    def _auth(cls, v: Any) -> str:
        text = str(v).strip().lower()
        if text in ("on", "token", "true", "1", "yes"):
            return "on"
        if text in ("off", "none", "false", "0", "no"):
            return "off"
        raise ValueError("auth must be on or off")

    @field_validator("speak_engine")
    @classmethod
    def _engine(cls, v: str) -> str:
        if v not in ("auto", "pytorch", "onnx"):
            raise ValueError("speak engine must be auto, pytorch or onnx")
        return v

    @field_validator("dedupe_cooldown_s")
    @classmethod
    def _cooldowns(cls, v: dict[str, float]) -> dict[str, float]:
        bad = set(v) - set(PRIORITIES)
        if bad:
            raise ValueError(f"unknown priorities {sorted(bad)}")
        if any(x < 0 for x in v.values()):
            raise ValueError("cooldowns must be >= 0")
        return v

    # --- derived ----------------------------------------------------------------------------
    def resolved(self) -> "Settings":
        """A copy with every path absolute and the defaults that depend on data_dir filled in."""
        data_dir = self.data_dir.expanduser().resolve()
        roots = self.data_roots if self.data_roots is not None else [REPO_ROOT / "corpora", data_dir]
        broots = self.bundle_roots if self.bundle_roots is not None else [data_dir, REPO_ROOT / "runs" / "demo"]
        return self.model_copy(update={
            "data_dir": data_dir,
            "db_path": (self.db_path or data_dir / "voicelane.db").expanduser().resolve(),
            "data_roots": [Path(os.path.realpath(p.expanduser())) for p in roots],
            "bundle_roots": [p.expanduser().resolve() for p in broots],
        })

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bind_host)

    @property
    def admin_token_required(self) -> bool:
        return self.require_token or self.auth == "on" or not self.loopback

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}

        def get(name: str) -> str | None:
            v = env.get(name)
            return v if v is not None and v.strip() != "" else None

        simple = {
            "VOICELANE_DATA_DIR": "data_dir", "VOICELANE_DB_PATH": "db_path",
            "VOICELANE_DEFAULT_PROFILE": "default_profile", "VOICELANE_API_TOKEN": "api_token",
            "VOICELANE_REQUIRE_TOKEN": "require_token", "VOICELANE_SPEAK_REQUIRE_TOKEN": "speak_require_token",
            "VOICELANE_MAX_BODY_BYTES": "max_body_bytes", "VOICELANE_RUNNER": "runner",
            "VOICELANE_MAX_TRAIN_JOBS": "max_train_jobs", "VOICELANE_MAX_DATASET_JOBS": "max_dataset_jobs",
            "VOICELANE_TRAIN_THREADS": "train_threads", "VOICELANE_CANCEL_GRACE_S": "cancel_grace_s",
            "VOICELANE_LOG_TAIL_LINES": "log_tail_lines", "VOICELANE_MAX_LOG_BYTES": "max_log_bytes",
            "VOICELANE_MAX_EVENTS_PER_JOB": "max_events_per_job",
            "VOICELANE_SPEAK_ENGINE": "speak_engine", "VOICELANE_SPEAK_WORKERS": "speak_workers",
            "VOICELANE_SPEAK_THREADS": "speak_threads", "VOICELANE_SPEAK_QUEUE_SIZE": "speak_queue_size",
            "VOICELANE_SPEAK_TIMEOUT_S": "speak_timeout_s", "VOICELANE_SPEAK_CACHE_ENTRIES": "speak_cache_entries",
            "VOICELANE_SPEAK_CACHE_BYTES": "speak_cache_bytes",
            "VOICELANE_MISSION_BUDGET_CHARS": "mission_budget_chars",
            "VOICELANE_TENANT_DAILY_BUDGET_CHARS": "tenant_daily_budget_chars",
            "VOICELANE_RATE_LIMIT_PER_MIN": "rate_limit_per_min", "VOICELANE_RATE_LIMIT_BURST": "rate_limit_burst",
            "VOICELANE_VOICE_RESCAN_S": "voice_rescan_s", "VOICELANE_AUDIT_MAX_BYTES": "audit_max_bytes",
            "VOICELANE_AUTH": "auth",
        }
        for var, key in simple.items():
            v = get(var)
            if v is not None:
                values[key] = v
        if (v := get("VOICELANE_DATA_ROOTS")) is not None:
            values["data_roots"] = _split_paths(v)
        if (v := get("VOICELANE_BUNDLE_ROOTS")) is not None:
            values["bundle_roots"] = _split_paths(v)
        for var, key in (("VOICELANE_ALLOWED_HOSTS", "allowed_hosts"), ("VOICELANE_CORS_ORIGINS", "cors_origins")):
            if (v := get(var)) is not None:
                values[key] = [p.strip() for p in v.split(",") if p.strip()]
        if (v := get("VOICELANE_REMOTE_PROVIDERS")) is not None:
            values["remote_providers"] = [p.strip().lower() for p in v.split(",") if p.strip()]
        if (v := get("VOICELANE_DEDUPE_COOLDOWN_S")) is not None:
            cool = dict(cls.model_fields["dedupe_cooldown_s"].default_factory())  # type: ignore[misc]
            for part in v.split(","):
                key, sep, val = part.partition("=")
                if not sep:
                    raise SettingsError(f"VOICELANE_DEDUPE_COOLDOWN_S: expected priority=seconds, got {part!r}")
                try:
                    cool[key.strip()] = float(val)
                except ValueError as exc:
                    raise SettingsError(f"VOICELANE_DEDUPE_COOLDOWN_S: {part!r}: {exc}") from exc
            values["dedupe_cooldown_s"] = cool
        values.update(overrides)
        try:
            return cls(**values)
        except ValueError as exc:
            raise SettingsError(f"invalid VOICELANE_* setting: {exc}") from exc


def is_loopback(host: str) -> bool:
    h = (host or "").strip().strip("[]").lower()
    if h in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False
