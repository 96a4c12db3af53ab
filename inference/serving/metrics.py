"""Prometheus metrics and the small HTTP endpoint (``/metrics``, ``/healthz``) of a bot or a worker.

Each process builds its metrics on its own ``CollectorRegistry`` (tests run several in one process).
The bot's queue figures are read from the client at scrape time (a collector), so they are never
stale and cost nothing between scrapes; the worker observes its batches as they run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from inference.serving.records import WorkerStatus

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


class QueueStatsSource(Protocol):
    """What the bot's collector reads (``inference.serving.client.InferenceClient``)."""

    def stats(self) -> Any: ...
    def workers(self) -> list[WorkerStatus]: ...


class BotQueueCollector(Collector):
    """The inference client's counters as Prometheus metrics, read at scrape time."""

    def __init__(self, client: QueueStatsSource) -> None:
        self._client = client

    def collect(self) -> Iterator[Metric]:
        stats = self._client.stats()
        jobs = CounterMetricFamily("mupl_jobs", "Photos by outcome at this bot", labels=["outcome"])
        jobs.add_metric(["done"], stats.jobs_done)
        jobs.add_metric(["rejected"], stats.jobs_rejected)
        jobs.add_metric(["failed"], stats.jobs_failed)
        yield jobs
        errors = CounterMetricFamily(
            "mupl_job_errors", "Rejected or failed photos by error code", labels=["code"]
        )
        for code, count in sorted(stats.errors_by_code.items()):
            errors.add_metric([code], count)
        yield errors
        yield GaugeMetricFamily("mupl_queue_depth", "Jobs waiting for a worker", value=stats.queue_depth)
        yield GaugeMetricFamily("mupl_jobs_running", "Jobs in a batch right now", value=stats.in_flight)
        yield CounterMetricFamily(
            "mupl_worker_restarts",
            "Workers that died (local) or stopped sending heartbeats (shared queue)",
            value=stats.worker_restarts,
        )
        batches = CounterMetricFamily("mupl_batches", "Batches by size (local worker)", labels=["size"])
        for size, count in sorted(stats.batch_size_counts.items()):
            batches.add_metric([str(size)], count)
        yield batches
        yield from _worker_families(self._client.workers())


def _worker_families(workers: Iterable[WorkerStatus]) -> Iterator[Metric]:
    labels = ["worker", "device"]
    busy = GaugeMetricFamily("mupl_worker_busy_jobs", "Jobs in the worker's current batch", labels=labels)
    memory = GaugeMetricFamily(
        "mupl_worker_device_memory_bytes", "Accelerator memory allocated", labels=labels
    )
    rss = GaugeMetricFamily("mupl_worker_rss_bytes", "Worker process resident memory", labels=labels)
    for worker in workers:
        key = [worker.name, worker.device]
        busy.add_metric(key, worker.busy)
        memory.add_metric(key, worker.device_memory_mb * 2**20)
        rss.add_metric(key, worker.rss_mb * 2**20)
    yield GaugeMetricFamily("mupl_workers_live", "Workers with a recent heartbeat", value=len(list(workers)))
    yield from (busy, memory, rss)


@dataclass
class BotMetrics:
    registry: CollectorRegistry
    latency: Histogram

    @classmethod
    def create(cls, client: QueueStatsSource) -> BotMetrics:
        registry = CollectorRegistry()
        registry.register(BotQueueCollector(client))
        latency = Histogram(
            "mupl_photo_seconds",
            "Photo handed to the queue → comment or error back, at this bot",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        return cls(registry, latency)


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry
    batch_size: Histogram
    batch_seconds: Histogram
    queue_wait_seconds: Histogram
    jobs: Counter
    takeovers: Counter
    dead_letters: Counter
    busy: Gauge
    device_memory: Gauge
    queue_depth: Gauge

    @classmethod
    def create(cls) -> WorkerMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            batch_size=Histogram(
                "mupl_worker_batch_size", "Jobs per batch", buckets=BATCH_BUCKETS, registry=registry
            ),
            batch_seconds=Histogram(
                "mupl_worker_batch_seconds",
                "Pipeline time per batch",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            queue_wait_seconds=Histogram(
                "mupl_worker_queue_wait_seconds",
                "Job submitted → its batch starts",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            jobs=Counter("mupl_worker_jobs", "Jobs answered by outcome", ["outcome"], registry=registry),
            takeovers=Counter(
                "mupl_worker_takeovers",
                "Jobs taken over from a silent worker (XAUTOCLAIM)",
                registry=registry,
            ),
            dead_letters=Counter(
                "mupl_worker_dead_letters",
                "Jobs put aside after QUEUE_MAX_TRIES deliveries",
                registry=registry,
            ),
            busy=Gauge("mupl_worker_busy_jobs", "Jobs in the current batch", registry=registry),
            device_memory=Gauge(
                "mupl_worker_device_memory_bytes", "Accelerator memory allocated", registry=registry
            ),
            queue_depth=Gauge("mupl_queue_depth", "Jobs no worker has read yet", registry=registry),
        )


async def start_ops_server(
    host: str, port: int, registry: CollectorRegistry, health: HealthCheck
) -> tuple[web.AppRunner, int]:
    """Serve ``/metrics`` and ``/healthz`` (200 when healthy, else 503; JSON either way); returns the
    runner (``await runner.cleanup()`` to stop) and the bound port (``port=0`` picks a free one)."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok, details = health()
        return web.json_response({"ok": ok, **details}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    sockets = getattr(site._server, "sockets", None)  # the only way to learn which port 0 picked
    if sockets:
        bound = sockets[0].getsockname()[1]
    logger.info("metrics and health on http://%s:%d/metrics and /healthz", host, bound)
    return runner, bound
