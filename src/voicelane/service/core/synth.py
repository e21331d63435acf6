"""Bounded synthesis worker pool with a bounded priority queue (critical/action first).

``submit`` never blocks: when ``queue_size`` requests already wait it raises ``QueueFull``
(the route answers 503 ``voice_queue_full``). A request whose caller gave up (timeout) is
cancelled and skipped if it has not started; one that already runs finishes and its result
is dropped by the caller (the route may still cache it).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from concurrent.futures import Future
from typing import Any, Callable


class QueueFull(Exception):
    pass


class SynthPool:
    def __init__(self, workers: int = 1, queue_size: int = 16, name: str = "voicelane-synth"):
        self.queue_size = queue_size
        self._heap: list[tuple[int, int, Future, Callable[[], Any]]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._stop = False
        self.running = 0
        self.completed = 0
        self._threads = [threading.Thread(target=self._worker, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def queued(self) -> int:
        with self._cv:
            return len(self._heap)

    def submit(self, rank: int, fn: Callable[[], Any]) -> Future:
        """Queue ``fn``; lower ``rank`` runs first, FIFO within a rank."""
        fut: Future = Future()
        with self._cv:
            if self._stop:
                raise QueueFull("the synthesis pool is shutting down")
            if len(self._heap) >= self.queue_size:
                raise QueueFull(f"{len(self._heap)} requests already wait")
            heapq.heappush(self._heap, (rank, next(self._seq), fut, fn))
            self._cv.notify()
        return fut

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._stop:
                    self._cv.wait()
                if self._stop and not self._heap:
                    return
                _, _, fut, fn = heapq.heappop(self._heap)
                if not fut.set_running_or_notify_cancel():
                    continue
                self.running += 1
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                fut.set_exception(exc)
            finally:
                with self._cv:
                    self.running -= 1
                    self.completed += 1

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            pending, self._heap = self._heap, []
            self._cv.notify_all()
        for _, _, fut, _ in pending:
            fut.cancel()
        for t in self._threads:
            t.join(timeout)
