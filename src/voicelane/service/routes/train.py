"""Training routes (SPEC §9): backward compatible with existing clients, plus additive routes
to list jobs, cancel a job, stream its lines (SSE) and fetch its full log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from voicelane.errors import VoicelaneError
from voicelane.protocol import parse_line
from voicelane.runspec import TRAIN_JOB_TYPES, RunSpec
from voicelane.service.core import train_compat as compat
from voicelane.service.core.errors import ApiError, pydantic_issues
from voicelane.service.core.jobs import FINAL_STATES, JobRecord
from voicelane.service.core.paths import confine
from voicelane.service.core.security import parse_event_id
from voicelane.service.deps import ctx_of, read_json_object, require_admin
from voicelane.service.models import (
    CancelReply,
    DatasetRequest,
    ErrorEnvelope,
    Job,
    JobList,
    StartReply,
    TrainStartRequest,
    job_out,
)
from voicelane.status import read_status

router = APIRouter(tags=["training"], dependencies=[Depends(require_admin)])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "invalid request"},
    401: {"model": ErrorEnvelope, "description": "bearer token required (non-loopback bind)"},
    404: {"model": ErrorEnvelope, "description": "not found"},
    413: {"model": ErrorEnvelope, "description": "body too large"},
}
SSE_POLL_S = 0.25
SSE_KEEPALIVE_S = 15.0
RESET_KEY = "status_reset_rowid"
RESET_NS_KEY = "status_reset_ns"  # files written outside the service before this are forgotten too


def _defaults(ctx) -> compat.TrainDefaults:
    """The server-side defaults (``VOICELANE_TRAIN_DEFAULT_*``), read once per service."""
    if "train_defaults" not in ctx.extra:
        ctx.extra["train_defaults"] = compat.TrainDefaults.from_env()
    return ctx.extra["train_defaults"]


def _start_route(path: str, body_model: type[BaseModel], summary: str) -> Callable[[Any], Any]:
    """A POST route that starts a job: a ``body_model`` JSON body (validated in the route, after old
    shapes and server defaults are filled in) answered by a StartReply."""
    body = {"required": True, "content": {"application/json": {"schema": body_model.model_json_schema()}}}
    return router.post(
        path, response_model=StartReply, responses=ERRORS, openapi_extra={"requestBody": body}, summary=summary
    )


def _responses_with_200(description: str, media: str, schema_type: str) -> dict[int | str, dict[str, Any]]:
    """ERRORS plus the documented 200 body of a route that answers something other than a model."""
    return {**ERRORS, 200: {"description": description, "content": {media: {"schema": {"type": schema_type}}}}}


def _validate(model, obj: dict[str, Any]):
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        issues = pydantic_issues(exc)
        if any(i["field"] == "profile" and i["code"] == "string_pattern_mismatch" for i in issues):
            raise ApiError(
                400,
                "profile_id_invalid",
                "invalid voice profile id: use 1-64 characters from a-z, 0-9, '_' and '-', "
                "starting with a letter or digit",
                {"issues": issues},
            ) from None
        raise ApiError(400, "invalid_request", "the request does not match the schema", {"issues": issues}) from None


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id[:80]!r}", {"jobId": job_id[:80]})


# request key -> RunSpec field (paths are confined to the data roots first)
HTTP_FIELDS: dict[str, str] = {
    "dataPath": "data",
    "profile": "profile_id",
    "preset": "preset",
    "base": "base",
    "steps": "steps",
    "language": "language",
    "seed": "seed",
    "displayName": "display_name",
    "minMinutes": "min_minutes",
    "evalMax": "eval_max",
    "gates": "gates",
    "onnx": "onnx",
    "consentStatement": "consent_statement",
    "speakerName": "speaker_name",
    "heldout": "heldout",
    "acceptLicenseRisk": "accept_license_risk",
    "threads": "threads",
    "finetuneScope": "finetune_scope",
    "device": "device",
    "nproc": "nproc",
    "snapshotEvery": "snapshot_every",
    "selectSnapshot": "select_snapshot",
}
# set by the service, never by a client: the job's own folder and status file
SERVICE_FIELDS = ("job_type", "out", "status_path")


def _build_spec(**values: Any) -> RunSpec:
    try:
        return RunSpec.build(**values)
    except VoicelaneError as err:
        raise ApiError(400, "invalid_request", err.message, err.details) from None


def run_spec_from_request(
    req: TrainStartRequest, job_type: str, roots: list[Path], default_threads: int, out: Path, status_path: Path
) -> tuple[RunSpec, dict[str, Any]]:
    """The RunSpec of a /api/train/start body, and the options recorded on the job (what the client set)."""
    given = {
        key: getattr(req, key)
        for key in HTTP_FIELDS
        if key in req.model_fields_set or key in ("dataPath", "profile", "preset")
    }
    given = {k: v for k, v in given.items() if v is not None}
    given["dataPath"] = confine(req.dataPath, roots, "dataPath")
    if req.consentStatement:
        given["consentStatement"] = confine(req.consentStatement, roots, "consentStatement", "consent_missing")
    if req.heldout:
        given["heldout"] = confine(req.heldout, roots, "heldout")
    values = {HTTP_FIELDS[k]: v for k, v in given.items()}
    values.setdefault("threads", default_threads)
    spec = _build_spec(job_type=job_type, out=out, status_path=status_path, **values)
    options = {"jobType": job_type} | {k: str(v) if isinstance(v, Path) else v for k, v in given.items()}
    return spec, options


@_start_route(
    "/api/train/start",
    TrainStartRequest,
    "Start a training job (jobType train | tts_voice_train | tts_prod_train)",
)
async def train_start(request: Request) -> Any:
    ctx = ctx_of(request)
    obj = await read_json_object(request, "invalid_request")
    job_type = obj.get("jobType", obj.get("job_type"))
    if job_type is None:
        job_type = "train"
    compat.refuse_unavailable_job_type(job_type)
    if not isinstance(job_type, str) or job_type not in TRAIN_JOB_TYPES:
        raise ApiError(
            400,
            "invalid_job_type",
            f"unknown jobType {str(job_type)[:64]!r}",
            {"jobType": str(job_type)[:64], "allowed": sorted(TRAIN_JOB_TYPES)},
        )
    defaults = _defaults(ctx)
    obj, defaulted = defaults.fill_train(obj)  # `{}` / `{jobType}`: the server-side default run
    req: TrainStartRequest = _validate(TrainStartRequest, obj)
    roots = (ctx.settings.data_roots or []) + (defaults.roots() if defaulted else [])
    paths = ctx.jobs.new_job_paths()
    spec, options = run_spec_from_request(
        req, job_type, roots, ctx.settings.train_threads, paths.out_dir, paths.status_path
    )
    if defaulted:
        options["serverDefaults"] = True
    try:
        row = await run_in_threadpool(
            partial(ctx.jobs.submit, job_type, spec.lane, "train", options, spec=spec, paths=paths)
        )
    except RuntimeError as exc:
        raise ApiError(503, "service_unavailable", str(exc)) from None
    return {"ok": True, "started": True, "jobId": row.id, "state": row.state}


@_start_route("/api/train/dataset", DatasetRequest, "Start a dataset-only job")
async def train_dataset(request: Request) -> Any:
    ctx = ctx_of(request)
    obj = await read_json_object(request, "invalid_request")
    defaults = _defaults(ctx)
    defaulted = not any(k in obj for k in compat.DATA_KEYS)
    obj, old_mode = defaults.fill_dataset(obj)  # voice_dataset / knowledge_audio -> prepare
    req: DatasetRequest = _validate(DatasetRequest, obj)
    data = confine(req.dataPath, (ctx.settings.data_roots or []) + (defaults.roots() if defaulted else []), "dataPath")
    options: dict[str, Any] = {"mode": req.mode, "dataPath": str(data)}
    options |= {"requestedMode": old_mode} if old_mode else {}
    options |= {"language": req.language} if req.language else {}
    options |= {"minMinutes": req.minMinutes} if req.minMinutes is not None else {}
    paths = ctx.jobs.new_job_paths()
    if req.mode == "check":
        argv = ["dataset", "check", str(data), "--json"]
        argv += [f"--language={req.language}"] if req.language else []
        argv += [f"--min-minutes={req.minMinutes}"] if req.minMinutes is not None else []
        submit = partial(ctx.jobs.submit, "dataset", "data", "dataset", options, argv_tail=argv, paths=paths)
    else:
        options["profile"] = req.profile or "dataset"
        spec = _build_spec(
            job_type="dataset",
            data=data,
            profile_id=options["profile"],
            out=paths.out_dir,
            status_path=paths.status_path,
            language=req.language or "en-us",
            min_minutes=req.minMinutes,
        )
        submit = partial(ctx.jobs.submit, "dataset", "data", "dataset", options, spec=spec, paths=paths)
    try:
        row = await run_in_threadpool(submit)
    except RuntimeError as exc:
        raise ApiError(503, "service_unavailable", str(exc)) from None
    return {"ok": True, "started": True, "jobId": row.id, "state": row.state}


@router.get("/api/train/jobs", response_model=JobList, responses=ERRORS, summary="List jobs (newest first)")
def list_jobs(
    request: Request,
    state: Literal["pending", "running", "done", "error", "cancelled"] | None = Query(default=None),
    type: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=10**9),
) -> Any:
    ctx = ctx_of(request)
    rows, total = ctx.store.list(state=state, job_type=type, limit=limit, offset=offset)
    return {"ok": True, "jobs": [job_out(r, logs=False) for r in rows], "total": total}


@router.get("/api/train/job/{job_id}", response_model=Job, responses=ERRORS, summary="One job")
def get_job(job_id: str, request: Request) -> Any:
    row = ctx_of(request).jobs.get(job_id)
    if row is None:
        raise _not_found(job_id)
    return job_out(row)


@router.post(
    "/api/train/job/{job_id}/cancel",
    response_model=CancelReply,
    responses={**ERRORS, 409: {"model": ErrorEnvelope, "description": "already finished"}},
    summary="Cancel a job: SIGTERM to its process group, SIGKILL after the grace period",
)
def cancel_job(job_id: str, request: Request) -> Any:
    try:
        row = ctx_of(request).jobs.cancel(job_id)
    except ValueError as exc:
        raise ApiError(
            409, "job_not_cancellable", f"the job already ended ({exc})", {"jobId": job_id, "state": str(exc)}
        ) from None
    if row is None:
        raise _not_found(job_id)
    return {
        "ok": True,
        "cancelled": row.state == "cancelled",
        "jobId": row.id,
        "state": row.state,
        "job": job_out(row),
    }


def _sse(seq: int, kind: str, data: dict[str, Any]) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data, sort_keys=True, separators=(',', ':'))}\n\n"


def _event_data(e: dict[str, Any]) -> dict[str, Any]:
    ev = parse_line(e["raw"])
    data: dict[str, Any] = {"seq": e["seq"], "kind": ev.kind, "line": e["raw"]}
    if ev.kind == "PROGRESS":
        data.update(current=ev.current, total=ev.total)
    elif ev.kind == "STATS":
        data["stats"] = ev.stats
    elif ev.kind == "ARTIFACT":
        data["path"] = ev.path
    if ev.warning:
        data["warning"] = ev.warning
    return data


@router.get(
    "/api/train/job/{job_id}/events",
    responses=_responses_with_200(
        "Server-Sent Events: one event per stdout line of the job (`id` = sequence number, "
        "`event` = progress|stats|artifact|other), then `event: end` with the final state. "
        "Resumable with the `Last-Event-ID` header (or `lastEventId`).",
        "text/event-stream",
        "string",
    ),
    summary="Stream a job's lines (SSE)",
)
async def job_events(
    job_id: str,
    request: Request,
    last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
    lastEventId: int | None = Query(default=None, ge=0, le=2**62),
) -> Any:
    ctx = ctx_of(request)
    if await run_in_threadpool(ctx.store.get, job_id) is None:
        raise _not_found(job_id)
    start = lastEventId or 0
    header_id = parse_event_id(last_event_id)  # malformed ids (², 5000 digits) are ignored
    if header_id is not None:
        start = header_id

    async def stream():
        last = start
        last_sent = time.monotonic()
        yield "retry: 2000\n\n"
        while not ctx.closing:
            evs = await run_in_threadpool(ctx.store.events, job_id, last, 500)
            for e in evs:
                yield _sse(e["seq"], e["kind"].lower(), _event_data(e))
                last = e["seq"]
            if evs:
                last_sent = time.monotonic()
                continue
            row = await run_in_threadpool(ctx.store.get, job_id)
            if row is None:
                return
            if row.state in FINAL_STATES:
                evs = await run_in_threadpool(ctx.store.events, job_id, last, 100000)
                for e in evs:
                    yield _sse(e["seq"], e["kind"].lower(), _event_data(e))
                    last = e["seq"]
                end = {"jobId": job_id, "state": row.state, "lastSeq": last}
                if row.error:
                    end["error"] = row.error  # the child's stable code and details, unchanged
                yield f"event: end\ndata: {json.dumps(end, sort_keys=True)}\n\n"
                return
            if await request.is_disconnected():
                return
            if time.monotonic() - last_sent > SSE_KEEPALIVE_S:
                last_sent = time.monotonic()
                yield ": keepalive\n\n"
            await asyncio.sleep(SSE_POLL_S)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.get(
    "/api/train/job/{job_id}/log",
    responses=_responses_with_200("the job's full log (stdout and stderr lines, capped)", "text/plain", "string"),
    summary="A job's full log file",
)
def job_log(job_id: str, request: Request) -> Any:
    row = ctx_of(request).store.get(job_id)
    if row is None:
        raise _not_found(job_id)
    path = Path(row.log_path) if row.log_path else None
    if path is None or not path.is_file():
        return PlainTextResponse("", media_type="text/plain; charset=utf-8")
    return FileResponse(path, media_type="text/plain; charset=utf-8")


@router.get(
    "/api/train/status",
    responses=_responses_with_200(
        "the train_status/1 JSON of the latest job (or of `jobId`)", "application/json", "object"
    ),
    summary="Latest train_status/1 JSON",
)
def train_status(
    request: Request,
    jobType: str | None = Query(default=None, max_length=64),
    jobId: str | None = Query(default=None, max_length=128),
) -> Any:
    ctx = ctx_of(request)
    if jobId:
        row = ctx.store.get(jobId)
        if row is None:
            raise _not_found(jobId)
        path = Path(row.status_path) if row.status_path else None
    else:
        row, path = _latest_status(ctx, jobType)
    doc = read_status(path) if path is not None else None
    if not isinstance(doc, dict):
        raise ApiError(
            404,
            "status_not_found",
            "no train_status JSON yet" + (" since the last reset" if not jobId else " for this job"),
        )
    doc = compat.with_old_keys(doc)
    if row is not None and row.status_path and path == Path(row.status_path):
        doc.setdefault("jobId", row.id)
    return JSONResponse(doc)


def _latest_status(ctx, job_type: str | None) -> tuple[JobRecord | None, Path | None]:
    """The newest status on this machine: the service's latest job, or a file the CLI or the
    orchestrator wrote (``TRAIN_STATUS_PATH``, ``artifacts/train_status.*.json``), whichever is newer."""
    row = ctx.store.latest_with_status(job_type, int(ctx.store.meta_get(RESET_KEY) or 0))
    own = Path(row.status_path) if row and row.status_path else None
    files = compat.machine_status_files(_defaults(ctx))
    if job_type:
        files = [f for f in files if (read_status(f) or {}).get("job_type") == job_type]
    outside = compat.newest(files, int(ctx.store.meta_get(RESET_NS_KEY) or 0))
    path = compat.newest([p for p in (own, outside) if p is not None])
    return (row if path == own else None), path


@router.post("/api/train/status/reset", responses=ERRORS, summary="Forget the latest status (records are kept)")
def train_status_reset(request: Request) -> Any:
    ctx = ctx_of(request)
    ctx.store.meta_set(RESET_KEY, str(ctx.store.max_rowid()))
    ctx.store.meta_set(RESET_NS_KEY, str(time.time_ns()))
    return {"ok": True, "reset": True}
