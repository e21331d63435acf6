"""Voice routes (SPEC §9): ``POST /api/voice/speak``, ``GET /api/voice/profiles``, health.

Speak applies, in this order: validate -> context gate -> consent -> provider policy ->
budgets -> rate limit -> dedupe -> cache -> synthesis (bounded priority queue, time budget).
Every request, whatever its outcome, writes one audit line (never the text).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from voicelane import __version__
from voicelane.engine import frontend
from voicelane.errors import VoicelaneError
from voicelane.service.core import audio_out
from voicelane.service.core.audit import ts_now
from voicelane.service.core.errors import ApiError, pydantic_issues
from voicelane.service.core.speak_policy import (
    PRIORITY_RANK,
    CachedAudio,
    check_consent,
    check_watermark,
    context_gate,
    tenant_of,
)
from voicelane.service.core.streaming import LiveStream, backend_of, media_type, stream_kind
from voicelane.service.core.synth import QueueFull
from voicelane.service.core.voices import ServedVoice
from voicelane.service.deps import ServiceContext, ctx_of, read_json_object, require_admin, require_speak, trace_of
from voicelane.service.models import ErrorEnvelope, ProfilesReply, SpeakRequest, Suppressed

router = APIRouter(tags=["voice"])
_LOG = logging.getLogger("voicelane.service.speak")
TEXT_ERRORS = ("text_unvoiceable", "language_unsupported")
DISCONNECT_POLL_S = 0.1


def _err(desc: str) -> dict[str, Any]:
    return {"model": ErrorEnvelope, "description": desc}


SPEAK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "audio/wav (or audio/mpeg for `format: mp3`) bytes (headers x-voice-provider, "
        "x-voice-profile, x-voice-cache, x-watermark-mode, x-voice-tenant, "
        "x-voice-meter-request-count, x-voice-meter-char-count, x-voice-meter-duration-ms), "
        "or a suppression `{ok, suppressed, reason}`",
        "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "audio/mpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": Suppressed.model_json_schema()},
        },
    },
    400: _err("voice_invalid_request | voice_consent_required | voice_watermark_unsupported"),
    401: _err("unauthorized (only when speak requires a token)"),
    403: _err("voice_provider_not_allowed"),
    404: _err("voice_profile_not_found"),
    413: _err("request_too_large"),
    429: _err("voice_budget_exceeded | voice_rate_limited"),
    502: _err("voice_backend_error"),
    503: _err("voice_unavailable | voice_queue_full | voice_format_unavailable"),
    504: _err("voice_backend_timeout"),
}


def _resolve(ctx: ServiceContext, requested: str | None) -> ServedVoice:
    served, refused = ctx.voices.snapshot()
    if not served:
        raise ApiError(
            503,
            "voice_unavailable",
            "no voice is served: no valid production bundle is loaded",
            {"refused": [r.public() for r in refused.values()][:20]},
        )
    profile = requested or ctx.settings.default_profile or sorted(served)[0]
    voice = served.get(profile) or _casefold_match(served, profile)
    if voice is not None:
        return voice
    profile = _casefold_key(refused, profile) or profile
    if profile in refused:
        r = refused[profile]
        raise ApiError(
            503,
            "voice_unavailable",
            f"the bundle of profile {profile!r} is not served: {r.message}",
            {"profile": profile, "reason": r.code},
        )
    raise ApiError(
        404,
        "voice_profile_not_found",
        f"no served voice for profile {profile!r}",
        {"profile": profile, "defaulted": requested is None, "available": sorted(served)[:50]},
    )


def _casefold_key(d: dict[str, Any], profile: str) -> str | None:
    """Profile ids are case-insensitive for speak (old clients send `Demo_Voice`)."""
    want = profile.casefold()
    return next((k for k in sorted(d) if k.casefold() == want), None)


def _casefold_match(served: dict[str, ServedVoice], profile: str) -> ServedVoice | None:
    key = _casefold_key(served, profile)
    return served[key] if key is not None else None


def engine_provider(voice: Any) -> str:
    """The ``x-voice-provider`` value: which local engine spoke (`local-onnx` or `local-pytorch`)."""
    return "local-onnx" if "onnx" in type(voice).__name__.lower() else "local-pytorch"


def _provenance_tag(served: ServedVoice) -> str:
    return f"synthetic speech; voicelane profile={served.profile_id}; manifest_sha256={served.manifest_sha256}"


def _render(
    ctx: ServiceContext, served: ServedVoice, text: str, key: tuple, fmt: str, watermark: str, submitted: float
) -> tuple[CachedAudio, float, float]:
    """Runs in a synthesis worker: (audio, queue wait ms, synthesis + encoding ms)."""
    t0 = time.perf_counter()
    syn = backend_of(ctx).render(served, text)
    tag = _provenance_tag(served) if watermark == "metadata" else None
    data = audio_out.encode(syn.audio, int(syn.sample_rate), fmt, tag)
    out = CachedAudio(data, float(syn.seconds), int(syn.sample_rate))
    ctx.cache.put(key, out)  # even when the caller timed out: its retry will hit
    return out, (t0 - submitted) * 1000.0, (time.perf_counter() - t0) * 1000.0


async def _first_chunk(ctx: ServiceContext, live: LiveStream, fut):
    """The stream's first audio: errors before it get their normal status and code."""
    try:
        return await live.first(ctx.settings.speak_timeout_s)
    except asyncio.TimeoutError:
        live.gone.set()
        if not fut.done():
            ctx.pool.cancel(fut)
        raise ApiError(
            504,
            "voice_backend_timeout",
            f"synthesis did not start within {ctx.settings.speak_timeout_s:g} s",
            {"timeoutS": ctx.settings.speak_timeout_s},
        ) from None


