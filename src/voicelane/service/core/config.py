"""Service settings (pydantic-settings), read from the environment: ``VOICELANE_<FIELD>``.

Every setting has a default that is safe on a 2-core CPU machine bound to loopback. Paths are
resolved once, when the settings are built. ``Settings.from_env()`` is what ``serve()`` uses
(``os.environ`` or an explicit mapping); ``Settings(...)`` built directly reads no environment.
Lists are comma-separated (paths: ``os.pathsep``); ``VOICELANE_DEDUPE_COOLDOWN_S`` is
``priority=seconds,...`` over the defaults.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Mapping, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

from voicelane.paths import REPO_ROOT

PRIORITIES = ("info", "warn", "critical", "action")
S = TypeVar("S", bound=BaseSettings)


class SettingsError(ValueError):
    """A ``VOICELANE_*`` variable holds a value the service cannot use."""


def _split_paths(value: str) -> list[Path]:
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def _comma_list(value: Any) -> Any:
    return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value


def _path_list(value: Any) -> Any:
    return _split_paths(value) if isinstance(value, str) else value


DEFAULT_COOLDOWNS = {"info": 30.0, "warn": 15.0, "critical": 5.0, "action": 2.0}


def _cooldown_text(value: Any) -> Any:
    """``info=30,warn=15`` over the defaults (a dict passes through)."""
    if not isinstance(value, str):
        return value
    cool = dict(DEFAULT_COOLDOWNS)
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if not sep:
            raise ValueError(f"VOICELANE_DEDUPE_COOLDOWN_S: expected priority=seconds, got {part!r}")
        try:
            cool[key.strip()] = float(val)
        except ValueError as exc:
            raise ValueError(f"VOICELANE_DEDUPE_COOLDOWN_S: {part!r}: {exc}") from None
    return cool


class _MappingEnvSource(EnvSettingsSource):
    """The ``VOICELANE_*`` variables of a given mapping (``os.environ`` by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self.environ = {k: v for k, v in environ.items() if v is None or v.strip() != ""}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self.environ.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICELANE_", extra="forbid", validate_assignment=True)

    # --- where things live ---------------------------------------------------------------
    data_dir: Path = Field(default=Path("var"), description="VOICELANE_DATA_DIR")
    db_path: Path | None = Field(default=None, description="VOICELANE_DB_PATH (default <data_dir>/voicelane.db)")
    data_roots: Annotated[list[Path] | None, NoDecode] = Field(
        default=None,
        description="VOICELANE_DATA_ROOTS: dataset paths must resolve inside one "
        "(default: the repository's corpora/ and the data dir)",
    )
    bundle_roots: Annotated[list[Path] | None, NoDecode] = Field(
        default=None,
        description="VOICELANE_BUNDLE_ROOTS: folders scanned for bundles/*/voice_bundle "
        "(default: the data dir and the repository's runs/demo)",
    )
    default_profile: str | None = Field(default=None, description="VOICELANE_DEFAULT_PROFILE")
    reports_dir: Path | None = Field(
        default=None,
        description="VOICELANE_REPORTS_DIR: where `voicelane readiness` wrote readiness.json "
        "(default: the repository's reports/)",
    )

    # --- security --------------------------------------------------------------------------
    bind_host: str = Field(default="127.0.0.1", description="set by serve(); decides whether tokens are required")
    api_token: str | None = Field(default=None, description="VOICELANE_API_TOKEN")
    require_token: bool = Field(default=False, description="VOICELANE_REQUIRE_TOKEN: require it even on loopback")
    speak_require_token: bool = Field(default=False, description="VOICELANE_SPEAK_REQUIRE_TOKEN")
    auth: str = Field(
        default="on",
        description="VOICELANE_AUTH: on (training/admin routes need the token, "
        "even on loopback) | off (loopback only: no token)",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="VOICELANE_ALLOWED_HOSTS: Host names accepted besides the loopback names (comma list; '*' = any)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="VOICELANE_CORS_ORIGINS: origins allowed cross-origin requests "
        "(comma list; empty = CORS off; '*' = any)",
    )
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
    speak_threads: int = Field(
        default=1, ge=1, le=64, description="VOICELANE_SPEAK_THREADS (torch threads per synthesis)"
    )
    speak_queue_size: int = Field(default=16, ge=1, description="VOICELANE_SPEAK_QUEUE_SIZE")
    speak_timeout_s: float = Field(default=15.0, gt=0, description="VOICELANE_SPEAK_TIMEOUT_S")
    # a mission's repeated callouts; 128 WAVs of a few seconds are ~15 MB (~4 % of the service's RSS)
    speak_cache_entries: int = Field(default=128, ge=0, description="VOICELANE_SPEAK_CACHE_ENTRIES (0 = off)")
    speak_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0, description="VOICELANE_SPEAK_CACHE_BYTES")
    mission_budget_chars: int = Field(default=20000, ge=0, description="VOICELANE_MISSION_BUDGET_CHARS (0 = no limit)")
    tenant_daily_budget_chars: int = Field(
        default=500000, ge=0, description="VOICELANE_TENANT_DAILY_BUDGET_CHARS (0 = no limit)"
    )
    rate_limit_per_min: float = Field(default=120.0, ge=0, description="VOICELANE_RATE_LIMIT_PER_MIN (0 = off)")
    rate_limit_burst: int = Field(default=20, ge=1, description="VOICELANE_RATE_LIMIT_BURST")
    dedupe_cooldown_s: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_COOLDOWNS),
        description="VOICELANE_DEDUPE_COOLDOWN_S: info=30,warn=15,critical=5,action=2",
    )
    remote_providers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="VOICELANE_REMOTE_PROVIDERS: remote providers explicitly enabled (empty = local only)",
    )
    voice_rescan_s: float = Field(
        default=5.0, ge=0, description="VOICELANE_VOICE_RESCAN_S (0 = only at start and on POST /api/voice/reload)"
    )
    audit_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="VOICELANE_AUDIT_MAX_BYTES")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings,)  # the environment is read by from_env() only

    _lists = field_validator("allowed_hosts", "cors_origins", mode="before")(_comma_list)
    _paths = field_validator("data_roots", "bundle_roots", mode="before")(_path_list)
    _cooldown_env = field_validator("dedupe_cooldown_s", mode="before")(_cooldown_text)

    @field_validator("remote_providers", mode="before")
    @classmethod
    def _providers(cls, v: Any) -> Any:
        return [p.lower() for p in _comma_list(v)] if isinstance(v, str) else v

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
        return self.model_copy(
            update={
                "data_dir": data_dir,
                "db_path": (self.db_path or data_dir / "voicelane.db").expanduser().resolve(),
                "data_roots": [Path(os.path.realpath(p.expanduser())) for p in roots],
                "bundle_roots": [p.expanduser().resolve() for p in broots],
                "reports_dir": (self.reports_dir or REPO_ROOT / "reports").expanduser().resolve(),
            }
        )

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bind_host)

    @property
    def admin_token_required(self) -> bool:
        return self.require_token or self.auth == "on" or not self.loopback

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from ``VOICELANE_*`` in ``environ`` (default ``os.environ``); ``overrides`` win."""
        return settings_from_env(cls, environ, **overrides)


def settings_from_env(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """``cls`` from its prefixed variables in ``environ`` (default ``os.environ``); blank ones are
    unset; ``overrides`` win. A value it cannot use raises SettingsError."""
    try:
        values = _MappingEnvSource(cls, os.environ if environ is None else environ)()
        return cls(**(values | overrides))
    except (ValueError, ValidationError) as exc:
        raise SettingsError(f"invalid {cls.model_config.get('env_prefix', '')}* setting: {exc}") from exc


def is_loopback(host: str) -> bool:
    h = (host or "").strip().strip("[]").lower()
    if h in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False
