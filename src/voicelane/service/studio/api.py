"""HTTP routes the studio pages call (tag ``data``), in the OpenAPI spec like every other route.

Recording and upload bodies are raw bytes (``audio/wav``, ``application/zip``), bounded per
route (``BODY_LIMITS``), and only ever written under the studio's datasets folder inside the
configured data roots. The studio page holds no logic these routes lack.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from voicelane import weights
from voicelane.service.core.errors import ApiError
from voicelane.service.core.paths import confine
from voicelane.service.deps import ServiceContext, ctx_of, require_admin
from voicelane.service.models import ErrorEnvelope
from voicelane.service.studio import datasets as ds
from voicelane.service.studio import voices as sv

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "data" / "prompts"
BODY_LIMITS = {"/api/data/recordings/": ds.TAKE_MAX_BYTES + 4096, "/api/data/uploads": ds.ZIP_MAX_BYTES + 4096}
BUNDLE_MAX_BYTES = 2 * 1024 * 1024 * 1024
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"

router = APIRouter(tags=["data"], dependencies=[Depends(require_admin)])
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorEnvelope,
        "description": "invalid request (upload_empty, upload_unsafe, upload_invalid, "
        "recording_invalid, path_not_allowed)",
    },
    401: {"model": ErrorEnvelope, "description": "token required"},
    404: {"model": ErrorEnvelope, "description": "not found"},
    409: {"model": ErrorEnvelope, "description": "dataset_exists"},
    413: {"model": ErrorEnvelope, "description": "request_too_large"},
    422: {"model": ErrorEnvelope, "description": "recording_silent"},
}


def _raw_body(media: str, desc: str) -> dict[str, Any]:
    """A raw-bytes body; ``application/octet-stream`` is accepted too (the Content-Type is not
    checked: the bytes are decoded and validated whatever it says)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "description": desc,
            "content": {media: binary, "application/octet-stream": binary},
        }
    }


def _upload_route(path: str, media: str, desc: str, summary: str) -> Callable[[Any], Any]:
    """A POST route whose body is raw bytes of ``media`` (not JSON), documented as such."""
    return router.post(path, responses=ERRORS, openapi_extra=_raw_body(media, desc), summary=summary)


def _root(ctx: ServiceContext) -> Path:
    return ds.studio_root(ctx.settings.data_dir, ctx.settings.data_roots or [])


async def _folder_and_body(request: Request, name: str) -> tuple[Path, bytes]:
    """The studio folder of dataset ``name`` (its name checked first) and the uploaded bytes."""
    folder = ds.dataset_dir(_root(ctx_of(request)), name)
    return folder, await request.body()


# --------------------------------------------------------------------------------------------
# prompts and datasets


