"""Speak with a validated bundle (CLI `voicelane speak`, and the service's synthesis backend)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import soundfile as sf

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_bytes


def load_bundle_voice(bundle_dir: str | Path, engine: str = "auto", threads: int = 1):
    """Validate the bundle, then load its voice with PyTorch or onnxruntime."""
    from voicelane.bundle import require_valid
    from voicelane.engine.voice import CONFIG_FILE, Voice

    bundle_dir = Path(bundle_dir)
    result = require_valid(bundle_dir)
    import torch

    torch.set_num_threads(max(1, threads))
    listed = {f["path"] for f in (result.manifest or {}).get("files", [])}
    if engine == "onnx" or (engine == "auto" and "model.onnx" in listed):
        if "model.onnx" not in listed:
            raise VoicelaneError("required_file_missing", "this bundle has no ONNX export", {"path": "model.onnx"})
        from voicelane.engine.onnx_export import OnnxVoice

        cfg = json.loads((bundle_dir / CONFIG_FILE).read_text("utf-8"))
        return OnnxVoice(bundle_dir / "model.onnx", cfg, threads), result
    return Voice.load(bundle_dir, threads), result


def wav_bytes(audio, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def speak_to_file(
    bundle_dir: str | Path, text: str, out: str | Path, engine: str = "auto", length_scale: float = 1.0
) -> dict[str, Any]:
    if not text or not text.strip():
        raise VoicelaneError("invalid_argument", "--text is empty", {"flag": "--text"})
    voice, result = load_bundle_voice(bundle_dir, engine)
    syn = voice.synthesize(text, length_scale)
    atomic_write_bytes(Path(out), wav_bytes(syn.audio, syn.sample_rate))
    return {
        "out": str(out),
        "profile_id": result.profile_id,
        "seconds": round(syn.seconds, 3),
        "rtf": round(syn.rtf, 4),
        "engine": type(voice).__name__,
    }


PLAYERS = (  # (program, argv reading a WAV stream on stdin)
    ("pw-play", ["pw-play", "-"]),
    ("aplay", ["aplay", "-q", "-"]),
    ("paplay", ["paplay"]),
    ("ffplay", ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "-i", "-"]),
    ("play", ["play", "-q", "-t", "wav", "-"]),
)


def find_player() -> list[str]:
    """The argv of a player that reads WAV on stdin: $VOICELANE_PLAYER (split like a shell
    command, never run through one) or the first of PLAYERS on PATH."""
    import os
    import shlex
    import shutil

    custom = os.environ.get("VOICELANE_PLAYER", "").strip()
    if custom:
        argv = shlex.split(custom)
        if shutil.which(argv[0]):
            return argv
        raise VoicelaneError(
            "audio_player_missing", f"VOICELANE_PLAYER names {argv[0]!r}, which is not on PATH", {"player": argv[0]}
        )
    for name, argv in PLAYERS:
        if shutil.which(name):
            return argv
    raise VoicelaneError(
        "audio_player_missing", "no audio player found on PATH", {"tried": [name for name, _ in PLAYERS]}
    )


def speak_and_play(
    bundle_dir: str | Path, text: str, engine: str = "auto", length_scale: float = 1.0, out: str | Path | None = None
) -> dict[str, Any]:
    """Stream the speech into a player as it is made (engine/stream.py); optionally keep a copy."""
    import subprocess
    import time

    import numpy as np

    from voicelane.engine.stream import pcm16, stream, wav_stream_header

    if not text or not text.strip():
        raise VoicelaneError("invalid_argument", "--text is empty", {"flag": "--text"})
    argv = find_player()  # before any work: no player, no synthesis
    voice, result = load_bundle_voice(bundle_dir, engine)
    from voicelane.engine import features

    t0 = time.perf_counter()
    chunks: list[np.ndarray] = []
    first_ms = None
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        proc.stdin.write(wav_stream_header(features.SAMPLE_RATE))
        for chunk in stream(voice, text, length_scale):
            if first_ms is None:
                first_ms = (time.perf_counter() - t0) * 1000.0
            chunks.append(chunk)
            proc.stdin.write(pcm16(chunk, big_endian=False))
            proc.stdin.flush()
    except BrokenPipeError:
        raise VoicelaneError(
            "audio_player_missing", f"the player {argv[0]!r} exited while playing", {"player": argv[0]}
        ) from None
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        code = proc.wait()
    if code != 0:
        raise VoicelaneError(
            "audio_player_missing", f"the player {argv[0]!r} failed (exit {code})", {"player": argv[0], "exit": code}
        )
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if out is not None:
        atomic_write_bytes(Path(out), wav_bytes(audio, features.SAMPLE_RATE))
    return {
        "played_with": argv[0],
        "profile_id": result.profile_id,
        "first_audio_ms": round(first_ms or 0.0, 1),
        "seconds": round(len(audio) / features.SAMPLE_RATE, 3),
        "out": str(out) if out else None,
        "engine": type(voice).__name__,
    }
