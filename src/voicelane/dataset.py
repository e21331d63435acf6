"""Dataset step (SPEC §5): turn what an operator has into clean, engine-rate training clips.

Accepted inputs (auto-detected from ``data_path``):

* ``ljspeech``: ``metadata.csv`` (``id|text`` or ``id|text|normalized_text``, no header) and
  ``wavs/<id>.wav|.flac|.ogg``;
* ``audio_txt``: a folder of audio files, each with a same-named ``.txt`` transcript;
* ``long_recording``: one long recording plus a same-named ``.srt``/``.vtt`` (or a folder holding
  exactly one audio and one subtitle file), cut into clips by the cue times.

Every clip is checked; a rejected clip is listed with a reason code from :data:`REASONS` and the
run fails only when too little audio remains. Kept clips are decoded, downmixed, resampled to
``cfg.sample_rate`` (soxr VHQ), trimmed, loudness-normalised (pyloudnorm) and written as 16-bit
PCM WAV. The manifest (``dataset_manifest/1``) is written last, so its presence means the whole
dataset is complete; two runs over the same input give byte-identical files.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_bytes, atomic_write_json, canonical_json, sha256_bytes, swap_dir

ENGINE_RATE = 16000
SCHEMA_ID = "dataset_manifest/1"
MANIFEST_NAME = "dataset_manifest.json"
WAVS_DIR = "wavs"

REASONS = (
    "missing_file",  # the audio (or its .txt transcript) does not exist
    "undecodable",  # soundfile cannot decode the audio
    "empty_transcript",  # transcript empty after whitespace/tag clean-up
    "unvoiceable_text",  # transcript has no letters (or is not UTF-8 text)
    "sample_rate_too_low",  # source rate below cfg.min_source_rate
    "duplicate_audio",  # same file bytes or same decoded PCM as an earlier kept clip
    "too_short",  # speech (after trimming) shorter than cfg.min_clip_s
    "too_long",  # speech (after trimming) longer than cfg.max_clip_s
    "silent",  # loudest 25 ms frame below -50 dBFS
    "clipped",  # more than 0.1 % of the original samples at |x| >= 0.999
    "length_mismatch",  # transcript characters per second of speech outside [2, 35]
    # real recordings (docs/dataset.md "Ingestion of real recordings")
    "path_not_allowed",  # the file resolves outside the dataset folder (a symlink out)
    "cue_reversed",  # subtitle cue ends before (or when) it starts
    "cue_overlap",  # subtitle cue overlaps its neighbour in time
    "snr_low",  # estimated signal-to-noise ratio below cfg.min_snr_db
    "dc_offset",  # |mean| above cfg.max_dc_offset (broken input chain)
    "long_silence",  # an internal pause longer than cfg.max_pause_s
    "rate_outlier",  # speaking rate far from the corpus median (often a wrong transcript)
    "level_outlier",  # source loudness far from the corpus median (another setup)
    "alignment_failed",  # forced alignment found no plausible path (voicelane dataset align)
)

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
SUBTITLE_EXTS = (".srt", ".vtt")

# Audio analysis constants (documented in docs/dataset.md).
FRAME_S = 0.025
HOP_S = 0.010
TRIM_REL_DB = -40.0  # frame RMS threshold relative to the loudest frame
TRIM_PAD_S = 0.05  # padding kept around the speech
SILENT_DBFS = -50.0  # loudest frame RMS below this -> silent
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.001  # > 0.1 % of samples at |x| >= CLIP_LEVEL -> clipped
PEAK_LIMIT = 0.99
MIN_CPS = 2.0  # plausible speaking rates, characters per second of speech
MAX_CPS = 35.0
UNDECODED_LONG_FACTOR = 3.0  # clip files longer than this x max_clip_s are not even decoded
MAX_PROBLEMS = 20
DC_REMOVE = 1e-3  # |DC| at or above this is subtracted (below: bytes left untouched)
SNR_CAP_DB = 100.0
NOISE_FLATNESS = 0.1  # quiet frames flatter than this are noise, not quiet speech


@dataclass
class DatasetConfig:
    sample_rate: int = 16000
    min_clip_s: float = 0.5
    max_clip_s: float = 20.0
    min_source_rate: int = 8000  # below -> reject 'sample_rate_too_low'
    min_total_minutes: float = 5.0  # kept audio below -> VoicelaneError('dataset_too_small')
    warn_total_minutes: float = 30.0  # below -> a warning in the report (recommend 1-2 h)
    target_lufs: float = -23.0
    val_fraction: float = 0.05
    val_min: int = 1
    val_max: int = 50
    language: str = "en-us"
    # real-recording checks (docs/dataset.md); a threshold of None disables its check
    min_snr_db: float | None = 15.0
    warn_snr_db: float = 25.0
    max_dc_offset: float | None = 0.05
    max_pause_s: float | None = 2.0
    rate_outlier_z: float | None = 4.5  # robust z-score of characters per second
    max_level_deviation_db: float | None = 20.0
    min_clips_for_corpus_checks: int = 10
    align_min_score: float = -60.0  # mean acoustic score per frame (docs/alignment.md)
    align_score_z: float | None = 4.0  # clips this many robust SDs below the corpus median
    denoise: bool = False  # noisereduce spectral gating, opt-in
    follow_external_symlinks: bool = False


# --------------------------------------------------------------------------------------------
# candidates


@dataclass
class _Candidate:
    id: str
    source: str  # path relative to the dataset root (POSIX), for reports
    text: str | None  # None: no transcript file; checked per clip
    audio: Path | None  # None: missing audio file
    line: int | None = None  # metadata.csv / subtitle line (1-based)
    start_s: float | None = None  # long recording cue
    end_s: float | None = None
    text_problem: str | None = None  # e.g. transcript not UTF-8
    missing_detail: str | None = None
    problem: tuple[str, str] | None = None  # (reason, detail) found while listing: symlink, cue


@dataclass
class _Layout:
    name: str
    root: Path
    candidates: list[_Candidate]
    warnings: list[str]
    recordings: dict[str, Path] | None = None  # long_recording: source -> path


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symlink followed, stays inside the folder `root`."""
    real_root = root.resolve()
    real = path.resolve()
    return real == real_root or real_root in real.parents


def _escape_problem(paths: list[Path], root: Path, allow_external: bool) -> tuple[str, str] | None:
    if allow_external:
        return None
    for p in paths:
        if not _inside(p, root):
            return (
                "path_not_allowed",
                f"{_rel(p, root)} resolves outside the dataset folder (a symlink to a file elsewhere)",
            )
    return None


def _require_inside(path: Path, root: Path, allow_external: bool) -> None:
    if not allow_external and not _inside(path, root):
        raise VoicelaneError(
            "path_not_allowed", f"{path.name} resolves outside the dataset folder {root}", {"path": str(path)}
        )


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _clean_text(text: str) -> str:
    return " ".join(text.split())


def _is_audio(p: Path) -> bool:
    return p.suffix.lower() in AUDIO_EXTS


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]")


def _unsafe_id(clip_id: str) -> bool:
    return bool(_UNSAFE_ID.search(clip_id)) or clip_id.startswith(".") or len(clip_id) > 200


# ---- metadata.csv -------------------------------------------------------------------------------


