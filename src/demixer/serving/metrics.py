"""Prometheus metrics of one server: jobs by state, queue length, job durations, real-time factors."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from .store import JobStore


class _StoreCollector:
    """Reads the job table on every scrape, so the numbers are never stale or lost on restart."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self):
        counts = self.store.counts()
        jobs = GaugeMetricFamily("demixer_jobs", "Jobs known to the server, by state", labels=["state"])
        for state, n in counts.items():
            jobs.add_metric([state], n)
        yield jobs
        yield GaugeMetricFamily("demixer_queue_length", "Jobs waiting for a worker", value=counts["queued"])
        yield GaugeMetricFamily("demixer_jobs_running", "Jobs being separated now", value=counts["running"])


class ServiceMetrics:
    """The server's metric objects, in their own registry (no global state between apps)."""

    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(store))
        self.job_seconds = Histogram(
            "demixer_job_seconds",
            "Wall time of finished jobs (start to end)",
            ["state"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "demixer_job_queue_seconds",
            "Time jobs waited before a worker took them",
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900),
            registry=self.registry,
        )
        self.rtf = Histogram(
            "demixer_job_rtf",
            "Real-time factor of finished jobs (separation seconds / audio seconds)",
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.audio_seconds = Counter("demixer_audio_seconds", "Seconds of audio separated", registry=self.registry)
        self.rejected = Counter(
            "demixer_uploads_rejected", "Uploads refused, by reason", ["reason"], registry=self.registry
        )
        self.requests = Counter(
            "demixer_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
