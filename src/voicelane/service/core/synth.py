"""Bounded synthesis worker pool with a bounded priority queue (critical/action first).

``submit`` never blocks: when ``queue_size`` requests already wait it raises ``QueueFull``
(the route answers 503 ``voice_queue_full``). A request whose caller gave up (timeout, client
gone) is taken out of the queue at once by ``cancel`` so its slot is free for the next caller;
one that already runs finishes and its result is dropped by the caller (the route may still
cache it).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable


class QueueFull(Exception):
    pass


class SynthPool:
    def __init__(self, workers: int = 1, queue_size: int = 16, name: str = "voicelane-synth"):
        self.queue_size = queue_size
        self._heap: list[tuple[int, int, Future, Callable[[], Any], float]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._stop = False
        self.running = 0
        self.completed = 0
        self.cancelled = 0
        self.last_wait_s = 0.0
        self._threads = [threading.Thread(target=self._worker, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def queued(self) -> int:
        with self._cv:
            return len(self._heap)

    def oldest_wait_s(self) -> float:
        """How long the oldest queued request has waited (0 when none waits)."""
        with self._cv:
            if not self._heap:
                return 0.0
            return time.monotonic() - min(entry[4] for entry in self._heap)

    def cancel(self, fut: Future) -> bool:
        """Give a waiting request's slot back now; False when it already runs or finished."""
        with self._cv:
            for i, entry in enumerate(self._heap):
                if entry[2] is fut:
                    self._heap[i] = self._heap[-1]
                    self._heap.pop()
                    heapq.heapify(self._heap)
                    self.cancelled += 1
                    break
        return fut.cancel()

    def submit(self, rank: int, fn: Callable[[], Any]) -> Future:
        """Queue ``fn``; lower ``rank`` runs first, FIFO within a rank."""
        fut: Future = Future()
        with self._cv:
            if self._stop:
                raise QueueFull("the synthesis pool is shutting down")
            if len(self._heap) >= self.queue_size:
                raise QueueFull(f"{len(self._heap)} requests already wait")
            heapq.heappush(self._heap, (rank, next(self._seq), fut, fn, time.monotonic()))
            self._cv.notify()
        return fut

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._stop:
                    self._cv.wait()
                if self._stop and not self._heap:
                    return
                _, _, fut, fn, queued_at = heapq.heappop(self._heap)
                if not fut.set_running_or_notify_cancel():
                    continue
                self.running += 1
                self.last_wait_s = time.monotonic() - queued_at
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
        for entry in pending:
            entry[2].cancel()
        for t in self._threads:
            t.join(timeout)
