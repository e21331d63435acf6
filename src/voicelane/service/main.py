"""The voicelane service: ``create_app(settings)`` and ``serve(host, port)`` (``voicelane serve``).

One FastAPI app. Training jobs run as child processes (``voicelane.service.core.jobs``); speech
comes from validated production bundles (``voicelane.service.core.voices``). OpenAPI is at
``/openapi.json``; the contract is in ``docs/service-contract.md``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sqlite3
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from voicelane import __version__
from voicelane.runner import Runner, make_runner
from voicelane.service.core.audit import AuditLog
from voicelane.service.core.config import Settings, SettingsError
from voicelane.service.core.errors import ApiError, envelope, pydantic_issues
from voicelane.service.core.jobs import JobManager, JobStore
from voicelane.service.core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from voicelane.service.core.metrics import Metrics
from voicelane.service.core.security import SecurityMiddleware, effective_token
from voicelane.service.core.speak_policy import Budgets, Clock, Dedupe, ProviderPolicy, RateLimiter, ResponseCache
from voicelane.service.core.synth import SynthPool
from voicelane.service.core.train_compat import TrainDefaults
from voicelane.service.core.voices import VoiceRegistry
from voicelane.service.deps import ServiceContext, ctx_of, trace_of
from voicelane.service.studio import BODY_LIMITS as STUDIO_BODY_LIMITS
from voicelane.service.studio import mount_studio

log = logging.getLogger("voicelane.service")
TRACE_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
JOB_STATES = ("pending", "running", "done", "error", "cancelled")
# SQLite's answers when a write cannot land (a full disk is SQLITE_FULL; a file-size limit, EFBIG,
# surfaces as a write error)
DISK_WRITE_ERRORS = ("SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE")


# --------------------------------------------------------------------------------------------
# edge middleware: trace ids and bounded bodies (pure ASGI so streaming responses stay streaming)


class EdgeMiddleware:
    def __init__(self, app, max_body_bytes: int, path_limits: dict[str, int] | None = None):
        self.app = app
        self.max = max_body_bytes
        self.path_limits = path_limits or {}  # path prefix -> limit (the studio's uploads)

    def _limit(self, path: str) -> int:
        return next((n for prefix, n in self.path_limits.items() if path.startswith(prefix)), self.max)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        trace = headers.get("x-trace-id", "")
        if not TRACE_RE.match(trace):
            trace = uuid.uuid4().hex
        scope.setdefault("state", {})["trace_id"] = trace

        async def send_with_trace(msg):
            if msg["type"] == "http.response.start":
                hdrs = list(msg.get("headers", []))
                if not any(k.lower() == b"x-trace-id" for k, _ in hdrs):
                    hdrs.append((b"x-trace-id", scope["state"].get("trace_id", trace).encode("latin-1")))
                msg = {**msg, "headers": hdrs}
            await send(msg)

        if scope.get("method") not in BODY_METHODS:
            return await self.app(scope, receive, send_with_trace)
        limit = self._limit(scope.get("path", ""))
        cl = headers.get("content-length")
        if cl is not None and (not cl.strip().isdigit() or int(cl) > limit):
            return await self._too_large(send_with_trace, trace, limit)
        body = bytearray()
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            body += msg.get("body", b"")
            if len(body) > limit:
                return await self._too_large(send_with_trace, trace, limit)
            if not msg.get("more_body", False):
                break
        done = False

        async def replay():
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send_with_trace)

    async def _too_large(self, send, trace: str, limit: int):
        payload = json.dumps(
            envelope("request_too_large", f"request bodies are limited to {limit} bytes", {"limitBytes": limit}, trace)
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


# --------------------------------------------------------------------------------------------
# the app


def _lock_data_dir(data_dir: Path):
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / "service.lock", "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise RuntimeError(f"another voicelane service already uses the data dir {data_dir}") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def build_context(
    settings: Settings,
    *,
    voices: VoiceRegistry | None = None,
    runner: Runner | None = None,
    clock: Clock | None = None,
    child_env: dict[str, str] | None = None,
) -> ServiceContext:
    s = settings
    lock_fh = _lock_data_dir(s.data_dir)
    try:
        store = JobStore(s.db_path)  # type: ignore[arg-type]
        jobs = JobManager(
            store,
            runner if runner is not None else make_runner(s.runner),
            s.data_dir,
            max_train_jobs=s.max_train_jobs,
            max_dataset_jobs=s.max_dataset_jobs,
            cancel_grace_s=s.cancel_grace_s,
            log_tail_lines=s.log_tail_lines,
            max_log_bytes=s.max_log_bytes,
            max_events_per_job=s.max_events_per_job,
            child_env=child_env,
        )
        clock = clock or Clock()
        ctx = ServiceContext(
            settings=s,
            store=store,
            jobs=jobs,
            voices=voices
            if voices is not None
            else VoiceRegistry(s.bundle_roots or [], s.speak_engine, s.speak_threads),
            pool=SynthPool(s.speak_workers, s.speak_queue_size),
            cache=ResponseCache(s.speak_cache_entries, s.speak_cache_bytes),
            budgets=Budgets(s.mission_budget_chars, s.tenant_daily_budget_chars, clock),
            limiter=RateLimiter(s.rate_limit_per_min, s.rate_limit_burst, clock),
            dedupe=Dedupe(s.dedupe_cooldown_s, clock),
            providers=ProviderPolicy(s.remote_providers),
            audit=AuditLog(s.data_dir / "audit" / "speak.jsonl", s.audit_max_bytes),
            clock=clock,
            lock_fh=lock_fh,
        )
        ctx.metrics = Metrics(ctx.pool, lambda: {state: store.count(state) for state in JOB_STATES})
    except BaseException:
        lock_fh.close()
        raise
    return ctx


def create_app(
    settings: Settings | None = None,
    *,
    voices: VoiceRegistry | None = None,
    runner: Runner | None = None,
    clock: Clock | None = None,
    child_env: dict[str, str] | None = None,
    train_defaults: TrainDefaults | None = None,
) -> FastAPI:
    settings = (settings or Settings.from_env()).resolved()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = build_context(settings, voices=voices, runner=runner, clock=clock, child_env=child_env)
        if train_defaults is not None:  # else read from the environment at the first use
            ctx.extra["train_defaults"] = train_defaults
        try:
            orphans = ctx.jobs.recover()
            if orphans:
                log.warning("marked %d orphaned job(s): %s", len(orphans), ", ".join(orphans))
            ctx.voices.refresh()
            ctx.voices.start_polling(settings.voice_rescan_s)
            ctx.jobs.start()
            app.state.ctx = ctx
            yield
        finally:
            ctx.closing = True
            ctx.voices.stop()
            ctx.jobs.shutdown()
            ctx.pool.shutdown()
            ctx.store.close()
            ctx.lock_fh.close()
            app.state.ctx = None

    app = FastAPI(
        title="voicelane service",
        version=__version__,
        lifespan=lifespan,
        description="Training jobs over HTTP and `/api/voice/speak` from validated voice bundles. "
        "Errors use the envelope `{error, message, details?, traceId?}`.",
    )
    app.state.settings = settings
    app.state.ctx = None
    app.state.api_token = effective_token(settings)

    def _count(code: str, status: int) -> None:
        ctx = app.state.ctx
        if ctx is not None and ctx.metrics is not None:
            ctx.metrics.error(code, status)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        _count(exc.code, exc.status)
        return JSONResponse(exc.body(trace_of(request)), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        code = "voice_invalid_request" if request.url.path.startswith("/api/voice/") else "invalid_request"
        _count(code, 400)
        return JSONResponse(
            envelope(
                code, "the request does not match the schema", {"issues": pydantic_issues(exc)}, trace_of(request)
            ),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 401: "unauthorized"}.get(
            exc.status_code, "internal_error" if exc.status_code >= 500 else "invalid_request"
        )
        return JSONResponse(
            envelope(code, str(exc.detail), None, trace_of(request)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(sqlite3.OperationalError)
    async def _database(request: Request, exc: sqlite3.OperationalError):
        name = getattr(exc, "sqlite_errorname", "")
        if name not in DISK_WRITE_ERRORS:
            return await _unexpected(request, exc)
        log.error("disk_full: the job database could not be written: %s (%s)", exc, name)
        _count("disk_full", 507)
        return JSONResponse(
            envelope(
                "disk_full",
                "the job database could not be written (disk full or a write error); nothing was changed",
                {"sqlite": name},
                trace_of(request),
            ),
            status_code=507,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        _count("internal_error", 500)
        return JSONResponse(
            envelope("internal_error", "unexpected server error", None, trace_of(request)), status_code=500
        )

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        summary="Prometheus metrics: speak outcomes by code, queue depth and wait, jobs by state",
    )
    def metrics(request: Request) -> Response:
        return Response(ctx_of(request).metrics.render(), media_type=METRICS_CONTENT_TYPE)

    from voicelane.service.routes import train, voice

    app.include_router(train.router)
    app.include_router(voice.router)
    mount_studio(app)
    app.add_middleware(SecurityMiddleware, settings=settings, token=app.state.api_token)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Trace-Id",
                "X-Voicelane-Token",
                "X-Tenant-Id",
                "Last-Event-ID",
            ],
            expose_headers=[
                "x-trace-id",
                "x-voice-provider",
                "x-voice-profile",
                "x-voice-cache",
                "x-watermark-mode",
                "retry-after",
            ],
        )
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes, path_limits=STUDIO_BODY_LIMITS)
    return app


def serve(host: str = "127.0.0.1", port: int = 8765) -> int:
    """Run the service with uvicorn until interrupted (``voicelane serve``)."""
    import uvicorn

    logging.basicConfig(
        level=os.environ.get("VOICELANE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = Settings.from_env(bind_host=host)
        train_defaults = TrainDefaults.from_env()  # a bad VOICELANE_TRAIN_DEFAULT_* stops here, not at a request
    except SettingsError as exc:
        print(f"error: invalid_argument: {exc}", file=sys.stderr)
        return 1
    app = create_app(settings, train_defaults=train_defaults)
    _announce(settings, host, port, app.state.api_token)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5, lifespan="on")
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def _announce(settings: Settings, host: str, port: int, token: str | None) -> None:
    """Print the URL and, like Jupyter, the token (stderr: the operator's terminal, not a log file)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}"
    if token:
        where = "VOICELANE_API_TOKEN" if settings.api_token else str(settings.data_dir / "api_token")
        print(
            f"voicelane service: {url}/studio?token={token}\n"
            f"  training/admin routes need `Authorization: Bearer {token}` (stored in {where})",
            file=sys.stderr,
        )
    else:
        print(
            f"voicelane service: {url} (VOICELANE_AUTH=off: training routes need no token on loopback)", file=sys.stderr
        )
    if "*" in settings.cors_origins:
        print("warning: VOICELANE_CORS_ORIGINS=* lets any web page call this service", file=sys.stderr)