def _stream_reply(
    live: LiveStream,
    first,
    kind: str,
    served: ServedVoice,
    trace: str,
    tenant: str,
    text: str,
    first_ms: float,
    watermark: str = "none",
) -> StreamingResponse:
    """Audio as it is made. The audit line is written when the reply starts; how the stream
    ended (complete, or cut short by an error or by the client) goes to the service log."""
    rate = served.sample_rate
    headers = {
        "x-voice-provider": engine_provider(served.voice),
        "x-voice-profile": served.profile_id,
        "x-voice-cache": "stream",
        "x-watermark-mode": watermark,
        "x-trace-id": trace,
        "x-voice-tenant": tenant,
        "x-voice-meter-request-count": "1",
        "x-voice-meter-char-count": str(len(text)),
        "x-voice-sample-rate": str(rate),
        "x-voice-stream": kind,
        "x-voice-first-audio-ms": f"{first_ms:.1f}",
        "cache-control": "no-store",
    }

    def on_end(outcome: dict[str, Any]) -> None:
        if not outcome.get("ok"):
            _LOG.warning("speak stream %s ended early: %s", trace, outcome)

    return StreamingResponse(live.body(first, kind, rate, on_end), media_type=media_type(kind, rate), headers=headers)


def _meter(tenant: str, chars: int, seconds: float) -> dict[str, str]:
    """Metering headers (what the old provider billed on): requests, characters, audio duration."""
    return {
        "x-voice-tenant": tenant,
        "x-voice-meter-request-count": "1",
        "x-voice-meter-char-count": str(chars),
        "x-voice-meter-duration-ms": str(round(seconds * 1000.0)),
    }


