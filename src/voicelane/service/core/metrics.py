"""Prometheus metrics (``GET /metrics``, the ``prometheus-client`` library).

One registry per app (several apps can live in one test process). Counters count outcomes by
their stable code; gauges read the synthesis queue and the job table when scraped.
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _JobCollector:
    def __init__(self, counts: Callable[[], dict[str, int]]):
        self.counts = counts

    def collect(self):
        g = GaugeMetricFamily("voicelane_jobs", "jobs by state", labels=["state"])
        for state, n in sorted(self.counts().items()):
            g.add_metric([state], n)
        yield g


class Metrics:
    def __init__(self, pool: Any, job_counts: Callable[[], dict[str, int]]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.speak = Counter("voicelane_speak_requests", "speak requests by outcome code", ["code"], registry=r)
        self.errors = Counter("voicelane_http_errors", "error replies by stable code", ["code", "status"], registry=r)
        self.queue_wait = Histogram(
            "voicelane_speak_queue_wait_seconds",
            "time a synthesis waited in the queue",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        Gauge("voicelane_speak_queue_depth", "synthesis requests waiting", registry=r).set_function(lambda: pool.queued)
        Gauge("voicelane_speak_running", "syntheses running", registry=r).set_function(lambda: pool.running)
        Gauge("voicelane_speak_queue_size", "synthesis queue capacity", registry=r).set_function(
            lambda: pool.queue_size
        )
        Gauge(
            "voicelane_speak_queue_oldest_wait_seconds", "age of the oldest waiting synthesis", registry=r
        ).set_function(pool.oldest_wait_s)
        r.register(_JobCollector(job_counts))

    def speak_outcome(self, outcome: str) -> None:
        self.speak.labels(code=(outcome or "unknown").split(":")[-1][:64]).inc()

    def error(self, code: str, status: int) -> None:
        self.errors.labels(code=code[:64], status=str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
