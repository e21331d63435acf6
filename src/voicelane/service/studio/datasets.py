"""Dataset folders the studio writes: recorded takes, consent recordings and unpacked zips.

Everything lands inside ``studio_root(settings)`` (a folder inside the configured data roots) as
the LJSpeech layout the lane accepts (``wavs/<id>.wav`` + ``metadata.csv``). Every write is
atomic (temp file + rename), so a take that fails halfway leaves the previous take in place.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import soundfile as sf

from voicelane.fsutil import atomic_write_bytes, sha256_file
from voicelane.service.core.errors import ApiError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CLIP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

TAKE_MAX_BYTES = 8 * 1024 * 1024  # ~43 s of 48 kHz 16-bit mono: far above TAKE_MAX_S
TAKE_MIN_S = 0.5
TAKE_MAX_S = 20.0
CONSENT_MAX_S = 60.0
MIN_SAMPLE_RATE = 16000
SILENT_PEAK = 10 ** (-50 / 20)  # a take whose loudest sample is under -50 dBFS holds no speech
QUIET_RMS_DBFS = -40.0
CLIPPED_FRACTION = 0.001
TEXT_MAX_CHARS = 600
RECOMMENDED_MINUTES = 60.0
MAX_TAKES = 5000  # per recording session (~ 8 h of 6 s prompts)

ZIP_MAX_BYTES = 100 * 1024 * 1024
ZIP_MAX_ENTRIES = 20000
ZIP_MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
SCAN_MAX_DATASETS = 200
DECODE_ERRORS = (RuntimeError, ValueError, TypeError, OSError)  # what soundfile raises on bad input

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(folder: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(folder), threading.Lock())


# --------------------------------------------------------------------------------------------
# where studio datasets live


def studio_root(data_dir: Path, data_roots: list[Path]) -> Path:
    """``<data dir>/datasets`` when the data dir is inside a data root (the default), else a
    ``voicelane-datasets`` folder in the first data root."""
    real = Path(os.path.realpath(data_dir))
    if any(real == r or real.is_relative_to(r) for r in data_roots):
        return real / "datasets"
    if not data_roots:
        raise ApiError(503, "service_unavailable", "no data roots are configured (VOICELANE_DATA_ROOTS)")
    return Path(data_roots[0]) / "voicelane-datasets"


def dataset_dir(root: Path, name: str) -> Path:
    if not NAME_RE.match(name or ""):
        raise ApiError(
            400,
            "invalid_request",
            "dataset names use 1-64 characters from a-z, 0-9, '_' and '-', starting with a letter or digit",
            {"field": "name"},
        )
    return root / name


def list_datasets(data_roots: list[Path], max_depth: int = 3) -> list[dict[str, Any]]:
    """Folders holding a ``metadata.csv`` under the data roots (bounded breadth-first scan)."""
    found: list[dict[str, Any]] = []
    for root in data_roots:
        queue = [(Path(root), 0)]
        while queue and len(found) < SCAN_MAX_DATASETS:
            folder, depth = queue.pop(0)
            if (folder / "metadata.csv").is_file():
                found.append(_dataset_summary(folder, Path(root)))
                continue
            if depth >= max_depth:
                continue
            try:
                children = sorted(
                    p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
                )
            except OSError:
                continue
            queue.extend((c, depth + 1) for c in children[:500])
    return found


def _dataset_summary(folder: Path, root: Path) -> dict[str, Any]:
    try:
        rows = sum(1 for line in (folder / "metadata.csv").read_text("utf-8", "replace").splitlines() if line.strip())
    except OSError:
        rows = 0
    return {
        "name": folder.name,
        "path": str(folder),
        "root": str(root),
        "rows": rows,
        "consent": (folder / "consent.txt").is_file(),
        "language": recorded_language(folder),
    }


def recorded_language(folder: Path) -> str | None:
    """The language a studio session recorded in (the ``language:`` line of its consent.txt)."""
    try:
        head = (folder / "consent.txt").read_text("utf-8", "replace")[:4096]
    except OSError:
        return None
    for line in head.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "language" and re.match(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$", value.strip()):
            return value.strip()
    return None


# --------------------------------------------------------------------------------------------
# takes


@dataclass
class TakeLevels:
    seconds: float
    sample_rate: int
    peak: float
    rms_dbfs: float
    clipped_fraction: float

    def warnings(self) -> list[str]:
        out = []
        if self.clipped_fraction >= CLIPPED_FRACTION:
            out.append("clipped")
        if self.rms_dbfs < QUIET_RMS_DBFS:
            out.append("too_quiet")
        return out


def _refuse_empty_or_oversized(body: bytes, limit: int, empty_message: str, limit_message: str) -> None:
    if not body:
        raise ApiError(400, "upload_empty", empty_message)
    if len(body) > limit:
        raise ApiError(413, "request_too_large", limit_message, {"limitBytes": limit})


def decode_take(body: bytes, max_s: float = TAKE_MAX_S) -> tuple[np.ndarray, int, TakeLevels]:
    """Decode and measure an uploaded WAV; refuses empty, undecodable, too short/long and silent takes."""
    _refuse_empty_or_oversized(
        body, TAKE_MAX_BYTES, "the recording is empty (0 bytes)", f"a take is limited to {TAKE_MAX_BYTES} bytes"
    )
    try:
        audio, rate = sf.read(io.BytesIO(body), dtype="float32", always_2d=True)
    except DECODE_ERRORS as exc:
        raise ApiError(
            400, "recording_invalid", "the recording is not a readable WAV file", {"reason": str(exc)[:200]}
        ) from None
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    seconds = len(mono) / float(rate) if rate else 0.0
    if rate < MIN_SAMPLE_RATE:
        raise ApiError(
            400,
            "recording_invalid",
            f"the recording's sample rate {rate} Hz is under {MIN_SAMPLE_RATE}",
            {"sampleRate": rate},
        )
    if not TAKE_MIN_S <= seconds <= max_s:
        raise ApiError(
            400,
            "recording_invalid",
            f"the take lasts {seconds:.2f} s; takes must last {TAKE_MIN_S}-{max_s:g} s",
            {"seconds": round(seconds, 3)},
        )
    levels = measure(mono, rate)
    if levels.peak < SILENT_PEAK:
        raise ApiError(
            422,
            "recording_silent",
            "the take is silent: check the microphone and its input level, then re-take",
            {"peak": round(levels.peak, 6), "rmsDbfs": round(levels.rms_dbfs, 1)},
        )
    return mono, rate, levels


def measure(mono: np.ndarray, rate: int) -> TakeLevels:
    peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64)))) if len(mono) else 0.0
    clipped = float(np.mean(np.abs(mono) >= 0.999)) if len(mono) else 0.0
    return TakeLevels(len(mono) / float(rate), int(rate), peak, 20 * np.log10(max(rms, 1e-10)), clipped)


def _wav_bytes(mono: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, mono, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def clean_text(text: str) -> str:
    text = " ".join((text or "").split())
    if not text or len(text) > TEXT_MAX_CHARS or "|" in text:
        raise ApiError(
            400,
            "invalid_request",
            f"the transcript must hold 1-{TEXT_MAX_CHARS} characters and no '|'",
            {"field": "text"},
        )
    return text


def read_metadata(folder: Path) -> list[tuple[str, str]]:
    path = folder / "metadata.csv"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text("utf-8").splitlines():
        if line.strip():
            clip_id, _, text = line.partition("|")
            rows.append((clip_id, text.split("|", 1)[0]))
    return rows


def save_take(folder: Path, clip_id: str, text: str, body: bytes) -> dict[str, Any]:
    """Write ``wavs/<clip_id>.wav`` and its metadata row (a re-take replaces both)."""
    if not CLIP_ID_RE.match(clip_id or ""):
        raise ApiError(
            400, "invalid_request", "clipId uses 1-64 characters from A-Z, a-z, 0-9, '_' and '-'", {"field": "clipId"}
        )
    text = clean_text(text)
    mono, rate, levels = decode_take(body)
    with _lock_for(folder):
        rows = [r for r in read_metadata(folder) if r[0] != clip_id] + [(clip_id, text)]
        if len(rows) > MAX_TAKES:
            raise ApiError(
                413,
                "request_too_large",
                f"a recording session holds at most {MAX_TAKES} takes; start a new session",
                {"limit": MAX_TAKES},
            )
        atomic_write_bytes(folder / "wavs" / f"{clip_id}.wav", _wav_bytes(mono, rate))
        atomic_write_bytes(folder / "metadata.csv", "".join(f"{i}|{t}|{t}\n" for i, t in rows).encode("utf-8"))
    return {
        "clipId": clip_id,
        "seconds": round(levels.seconds, 3),
        "sampleRate": rate,
        "peak": round(levels.peak, 4),
        "rmsDbfs": round(levels.rms_dbfs, 1),
        "warnings": levels.warnings(),
    }


def save_consent(folder: Path, speaker: str, statement: str, body: bytes, language: str = "en-us") -> dict[str, Any]:
    """The spoken consent (``consent.wav``) and the text record the lane reads (``consent.txt``)
    binding it by sha256."""
    speaker = clean_text(speaker)[:128]
    statement = clean_text(statement)
    mono, rate, levels = decode_take(body, max_s=CONSENT_MAX_S)
    with _lock_for(folder):
        atomic_write_bytes(folder / "consent.wav", _wav_bytes(mono, rate))
        digest, _ = sha256_file(folder / "consent.wav")
        recorded = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = (
            f"speaker_name: {speaker}\nasserted_by: the speaker, recorded in voicelane studio\n"
            f"recorded_at: {recorded}\nlanguage: {language}\naudio: consent.wav\naudio_sha256: {digest}\n\n"
            f"{statement}\n"
        )
        atomic_write_bytes(folder / "consent.txt", record.encode("utf-8"))
    return {
        "seconds": round(levels.seconds, 3),
        "audioSha256": digest,
        "warnings": levels.warnings(),
        "consentStatement": str(folder / "consent.txt"),
    }


def session_state(folder: Path) -> dict[str, Any]:
    """What a recording session holds so far (for resume): takes, their durations, minutes."""
    takes = []
    total = 0.0
    for clip_id, text in read_metadata(folder):
        wav = folder / "wavs" / f"{clip_id}.wav"
        try:
            seconds = sf.info(str(wav)).duration
        except DECODE_ERRORS:
            seconds = 0.0
        total += seconds
        takes.append({"clipId": clip_id, "text": text, "seconds": round(seconds, 3)})
    return {
        "name": folder.name,
        "path": str(folder),
        "exists": folder.is_dir(),
        "consent": (folder / "consent.txt").is_file(),
        "language": recorded_language(folder),
        "takes": takes,
        "minutes": round(total / 60.0, 3),
        "recommendedMinutes": RECOMMENDED_MINUTES,
    }


# --------------------------------------------------------------------------------------------
# alignment of one clip (the Data page draws phones over the waveform)

ALIGN_MAX_S = 30.0
ENVELOPE_POINTS = 600
_align_lock = threading.Lock()  # one alignment at a time: it is CPU work inside the service


def align_clip(wav_path: Path, text: str, language: str) -> dict[str, Any]:
    from voicelane.engine import align
    from voicelane.errors import VoicelaneError

    try:
        audio, rate = sf.read(str(wav_path), dtype="float64", always_2d=True)
    except DECODE_ERRORS as exc:
        raise ApiError(
            400, "audio_undecodable", f"{wav_path.name} cannot be decoded", {"reason": str(exc)[:200]}
        ) from None
    mono = audio.mean(axis=1)
    if len(mono) / rate > ALIGN_MAX_S:
        raise ApiError(
            400, "invalid_request", f"clips over {ALIGN_MAX_S:g} s are not aligned here; use `voicelane dataset align`"
        )
    with _align_lock:
        try:
            al = align.align_text(mono, rate, text, language)
        except align.AlignmentError as exc:
            raise ApiError(
                422,
                "alignment_failed",
                f"no alignment of the transcript to the audio: {exc}",
                {"clipId": wav_path.stem},
            ) from None
        except VoicelaneError as err:
            raise ApiError(400, err.code, err.message, err.details) from None
    problem = align.implausibility(al)

    def spans(items):
        return [{"label": i.label, "start": round(i.start_s, 3), "end": round(i.end_s, 3)} for i in items]

    return {
        "ok": True,
        "clipId": wav_path.stem,
        "text": text,
        "language": language,
        "durationS": round(len(mono) / rate, 3),
        "score": round(al.score, 2),
        "implausible": problem,
        "words": spans(al.words),
        "phones": spans(al.phones),
        "envelope": _envelope(mono),
    }


def _envelope(mono: np.ndarray, points: int = ENVELOPE_POINTS) -> list[float]:
    """Peak level per slice of the clip, for drawing the waveform."""
    if not len(mono):
        return []
    chunks = np.array_split(np.abs(mono), min(points, len(mono)))
    return [round(float(c.max()), 4) for c in chunks]


# --------------------------------------------------------------------------------------------
# zip uploads


def _safe_member(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's relative path, or None for a directory entry; ApiError when it is unsafe."""
    name = info.filename.replace("\\", "/")
    mode = (info.external_attr >> 16) & 0o170000
    pure = PurePosixPath(name)
    bad = (
        name.startswith("/")
        or re.match(r"^[A-Za-z]:", name)
        or ".." in pure.parts
        or "\x00" in name
        or mode == stat.S_IFLNK
    )
    if bad:
        raise ApiError(
            400,
            "upload_unsafe",
            f"the zip entry {name[:200]!r} would land outside the dataset folder "
            "(absolute path, '..' or a symlink); nothing was written",
            {"entry": name[:200]},
        )
    return None if name.endswith("/") else pure


