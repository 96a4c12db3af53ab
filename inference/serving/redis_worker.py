"""A model worker on the shared Redis Streams queue: ``python -m inference.worker --queue redis://…``.

Run one per GPU (or per CPU core set) on any machine. Each is one consumer of the group ``workers``:

1. ``XAUTOCLAIM`` now and then: jobs a silent worker held longer than ``QUEUE_CLAIM_IDLE_S`` move
   here (a job already delivered ``QUEUE_MAX_TRIES`` times goes to the dead-letter stream instead and
   its user gets ``JobDeadLetteredError``'s Korean reply);
2. otherwise ``XREADGROUP COUNT=max_batch BLOCK``: the first job wakes the worker, then it waits up to
   ``MAX_WAIT_MS`` for more to fill the batch;
3. late jobs get ``JobTimeoutError``, the rest run through ``pipeline.run_batch`` in a thread (the
   event loop keeps sending heartbeats and keeps its jobs claimed - ``XCLAIM JUSTID`` - so a long
   batch is not mistaken for a dead worker);
4. each outcome goes to the bot's result stream once (``SET NX``: a job that two workers ran is
   answered by the first) and the job is acknowledged and deleted in the same script.

SIGTERM/SIGINT: finish the batch in hand, then exit 0. This module imports no torch itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from inference.errors import JobDeadLetteredError, JobTimeoutError
from inference.serving.batches import BatchPipeline, device_name, load_pipeline, request_type, run_jobs
from inference.serving.jobs import DEFAULT_PIPELINE_FACTORY, JobOutcome
from inference.serving.metrics import WorkerMetrics, start_ops_server
from inference.serving.records import WorkerStatus
from inference.serving.redis_transport import connect, ensure_group
from inference.serving.wire import (
    WORKER_GROUP,
    QueueKeys,
    WireJob,
    heartbeat_value,
    job_metadata,
    outcome_fields,
    parse_job,
)
from inference.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)

IDLE_BLOCK_MS = 1000  # an idle worker wakes this often: stop requests, takeovers
WINDOW_POLL_S = 0.002  # while a batch fills: look for more jobs this often
ANSWER_TTL_S = 24 * 3600
DEAD_LETTER_MAXLEN = 10_000
RESULTS_MAXLEN = 100_000
MAX_BACKOFF_S = 5.0
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

# KEYS: answered marker, result stream, request stream. ARGV: group, entry id, ttl, maxlen, fields...
PUBLISH_ONCE = """
local first = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3])
if first then redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5)) end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
if first then return 1 end
return 0
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    entry_id: bytes
    fields: dict[bytes, bytes]
    times: int  # deliveries so far, this one included