async def _await_synthesis(request: Request, ctx: ServiceContext, fut) -> tuple[CachedAudio, float, float]:
    """The worker's result. A caller that runs out of time or goes away gives its queue slot back
    at once (a synthesis that already runs finishes; its audio still lands in the cache)."""
    waiter = asyncio.wrap_future(fut)
    waiter.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody may be left to read it
    deadline = time.monotonic() + ctx.settings.speak_timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(
                    504,
                    "voice_backend_timeout",
                    f"synthesis did not finish within {ctx.settings.speak_timeout_s:g} s",
                    {"timeoutS": ctx.settings.speak_timeout_s},
                )
            done, _ = await asyncio.wait({waiter}, timeout=min(left, DISCONNECT_POLL_S))
            if done:
                result = waiter.result()
                if ctx.metrics is not None:
                    ctx.metrics.queue_wait.observe(result[1] / 1000.0)
                return result
            if await request.is_disconnected():
                raise ApiError(499, "client_disconnected", "the client went away before the audio was ready")
    finally:
        if not fut.done():
            ctx.pool.cancel(fut)


def _check_text(text: str) -> None:
    """Refuse, before any budget is charged, a text the front end would not read (a 600-digit
    word): 400 with the lane's code and the offending span."""
    try:
        frontend.bound_tokens(text)
    except VoicelaneError as err:
        raise text_error(err) from None


def text_error(err: VoicelaneError) -> ApiError:
    """A text the front end cannot read: 400 ``voice_invalid_request`` (the code existing clients
    know), with the lane's code (``text_unvoiceable``) and the offending span in the details."""
    return ApiError(
        400,
        "voice_invalid_request",
        err.message,
        {**err.details, "code": err.code, "issues": [{"field": "text", "code": err.code, "message": err.message}]},
    )


def _suppressed(reason: str, details: dict[str, Any], trace: str, tenant: str) -> JSONResponse:
    return JSONResponse(
        {"ok": True, "suppressed": True, "reason": reason, "details": details, "traceId": trace},
        headers=_meter(tenant, 0, 0.0),
    )