def _metadata_problem(path: Path, problems: list[dict[str, Any]]) -> VoicelaneError:
    problems = sorted(problems, key=lambda p: p["line"])
    first = problems[0]
    more = f" ({len(problems) - 1} more problem(s) listed in details)" if len(problems) > 1 else ""
    return VoicelaneError(
        "metadata_invalid",
        f"{path.name} line {first['line']}: {first['message']}{more}",
        {"path": str(path), "line": first["line"], "problem": first["problem"], "problems": problems[:MAX_PROBLEMS]},
    )


def _parse_metadata(path: Path) -> list[tuple[int, str, str]]:
    """Return [(line, id, text)] or raise metadata_invalid naming the first bad line."""
    raw = path.read_bytes()
    problems: list[dict[str, Any]] = []

    def problem(line: int, kind: str, message: str) -> None:
        problems.append({"line": line, "problem": kind, "message": message})

    if raw.startswith(b"\xef\xbb\xbf"):
        problem(1, "utf8_bom", "the file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without BOM")
        raw = raw[3:]
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()  # a single final newline is fine
    rows: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for n, chunk in enumerate(chunks, start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem(n, "not_utf8", f"not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8")
            continue
        line = line.rstrip("\r")
        if not line.strip():
            problem(n, "blank_row", "blank row; remove empty or whitespace-only rows")
            continue
        if "|" not in line:
            if "\t" in line:
                hint = " (the row looks tab-separated)"
            elif "," in line or ";" in line:
                hint = " (the row looks comma-separated)"
            else:
                hint = ""
            problem(n, "wrong_delimiter", f"no '|' delimiter{hint}; rows must be `id|text`")
            continue
        cols = line.split("|")
        if len(cols) > 3:
            problem(
                n,
                "too_many_fields",
                f"{len(cols)} '|'-separated fields; expected `id|text` or `id|text|normalized_text`",
            )
            continue
        clip_id = cols[0].strip()
        if not clip_id:
            problem(n, "missing_id", "the id (first field) is empty")
            continue
        if _unsafe_id(clip_id):
            problem(n, "unsafe_id", f"id {clip_id!r} contains a path separator, a control character or a leading dot")
            continue
        text = _clean_text(cols[1])
        if len(cols) == 3 and _clean_text(cols[2]):
            text = _clean_text(cols[2])
        if not text:
            problem(n, "missing_text", f"id {clip_id!r} has no text")
            continue
        key = _strip_audio_ext(clip_id)
        if key in seen:
            problem(n, "duplicate_id", f"id {clip_id!r} repeats line {seen[key]}")
            continue
        seen[key] = n
        rows.append((n, clip_id, text))
    if problems:
        raise _metadata_problem(path, problems)
    return rows


def _strip_audio_ext(clip_id: str) -> str:
    stem, ext = os.path.splitext(clip_id)
    return stem if ext.lower() in AUDIO_EXTS and stem else clip_id


def _layout_ljspeech(root: Path, metadata: Path, allow_external: bool) -> _Layout:
    _require_inside(metadata, root, allow_external)
    rows = _parse_metadata(metadata)
    wavs = root / WAVS_DIR
    listing: dict[str, Path] = {}
    lower: dict[str, Path] = {}
    for folder in (wavs, root):  # wavs/ first; clips next to metadata.csv are accepted too
        for p in _listdir(folder):
            if p.is_file() and _is_audio(p):
                listing.setdefault(p.name, p)
                lower.setdefault(p.name.lower(), p)
    used: set[Path] = set()
    cands = []
    for line, raw_id, text in rows:
        clip_id = _strip_audio_ext(raw_id)
        names = [raw_id] if clip_id != raw_id else [raw_id + ext for ext in AUDIO_EXTS]
        found = next((listing[n] for n in names if n in listing), None)
        if found is None:
            found = next((lower[n.lower()] for n in names if n.lower() in lower), None)
        if found is not None:
            used.add(found)
            source = _rel(found, root)
        else:
            source = f"{WAVS_DIR}/{names[0]}"
        cands.append(
            _Candidate(
                id=clip_id,
                source=source,
                text=text,
                audio=found,
                line=line,
                missing_detail=None if found else f"none of {', '.join(WAVS_DIR + '/' + n for n in names)} exists",
                problem=_escape_problem([found], root, allow_external) if found else None,
            )
        )
    warn = []
    unused = [p for p in listing.values() if p.parent == wavs and p not in used]
    if unused:
        warn.append(f"{len(unused)} audio file(s) in {WAVS_DIR}/ are not listed in {metadata.name} and were ignored")
    return _Layout("ljspeech", root, cands, warn)


# ---- audio + txt --------------------------------------------------------------------------------


def _read_transcript(path: Path) -> tuple[str | None, str | None]:
    try:
        return _clean_text(path.read_bytes().decode("utf-8-sig")), None
    except UnicodeDecodeError:
        return "", "transcript is not valid UTF-8 text"


def _layout_audio_txt(root: Path, audio: list[Path], txts: dict[str, Path], allow_external: bool) -> _Layout:
    stems: dict[str, int] = {}
    for p in audio:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    cands = []
    for p in audio:
        clip_id = p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix[1:].lower()}"
        txt = txts.get(p.stem)
        if txt is None:
            cands.append(
                _Candidate(
                    id=clip_id,
                    source=_rel(p, root),
                    text=None,
                    audio=None,
                    missing_detail=f"no transcript {p.stem}.txt next to {p.name}",
                )
            )
            continue
        escape = _escape_problem([p, txt], root, allow_external)
        text, text_problem = ("", None) if escape else _read_transcript(txt)
        cands.append(
            _Candidate(id=clip_id, source=_rel(p, root), text=text, audio=p, text_problem=text_problem, problem=escape)
        )
    audio_stems = {p.stem for p in audio}
    orphans = sorted(s for s in txts if s not in audio_stems)
    warn = []
    if orphans:
        warn.append(
            f"{len(orphans)} .txt transcript(s) have no same-named audio file and were ignored (e.g. {orphans[0]}.txt)"
        )
    return _Layout("audio_txt", root, cands, warn)


# ---- long recording + subtitles -----------------------------------------------------------------

_TS = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}(?:\s.*)?$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


def _ts_seconds(h: str | None, m: str, s: str, ms: str | None) -> float:
    frac = int(ms.ljust(3, "0")) / 1000.0 if ms else 0.0
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + frac


def parse_subtitles(text: str) -> list[dict[str, Any]]:
    """Parse SRT or WebVTT text into ``[{index, line, start_s, end_s, text}]``.

    ``index`` is the 1-based cue order, ``line`` the 1-based line of the timing row. Cue text
    spanning several lines is joined with spaces; tags (``<i>``, ``<v Name>``, ``{\\an8}``) are
    stripped and HTML entities unescaped. Raises ``ValueError(line, message)`` on a timing row
    that cannot be parsed.
    """
    cues: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").split("\n")
    for n, line in enumerate(lines, start=1):
        if "-->" in line:
            m = _TIMING.match(line)
            if not m:
                raise ValueError(n, f"cannot parse the cue timing {line.strip()!r}")
            g = m.groups()
            current = {
                "index": len(cues) + 1,
                "line": n,
                "start_s": _ts_seconds(*g[:4]),
                "end_s": _ts_seconds(*g[4:]),
                "parts": [],
            }
            cues.append(current)
            continue
        if not line.strip():
            current = None  # blank line ends the cue
            continue
        if current is not None:
            current["parts"].append(line)
    for cue in cues:
        joined = html.unescape(_TAG.sub("", " ".join(cue.pop("parts"))))
        cue["text"] = _clean_text(joined)
    return cues


