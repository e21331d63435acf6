"""Streamed speak replies and the synthesis backend of a service context.

``stream: true`` (WAV with open-ended sizes) or ``Accept: audio/L16`` (raw big-endian 16-bit
PCM, RFC 2586) send audio as the worker makes it: sentence by sentence and, within a sentence,
by WORLD frame chunks (engine/stream.py). The route waits for the first chunk before it answers,
so text errors, timeouts and a full queue still get their normal status and code; a failure after
the first chunk ends the stream early (the body is shorter than announced by nothing: the
chunked transfer just stops), and the audit line records it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator

import numpy as np

from voicelane.engine.stream import pcm16, wav_stream_header
from voicelane.service.core.synth_backend import SynthBackend

L16 = "audio/l16"
_BACKEND_LOCK = threading.Lock()


def backend_of(ctx) -> SynthBackend:
    """The context's synthesis backend: child processes when more than one worker is configured
    (WORLD holds the GIL, so worker threads alone never use a second core)."""
    backend = ctx.extra.get("synth_backend")
    if backend is None:
        with _BACKEND_LOCK:
            backend = ctx.extra.get("synth_backend")
            if backend is None:
                s = ctx.settings
                procs = s.speak_workers if s.speak_workers > 1 else 0
                backend = SynthBackend(procs, s.speak_threads, s.speak_engine)
                ctx.extra["synth_backend"] = backend
    return backend


def stream_kind(stream_flag: bool, accept: str | None) -> str | None:
    """``"l16"``, ``"wav"`` or None (a one-shot reply)."""
    if accept and L16 in accept.lower():
        return "l16"
    return "wav" if stream_flag else None


def media_type(kind: str, sample_rate: int) -> str:
    return f"audio/L16;rate={sample_rate};channels=1" if kind == "l16" else "audio/wav"


class LiveStream:
    """Chunks from a synthesis worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.gone = threading.Event()  # the client left: the worker stops emitting
        self.samples = 0

    def _put(self, item: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop closed (service shutting down)
            self.gone.set()

    def emit(self, chunk: np.ndarray) -> bool:
        if self.gone.is_set():
            return False
        self._put(("chunk", chunk))
        return True

    def run(self, backend: SynthBackend, served, text: str) -> None:
        """The worker's job: every chunk, then an end marker (or the error)."""
        try:
            backend.stream(served, text, self.emit)
        except BaseException as exc:  # noqa: BLE001 - handed to the request
            self._put(("error", exc))
            return
        self._put(("end", None))

    async def first(self, timeout_s: float) -> np.ndarray:
        kind, value = await asyncio.wait_for(self.queue.get(), timeout_s)
        if kind == "error":
            raise value
        if kind == "end":
            return np.zeros(0, dtype=np.float32)
        return value

    async def body(self, first: np.ndarray, kind: str, sample_rate: int, on_end) -> AsyncIterator[bytes]:
        big = kind == "l16"
        outcome: dict[str, Any] = {"ok": False, "samples": 0}
        try:
            if kind == "wav":
                yield wav_stream_header(sample_rate)
            yield pcm16(first, big)
            outcome["samples"] += len(first)
            while True:
                tag, value = await self.queue.get()
                if tag == "end":
                    outcome["ok"] = True
                    return
                if tag == "error":
                    outcome["error"] = getattr(value, "code", type(value).__name__)
                    return
                yield pcm16(value, big)
                outcome["samples"] += len(value)
        finally:
            self.gone.set()
            on_end(outcome)