@router.post(
    "/api/voice/speak",
    responses=SPEAK_RESPONSES,
    response_class=Response,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": SpeakRequest.model_json_schema()}}}
    },
    summary="Speak text with a served voice (audio/wav)",
)
async def speak(request: Request) -> Any:
    ctx = ctx_of(request)
    t0 = time.perf_counter()
    trace = trace_of(request)
    audit: dict[str, Any] = {
        "ts": ts_now(),
        "traceId": trace,
        "outcome": "error",
        "status": 500,
        "consent_asserted": None,
    }
    undo: list = []
    delivered = False
    try:
        require_speak(request)
        obj = await read_json_object(request, "voice_invalid_request")
        try:
            req = SpeakRequest.model_validate(obj)
        except ValidationError as exc:
            raise ApiError(
                400,
                "voice_invalid_request",
                "the speak request does not match the schema",
                {"issues": pydantic_issues(exc)},
            ) from None
        if req.traceId:
            trace = req.traceId
            request.state.trace_id = trace
        profile = req.voiceProfile or req.voice_profile_id
        tenant = tenant_of(request.headers, req.tenantId)
        audit.update(
            traceId=trace,
            missionId=req.missionId,
            eventId=req.eventId,
            voiceProfile=profile,
            mode=req.mode,
            priority=req.priority,
            consent_asserted=req.consent_asserted,
            referenceAudioHash=req.referenceAudioHash,
            tenant=tenant,
            textChars=len(req.text),
        )
        if req.voiceProfile and req.voice_profile_id and req.voiceProfile.casefold() != req.voice_profile_id.casefold():
            raise ApiError(
                400,
                "voice_invalid_request",
                "voiceProfile and voice_profile_id differ",
                {
                    "issues": [
                        {
                            "field": "voiceProfile",
                            "code": "conflict",
                            "message": "voiceProfile and voice_profile_id name different profiles",
                        }
                    ]
                },
            )
        _check_text(req.text)

        # 1. context gate
        why = context_gate(req.priority, req.contextTier, req.sessionState, req.voiceMode)
        if why is not None:
            audit.update(outcome="suppressed:voice_context_ineligible", status=200)
            return _suppressed("voice_context_ineligible", why, trace, tenant)
        # 2. consent (and what the caller asked of the audio)
        check_consent(req.referenceAudioHash, req.consent_asserted)
        watermark = check_watermark(req.watermark_mode)
        if req.format == "mp3" and not audio_out.mp3_available():
            raise ApiError(
                503,
                "voice_format_unavailable",
                "this installation's libsndfile cannot encode MP3",
                {"format": "mp3", "supported": ["wav"]},
            )
        # 3. provider policy
        decision = ctx.providers.decide(req.provider, req.priority)
        audit["provider"] = decision.provider
        if decision.provider != "local":
            raise ApiError(
                503,
                "voice_unavailable",
                f"remote provider {decision.provider!r} is enabled but no adapter for it is installed",
                {"provider": decision.provider, "reason": "provider_adapter_missing"},
            )
        # 4. budgets (reserved now, given back if no audio is delivered)
        reservation = ctx.budgets.reserve(tenant, req.missionId, len(req.text))
        undo.append(reservation.release)
        # 5. rate limit
        ctx.limiter.take((tenant, "mission", req.missionId) if req.missionId else (tenant, "tenant"))
        # 6. dedupe
        mark, dup = ctx.dedupe.check_and_mark(tenant, req.missionId, req.dedupe_key or req.eventId, req.priority)
        if dup is not None:
            audit.update(outcome="suppressed:dedupe_cooldown", status=200)
            return _suppressed("dedupe_cooldown", dup, trace, tenant)
        if mark is not None:
            undo.append(mark.undo)
        # 7. cache, 8. synthesis
        served = _resolve(ctx, profile)
        audit["voiceProfile"] = served.profile_id
        fmt_key = req.format + (":metadata" if watermark == "metadata" else "")
        key = ctx.cache.key(served.profile_id, served.manifest_sha256, req.text, fmt_key, req.mode)
        kind = stream_kind(req.stream, request.headers.get("accept"))
        if kind is not None and (req.format != "wav" or watermark == "metadata"):
            raise ApiError(
                400,
                "voice_invalid_request",
                "streamed audio is plain WAV or audio/L16",
                {
                    "issues": [
                        {
                            "field": "stream",
                            "code": "stream_format",
                            "message": "stream with format wav and no metadata watermark",
                        }
                    ]
                },
            )
        cached = ctx.cache.get(key) if kind is None else None  # streams bypass the one-shot cache
        cache_state = "hit" if cached is not None else "miss"
        synth_ms = queue_ms = 0.0
        live: LiveStream | None = None
        if cached is None:
            submitted = time.perf_counter()
            try:
                if kind is not None:
                    live = LiveStream(asyncio.get_running_loop())
                    fut = ctx.pool.submit(
                        PRIORITY_RANK[req.priority], lambda: live.run(backend_of(ctx), served, req.text)
                    )
                else:
                    fut = ctx.pool.submit(
                        PRIORITY_RANK[req.priority],
                        lambda: _render(ctx, served, req.text, key, req.format, watermark, submitted),
                    )
            except QueueFull as exc:
                raise ApiError(
                    503,
                    "voice_queue_full",
                    "the synthesis queue is full; retry shortly",
                    {"queueSize": ctx.settings.speak_queue_size, "reason": str(exc)},
                    headers={"Retry-After": "1"},
                ) from None
            try:
                if live is not None:
                    first = await _first_chunk(ctx, live, fut)
                    synth_ms = (time.perf_counter() - submitted) * 1000.0
                else:
                    cached, queue_ms, synth_ms = await _await_synthesis(request, ctx, fut)
            except ApiError:
                raise
            except VoicelaneError as err:
                if err.code in TEXT_ERRORS:
                    raise text_error(err) from None
                raise ApiError(
                    502, "voice_backend_error", f"synthesis failed: {err.code}", {"code": err.code}
                ) from None
            except Exception as exc:  # noqa: BLE001 - the backend's failure, not the request's
                raise ApiError(
                    502,
                    "voice_backend_error",
                    f"synthesis failed: {type(exc).__name__}",
                    {"profile": served.profile_id},
                ) from None
        if live is not None:
            reply = _stream_reply(live, first, kind, served, trace, tenant, req.text, synth_ms, watermark)
            delivered = True
            audit.update(outcome="ok", status=200, cache="stream")
            return reply
        headers = {
            "x-voice-provider": engine_provider(served.voice),
            "x-voice-profile": served.profile_id,
            "x-voice-cache": cache_state,
            "x-watermark-mode": watermark,
            **_meter(tenant, len(req.text), cached.seconds),
            "x-trace-id": trace,
            "x-voice-audio-seconds": f"{cached.seconds:.3f}",
            "x-voice-sample-rate": str(cached.sample_rate),
            "x-voice-synthesis-ms": f"{synth_ms:.1f}",
            "x-voice-queue-ms": f"{queue_ms:.1f}",
            "cache-control": "no-store",
        }
        if decision.requested not in ("local", "auto"):
            headers["x-voice-provider-requested"] = decision.requested
        reply = Response(cached.wav, media_type=audio_out.MEDIA_TYPES[req.format], headers=headers)
        delivered = True  # only once the reply (headers included) exists: the audit and budget tell the truth
        audit.update(outcome="ok", status=200, cache=cache_state)
        return reply
    except ApiError as exc:
        audit.update(outcome=exc.code, status=exc.status)
        raise
    finally:
        if not delivered:
            for fn in undo:
                fn()
        audit["latency"] = round((time.perf_counter() - t0) * 1000.0, 2)
        if ctx.metrics is not None:
            ctx.metrics.speak_outcome(audit["outcome"])
        try:
            ctx.audit.write(audit)
        except OSError:
            pass