def _layout_long(root: Path, pairs: list[tuple[Path, Path]], allow_external: bool) -> _Layout:
    cands = []
    recordings = {}
    for audio, sub in pairs:
        _require_inside(audio, root, allow_external)
        _require_inside(sub, root, allow_external)
        try:
            content = sub.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise VoicelaneError(
                "metadata_invalid",
                f"{sub.name} is not valid UTF-8 (byte {exc.start + 1})",
                {"path": str(sub), "line": _content_line(sub, exc.start), "problem": "not_utf8"},
                next_action="Save the subtitle file as UTF-8 and rerun.",
            ) from None
        try:
            cues = parse_subtitles(content)
        except ValueError as exc:
            line, msg = exc.args
            raise VoicelaneError(
                "metadata_invalid",
                f"{sub.name} line {line}: {msg}",
                {"path": str(sub), "line": line, "problem": "bad_timestamp"},
                next_action="Fix the cue timing at the reported line (HH:MM:SS,mmm --> HH:MM:SS,mmm) and rerun.",
            ) from None
        source = _rel(audio, root)
        recordings[source] = audio
        problems = cue_problems(cues)
        for cue in cues:
            cands.append(
                _Candidate(
                    id=f"{audio.stem}_{cue['index']:04d}",
                    source=source,
                    text=cue["text"],
                    audio=audio,
                    line=cue["line"],
                    start_s=cue["start_s"],
                    end_s=cue["end_s"],
                    problem=problems.get(cue["index"]),
                )
            )
    return _Layout("long_recording", root, cands, [], recordings)


def cue_problems(cues: list[dict[str, Any]]) -> dict[int, tuple[str, str]]:
    """{cue index: (reason, detail)} for reversed cues and for both cues of an overlap."""
    out: dict[int, tuple[str, str]] = {}
    prev: dict[str, Any] | None = None
    for cue in cues:
        if cue["end_s"] <= cue["start_s"]:
            out[cue["index"]] = (
                "cue_reversed",
                f"cue {cue['index']} (line {cue['line']}) ends at "
                f"{cue['end_s']:.3f} s, not after its start {cue['start_s']:.3f} s",
            )
            continue
        if prev is not None and cue["start_s"] < prev["end_s"]:
            span = f"{cue['start_s']:.3f}-{min(cue['end_s'], prev['end_s']):.3f} s"
            out.setdefault(
                prev["index"], ("cue_overlap", f"overlaps cue {cue['index']} (line {cue['line']}) by {span}")
            )
            out[cue["index"]] = ("cue_overlap", f"overlaps cue {prev['index']} (line {prev['line']}) by {span}")
        if prev is None or cue["end_s"] > prev["end_s"]:
            prev = cue
    return out


def _content_line(path: Path, byte_offset: int) -> int:
    return path.read_bytes()[:byte_offset].count(b"\n") + 1


def _subtitle_for(audio: Path) -> Path | None:
    for ext in SUBTITLE_EXTS:
        for cand in (audio.with_suffix(ext), audio.with_suffix(ext.upper())):
            if cand.is_file():
                return cand
    return None


def _detect(data_path: Path, allow_external: bool = False) -> _Layout:
    if not data_path.exists():
        raise VoicelaneError("missing_audio_path", f"{data_path} does not exist", {"path": str(data_path)})
    if data_path.is_file():
        root = data_path.parent
        suffix = data_path.suffix.lower()
        if data_path.name.lower() == "metadata.csv":
            return _layout_ljspeech(root, data_path, allow_external)
        if suffix in AUDIO_EXTS:
            sub = _subtitle_for(data_path)
            if sub is None:
                raise VoicelaneError(
                    "dataset_empty",
                    f"{data_path.name} has no same-named .srt or .vtt transcript to cut it by",
                    {"path": str(data_path)},
                )
            return _layout_long(root, [(data_path, sub)], allow_external)
        if suffix in SUBTITLE_EXTS:
            audio = next((p for p in _listdir(root) if p.stem == data_path.stem and _is_audio(p) and p.is_file()), None)
            if audio is None:
                raise VoicelaneError(
                    "dataset_empty", f"{data_path.name} has no same-named audio file", {"path": str(data_path)}
                )
            return _layout_long(root, [(audio, data_path)], allow_external)
        raise VoicelaneError(
            "dataset_empty",
            f"{data_path.name} is neither a folder, an audio file "
            f"({', '.join(AUDIO_EXTS)}), a subtitle file nor metadata.csv",
            {"path": str(data_path)},
        )

    root = data_path
    metadata = root / "metadata.csv"
    if metadata.is_file():
        return _layout_ljspeech(root, metadata, allow_external)
    entries = [p for p in _listdir(root) if p.is_file()]
    audio = [p for p in entries if _is_audio(p)]
    txts = {p.stem: p for p in entries if p.suffix.lower() == ".txt"}
    subs = [p for p in entries if p.suffix.lower() in SUBTITLE_EXTS]
    if audio and any(p.stem in txts for p in audio):
        return _layout_audio_txt(root, audio, txts, allow_external)
    if audio and subs:
        pairs = [(a, s) for a in audio for s in subs if a.stem == s.stem]
        if not pairs and len(audio) == 1 and len(subs) == 1:
            pairs = [(audio[0], subs[0])]
        if pairs:
            return _layout_long(root, pairs, allow_external)
    raise VoicelaneError(
        "dataset_empty",
        f"{data_path} matches no dataset layout: found {len(audio)} audio file(s), "
        f"{len(txts)} .txt and {len(subs)} subtitle file(s) but no metadata.csv, no audio with "
        "a same-named .txt and no recording with a same-named .srt/.vtt",
        {"path": str(data_path), "audio_files": len(audio), "txt_files": len(txts), "subtitle_files": len(subs)},
    )


# --------------------------------------------------------------------------------------------
# audio processing


class _Reject(Exception):
    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _frame_rms(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, int]:
    frame = max(1, int(round(FRAME_S * sr)))
    hop = max(1, int(round(HOP_S * sr)))
    n = len(y)
    if n <= frame:
        starts = np.zeros(1, dtype=np.int64)
        frame = max(n, 1)
    else:
        starts = np.arange(0, n - frame + 1, hop, dtype=np.int64)
    c = np.concatenate(([0.0], np.cumsum(y.astype(np.float64) ** 2)))
    energy = (c[np.minimum(starts + frame, n)] - c[starts]) / frame
    return np.sqrt(np.maximum(energy, 0.0)), starts, frame


def _trim(y: np.ndarray, sr: int) -> np.ndarray:
    """Cut leading/trailing silence; raise _Reject('silent') when there is no speech."""
    rms, starts, frame = _frame_rms(y, sr)
    peak = float(rms.max()) if len(rms) else 0.0
    if peak <= 0.0 or 20 * math.log10(peak) < SILENT_DBFS:
        level = "-inf" if peak <= 0 else f"{20 * math.log10(peak):.1f}"
        raise _Reject("silent", f"loudest frame is {level} dBFS (< {SILENT_DBFS:g} dBFS)")
    voiced = np.nonzero(rms >= peak * 10 ** (TRIM_REL_DB / 20))[0]
    pad = int(round(TRIM_PAD_S * sr))
    a = max(0, int(starts[voiced[0]]) - pad)
    b = min(len(y), int(starts[voiced[-1]]) + frame + pad)
    return y[a:b]