def unpack_zip(body: bytes, dest: Path) -> dict[str, Any]:
    """Unpack an uploaded zip into ``dest`` (created; refused if it exists). The whole archive is
    checked before anything is written, and it is unpacked into a temp folder renamed at the end."""
    _refuse_empty_or_oversized(
        body, ZIP_MAX_BYTES, "the upload is empty (0 bytes)", f"uploads are limited to {ZIP_MAX_BYTES} bytes"
    )
    try:
        zf = zipfile.ZipFile(io.BytesIO(body))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ApiError(400, "upload_invalid", "the upload is not a zip archive", {"reason": str(exc)[:200]}) from None
    if len(infos) > ZIP_MAX_ENTRIES:
        raise ApiError(413, "request_too_large", f"the zip holds {len(infos)} entries (limit {ZIP_MAX_ENTRIES})")
    members = [(i, p) for i in infos if (p := _safe_member(i)) is not None]
    if sum(i.file_size for i, _ in members) > ZIP_MAX_UNPACKED_BYTES:
        raise ApiError(413, "request_too_large", f"the zip unpacks to more than {ZIP_MAX_UNPACKED_BYTES} bytes")
    members = _strip_common_top(members)
    if not any(p.as_posix() == "metadata.csv" for _, p in members):
        raise ApiError(
            400, "upload_invalid", "the zip holds no metadata.csv at its top (LJSpeech layout: metadata.csv + wavs/)"
        )
    if dest.exists():
        raise ApiError(409, "dataset_exists", f"a dataset named {dest.name!r} already exists", {"name": dest.name})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        written = 0
        for info, rel in members:
            target = tmp.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    written += _copy_bounded(src, out, ZIP_MAX_UNPACKED_BYTES - written)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error) as exc:
                raise ApiError(
                    400,
                    "upload_invalid",
                    f"the zip entry {info.filename[:200]!r} cannot be read "
                    "(corrupt, encrypted or an unsupported compression)",
                    {"entry": info.filename[:200], "reason": str(exc)[:200]},
                ) from None
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"name": dest.name, "path": str(dest), "files": len(members), "bytes": written}


def _strip_common_top(members: list[tuple[zipfile.ZipInfo, PurePosixPath]]):
    tops = {p.parts[0] for _, p in members}
    if len(tops) == 1 and all(len(p.parts) > 1 for _, p in members):
        return [(i, PurePosixPath(*p.parts[1:])) for i, p in members]
    return members


def _copy_bounded(src, out, budget: int) -> int:
    n = 0
    while chunk := src.read(1 << 20):
        n += len(chunk)
        if n > budget:  # the sizes in the zip's directory lied
            raise ApiError(413, "request_too_large", f"the zip unpacks to more than {ZIP_MAX_UNPACKED_BYTES} bytes")
        out.write(chunk)
    return n
