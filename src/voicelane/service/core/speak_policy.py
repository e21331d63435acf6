"""The runtime controls of ``POST /api/voice/speak`` (SPEC §9), as small testable classes.

Order of the checks (the route applies them in this order):
validate -> context gate -> consent -> provider policy -> budgets -> rate limit -> dedupe ->
cache -> synthesis. Every class takes an injectable clock so budgets, rate limits and cooldowns
can be tested without sleeping. All per-key state lives in bounded LRU maps.
"""

from __future__ import annotations

import math
import mmap
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, Hashable, TypeVar

from voicelane.service.core.errors import ApiError

LOCAL_PROVIDERS = ("local", "auto", "")
LOCAL_PREFIX = "local"  # `local-chatterbox` (the old default), `local-piper`, ...: all local
ALWAYS_LOCAL_PRIORITIES = ("critical", "action")
CRITICAL_ONLY_PRIORITIES = ("critical", "action")  # what `voiceMode: critical_only` lets through
DEFAULT_TENANT = "single-tenant"
TENANT_HEADERS = ("x-tenant-id", "x-customer-id")
HONOURED_WATERMARKS = ("none", "off", "metadata")
PRIORITY_RANK = {"critical": 0, "action": 0, "warn": 1, "info": 2}
MAX_KEYS = 100_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Clock:
    """``monotonic()`` for intervals, ``wall()`` (epoch seconds) for calendar days."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class FakeClock(Clock):
    def __init__(self, start: float = 1000.0, wall: float = 1_767_225_600.0):  # 2026-01-01T00:00:00Z
        self.t = start
        self.w = wall

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.w

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.w += seconds


class LRU(Generic[K, V]):
    def __init__(self, max_keys: int = MAX_KEYS):
        self.max_keys = max_keys
        self.d: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:
        if key in self.d:
            self.d.move_to_end(key)
            return self.d[key]
        return default

    def put(self, key: K, value: V) -> None:
        self.d[key] = value
        self.d.move_to_end(key)
        while len(self.d) > self.max_keys:
            self.d.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self.d.pop(key, None)

    def __len__(self) -> int:
        return len(self.d)


# ----------------------------------------------------------------------------------------------
# context gate and consent


def context_gate(
    priority: str, context_tier: str | None, session_state: str | None, voice_mode: str | None
) -> dict[str, Any] | None:
    """None when speech is allowed, else the details of a ``voice_context_ineligible`` suppression."""
    tier = (context_tier or "").strip().lower()
    state = (session_state or "").strip().lower()
    mode = (voice_mode or "").strip().lower()
    if tier == "tier0":
        return {"rule": "context_tier", "contextTier": context_tier}
    if state and state != "active":
        return {"rule": "session_state", "sessionState": session_state}
    if mode in ("off", "dnd"):
        return {"rule": "voice_mode", "voiceMode": voice_mode}
    if mode == "critical_only" and priority not in CRITICAL_ONLY_PRIORITIES:
        return {"rule": "voice_mode_critical_only", "voiceMode": voice_mode, "priority": priority}
    return None


def check_consent(reference_audio_hash: str | None, consent_asserted: bool | None) -> None:
    if reference_audio_hash and consent_asserted is not True:
        raise ApiError(
            400,
            "voice_consent_required",
            "a referenceAudioHash (voice reference) needs consent_asserted: true",
            {"field": "consent_asserted"},
        )


def tenant_of(headers: Any, body_tenant: str | None) -> str:
    """The tenant from ``x-tenant-id`` (else ``x-customer-id``, else the body's ``tenantId``)."""
    for name in TENANT_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            if len(value) > 128 or any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise ApiError(
                    400,
                    "voice_invalid_request",
                    f"the {name} header is not a valid tenant id",
                    {"issues": [{"field": name, "code": "invalid", "message": "1-128 printable characters"}]},
                )
            return value
    return body_tenant or DEFAULT_TENANT


def check_watermark(mode: str) -> str:
    """The (normalised) mode to echo in ``x-watermark-mode``; refuses what the local provider cannot do."""
    if mode not in HONOURED_WATERMARKS:
        raise ApiError(
            400,
            "voice_watermark_unsupported",
            f"watermark mode {mode!r} cannot be honoured by the local provider",
            {"watermarkMode": mode, "supported": list(HONOURED_WATERMARKS)},
        )
    return mode


# ----------------------------------------------------------------------------------------------
# provider policy


@dataclass
class ProviderDecision:
    provider: str  # what serves the request
    requested: str
    rerouted: bool = False


class ProviderPolicy:
    """Local synthesis is the default and the only built-in provider. Remote providers are off
    unless listed in ``enabled``; ``critical``/``action`` requests always route local."""

    def __init__(self, enabled: list[str] | tuple[str, ...] = ()):
        self.enabled = tuple(p.lower() for p in enabled)

    def decide(self, provider: str | None, priority: str) -> ProviderDecision:
        requested = (provider or "local").strip().lower()
        if requested in LOCAL_PROVIDERS or requested.startswith(LOCAL_PREFIX):
            return ProviderDecision("local", requested or "local")
        if priority in ALWAYS_LOCAL_PRIORITIES:
            return ProviderDecision("local", requested, rerouted=True)
        if not self.enabled:
            raise ApiError(
                403,
                "voice_provider_not_allowed",
                f"provider {requested!r} refused: remote providers are disabled (local-only policy)",
                {"provider": requested, "reason": "remote_providers_disabled"},
            )
        if requested not in self.enabled:
            raise ApiError(
                403,
                "voice_provider_not_allowed",
                f"provider {requested!r} is not in the enabled remote providers",
                {"provider": requested, "reason": "provider_not_enabled"},
            )
        return ProviderDecision(requested, requested)


# ----------------------------------------------------------------------------------------------
# budgets


@dataclass
class Reservation:
    budgets: "Budgets | None"
    mission_key: Any
    tenant_key: Any
    cost: int
    released: bool = False

    def release(self) -> None:
        """Give the reserved characters back (the request delivered no audio)."""
        if self.budgets is not None and not self.released:
            self.released = True
            self.budgets._refund(self)


class Budgets:
    """Characters of text per mission (lifetime of the mission key) and per tenant per UTC day.

    ``reserve`` checks and books atomically; a request that ends without audio releases its
    reservation, so suppressed or failed requests cost nothing."""

    def __init__(
        self, mission_chars: int, tenant_daily_chars: int, clock: Clock | None = None, max_keys: int = MAX_KEYS
    ):
        self.mission_chars = mission_chars
        self.tenant_daily_chars = tenant_daily_chars
        self.clock = clock or Clock()
        self.missions: LRU[Any, int] = LRU(max_keys)
        self.tenants: LRU[Any, int] = LRU(max_keys)
        self.lock = threading.Lock()

    def _day(self) -> str:
        return datetime.fromtimestamp(self.clock.wall(), tz=timezone.utc).strftime("%Y-%m-%d")

    def reserve(self, tenant: str, mission: str | None, cost: int) -> Reservation:
        mkey = (tenant, mission) if mission else None
        tkey = (tenant, self._day())
        with self.lock:
            if mkey is not None and self.mission_chars > 0:
                used = self.missions.get(mkey, 0) or 0
                if used + cost > self.mission_chars:
                    raise ApiError(
                        429,
                        "voice_budget_exceeded",
                        "the mission's speech budget is exhausted",
                        {
                            "scope": "mission",
                            "missionId": mission,
                            "limitChars": self.mission_chars,
                            "usedChars": used,
                            "requestChars": cost,
                        },
                    )
            if self.tenant_daily_chars > 0:
                used_t = self.tenants.get(tkey, 0) or 0
                if used_t + cost > self.tenant_daily_chars:
                    raise ApiError(
                        429,
                        "voice_budget_exceeded",
                        "the tenant's daily speech budget is exhausted",
                        {
                            "scope": "tenant_daily",
                            "tenant": tenant,
                            "day": tkey[1],
                            "limitChars": self.tenant_daily_chars,
                            "usedChars": used_t,
                            "requestChars": cost,
                        },
                    )
            if mkey is not None:
                self.missions.put(mkey, (self.missions.get(mkey, 0) or 0) + cost)
            self.tenants.put(tkey, (self.tenants.get(tkey, 0) or 0) + cost)
        return Reservation(self, mkey, tkey, cost)

    def _refund(self, r: Reservation) -> None:
        with self.lock:
            if r.mission_key is not None and (v := self.missions.get(r.mission_key)) is not None:
                self.missions.put(r.mission_key, max(0, v - r.cost))
            if (v := self.tenants.get(r.tenant_key)) is not None:
                self.tenants.put(r.tenant_key, max(0, v - r.cost))


# ----------------------------------------------------------------------------------------------
# rate limit


class RateLimiter:
    """Token bucket per key (the mission, else the tenant): ``per_min`` refill, ``burst`` capacity."""

    def __init__(self, per_min: float, burst: int, clock: Clock | None = None, max_keys: int = MAX_KEYS):
        self.rate = per_min / 60.0
        self.burst = float(burst)
        self.clock = clock or Clock()
        self.buckets: LRU[Any, tuple[float, float]] = LRU(max_keys)
        self.lock = threading.Lock()

    def take(self, key: Any) -> None:
        if self.rate <= 0:
            return
        now = self.clock.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key) or (self.burst, now)
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self.buckets.put(key, (tokens, now))
                retry = max(1, math.ceil((1.0 - tokens) / self.rate))
                raise ApiError(
                    429,
                    "voice_rate_limited",
                    "too many speak requests; retry later",
                    {"retryAfterS": retry, "limitPerMin": self.rate * 60.0, "burst": int(self.burst)},
                    headers={"Retry-After": str(retry)},
                )
            self.buckets.put(key, (tokens - 1.0, now))