def _normalise(y: np.ndarray, sr: int, target_lufs: float) -> np.ndarray:
    loudness = float("nan")
    if len(y) >= int(0.4 * sr) + 1:
        loudness = _integrated_lufs(y, sr)
    if not math.isfinite(loudness):
        # Too short for the 400 ms gating blocks (or fully gated): match RMS level instead.
        rms = float(np.sqrt(np.mean(y**2)))
        loudness = 20 * math.log10(rms) if rms > 0 else float("nan")
    if math.isfinite(loudness):
        y = y * 10 ** ((target_lufs - loudness) / 20)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > PEAK_LIMIT:
        y = y * (PEAK_LIMIT / peak)
    return y


def _dbfs(rms: float) -> float:
    return 20 * math.log10(rms) if rms > 0 else -200.0


def _pick_channel(x: np.ndarray) -> tuple[np.ndarray, str]:
    """Mono signal and which channel it is. Channels are averaged, except when one is nearly
    silent (a dead microphone) or they cancel (one wired in anti-phase): then the louder one."""
    if x.shape[1] == 1:
        return x[:, 0].astype(np.float64), "mono"
    chans = x.astype(np.float64).T
    rms = np.sqrt(np.mean(chans**2, axis=1))
    loud = int(np.argmax(rms))
    if rms[loud] <= 0:
        return chans.mean(axis=0), f"mix of {x.shape[1]}"
    mix = chans.mean(axis=0)
    mix_rms = float(np.sqrt(np.mean(mix**2)))
    if np.min(rms) < rms[loud] * 10 ** (-30 / 20):
        return chans[loud], f"channel {loud + 1} of {x.shape[1]} (other channel silent)"
    if mix_rms < 0.5 * float(np.mean(rms)):
        return chans[loud], f"channel {loud + 1} of {x.shape[1]} (channels cancel in a mix)"
    return mix, f"mix of {x.shape[1]}"


def _flatness(frames: np.ndarray, sr: int, top_hz: float) -> float:
    """Spectral flatness (0 tonal .. 1 white) of the averaged power spectrum, 100 Hz - top_hz."""
    spec = np.mean(np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1)) ** 2, axis=0)
    f = np.fft.rfftfreq(frames.shape[1], 1 / sr)
    band = spec[(f >= 100) & (f <= top_hz)] + 1e-20
    return float(np.exp(np.mean(np.log(band))) / np.mean(band))