@router.get(
    "/api/voice/profiles",
    response_model=ProfilesReply,
    responses={401: _err("unauthorized")},
    dependencies=[Depends(require_speak)],
    summary="Served voices with their bundle metadata (and refused bundles with the reason)",
)
def profiles(request: Request) -> Any:
    ctx = ctx_of(request)
    served, refused = ctx.voices.snapshot()
    default = ctx.settings.default_profile or (sorted(served)[0] if served else None)
    return {
        "ok": True,
        "defaultProfile": default,
        "profiles": [served[k].public(default=(k == default)) for k in sorted(served)],
        "refused": [refused[k].public() for k in sorted(refused)],
    }


@router.post(
    "/api/voice/reload",
    responses={401: _err("unauthorized")},
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    summary="Rescan the bundle roots now (admin)",
)
async def reload_voices(request: Request) -> Any:
    ctx = ctx_of(request)
    changes = await run_in_threadpool(ctx.voices.refresh)
    return {"ok": True, **changes, "served": len(ctx.voices)}


@router.get(
    "/health",
    tags=["health"],
    responses={503: _err("not ready: no voice loaded")},
    summary="Readiness: 200 only when at least one voice is loaded",
)
def health(request: Request) -> Any:
    ctx = ctx_of(request)
    n = len(ctx.voices)
    body = {
        "ok": n > 0,
        "ready": n > 0,
        "status": "ready" if n else "not_ready",
        "version": __version__,
        "voices": n,
        "jobs": ctx.jobs.counts(),
        "speakQueue": {
            "queued": ctx.pool.queued,
            "running": ctx.pool.running,
            "size": ctx.settings.speak_queue_size,
            "oldestWaitMs": round(ctx.pool.oldest_wait_s() * 1000.0, 1),
            "lastWaitMs": round(ctx.pool.last_wait_s * 1000.0, 1),
        },
    }
    if ctx.store.recovered_from:  # the job database was unreadable at start and moved aside
        body["jobDatabase"] = {"error": "job_database_corrupt", "movedTo": ctx.store.recovered_from}
    if n:
        return body
    body.update(error="voice_unavailable", message="no voice is loaded (no valid production bundle found)")
    return JSONResponse(body, status_code=503)


@router.get("/health/live", tags=["health"], summary="Liveness: 200 while the process serves HTTP")
def live() -> Any:
    return {"ok": True, "live": True}