# ----------------------------------------------------------------------------------------------
# dedupe


@dataclass
class DedupeMark:
    dedupe: "Dedupe | None"
    key: Any
    previous: float | None
    at: float
    undone: bool = False

    def undo(self) -> None:
        """Forget this request (it delivered nothing): a retry must not be suppressed."""
        if self.dedupe is not None and not self.undone:
            self.undone = True
            self.dedupe._undo(self)


class Dedupe:
    """Suppress a repeat of the same ``dedupe_key`` (else ``eventId``) within the cooldown of the
    repeat's priority. Keys are scoped by tenant and mission."""

    def __init__(self, cooldowns: dict[str, float], clock: Clock | None = None, max_keys: int = MAX_KEYS):
        self.cooldowns = dict(cooldowns)
        self.clock = clock or Clock()
        self.last: LRU[Any, float] = LRU(max_keys)
        self.lock = threading.Lock()

    def check_and_mark(
        self, tenant: str, mission: str | None, key: str | None, priority: str
    ) -> tuple[DedupeMark | None, dict[str, Any] | None]:
        """(mark, None) when the request may proceed; (None, details) when it is suppressed."""
        if not key:
            return None, None
        cooldown = float(self.cooldowns.get(priority, 0.0))
        k = (tenant, mission or "", key)
        now = self.clock.monotonic()
        with self.lock:
            prev = self.last.get(k)
            if prev is not None and cooldown > 0 and now - prev < cooldown:
                return None, {
                    "dedupeKey": key,
                    "priority": priority,
                    "cooldownS": cooldown,
                    "retryAfterS": round(cooldown - (now - prev), 3),
                }
            self.last.put(k, now)
        return DedupeMark(self, k, prev, now), None

    def _undo(self, m: DedupeMark) -> None:
        with self.lock:
            if self.last.get(m.key) == m.at:
                if m.previous is None:
                    self.last.pop(m.key)
                else:
                    self.last.put(m.key, m.previous)