def estimate_snr(
    y: np.ndarray, sr: int, require_flat_noise: bool = True, source_rate: int | None = None
) -> tuple[float | None, float]:
    """(SNR in dB, noise RMS) from the frame energies of an untrimmed clip.

    The noise floor is the mean power of the quietest 5 % of 25 ms frames; the signal is the
    mean power of the louder half, less that noise. The quiet frames only count as noise when
    their spectrum is noise-like (flatness >= NOISE_FLATNESS); a clip without a pause (tonal
    quiet frames) gives ``None``: its SNR cannot be estimated and is not judged. Digital silence
    gives SNR_CAP_DB. After denoising the residual noise is gated, not flat:
    ``require_flat_noise=False`` skips that test. Flatness is measured up to 0.45 x the lower
    of `sr` and `source_rate` (an upsampled 8 kHz clip has nothing above 4 kHz).
    """
    rms, starts, frame = _frame_rms(y, sr)
    if len(rms) < 20:
        return None, 0.0
    power = rms**2
    order = np.argsort(power, kind="stable")
    quiet = order[: max(2, len(order) // 20)]
    noise = float(np.mean(power[quiet]))
    speech = float(np.mean(power[power >= np.median(power)])) - noise
    if noise <= 1e-12:
        return SNR_CAP_DB, math.sqrt(max(noise, 0.0))
    frames = np.stack([y[s : s + frame] for s in starts[quiet]])
    top_hz = 0.45 * min(sr, source_rate or sr)
    if require_flat_noise and _flatness(frames, sr, top_hz) < NOISE_FLATNESS:
        return None, math.sqrt(noise)
    snr = 10 * math.log10(max(speech, 1e-20) / noise)
    return min(snr, SNR_CAP_DB), math.sqrt(noise)


def longest_pause(y: np.ndarray, sr: int, noise_rms: float) -> float:
    """Longest run (s) of frames near the noise floor inside a trimmed clip."""
    rms, _starts, _frame = _frame_rms(y, sr)
    if not len(rms):
        return 0.0
    thr = max(float(rms.max()) * 10 ** (TRIM_REL_DB / 20), 2.0 * noise_rms)
    quiet = rms < thr
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best * HOP_S


def _integrated_lufs(y: np.ndarray, sr: int) -> float:
    """pyloudnorm's integrated loudness (LUFS); NaN where it cannot measure (shorter than one block)."""
    import pyloudnorm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(pyloudnorm.Meter(sr).integrated_loudness(y))
        except ValueError:
            return float("nan")


def _loudness(y: np.ndarray, sr: int) -> float:
    value = _integrated_lufs(y, sr)
    if not math.isfinite(value):
        value = _dbfs(float(np.sqrt(np.mean(y**2))) if len(y) else 0.0)
    return value


def _denoise(y: np.ndarray, sr: int) -> np.ndarray:
    """Stationary spectral gating (noisereduce); opt-in with DatasetConfig.denoise."""
    import noisereduce

    return np.asarray(noisereduce.reduce_noise(y=y, sr=sr, stationary=True, n_jobs=1), dtype=np.float64)


def _encode_wav(y: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class _Processor:
    def __init__(self, cfg: DatasetConfig):
        self.cfg = cfg
        self.file_hashes: dict[str, str] = {}
        self.pcm_hashes: dict[str, str] = {}
        self.open_files: dict[Path, Any] = {}
        self.measurements: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        for f in self.open_files.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001 # pragma: no cover - closing is best effort
                pass
        self.open_files.clear()

    # -- decoding --
    def _decode_clip(self, cand: _Candidate) -> tuple[np.ndarray, int, str | None]:
        import soundfile as sf

        cfg = self.cfg
        path = cand.audio
        assert path is not None
        try:
            info = sf.info(str(path))
        except Exception as exc:  # noqa: BLE001 - any decoder failure rejects the clip, with its reason
            raise _Reject("undecodable", f"cannot decode: {_short(exc)}") from None
        if info.frames <= 0 or info.samplerate <= 0:
            raise _Reject("undecodable", "the file holds no audio frames")
        if info.samplerate < cfg.min_source_rate:
            raise _Reject("sample_rate_too_low", f"{info.samplerate} Hz < {cfg.min_source_rate} Hz")
        raw_s = info.frames / info.samplerate
        if raw_s < cfg.min_clip_s:
            raise _Reject("too_short", f"{raw_s:.3f} s < {cfg.min_clip_s:g} s")
        if raw_s > UNDECODED_LONG_FACTOR * cfg.max_clip_s:
            raise _Reject("too_long", f"{raw_s:.3f} s > {cfg.max_clip_s:g} s (not decoded)")
        data = path.read_bytes()
        file_hash = sha256_bytes(data)
        if file_hash in self.file_hashes:
            raise _Reject("duplicate_audio", f"same file bytes as {self.file_hashes[file_hash]}")
        try:
            x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - any decoder failure rejects the clip, with its reason
            raise _Reject("undecodable", f"cannot decode: {_short(exc)}") from None
        if len(x) == 0:
            raise _Reject("undecodable", "the file holds no audio frames")
        return x, int(sr), file_hash

    def _cut_cue(self, cand: _Candidate) -> tuple[np.ndarray, int, None]:
        import soundfile as sf

        cfg = self.cfg
        path = cand.audio
        assert path is not None and cand.start_s is not None and cand.end_s is not None
        f = self.open_files.get(path)
        if f is None:
            f = self.open_files[path] = sf.SoundFile(str(path))
        sr = f.samplerate
        if sr < cfg.min_source_rate:
            raise _Reject("sample_rate_too_low", f"{sr} Hz < {cfg.min_source_rate} Hz")
        a = int(round(cand.start_s * sr))
        b = min(int(round(cand.end_s * sr)), f.frames)
        cue = f"cue {cand.start_s:.3f}-{cand.end_s:.3f} s"
        if a >= f.frames:
            raise _Reject("too_short", f"{cue} starts after the recording ends ({f.frames / sr:.3f} s)")
        if (b - a) / sr < cfg.min_clip_s:
            raise _Reject("too_short", f"{cue}: {max(b - a, 0) / sr:.3f} s < {cfg.min_clip_s:g} s")
        if (b - a) / sr > UNDECODED_LONG_FACTOR * cfg.max_clip_s:
            raise _Reject("too_long", f"{cue}: {(b - a) / sr:.3f} s > {cfg.max_clip_s:g} s")
        try:
            f.seek(a)
            x = f.read(b - a, dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - any decoder failure rejects the cue, with its reason
            raise _Reject("undecodable", f"{cue}: cannot decode: {_short(exc)}") from None
        if len(x) == 0:
            raise _Reject("undecodable", f"{cue}: no audio frames")
        return x, int(sr), None

    # -- one clip --
    def process(self, cand: _Candidate) -> tuple[bytes, float]:
        import soxr

        cfg = self.cfg
        m: dict[str, Any] = {}
        self.measurements[cand.id] = m
        if cand.problem is not None:
            raise _Reject(*cand.problem)
        if cand.audio is None:
            raise _Reject("missing_file", cand.missing_detail or "file not found")
        if cand.text_problem:
            raise _Reject("unvoiceable_text", cand.text_problem)
        text = cand.text or ""
        if not text:
            raise _Reject("empty_transcript", "the transcript is empty")
        if not any(ch.isalpha() for ch in text):
            raise _Reject("unvoiceable_text", f"no letters in {text[:60]!r}")
        if cand.start_s is None:
            x, sr, file_hash = self._decode_clip(cand)
        else:
            x, sr, file_hash = self._cut_cue(cand)
        h = hashlib.sha256(f"{sr}:{x.shape}".encode())
        h.update(np.ascontiguousarray(x).tobytes())
        pcm_hash = h.hexdigest()
        if pcm_hash in self.pcm_hashes:
            raise _Reject("duplicate_audio", f"same decoded audio as {self.pcm_hashes[pcm_hash]}")

        y, m["channel_used"] = _pick_channel(x)
        m.update(source_rate=sr, channels=int(x.shape[1]))
        dc = float(np.mean(y))
        m["dc_offset"] = round(dc, 4)
        if cfg.max_dc_offset is not None and abs(dc) > cfg.max_dc_offset:
            raise _Reject("dc_offset", f"mean sample value {dc:+.3f} (|DC| > {cfg.max_dc_offset:g} of full scale)")
        if abs(dc) >= DC_REMOVE:
            y = y - dc
        if sr != cfg.sample_rate:
            y = soxr.resample(y, sr, cfg.sample_rate, quality="VHQ")
        if cfg.denoise:
            y = _denoise(y, cfg.sample_rate)
        snr, noise_rms = estimate_snr(y, cfg.sample_rate, require_flat_noise=not cfg.denoise, source_rate=sr)
        m["snr_db"] = None if snr is None else round(snr, 1)
        y = _trim(y, cfg.sample_rate)  # raises 'silent'
        clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
        m["clipped_fraction"] = round(clipped, 5)
        if clipped > CLIP_FRACTION:
            raise _Reject("clipped", f"{clipped * 100:.2f}% of samples at full scale (> {CLIP_FRACTION * 100:g}%)")
        dur = len(y) / cfg.sample_rate
        if dur < cfg.min_clip_s:
            raise _Reject("too_short", f"{dur:.3f} s of speech < {cfg.min_clip_s:g} s")
        if dur > cfg.max_clip_s:
            raise _Reject("too_long", f"{dur:.3f} s of speech > {cfg.max_clip_s:g} s")
        cps = len(text) / dur
        m["chars_per_s"] = round(cps, 2)
        if not MIN_CPS <= cps <= MAX_CPS:
            raise _Reject(
                "length_mismatch",
                f"{len(text)} characters in {dur:.3f} s of speech = {cps:.1f}/s (plausible: {MIN_CPS:g}-{MAX_CPS:g}/s)",
            )
        if cfg.min_snr_db is not None and snr is not None and snr < cfg.min_snr_db:
            raise _Reject(
                "snr_low",
                f"estimated SNR {snr:.1f} dB < {cfg.min_snr_db:g} dB (noise floor {_dbfs(noise_rms):.1f} dBFS)",
            )
        pause = longest_pause(y, cfg.sample_rate, noise_rms)
        m["longest_pause_s"] = round(pause, 2)
        if cfg.max_pause_s is not None and pause > cfg.max_pause_s:
            raise _Reject("long_silence", f"a {pause:.2f} s pause inside the clip (> {cfg.max_pause_s:g} s)")
        m["loudness_lufs"] = round(_loudness(y, cfg.sample_rate), 1)
        y = _normalise(y, cfg.sample_rate, cfg.target_lufs)
        wav = _encode_wav(y, cfg.sample_rate)
        if file_hash is not None:
            self.file_hashes[file_hash] = cand.id
        self.pcm_hashes[pcm_hash] = cand.id
        return wav, len(y) / cfg.sample_rate


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return (msg[0] if msg else type(exc).__name__)[:200]


# --------------------------------------------------------------------------------------------
# split, manifest


def _val_count(n: int, cfg: DatasetConfig) -> int:
    if n <= 1:
        return 0
    k = int(round(cfg.val_fraction * n))
    k = max(cfg.val_min, min(cfg.val_max, k))
    return max(0, min(k, n - 1))


def _choose_val(ids: list[str], cfg: DatasetConfig) -> set[str]:
    """Validation ids: the ``count`` ids with the lowest sha256(id) — stable as data grows."""
    ranked = sorted(sorted(ids), key=lambda i: hashlib.sha256(i.encode("utf-8")).hexdigest())
    return set(ranked[: _val_count(len(ids), cfg)])


def dataset_sha256(entries: list[dict[str, Any]]) -> str:
    canon = [
        {"id": e["id"], "text": e["text"], "sha256": e["sha256"], "split": e["split"]}
        for e in sorted(entries, key=lambda e: e["id"])
    ]
    return sha256_bytes(canonical_json(canon).encode("utf-8"))


def _check_cfg(cfg: DatasetConfig) -> None:
    problems = []
    if not isinstance(cfg.sample_rate, int) or cfg.sample_rate < 8000:
        problems.append("sample_rate must be an integer >= 8000")
    if not 0 < cfg.min_clip_s < cfg.max_clip_s:
        problems.append("need 0 < min_clip_s < max_clip_s")
    if not 0 <= cfg.val_fraction < 1:
        problems.append("val_fraction must be in [0, 1)")
    if cfg.val_min < 0 or cfg.val_max < cfg.val_min:
        problems.append("need 0 <= val_min <= val_max")
    if cfg.min_total_minutes < 0 or cfg.warn_total_minutes < 0:
        problems.append("minutes thresholds must be >= 0")
    if not math.isfinite(cfg.target_lufs) or cfg.target_lufs >= 0:
        problems.append("target_lufs must be negative")
    if problems:
        raise VoicelaneError(
            "invalid_argument", "invalid dataset config: " + "; ".join(problems), {"problems": problems}
        )


def _build(
    data_path: Any, cfg: DatasetConfig, wav_dir: Path | None, on_progress: Callable[[int, int], None] | None
) -> dict[str, Any]:
    _check_cfg(cfg)
    layout = _detect(Path(data_path), cfg.follow_external_symlinks)
    cands = layout.candidates
    if not cands:
        raise VoicelaneError(
            "dataset_empty",
            f"{data_path} holds no clips ({layout.name} layout with no rows/cues)",
            {"path": str(data_path), "layout": layout.name},
        )
    if layout.recordings:
        import soundfile as sf

        for source, path in layout.recordings.items():
            try:
                with sf.SoundFile(str(path)) as f:
                    if f.frames <= 0:
                        raise RuntimeError("no audio frames")
                    f.read(min(f.frames, 1024), dtype="float32")
            except Exception as exc:  # noqa: BLE001 - any decoder failure: the recording cannot be read
                raise VoicelaneError(
                    "audio_undecodable", f"cannot decode the recording {source}: {_short(exc)}", {"path": str(path)}
                ) from None

    proc = _Processor(cfg)
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    try:
        for i, cand in enumerate(cands, start=1):
            try:
                wav, dur = proc.process(cand)
            except _Reject as r:
                rejected.append(
                    {"id": cand.id, "source": cand.source, "reason": r.reason, "detail": r.detail, "line": cand.line}
                )
            else:
                rel = f"{WAVS_DIR}/{cand.id}.wav"
                if wav_dir is not None:
                    atomic_write_bytes(wav_dir / f"{cand.id}.wav", wav)
                kept.append(
                    {
                        "id": cand.id,
                        "path": rel,
                        "text": cand.text,
                        "duration_s": round(dur, 3),
                        "sha256": sha256_bytes(wav),
                    }
                )
            if on_progress is not None:
                on_progress(i, len(cands))
    finally:
        proc.close()

    by_id = {c.id: c for c in cands}
    for clip_id, reason, detail in _corpus_outliers(kept, proc.measurements, cfg):
        kept = [e for e in kept if e["id"] != clip_id]
        if wav_dir is not None:
            (wav_dir / f"{clip_id}.wav").unlink(missing_ok=True)
        cand = by_id[clip_id]
        rejected.append({"id": clip_id, "source": cand.source, "reason": reason, "detail": detail, "line": cand.line})
    kept.sort(key=lambda e: e["id"])
    val = _choose_val([e["id"] for e in kept], cfg)
    for e in kept:
        e["split"] = "val" if e["id"] in val else "train"
    rejected.sort(key=lambda r: (r["source"], r["id"]))
    by_reason = {r: 0 for r in REASONS}
    for r in rejected:
        by_reason[r["reason"]] += 1
    kept_minutes = round(sum(e["duration_s"] for e in kept) / 60.0, 3)
    warn = list(layout.warnings)
    if kept and kept_minutes < cfg.warn_total_minutes:
        warn.append(
            f"kept audio is {kept_minutes:.1f} min; at least {cfg.warn_total_minutes:g} "
            "min are recommended, 1-2 h for a production voice"
        )
    report = {
        "schema": SCHEMA_ID,
        "source": {"path": os.fspath(data_path), "layout": layout.name},
        "sample_rate": cfg.sample_rate,
        "language": cfg.language,
        "entries": kept,
        "rejected": rejected,
        "totals": {
            "candidates": len(cands),
            "kept": len(kept),
            "rejected": len(rejected),
            "kept_minutes": kept_minutes,
            "train": len(kept) - len(val),
            "val": len(val),
            "rejected_by_reason": by_reason,
        },
        "warnings": warn,
        "config": asdict(cfg),
        "dataset_sha256": dataset_sha256(kept),
        "quality": quality_summary(kept, rejected, proc.measurements, cfg),
    }
    return report


def _robust_z(values: np.ndarray, min_rel_spread: float = 0.1) -> np.ndarray:
    """Robust z-scores (median, MAD); the spread is at least `min_rel_spread` of the median, so a
    corpus of near-identical clips does not turn a small difference into an outlier."""
    med = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - med)))
    return (values - med) / max(mad, min_rel_spread * abs(med), 1e-9)


def _corpus_outliers(
    kept: list[dict[str, Any]], meas: dict[str, dict[str, Any]], cfg: DatasetConfig
) -> list[tuple[str, str, str]]:
    """(id, reason, detail) for kept clips far from the rest of the corpus: speaking rate
    (robust z-score of characters per second) and source loudness (dB from the median)."""
    if len(kept) < cfg.min_clips_for_corpus_checks:
        return []
    ids = [e["id"] for e in kept]
    out: dict[str, tuple[str, str, str]] = {}
    if cfg.rate_outlier_z is not None:
        cps = np.array([meas[i]["chars_per_s"] for i in ids])
        med = float(np.median(cps))
        for clip_id, z, v in zip(ids, _robust_z(cps), cps):
            if abs(z) > cfg.rate_outlier_z:
                out[clip_id] = (
                    clip_id,
                    "rate_outlier",
                    f"{v:.1f} characters/s vs the corpus "
                    f"median {med:.1f} (robust z {z:+.1f}, limit {cfg.rate_outlier_z:g})",
                )
    if cfg.max_level_deviation_db is not None:
        lufs = np.array([meas[i]["loudness_lufs"] for i in ids])
        med = float(np.median(lufs))
        for clip_id, v in zip(ids, lufs):
            if abs(v - med) > cfg.max_level_deviation_db and clip_id not in out:
                out[clip_id] = (
                    clip_id,
                    "level_outlier",
                    f"recorded at {v:.1f} LUFS, "
                    f"{v - med:+.1f} dB from the corpus median {med:.1f} LUFS "
                    f"(limit {cfg.max_level_deviation_db:g} dB)",
                )
    return [out[k] for k in sorted(out)]


REASON_ACTIONS = {
    "snr_low": "Re-record in a quieter room or closer to the microphone, or rerun with denoising "
    "(DatasetConfig.denoise / --denoise) and listen to the result.",
    "clipped": "Re-record with lower input gain: peaks reached full scale.",
    "dc_offset": "Check the microphone/interface (a DC offset means a faulty input chain).",
    "long_silence": "Cut the pause out or split the clip in two with separate transcripts.",
    "rate_outlier": "Compare transcript and audio: a missing or extra sentence is the usual cause.",
    "level_outlier": "Record with the same microphone, distance and gain as the rest.",
    "length_mismatch": "Compare transcript and audio: the text does not fit the speech length.",
    "alignment_failed": "Compare transcript and audio word by word and fix the transcript.",
    "path_not_allowed": "Copy the file into the dataset folder instead of linking to it.",
    "cue_overlap": "Fix the cue times so that each cue ends before the next one starts.",
    "cue_reversed": "Fix the cue: its end time must come after its start time.",
}


def quality_summary(
    kept: list[dict[str, Any]], rejected: list[dict[str, Any]], meas: dict[str, dict[str, Any]], cfg: DatasetConfig
) -> dict[str, Any]:
    """Corpus-quality summary: measurements per clip, corpus figures and what to do, by reason."""
    kept_ids = [e["id"] for e in sorted(kept, key=lambda e: e["id"])]
    snrs = [meas[i]["snr_db"] for i in kept_ids if meas[i].get("snr_db") is not None]
    lufs = [meas[i]["loudness_lufs"] for i in kept_ids]
    corpus: dict[str, Any] = {
        "snr_db_median": round(float(np.median(snrs)), 1) if snrs else None,
        "snr_db_min": round(float(np.min(snrs)), 1) if snrs else None,
        "loudness_lufs_median": round(float(np.median(lufs)), 1) if lufs else None,
        "loudness_range_db": round(float(np.ptp(lufs)), 1) if lufs else None,
        "noisy_kept": [
            i for i in kept_ids if meas[i].get("snr_db") is not None and meas[i]["snr_db"] < cfg.warn_snr_db
        ],
        "narrowband_kept": [i for i in kept_ids if meas[i]["source_rate"] < cfg.sample_rate],
        "single_channel_picked": [i for i in kept_ids if meas[i]["channel_used"].startswith("channel")],
        "denoised": cfg.denoise,
    }
    if len(lufs) >= 3:
        # level drift: slope of source loudness over the clips in id (recording) order
        corpus["level_drift_db_per_100_clips"] = round(float(np.polyfit(np.arange(len(lufs)), lufs, 1)[0]) * 100, 2)
    actions = []
    for reason in REASONS:
        ids = [r["id"] for r in rejected if r["reason"] == reason]
        if ids and reason in REASON_ACTIONS:
            actions.append(_action(reason, ids, REASON_ACTIONS[reason]))
    if corpus["noisy_kept"]:
        noisy = (
            f"Kept, but noisier than {cfg.warn_snr_db:g} dB SNR: the voice will learn the noise; re-record if you can."
        )
        actions.append(_action("snr_warning", corpus["noisy_kept"], noisy))
    if corpus["narrowband_kept"]:
        muffled = (
            f"Kept, but recorded below {cfg.sample_rate} Hz: upsampled, "
            "so the voice will sound muffled; re-record at 16 kHz or more."
        )
        actions.append(_action("narrowband", corpus["narrowband_kept"], muffled))
    return {"clips": {k: meas[k] for k in sorted(meas)}, "corpus": corpus, "actions": actions}


def _action(reason: str, clip_ids: list[str], text: str) -> dict[str, Any]:
    """One entry of the report's actions: what to do about these clips (the first few named)."""
    return {"reason": reason, "clips": clip_ids[:MAX_PROBLEMS], "count": len(clip_ids), "action": text}


def _verdict(report: dict[str, Any], cfg: DatasetConfig) -> VoicelaneError | None:
    t = report["totals"]
    by_reason = {k: v for k, v in t["rejected_by_reason"].items() if v}
    path = report["source"]["path"]
    if t["kept"] == 0:
        summary = ", ".join(f"{k}: {v}" for k, v in by_reason.items())
        return VoicelaneError(
            "dataset_empty",
            f"all {t['candidates']} clip(s) in {path} were rejected ({summary})",
            {
                "path": path,
                "candidates": t["candidates"],
                "rejected_by_reason": by_reason,
                "rejected": report["rejected"][:MAX_PROBLEMS],
            },
        )
    if t["kept_minutes"] < cfg.min_total_minutes:
        return VoicelaneError(
            "dataset_too_small",
            f"only {t['kept_minutes']:.2f} min of usable audio ({t['kept']} of "
            f"{t['candidates']} clips kept); at least {cfg.min_total_minutes:g} min are required",
            {
                "path": path,
                "kept_minutes": t["kept_minutes"],
                "required_minutes": cfg.min_total_minutes,
                "kept": t["kept"],
                "candidates": t["candidates"],
                "rejected_by_reason": by_reason,
            },
        )
    return None


# --------------------------------------------------------------------------------------------
# public API


def inspect_dataset(data_path, cfg=DatasetConfig()) -> dict:
    """Run every check and the full processing in memory; write nothing.

    Returns the report: the same structure as the manifest ``prepare_dataset`` would write
    (entry hashes are those of the WAV files it would write), plus ``error``: ``None`` when
    ``prepare_dataset`` would succeed, else ``{code, message, details, next_action}`` for the
    ``dataset_empty`` / ``dataset_too_small`` verdict. Input problems that stop the inspection
    itself (missing path, no layout, invalid metadata.csv, undecodable long recording) raise
    :class:`VoicelaneError`.
    """
    report = _build(data_path, cfg, None, None)
    err = _verdict(report, cfg)
    report["error"] = None if err is None else {**err.to_dict(), "next_action": err.next_action}
    return report


def prepare_dataset(data_path, out_dir, cfg=DatasetConfig(), on_progress=None) -> dict:
    """Check, process and write the dataset; return the manifest.

    Clips are written into a staging folder inside ``out_dir``; only when the dataset passes
    (enough kept audio) does it replace ``out_dir/wavs`` and is ``dataset_manifest.json``
    written, last. On any error ``out_dir`` keeps what it had before (a previous dataset stays
    intact) and no partial files remain.
    """
    out = Path(out_dir)
    src = Path(data_path)
    if src.exists():
        src_root = src if src.is_dir() else src.parent
        if out.resolve() == src_root.resolve():
            raise VoicelaneError(
                "invalid_argument",
                f"the output folder {out} is the dataset folder itself; pass a separate output folder",
                {"out_dir": str(out), "path": str(src)},
            )
    else:
        _detect(src)  # raises missing_audio_path before anything is created
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wavs.staging-", dir=out))
    ok = False
    try:
        manifest = _build(data_path, cfg, staging, on_progress)
        err = _verdict(manifest, cfg)
        if err is not None:
            raise err
        _swap_in(out, staging, manifest)
        ok = True
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not ok and created:
            try:
                out.rmdir()  # only if still empty
            except OSError:
                pass


def _swap_in(out: Path, staging: Path, manifest: dict[str, Any]) -> None:
    """Replace out/wavs with the staged clips (``fsutil.swap_dir``) and write the manifest last.

    The previous manifest is moved aside first (so no manifest ever points at half-swapped clips)
    and restored, with the previous clips, if anything fails before the new manifest is in place.
    """
    manifest_path = out / MANIFEST_NAME
    aside = out / f".{MANIFEST_NAME}.old"
    if manifest_path.exists():
        os.replace(manifest_path, aside)
    try:
        swap_dir(staging, out / WAVS_DIR, then=lambda: atomic_write_json(manifest_path, manifest))
    except BaseException:
        if aside.exists():
            os.replace(aside, manifest_path)
        raise
    aside.unlink(missing_ok=True)


ALIGN_SCHEMA_ID = "alignment_report/1"
ALIGN_REPORT_NAME = "alignment_report.json"
TEXTGRID_DIR = "textgrids"


def _align_clip(wav_path: Path, text: str, language: str) -> tuple[Any, str | None]:
    """(alignment or None, why it failed or is implausible)."""
    import soundfile as sf

    from voicelane.engine import align

    y, sr = sf.read(str(wav_path), dtype="float64")
    try:
        al = align.align_text(y, sr, text, language)
    except align.AlignmentError as exc:
        return None, str(exc)
    except VoicelaneError as err:
        return None, f"{err.code}: {err.message}"
    return al, align.implausibility(al)


def _score_outliers(scores: dict[str, float], cfg: DatasetConfig) -> dict[str, str]:
    """Clips whose alignment score is far below the corpus median (the rest of this speaker's
    clips show what a right transcript scores), or below the absolute floor."""
    out = {
        k: f"alignment score {v:.1f} per frame < floor {cfg.align_min_score:g}"
        for k, v in scores.items()
        if v < cfg.align_min_score
    }
    if cfg.align_score_z is not None and len(scores) >= cfg.min_clips_for_corpus_checks:
        ids = sorted(scores)
        values = np.array([scores[i] for i in ids])
        med = float(np.median(values))
        for clip_id, z, v in zip(ids, _robust_z(values), values):
            if z < -cfg.align_score_z and clip_id not in out:
                out[clip_id] = (
                    f"alignment score {v:.1f} per frame, {-z:.1f} robust SDs below the "
                    f"corpus median {med:.1f} (limit {cfg.align_score_z:g})"
                )
    return out


def _retotal(report: dict[str, Any], cfg: DatasetConfig) -> None:
    kept = report["entries"]
    by_reason = {r: 0 for r in REASONS}
    for r in report["rejected"]:
        by_reason[r["reason"]] += 1
    val = sum(1 for e in kept if e["split"] == "val")
    report["totals"].update(
        kept=len(kept),
        rejected=len(report["rejected"]),
        kept_minutes=round(sum(e["duration_s"] for e in kept) / 60.0, 3),
        train=len(kept) - val,
        val=val,
        rejected_by_reason=by_reason,
    )
    report["dataset_sha256"] = dataset_sha256(kept)


def align_dataset(data_path, out_dir, cfg=DatasetConfig(), on_progress=None) -> dict:
    """Check and process the dataset exactly like ``prepare_dataset`` (clips staged in a temporary
    folder), force-align every kept clip in ``cfg.language`` and write ``out_dir/textgrids/<id>
    .TextGrid`` (tiers words, phones, score) and ``out_dir/alignment_report.json``.

    TextGrid times refer to the processed clip (resampled, trimmed), i.e. what training sees.
    Clips without a plausible alignment (no path, phones stretched or squeezed beyond physical
    limits, a score far below the corpus median) move to ``rejected`` with ``alignment_failed``
    and their score. Returns the report (the dataset report plus ``alignment``).
    """
    from voicelane.engine import align, frontend

    frontend.check_language(cfg.language)
    out = Path(out_dir)
    tg_dir = out / TEXTGRID_DIR
    tg_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".align.staging-", dir=out))
    try:
        report = _build(data_path, cfg, staging, None)
        clips: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        for i, e in enumerate(report["entries"], start=1):
            al, problem = _align_clip(staging / f"{e['id']}.wav", e["text"], cfg.language)
            if al is not None:
                align.write_textgrid(al, tg_dir / f"{e['id']}.TextGrid")
                clips[e["id"]] = {
                    "id": e["id"],
                    "score": round(al.score, 2),
                    "textgrid": f"{TEXTGRID_DIR}/{e['id']}.TextGrid",
                    "words": len(al.words),
                    "phones": len(al.phones),
                }
            else:
                clips[e["id"]] = {"id": e["id"], "score": None, "textgrid": None}
            if problem:
                failed[e["id"]] = problem
            if on_progress is not None:
                on_progress(i, len(report["entries"]))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    scores = {k: c["score"] for k, c in clips.items() if c["score"] is not None and k not in failed}
    failed.update(_score_outliers(scores, cfg))
    entries = {e["id"]: e for e in report["entries"]}
    origin = {c.id: c for c in _detect(Path(data_path), cfg.follow_external_symlinks).candidates}
    for clip_id in sorted(failed):
        entries.pop(clip_id)
        score = clips[clip_id]["score"]
        report["rejected"].append(
            {
                "id": clip_id,
                "source": origin[clip_id].source,
                "reason": "alignment_failed",
                "line": origin[clip_id].line,
                "detail": failed[clip_id] + ("" if score is None else f" (score {score:.1f})"),
            }
        )
        clips[clip_id]["status"] = "alignment_failed"
    for c in clips.values():
        c.setdefault("status", "ok")
    report["entries"] = [entries[k] for k in sorted(entries)]
    report["rejected"].sort(key=lambda r: (r["source"], r["id"]))
    _retotal(report, cfg)
    ok_scores = [c["score"] for c in clips.values() if c["status"] == "ok"]
    report["alignment"] = {
        "schema": ALIGN_SCHEMA_ID,
        "language": cfg.language,
        "method": "pocketsphinx en-us acoustic model, phonemes mapped onto the en-us phone set",
        "clips": [clips[k] for k in sorted(clips)],
        "score_median": round(float(np.median(ok_scores)), 2) if ok_scores else None,
        "aligned": len(ok_scores),
        "failed": len(failed),
    }
    report["quality"]["actions"] = [a for a in report["quality"]["actions"] if a["reason"] != "alignment_failed"]
    if failed:
        report["quality"]["actions"].append(
            {
                "reason": "alignment_failed",
                "clips": sorted(failed)[:MAX_PROBLEMS],
                "count": len(failed),
                "action": REASON_ACTIONS["alignment_failed"],
            }
        )
    atomic_write_json(out / ALIGN_REPORT_NAME, report)
    return report


