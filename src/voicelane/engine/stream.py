"""Streamed synthesis: audio as it is made, sentence by sentence and, within a sentence, in
chunks of WORLD frames.

The acoustic model predicts a whole sentence's frames in one pass (~20-30 ms for a 4 s
callout); the waveform is the slow part, so that is what streams. A sentence's frames are cut
into chunks (a short first one, so the first audio leaves early); each chunk is synthesised by
WORLD with ``CONTEXT_FRAMES`` of context on both sides, and neighbouring chunks are cross-faded
(raised cosine) over ``2 * XFADE`` samples around their boundary. The stream has exactly the
one-shot length.

It is close to, not sample-identical with, one-shot synthesis: WORLD places glottal pulses by
accumulating phase from the start of each call and reseeds its aperiodic noise per call, so a
chunk's pulses can sit a fraction of a period from where the one-shot call puts them. Spectral
envelope, F0 and timing are the same (tests/test_speed.py measures MCD and F0 between the two).
"""

from __future__ import annotations

import struct
from typing import Iterator

import numpy as np

from voicelane.engine import features, frontend

FIRST_CHUNK_FRAMES = 24  # 0.24 s: the first audio is on its way after ~1/15 of the sentence
CHUNK_FRAMES = 80
CONTEXT_FRAMES = 6
XFADE = features.HOP  # samples on each side of a chunk boundary
PEAK = 0.99
STREAM_SIZE = 0xFFFFFFFF  # "unknown length": what streaming WAV writers put in both size fields


def chunk_bounds(
    n_frames: int, first: int = FIRST_CHUNK_FRAMES, size: int = CHUNK_FRAMES, feats: np.ndarray | None = None
) -> list[int]:
    """Frame indices [0, b1, ..., n_frames]; a short tail is merged into the chunk before it.
    With ``feats``, each boundary moves (up to SNAP_FRAMES later) to the quietest unvoiced
    frame, where a seam between two WORLD calls is least audible."""
    bounds = [0]
    nxt = first
    while nxt < n_frames:
        nxt = _snap(feats, nxt) if feats is not None else nxt
        bounds.append(nxt)
        nxt += size
    if len(bounds) > 1 and n_frames - bounds[-1] < size // 3:
        bounds.pop()
    bounds.append(n_frames)
    return bounds


SNAP_FRAMES = 12


def _snap(feats: np.ndarray, b: int) -> int:
    window = feats[b : b + SNAP_FRAMES + 1]
    cost = window[:, 0] + 100.0 * (window[:, features.VUV_IDX] > 0.5)  # c0 ~ log energy
    return b + int(np.argmin(cost))


def _ramp(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def stream_frames(
    feats: np.ndarray,
    postfilter: float = 0.0,
    fft_size: int = features.SYNTH_FFT_SIZE,
    first: int = FIRST_CHUNK_FRAMES,
    size: int = CHUNK_FRAMES,
) -> Iterator[np.ndarray]:
    """WORLD frames -> float32 waveform chunks whose concatenation has the one-shot length."""
    n_frames = len(feats)
    total = n_frames * features.HOP  # what one WORLD call over all frames returns
    bounds = chunk_bounds(n_frames, first, size, feats)
    tail: np.ndarray | None = None  # previous chunk's samples over [s_k - XFADE, s_k + XFADE)
    for k in range(len(bounds) - 1):
        lo = max(0, bounds[k] - CONTEXT_FRAMES)
        hi = min(n_frames, bounds[k + 1] + CONTEXT_FRAMES)
        y = features.world_waveform(feats[lo:hi], postfilter, fft_size)
        origin = lo * features.HOP  # global sample index of y[0]
        start = bounds[k] * features.HOP
        last = k == len(bounds) - 2
        end = total if last else bounds[k + 1] * features.HOP
        head_from = start if tail is None else start - XFADE
        keep_to = end if last else end + XFADE
        seg = y[head_from - origin : keep_to - origin]
        if tail is not None:
            w = _ramp(len(tail))
            seg = seg.copy()
            seg[: len(tail)] = tail * (1.0 - w) + seg[: len(tail)] * w
        if last:
            out, tail = seg, None
        else:
            out, tail = seg[: -2 * XFADE], seg[-2 * XFADE :]
        yield np.clip(out, -PEAK, PEAK).astype(np.float32)


def stream(
    voice, text: str, length_scale: float = 1.0, fft_size: int = features.SYNTH_FFT_SIZE
) -> Iterator[np.ndarray]:
    """Text -> float32 audio chunks at SAMPLE_RATE, sentence gaps included (any engine voice)."""
    from voicelane.engine.voice import SENTENCE_GAP_S

    gap = np.zeros(int(SENTENCE_GAP_S * features.SAMPLE_RATE), dtype=np.float32)
    for i, utt in enumerate(frontend.phonemize_sentences(text, voice.language)):
        if i:
            yield gap
        yield from stream_frames(voice.frames_for(utt, length_scale), voice.postfilter, fft_size)


def wav_stream_header(sample_rate: int) -> bytes:
    """A 44-byte PCM WAV header whose sizes say "unknown length" (players read to the end)."""
    return (
        b"RIFF"
        + struct.pack("<I", STREAM_SIZE)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", STREAM_SIZE)
    )


def pcm16(chunk: np.ndarray, big_endian: bool) -> bytes:
    pcm = (np.clip(chunk, -1.0, 1.0) * 32767.0).round().astype(">i2" if big_endian else "<i2")
    return pcm.tobytes()