class RedisWorker:
    """One consumer of the shared queue around a loaded pipeline; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        pipeline: BatchPipeline,
        client: redis.Redis,
        *,
        name: str | None = None,
        device: str = "cpu",
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._request_type = request_type(pipeline)
        self._client = client
        self._keys = QueueKeys(settings.queue_name)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self._device = device
        self.metrics = metrics or WorkerMetrics.create()
        self._job_ids = itertools.count(1)
        self._holding: list[bytes | str | int | memoryview] = []  # entries of the batch running now
        self._jobs_done = 0
        self._batches = 0
        self._next_claim = 0.0
        self._last_loop = time.monotonic()
        self._redis_ok = False
        self._process = psutil.Process()

    # -- life cycle ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (the batch in hand finishes first)."""
        heartbeat = asyncio.create_task(self._heartbeats(stop), name="heartbeat")
        backoff = 0.2
        logger.info("worker %s serving %s on %s", self.name, self._keys.requests, self._device)
        try:
            while not stop.is_set():
                self._last_loop = time.monotonic()
                try:
                    batch = await self._next_batch()
                    if batch:
                        await self._serve(batch)
                    self._redis_ok = True
                    backoff = 0.2
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    logger.warning("request stream lost its group (Redis restarted?); recreating")
                    await ensure_group(self._client, self._keys.requests, WORKER_GROUP)
                except (RedisError, OSError) as exc:
                    if self._redis_ok or backoff == 0.2:
                        logger.error("shared queue unreachable: %s: %s (retrying)", type(exc).__name__, exc)
                    self._redis_ok = False
                    await _sleep_or_stop(stop, backoff)
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await self._client.hdel(self._keys.workers, self.name)
            logger.info("worker %s stopped after %d job(s)", self.name, self._jobs_done)

    def health(self) -> tuple[bool, dict[str, Any]]:
        stalled_s = time.monotonic() - self._last_loop
        limit = self._settings.job_timeout_s + IDLE_BLOCK_MS / 1000 * 5
        ok = self._redis_ok and stalled_s < limit
        return ok, {"worker": self.name, "redis": self._redis_ok, "loop_stalled_s": round(stalled_s, 1)}

    # -- reading ------------------------------------------------------------------------------
    async def _next_batch(self) -> list[Delivery]:
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self._claim_interval()
            claimed = await self._take_over()
            if claimed:
                return claimed
        first = await self._read(self._settings.max_batch_size, IDLE_BLOCK_MS)
        if not first:
            return []
        batch = first
        window_ends = time.monotonic() + self._settings.max_wait_ms / 1000.0
        # The window is timed here, not by XREADGROUP's BLOCK: Redis times blocked clients out on
        # its cron tick (100 ms at the default hz 10), so a 10 ms BLOCK often lasts ~100 ms.
        while len(batch) < self._settings.max_batch_size:
            remaining_s = window_ends - time.monotonic()
            if remaining_s <= 0:
                break
            await asyncio.sleep(min(remaining_s, WINDOW_POLL_S))
            batch += await self._read(self._settings.max_batch_size - len(batch), None)
        return batch

    async def _read(self, count: int, block_ms: int | None) -> list[Delivery]:
        """Up to ``count`` new jobs; ``block_ms=None`` returns at once (``BLOCK 0`` would wait forever)."""
        response: Any = await self._client.xreadgroup(
            WORKER_GROUP, self.name, {self._keys.requests: ">"}, count=count, block=block_ms
        )
        entries = response[0][1] if response else []
        return [Delivery(entry_id, fields, 1) for entry_id, fields in entries if fields]

    def _claim_interval(self) -> float:
        return min(1.0, max(0.05, self._settings.queue_claim_idle_s / 4))

    async def _take_over(self) -> list[Delivery]:
        """Jobs idle longer than the claim time (their worker is gone); over-tried ones go to the
        dead-letter stream."""
        idle_ms = int(self._settings.queue_claim_idle_s * 1000)
        _, entries, deleted = await self._client.xautoclaim(
            self._keys.requests, WORKER_GROUP, self.name, idle_ms, "0-0", count=self._settings.max_batch_size
        )
        if deleted:
            await self._client.xack(self._keys.requests, WORKER_GROUP, *deleted)
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        if not entries:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for entry_id, _fields in entries:
                pipe.xpending_range(self._keys.requests, WORKER_GROUP, min=entry_id, max=entry_id, count=1)
            details = await pipe.execute()
        claimed: list[Delivery] = []
        for (entry_id, fields), info in zip(entries, details, strict=True):
            times = int(info[0]["times_delivered"]) if info else 1
            delivery = Delivery(entry_id, fields, times)
            if times > self._settings.queue_max_tries:
                await self._dead_letter(delivery)
            else:
                claimed.append(delivery)
        if claimed:
            self.metrics.takeovers.inc(len(claimed))
            logger.warning("took over %d job(s) from a silent worker", len(claimed))
        return claimed

    # -- running ------------------------------------------------------------------------------
    async def _serve(self, batch: list[Delivery]) -> None:
        jobs: list[WireJob] = []
        for delivery in batch:
            try:
                jobs.append(parse_job(delivery.entry_id, delivery.fields, next(self._job_ids)))
            except (KeyError, ValueError, TypeError):
                logger.exception("malformed job %r; putting it aside", delivery.entry_id)
                await self._dead_letter(delivery, reason="malformed")
        now = time.time()
        late = [job for job in jobs if job.job.deadline <= now]
        live = [job for job in jobs if job.job.deadline > now]
        if late:
            logger.warning("skipping %d job(s) whose deadline passed while queued", len(late))
            await self._publish(
                [(job, JobOutcome(job.job.job_id, error=JobTimeoutError("deadline passed"))) for job in late]
            )
        if not live:
            return
        for job in live:
            self.metrics.queue_wait_seconds.observe(max(0.0, now - job.submitted_at))
        self._holding = [job.entry_id for job in live]
        self.metrics.busy.set(len(live))
        started = time.perf_counter()
        try:
            outcomes = await asyncio.to_thread(
                run_jobs, self._pipeline, [job.job for job in live], self._request_type
            )
        finally:
            self._holding = []
            self.metrics.busy.set(0)
        self.metrics.batch_size.observe(len(live))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._batches += 1
        await self._publish(list(zip(live, outcomes, strict=True)))

    async def _publish(self, answered: Sequence[tuple[WireJob, JobOutcome]]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for job, outcome in answered:
                fields = outcome_fields(job.key, outcome, job.job.reply_to, job.job.chat_key)
                keys = [self._keys.answered(job.key), job.results_stream, self._keys.requests]
                args: list[Any] = [WORKER_GROUP, job.entry_id, ANSWER_TTL_S, RESULTS_MAXLEN]
                for name, value in fields.items():
                    args += [name, value]
                pipe.eval(PUBLISH_ONCE, len(keys), *keys, *args)
            firsts = await pipe.execute()
        for (_job, outcome), first in zip(answered, firsts, strict=True):
            label = "duplicate" if not first else ("error" if outcome.error is not None else "done")
            self.metrics.jobs.labels(label).inc()
        self._jobs_done += sum(1 for first in firsts if first)

    async def _dead_letter(self, delivery: Delivery, reason: str = "") -> None:
        """Put the job aside (its metadata, never the photo) and tell its user."""
        meta = job_metadata(delivery.fields)
        reason = (
            reason or f"delivered {delivery.times} times (QUEUE_MAX_TRIES={self._settings.queue_max_tries})"
        )
        logger.error("dead-lettering job %s: %s", meta.get("key"), reason)
        self.metrics.dead_letters.inc()
        await self._client.xadd(
            self._keys.dead,
            {"job": _json(meta), "reason": reason, "worker": self.name},
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        try:
            job = parse_job(delivery.entry_id, delivery.fields, next(self._job_ids))
        except (KeyError, ValueError, TypeError):
            await self._client.xack(self._keys.requests, WORKER_GROUP, delivery.entry_id)
            await self._client.xdel(self._keys.requests, delivery.entry_id)
            return
        error = JobDeadLetteredError(reason)
        await self._publish([(job, JobOutcome(job.job.job_id, error=error))])

    # -- heartbeats -----------------------------------------------------------------------------
    async def _heartbeats(self, stop: asyncio.Event) -> None:
        """Tell the bots we are alive (``/stats``), and keep the jobs of a long batch ours."""
        interval = min(self._settings.queue_heartbeat_s, self._settings.queue_claim_idle_s / 3)
        while not stop.is_set():
            try:
                if self._holding:
                    await self._client.xclaim(
                        self._keys.requests, WORKER_GROUP, self.name, 0, list(self._holding), justid=True
                    )
                await self._client.hset(
                    self._keys.workers, self.name, heartbeat_value(self.status(), time.time())
                )
                self.metrics.queue_depth.set(await self._lag())
            except (RedisError, OSError) as exc:
                logger.debug("heartbeat failed: %s", exc)
            await _sleep_or_stop(stop, interval)

    async def _lag(self) -> int:
        with contextlib.suppress(ResponseError):
            for group in await self._client.xinfo_groups(self._keys.requests):
                if group.get("name") in (WORKER_GROUP, WORKER_GROUP.encode()):
                    return int(group.get("lag") or 0)
        return 0

    def status(self) -> WorkerStatus:
        device_memory = _device_memory_bytes(self._device)
        self.metrics.device_memory.set(device_memory)
        return WorkerStatus(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            device=self._device,
            generators=list(self._pipeline.generator_names()),
            busy=len(self._holding),
            jobs_done=self._jobs_done,
            batches=self._batches,
            rss_mb=round(self._process.memory_info().rss / 2**20, 1),
            device_memory_mb=round(device_memory / 2**20, 1),
        )


def _device_memory_bytes(device: str) -> int:
    if not device.startswith("cuda") or "torch" not in sys.modules:
        return 0
    import torch  # already loaded by the pipeline

    return int(torch.cuda.memory_allocated(torch.device(device)))


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# --- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.worker",
        description="공유 대기열(Redis Streams)에서 사진을 받아 댓글을 만드는 모델 워커",
    )
    parser.add_argument(
        "--queue", required=True, help="Redis URL, e.g. redis://queue-host:6379/0 (QUEUE_URL)"
    )
    parser.add_argument("--name", help="consumer name (default: host-pid-random)")
    parser.add_argument("--metrics-port", type=int, help="serve /metrics and /healthz on this port")
    parser.add_argument(
        "--pipeline", default=DEFAULT_PIPELINE_FACTORY, help=argparse.SUPPRESS
    )  # tests: a fake
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(queue_url=args.queue)
    except SettingsError as exc:
        print(f"설정이 잘못됐어요 / invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s [worker %(process)d] %(name)s: %(message)s",
    )
    started = time.perf_counter()
    try:
        pipeline = load_pipeline(args.pipeline, settings)
        pipeline.warmup()
    except Exception:
        logger.exception("worker could not load the pipeline %s", args.pipeline)
        return EXIT_FAILED
    logger.info("pipeline loaded and warmed up in %.1f s", time.perf_counter() - started)
    return asyncio.run(_serve_forever(settings, pipeline, args))


async def _serve_forever(settings: Settings, pipeline: BatchPipeline, args: argparse.Namespace) -> int:
    assert settings.queue_url is not None
    client = connect(settings.queue_url)
    worker = RedisWorker(settings, pipeline, client, name=args.name, device=device_name(pipeline, settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    if args.metrics_port is not None:
        runner, _ = await start_ops_server(
            settings.metrics_listen, args.metrics_port, worker.metrics.registry, worker.health
        )
    try:
        await _create_group_when_reachable(client, QueueKeys(settings.queue_name).requests, stop)
        await worker.run(stop)
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.aclose()
    return EXIT_OK


async def _create_group_when_reachable(client: redis.Redis, stream: str, stop: asyncio.Event) -> None:
    backoff = 0.2
    while not stop.is_set():
        try:
            await ensure_group(client, stream, WORKER_GROUP)
            return
        except (RedisError, OSError) as exc:
            log = logger.error if backoff == 0.2 else logger.debug  # one line per outage
            log("shared queue unreachable: %s (retrying)", exc)
            await _sleep_or_stop(stop, backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
