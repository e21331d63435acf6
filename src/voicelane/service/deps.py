"""Request-scoped helpers shared by the routes: the service context, auth, JSON bodies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from voicelane.service.core.audit import AuditLog
from voicelane.service.core.config import Settings
from voicelane.service.core.errors import ApiError
from voicelane.service.core.jobs import JobManager, JobStore
from voicelane.service.core.security import presented_token, require_json_content_type, strict_json_loads, token_matches
from voicelane.service.core.speak_policy import Budgets, Clock, Dedupe, ProviderPolicy, RateLimiter, ResponseCache
from voicelane.service.core.synth import SynthPool
from voicelane.service.core.voices import VoiceRegistry


@dataclass
class ServiceContext:
    settings: Settings
    store: JobStore
    jobs: JobManager
    voices: VoiceRegistry
    pool: SynthPool
    cache: ResponseCache
    budgets: Budgets
    limiter: RateLimiter
    dedupe: Dedupe
    providers: ProviderPolicy
    audit: AuditLog
    clock: Clock
    closing: bool = False
    lock_fh: Any = None
    metrics: Any = None  # voicelane.service.core.metrics.Metrics
    extra: dict[str, Any] = field(default_factory=dict)


def ctx_of(request: Request) -> ServiceContext:
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None:
        raise ApiError(503, "service_unavailable", "the service is starting")
    return ctx


def trace_of(request: Request) -> str:
    return getattr(request.state, "trace_id", None) or uuid.uuid4().hex


# --------------------------------------------------------------------------------------------
# auth


def _check_token(request: Request, ctx: ServiceContext) -> None:
    expected = getattr(request.app.state, "api_token", None) or ctx.settings.api_token
    if not expected:
        raise ApiError(
            401,
            "unauthorized",
            "this route needs a token, and the server has none configured (VOICELANE_API_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = presented_token(request.headers, request.cookies)
    if not token_matches(given, expected):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong token: send `Authorization: Bearer <token>` (the token is printed at "
            "start and stored in <data dir>/api_token)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_admin(request: Request) -> None:
    """Training and admin routes: the token, unless the operator turned auth off on loopback."""
    ctx = ctx_of(request)
    if ctx.settings.admin_token_required:
        _check_token(request, ctx)


def require_speak(request: Request) -> None:
    ctx = ctx_of(request)
    if ctx.settings.speak_require_token:
        _check_token(request, ctx)


async def read_json_object(request: Request, code: str) -> dict[str, Any]:
    body = await request.body()
    if body.strip():
        require_json_content_type(request.headers.get("content-type"))
    if not body.strip():
        raise ApiError(
            400,
            code,
            "the request body is empty; send a JSON object",
            {"issues": [{"field": "body", "code": "missing", "message": "body required"}]},
        )
    try:
        obj = strict_json_loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(
            400,
            code,
            "the request body is not valid JSON",
            {"issues": [{"field": "body", "code": "json_invalid", "message": str(exc)[:200]}]},
        ) from None
    if not isinstance(obj, dict):
        raise ApiError(
            400,
            code,
            "the request body must be a JSON object",
            {"issues": [{"field": "body", "code": "object_expected", "message": "JSON object expected"}]},
        )
    return obj
