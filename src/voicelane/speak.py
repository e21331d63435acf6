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
            raise VoicelaneError("required_file_missing", "this bundle has no ONNX export",
                                 {"path": "model.onnx"})
        from voicelane.engine.onnx_export import OnnxVoice

        cfg = json.loads((bundle_dir / CONFIG_FILE).read_text("utf-8"))
        return OnnxVoice(bundle_dir / "model.onnx", cfg, threads), result
    return Voice.load(bundle_dir, threads), result


def wav_bytes(audio, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def speak_to_file(bundle_dir: str | Path, text: str, out: str | Path, engine: str = "auto",
                  length_scale: float = 1.0) -> dict[str, Any]:
    if not text or not text.strip():
        raise VoicelaneError("invalid_argument", "--text is empty", {"flag": "--text"})
    voice, result = load_bundle_voice(bundle_dir, engine)
    syn = voice.synthesize(text, length_scale)
    atomic_write_bytes(Path(out), wav_bytes(syn.audio, syn.sample_rate))
    return {"out": str(out), "profile_id": result.profile_id, "seconds": round(syn.seconds, 3),
            "rtf": round(syn.rtf, 4), "engine": type(voice).__name__}
