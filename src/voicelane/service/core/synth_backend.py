"""Where synthesis runs: in the worker thread itself, or in a child process per worker.

WORLD (pyworld) holds the GIL while it synthesises, so several worker *threads* share one core.
With ``processes=True`` each synthesis worker thread hands its request to a child process of
its own (spawned at start, so no fork of a threaded server) and waits on a pipe with the GIL
released: N workers use N cores. A child loads each bundle voice once (keyed by bundle path and
manifest hash, at most ``MAX_VOICES``), exits when its pipe closes (the service died or shut
down), and is replaced if it dies. Errors keep their stable code across the pipe.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from voicelane.errors import VoicelaneError

MAX_VOICES = 8
Emit = Callable[[np.ndarray], bool]  # returns False when nobody listens any more


@dataclass
class Rendered:
    audio: np.ndarray
    sample_rate: int
    seconds: float
    compute_s: float


def _load(cache: dict, bundle_dir: str, fingerprint: str, engine: str, threads: int):
    from voicelane.speak import load_bundle_voice

    key = (bundle_dir, fingerprint, engine)
    if key not in cache:
        if len(cache) >= MAX_VOICES:
            cache.pop(next(iter(cache)))
        cache[key] = load_bundle_voice(bundle_dir, engine, threads)[0]
    return cache[key]


def _stream_voice(voice, text: str, emit: Emit) -> None:
    from voicelane.engine.stream import stream

    for chunk in stream(voice, text):
        if not emit(chunk):
            return


def _child_main(conn, threads: int) -> None:
    """A synthesis child: requests in, ("chunk", pcm) / ("done", rendered) / ("error", ...) out."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    cache: dict = {}
    while True:
        try:
            op, bundle_dir, fingerprint, engine, text = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            voice = _load(cache, bundle_dir, fingerprint, engine, threads)
            if op == "stream":
                _stream_voice(voice, text, lambda c: conn.send(("chunk", c)) or True)
                conn.send(("done", None))
            else:
                syn = voice.synthesize(text)
                conn.send(("done", Rendered(syn.audio, int(syn.sample_rate), float(syn.seconds), float(syn.compute_s))))
        except VoicelaneError as err:
            conn.send(("error", err.code, err.message, dict(err.details)))
        except Exception as exc:  # noqa: BLE001 - reported to the waiting request
            conn.send(("error", "synthesis_failed", f"{type(exc).__name__}: {exc}"[:500], {}))


class _Child:
    def __init__(self, threads: int):
        ctx = mp.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child_main, args=(child_conn, threads), daemon=True, name="voicelane-synth-child"
        )
        self.proc.start()
        child_conn.close()

    def request(self, op: str, served, engine: str, text: str, emit: Emit | None) -> Rendered | None:
        self.conn.send((op, str(served.bundle_dir), served.manifest_sha256, engine, text))
        listening = True
        while True:
            msg = self.conn.recv()  # EOFError when the child died: the caller replaces it
            if msg[0] == "chunk":
                if listening and emit is not None:
                    listening = emit(msg[1])
                continue  # drain to "done" even when nobody listens: the pipe stays in step
            if msg[0] == "done":
                return msg[1]
            raise VoicelaneError(msg[1], msg[2], msg[3])

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)


class SynthBackend:
    """``render``/``stream`` for the synthesis workers; ``processes`` picks child processes."""

    def __init__(self, processes: int = 0, threads: int = 1, engine: str = "auto"):
        self.processes = processes
        self.threads = threads
        self.engine = engine
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(processes):
            self._spawn()

    def _spawn(self) -> None:
        child = _Child(self.threads)
        with self._lock:
            self._children.append(child)
        self._idle.put(child)

    def _call(self, op: str, served, text: str, emit: Emit | None) -> Rendered | None:
        child = self._idle.get()
        try:
            out = child.request(op, served, self.engine, text, emit)
        except (EOFError, OSError, BrokenPipeError):
            with self._lock:
                self._children.remove(child)
            child.close()
            if not self._closed:
                self._spawn()
            raise VoicelaneError("synthesis_failed", "the synthesis process died", {"op": op}) from None
        self._idle.put(child)
        return out

    def render(self, served, text: str):
        """A synthesis (audio, sample_rate, seconds): the voice's own in a thread, a Rendered from a child."""
        if not self.processes:
            return served.voice.synthesize(text)
        out = self._call("synth", served, text, None)
        assert out is not None
        return out

    def stream(self, served, text: str, emit: Emit) -> None:
        """Calls ``emit`` with each float32 chunk as it is made (sentence gaps included)."""
        if not self.processes:
            _stream_voice(served.voice, text, emit)
            return
        self._call("stream", served, text, emit)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            children, self._children = self._children, []
        for c in children:
            c.close()
