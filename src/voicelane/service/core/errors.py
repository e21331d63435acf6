"""The service's error envelope ``{error, message, details?, traceId?}`` (SPEC §9).

Every failure the HTTP layer answers is an ``ApiError`` (or is turned into one by the handlers
in ``voicelane.service.main``). Codes are stable: extend, never rename. The codes of the lanes
(SPEC §14, ``voicelane.errors``) pass through unchanged where a lane error reaches a client.
"""

from __future__ import annotations

from typing import Any

# HTTP-layer codes (in addition to voicelane.errors.NEXT_ACTIONS codes)
SERVICE_CODES: dict[str, str] = {
    "invalid_request": "the request body or parameters do not match the schema",
    "invalid_job_type": "unknown jobType",
    "path_not_allowed": "a path is outside the configured data roots",
    "job_not_found": "no job with this id",
    "job_not_cancellable": "the job already finished",
    "status_not_found": "no status JSON yet",
    "unauthorized": "missing or wrong bearer token",
    "not_found": "no such route",
    "method_not_allowed": "method not allowed on this route",
    "request_too_large": "request body over the configured limit",
    "unsupported_media_type": "the body must be application/json",
    "host_not_allowed": "the Host header names a host the service does not answer (DNS rebinding guard)",
    "origin_not_allowed": "a cross-origin request tried to change state",
    "disk_full": "the disk is full (or a file-size limit was hit) while writing",
    "job_database_corrupt": "the job database was unreadable at start and was moved aside",
    "client_disconnected": "the client went away before the reply was ready (audit and metrics only)",
    "internal_error": "unexpected failure",
    "service_unavailable": "the service is starting or stopping",
    # voice
    "voice_invalid_request": "the speak request does not match the schema",
    "voice_context_ineligible": "suppressed: the caller's context does not allow speech",
    "voice_consent_required": "referenceAudioHash needs consent_asserted: true",
    "voice_provider_not_allowed": "the provider policy refuses this provider",
    "voice_budget_exceeded": "mission or tenant budget exhausted",
    "voice_rate_limited": "too many requests",
    "dedupe_cooldown": "suppressed: the same event was spoken recently",
    "voice_profile_not_found": "no bundle for this profile",
    "voice_unavailable": "no served voice can answer",
    "voice_queue_full": "the synthesis queue is full",
    "voice_backend_timeout": "synthesis did not finish within the time budget",
    "voice_backend_error": "synthesis failed",
    "voice_watermark_unsupported": "the requested watermark_mode cannot be honoured (supported: none, off, metadata)",
    "voice_format_unavailable": "the requested audio format cannot be encoded by the installed libsndfile",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self, trace_id: str | None = None) -> dict[str, Any]:
        return envelope(self.code, self.message, self.details, trace_id)


def envelope(
    code: str, message: str, details: dict[str, Any] | None = None, trace_id: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"error": code, "message": message}
    if details:
        out["details"] = details
    if trace_id:
        out["traceId"] = trace_id
    return out


def pydantic_issues(exc: Any) -> list[dict[str, Any]]:
    """Turn a pydantic ``ValidationError`` (or FastAPI's ``RequestValidationError``) into
    ``[{field, code, message}]``; the offending input is never echoed."""
    issues = []
    try:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
    except TypeError:  # fastapi's RequestValidationError.errors() takes no options
        errors = exc.errors()
    for e in errors:
        parts = list(e.get("loc", ()))
        if parts and parts[0] in ("body", "query", "path", "header"):
            parts = parts[1:]
        loc = ".".join(str(p) for p in parts) or "body"
        issues.append({"field": loc, "code": e.get("type", "invalid"), "message": e.get("msg", "invalid")})
    return issues[:50]
