"""Encode synthesised audio for the speak reply: WAV (PCM 16) or MP3 (libsndfile's LAME encoder).

``watermark_mode: metadata`` is honoured by a provenance tag in the container (RIFF INFO for WAV,
ID3 for MP3): it marks the file as synthetic speech of a named profile. It is not an audio
watermark; values that would need one are refused by the route (voice_watermark_unsupported).
"""

from __future__ import annotations

import io

import soundfile as sf

MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_CONTAINERS = {"wav": ("WAV", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}
# MPEG-1/2/2.5 layer III sample rates; other rates are resampled before encoding
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class FormatUnavailable(RuntimeError):
    """The installed libsndfile cannot write this format."""


def mp3_available() -> bool:
    return "MP3" in sf.available_formats() and "MPEG_LAYER_III" in sf.available_subtypes("MP3")


def _mp3_rate(sample_rate: int) -> int:
    return min(MP3_RATES, key=lambda r: (abs(r - sample_rate), -r))


def _resample(audio, src: int, dst: int):
    import numpy as np

    if src == dst or len(audio) == 0:
        return audio
    n = max(1, round(len(audio) * dst / src))
    return np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype("float32")


def encode(audio, sample_rate: int, fmt: str, tag: str | None = None) -> bytes:
    """``audio`` (mono float) -> container bytes; ``tag`` (provenance) goes into the metadata."""
    container, subtype = _CONTAINERS[fmt]
    if fmt == "mp3":
        if not mp3_available():
            raise FormatUnavailable("the installed libsndfile has no MP3 encoder")
        rate = _mp3_rate(sample_rate)
        audio, sample_rate = _resample(audio, sample_rate, rate), rate
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=sample_rate, channels=1, format=container, subtype=subtype) as f:
        if tag:
            f.comment = tag
            f.software = "voicelane"
        f.write(audio)
    return buf.getvalue()