@router.get("/api/data/prompts", responses=ERRORS, summary="Recording prompts for one language")
def prompts(language: str = Query(default="en-us", pattern=r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")) -> Any:
    path = PROMPTS_DIR / f"{language}.json"
    available = sorted(p.stem for p in PROMPTS_DIR.glob("*.json"))
    if not path.is_file():
        raise ApiError(
            404,
            "language_unsupported",
            f"no prompt list for {language!r}",
            {"language": language, "available": available},
        )
    return {**json.loads(path.read_text("utf-8")), "available": available}


@router.get("/api/data/datasets", responses=ERRORS, summary="Datasets (folders with metadata.csv) under the data roots")
def list_datasets(request: Request) -> Any:
    ctx = ctx_of(request)
    return {"ok": True, "studioRoot": str(_root(ctx)), "datasets": ds.list_datasets(ctx.settings.data_roots or [])}


@router.get(
    "/api/data/clip",
    responses={**ERRORS, 200: {"description": "the clip's audio file", "content": {"audio/wav": {}, "audio/flac": {}}}},
    summary="One clip of a dataset, by id (for playback)",
)
def clip(
    request: Request,
    dataPath: str = Query(max_length=4096),
    clipId: str = Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
) -> Any:
    real = _clip_path(ctx_of(request), dataPath, clipId)
    return FileResponse(
        real, media_type={".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}[real.suffix.lower()]
    )


def _clip_path(ctx: ServiceContext, data_path: str, clip_id: str) -> Path:
    roots = ctx.settings.data_roots or []
    try:
        folder = confine(data_path, roots, "dataPath")
        for suffix in ds.AUDIO_SUFFIXES:
            cand = folder / "wavs" / f"{clip_id}{suffix}"
            if cand.is_file():
                return confine(str(cand), roots, "clipId")
    except OSError as exc:  # e.g. a path component longer than the file system allows
        raise ApiError(400, "invalid_request", "dataPath cannot be used", {"reason": exc.strerror}) from None
    raise ApiError(404, "not_found", f"no clip {clip_id!r} in {Path(data_path).name}", {"clipId": clip_id})


@router.get(
    "/api/data/alignment",
    responses=ERRORS,
    summary="Force-align one clip to its transcript: words and phones with times, score, waveform envelope",
)
async def alignment(
    request: Request,
    dataPath: str = Query(max_length=4096),
    clipId: str = Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
    language: str = Query(default="en-us", pattern=LANGUAGE_PATTERN),
) -> Any:
    ctx = ctx_of(request)
    wav = _clip_path(ctx, dataPath, clipId)
    text = dict(ds.read_metadata(wav.parent.parent)).get(clipId)
    if not text:
        raise ApiError(404, "not_found", f"{clipId!r} has no transcript in metadata.csv", {"clipId": clipId})
    return await run_in_threadpool(ds.align_clip, wav, text, language)


# --------------------------------------------------------------------------------------------
# recording sessions


@router.get("/api/data/recordings/{name}", responses=ERRORS, summary="A recording session (for resume)")
def recording_state(name: str, request: Request) -> Any:
    folder = ds.dataset_dir(_root(ctx_of(request)), name)
    return {"ok": True, **ds.session_state(folder)}


@_upload_route(
    "/api/data/recordings/{name}/consent",
    "audio/wav",
    "the spoken consent statement (WAV, 16 kHz or more, up to 60 s)",
    "Save the speaker's recorded consent (consent.wav + consent.txt)",
)
async def recording_consent(
    name: str,
    request: Request,
    speakerName: str = Query(min_length=1, max_length=128),
    statement: str = Query(min_length=1, max_length=ds.TEXT_MAX_CHARS),
    language: str = Query(default="en-us", pattern=LANGUAGE_PATTERN),
) -> Any:
    folder, body = await _folder_and_body(request, name)
    out = await run_in_threadpool(ds.save_consent, folder, speakerName, statement, body, language)
    return {"ok": True, **out}


@_upload_route(
    "/api/data/recordings/{name}/takes",
    "audio/wav",
    "one take (WAV, 16 kHz or more, 0.5-20 s)",
    "Save one take (wavs/<clipId>.wav + its metadata.csv row; a re-take replaces both)",
)
async def recording_take(
    name: str,
    request: Request,
    clipId: str = Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
    text: str = Query(min_length=1, max_length=ds.TEXT_MAX_CHARS),
) -> Any:
    folder, body = await _folder_and_body(request, name)
    if not (folder / "consent.txt").is_file():
        raise ApiError(
            409, "consent_missing", "record the speaker's consent statement before the prompts", {"name": name}
        )
    out = await run_in_threadpool(ds.save_take, folder, clipId, text, body)
    state = await run_in_threadpool(ds.session_state, folder)
    return {
        "ok": True,
        **out,
        "minutes": state["minutes"],
        "takes": len(state["takes"]),
        "recommendedMinutes": state["recommendedMinutes"],
    }


@_upload_route(
    "/api/data/uploads",
    "application/zip",
    "a zip of an LJSpeech folder (metadata.csv + wavs/)",
    "Upload a dataset as a zip (bounded; unpacked safely into the studio's datasets folder)",
)
async def upload_zip(request: Request, name: str = Query(pattern=ds.NAME_RE.pattern)) -> Any:
    dest, body = await _folder_and_body(request, name)
    out = await run_in_threadpool(ds.unpack_zip, body, dest)
    return {"ok": True, **out}


# --------------------------------------------------------------------------------------------
# base weights and bundles


@router.get("/api/train/bases", responses=ERRORS, summary="Allowlisted base weights with their licence verdicts")
def bases() -> Any:
    out = []
    for wid, e in sorted(weights.load_allowlist().items()):
        gate = {w: weights.classify(e.get(f"{w}_license")) for w in ("code", "weights", "data")}
        if e.get("commercial_use_allowed") is False:
            gate["commercial_use_allowed"] = "noncommercial"
        verdict = (
            "ok"
            if all(v == "ok" for v in gate.values())
            else ("noncommercial" if "noncommercial" in gate.values() else "unknown")
        )
        out.append(
            {
                "id": wid,
                "engine": e.get("engine"),
                "codeLicense": e.get("code_license"),
                "weightsLicense": e.get("weights_license"),
                "dataLicense": e.get("data_license"),
                "licenseUrl": e.get("license_url"),
                "gate": gate,
                "verdict": verdict,
                "notes": e.get("notes"),
            }
        )
    return {"ok": True, "bases": out}


def _served_voice(ctx: ServiceContext, profile: str) -> Any:
    served, _ = ctx.voices.snapshot()
    voice = served.get(profile)
    if voice is None:
        raise ApiError(
            404, "voice_profile_not_found", f"no served voice for profile {profile!r}", {"profile": profile[:64]}
        )
    return voice


@router.get(
    "/api/voice/profiles/{profile}/readiness",
    responses=ERRORS,
    summary="The readiness GO/NO-GO of a served voice (from `voicelane readiness`'s readiness.json; "
    "not_assessed when there is none or it is about another bundle)",
)
def readiness(profile: str, request: Request) -> Any:
    ctx = ctx_of(request)
    voice = _served_voice(ctx, profile)
    return {"ok": True, "profile": profile, **sv.readiness(ctx.settings.reports_dir, voice.manifest_sha256)}


@router.get(
    "/api/voice/profiles/{profile}/heldout",
    responses=ERRORS,
    summary="The real held-out recordings a served voice was evaluated on, found inside the data roots "
    "(play them with /api/data/clip)",
)
def heldout(profile: str, request: Request, dataPath: str | None = Query(default=None, max_length=4096)) -> Any:
    ctx = ctx_of(request)
    voice = _served_voice(ctx, profile)
    try:
        out = sv.heldout(Path(voice.bundle_dir), ctx.settings.data_roots or [], dataPath)
    except OSError as exc:
        raise ApiError(400, "invalid_request", "dataPath cannot be used", {"reason": exc.strerror}) from None
    return {"ok": True, "profile": profile, **out}


@router.get(
    "/api/voice/profiles/{profile}/bundle",
    responses={
        **ERRORS,
        200: {"description": "the served voice's bundle folder as a zip", "content": {"application/zip": {}}},
    },
    summary="Download a served voice's bundle (zip)",
)
def bundle_zip(profile: str, request: Request) -> Any:
    served, _ = ctx_of(request).voices.snapshot()
    voice = served.get(profile)
    if voice is None:
        raise ApiError(
            404, "voice_profile_not_found", f"no served voice for profile {profile!r}", {"profile": profile[:64]}
        )
    data = _zip_folder(Path(voice.bundle_dir), f"{profile}/voice_bundle")
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{profile}.voice_bundle.zip"'},
    )


def _zip_folder(folder: Path, prefix: str) -> bytes:
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            total += path.stat().st_size
            if total > BUNDLE_MAX_BYTES:
                raise ApiError(413, "request_too_large", "the bundle is too large to zip on the fly")
            zf.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return buf.getvalue()