def _schema() -> dict[str, Any]:
    text = resources.files("voicelane").joinpath("schemas/dataset_manifest.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Raise ``VoicelaneError('manifest_invalid')`` unless ``manifest`` is dataset_manifest/1."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise VoicelaneError(
            "manifest_invalid",
            f"dataset manifest does not match {SCHEMA_ID} at {where}: {first.message[:200]}",
            {"pointer": where, "errors": len(errors)},
            next_action="Rerun `voicelane dataset prepare` to rebuild the dataset folder.",
        )


def load_manifest(out_dir) -> dict:
    """Read and check ``out_dir/dataset_manifest.json`` (schema, dataset_sha256, files present)."""
    out = Path(out_dir)
    path = out / MANIFEST_NAME
    if not path.is_file():
        raise VoicelaneError(
            "manifest_missing",
            f"{path} does not exist",
            {"path": str(path)},
            next_action="Run `voicelane dataset prepare DATA OUT` first, or pass the folder "
            "that holds dataset_manifest.json.",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoicelaneError(
            "manifest_invalid",
            f"{path} is not valid JSON: {_short(exc)}",
            {"path": str(path)},
            next_action="Rerun `voicelane dataset prepare` to rebuild the dataset folder.",
        ) from None
    validate_manifest(manifest)
    if dataset_sha256(manifest["entries"]) != manifest["dataset_sha256"]:
        raise VoicelaneError(
            "checksum_mismatch",
            f"{path}: dataset_sha256 does not match the entries",
            {"path": str(path)},
            next_action="The dataset manifest was edited; rerun `voicelane dataset prepare`.",
        )
    root = out.resolve()
    for e in manifest["entries"]:
        p = (out / e["path"]).resolve()
        if root not in p.parents:
            raise VoicelaneError("path_unsafe", f"entry {e['id']!r} points outside {out}", {"path": e["path"]})
        if not p.is_file():
            raise VoicelaneError(
                "required_file_missing",
                f"{e['path']} listed in {MANIFEST_NAME} is missing",
                {"path": e["path"]},
                next_action="Rerun `voicelane dataset prepare` to rebuild the dataset folder.",
            )
    return manifest


__all__ = [
    "ENGINE_RATE",
    "REASONS",
    "DatasetConfig",
    "inspect_dataset",
    "prepare_dataset",
    "align_dataset",
    "estimate_snr",
    "cue_problems",
    "load_manifest",
    "validate_manifest",
    "parse_subtitles",
    "dataset_sha256",
]