# ----------------------------------------------------------------------------------------------
# response cache


@dataclass
class CachedAudio:
    wav: bytes
    seconds: float
    sample_rate: int


class _Stored:
    """A cached WAV in an anonymous mapping of its own, so that evicting it gives its pages back to
    the OS at once. Kept as ``bytes`` in the malloc heap, these long-lived ~100 KB blocks sat among
    each synthesis's temporaries and left holes the heap never returned: a soak's RSS kept creeping
    (~0.5 MB/min) long after the cache was full."""

    __slots__ = ("buf", "n", "seconds", "sample_rate")

    def __init__(self, value: CachedAudio):
        self.n = len(value.wav)
        self.buf = mmap.mmap(-1, max(self.n, 1))
        self.buf.write(value.wav)
        self.seconds = value.seconds
        self.sample_rate = value.sample_rate

    def audio(self) -> CachedAudio:
        return CachedAudio(self.buf[: self.n], self.seconds, self.sample_rate)


@dataclass
class ResponseCache:
    """LRU of rendered WAVs keyed on (profile, bundle fingerprint, text, format, mode), bounded by
    entries and by bytes."""

    max_entries: int
    max_bytes: int
    d: OrderedDict = field(default_factory=OrderedDict)
    size: int = 0
    hits: int = 0
    misses: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def key(profile: str, fingerprint: str, text: str, fmt: str, mode: str) -> tuple:
        return (profile, fingerprint, text, fmt, mode)

    def get(self, key: tuple) -> CachedAudio | None:
        with self.lock:
            v = self.d.get(key)
            if v is None:
                self.misses += 1
                return None
            self.d.move_to_end(key)
            self.hits += 1
            return v.audio()

    def put(self, key: tuple, value: CachedAudio) -> None:
        if self.max_entries <= 0 or len(value.wav) > self.max_bytes:
            return
        stored = _Stored(value)
        with self.lock:
            self._drop(self.d.pop(key, None))
            self.d[key] = stored
            self.size += stored.n
            while len(self.d) > self.max_entries or self.size > self.max_bytes:
                self._drop(self.d.popitem(last=False)[1])

    def _drop(self, old: _Stored | None) -> None:
        if old is not None:
            self.size -= old.n
            old.buf.close()

    def __len__(self) -> int:
        return len(self.d)
