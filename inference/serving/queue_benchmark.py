"""``python -m inference.benchmark --queue redis://…``: the shared queue against the local worker.

One run, on this machine:

1. the local transport (one worker process, the bot's default): latency at concurrency 1;
2. for each count in ``--workers`` (default ``1,2``): that many ``python -m inference.worker --queue``
   processes on a fresh queue name, latency at concurrency 1 (first count only) and throughput with
   ``--concurrency`` submitters;

and reports what Redis adds per photo (p50 of client latency minus the pipeline's own time, Redis
minus local) and the throughput ratio of the largest worker count to the smallest. Every worker,
local or not, gets ``--torch-threads`` threads (default 1: one core each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as redis
from redis.exceptions import RedisError

from inference.errors import CommentBotError, QueueUnavailableError, WorkerStartError
from inference.results import CommentResult
from inference.serving.client import InferenceClient
from inference.serving.local_transport import LocalProcessTransport
from inference.serving.phases import run_phase
from inference.serving.queue_args import worker_counts
from inference.serving.records import ReplyAddress
from inference.serving.redis_transport import RedisStreamsTransport, connect
from inference.serving.wire import WORKER_GROUP, QueueKeys
from inference.settings import REPO_ROOT, Settings

logger = logging.getLogger(__name__)

WORKER_START_S = 600.0


async def run_queue_benchmark(
    args: argparse.Namespace, settings: Settings, photos: Sequence[Any]
) -> dict[str, Any]:

    load_before = psutil.getloadavg()[0]
    await _check_reachable(args.queue)
    settings = settings.model_copy(
        update={
            "torch_threads": args.torch_threads,
            "queue_url": args.queue,
            "queue_heartbeat_s": 1.0,
            "queue_claim_idle_s": args.claim_idle_s,
        }
    )
    generator = args.generator or settings.default_generator
    report: dict[str, Any] = {"queue": _safe_url(args.queue), "torch_threads_per_worker": args.torch_threads}

    local = InferenceClient(settings, LocalProcessTransport(settings, args.pipeline_factory))
    await local.start()
    try:
        local_latency = await run_phase(local, photos, args.latency_photos, 1, generator)
    finally:
        await local.close()
    report["local"] = _latency_summary(local_latency)

    throughputs: dict[int, float] = {}
    for count in worker_counts(args.workers):
        name = f"bench{uuid.uuid4().hex[:8]}"
        queue_settings = settings.model_copy(update={"queue_name": name, "queue_instance": "bench"})
        async with _workers(queue_settings, args, count) as (client, processes):
            if count == worker_counts(args.workers)[0]:
                latency = await run_phase(client, photos, args.latency_photos, 1, generator)
                report["redis"] = _latency_summary(latency)
            phase = await run_phase(client, photos, args.throughput_photos, args.concurrency, generator)
            throughputs[count] = phase.throughput
            report[f"throughput_{count}_workers"] = round(phase.throughput, 2)
            report[f"errors_{count}_workers"] = dict(phase.errors)
            if count >= 2 and count == max(worker_counts(args.workers)):
                report["takeover"] = await _takeover(
                    client, processes, queue_settings, photos, args, generator
                )
    smallest, largest = min(throughputs), max(throughputs)
    if largest != smallest and throughputs[smallest]:
        report[f"scaling_{largest}_vs_{smallest}"] = round(throughputs[largest] / throughputs[smallest], 2)
    local_overhead, redis_overhead = report["local"]["overhead_p50_ms"], report["redis"]["overhead_p50_ms"]
    if local_overhead is not None and redis_overhead is not None:
        report["redis_added_p50_ms"] = round(redis_overhead - local_overhead, 2)
    report["redis_added_latency_p50_ms"] = _diff(
        report["redis"]["latency_p50_ms"], report["local"]["latency_p50_ms"]
    )
    report.update(
        concurrency=args.concurrency,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        generator=generator,
        cpu_count=psutil.cpu_count(),
        load_average_before=round(load_before, 2),
        load_average_1m=round(psutil.getloadavg()[0], 2),
    )
    return report


@contextlib.asynccontextmanager
async def _workers(
    settings: Settings, args: argparse.Namespace, count: int
) -> AsyncIterator[tuple[InferenceClient, dict[str, asyncio.subprocess.Process]]]:
    """``count`` worker processes on the queue and a client that waits until all of them beat."""
    names = [f"{settings.queue_name}-w{i}" for i in range(count)]
    started = {name: await _start_worker(settings, args, name) for name in names}
    processes = list(started.values())
    client = InferenceClient(settings, RedisStreamsTransport(settings))
    try:
        await client.start()
        deadline = time.monotonic() + WORKER_START_S
        while len(client.workers()) < count:
            if any(p.returncode is not None for p in processes) or time.monotonic() > deadline:
                raise WorkerStartError(f"only {len(client.workers())} of {count} workers came up")
            await asyncio.sleep(0.2)
        yield client, started
    finally:
        await client.close()
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _start_worker(
    settings: Settings, args: argparse.Namespace, name: str
) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        WEIGHTS_DIR=str(settings.weights_dir),
        DEVICE=settings.device,
        TORCH_THREADS=str(settings.torch_threads),
        MAX_BATCH_SIZE=str(settings.max_batch_size),
        MAX_WAIT_MS=str(settings.max_wait_ms),
        QUEUE_NAME=settings.queue_name,
        QUEUE_HEARTBEAT_S=str(settings.queue_heartbeat_s),
        QUEUE_CLAIM_IDLE_S=str(settings.queue_claim_idle_s),
        LOG_LEVEL=args.log_level,
    )
    assert settings.queue_url is not None
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inference.worker", "--queue", settings.queue_url,
        "--pipeline", args.pipeline_factory, "--name", name,
        env=env, cwd=Path.cwd(),
    )  # fmt: skip


async def _takeover(
    client: InferenceClient,
    processes: dict[str, asyncio.subprocess.Process],
    settings: Settings,
    photos: Sequence[Any],
    args: argparse.Namespace,
    generator: str,
) -> dict[str, Any]:
    """Kill -9 a worker in the middle of its batch: how long until its jobs are answered elsewhere,
    and how many photos were lost (no comment) or answered twice (a second result reaching the bot)."""
    twice: list[str] = []

    async def answered_again(address: ReplyAddress, answer: CommentResult | CommentBotError) -> None:
        twice.append(address.chat_key)

    client.on_late_result(answered_again)
    count = args.concurrency
    jobs = [
        asyncio.create_task(
            client.comment(photos[i % len(photos)].data, chat_key=f"k{i}", generator=generator)
        )
        for i in range(count)
    ]
    probe = connect(args.queue)
    try:
        victim, held = await _busy_worker(probe, settings, list(processes))
    finally:
        await probe.aclose()
    processes[victim].send_signal(signal.SIGKILL)
    killed_at = time.perf_counter()
    results = await asyncio.gather(*jobs, return_exceptions=True)
    finished_s = time.perf_counter() - killed_at
    await asyncio.sleep(2 * settings.queue_heartbeat_s)  # a duplicate would arrive by now
    lost = [r for r in results if not isinstance(r, CommentResult)]
    return {
        "photos": count,
        "held_by_killed_worker": held,
        "claim_idle_s": settings.queue_claim_idle_s,
        "answered_after_kill_s": round(finished_s, 2),
        "lost": len(lost),
        "duplicates": len(twice),
        "errors": sorted({getattr(r, "code", type(r).__name__) for r in lost}),
    }


async def _busy_worker(client: redis.Redis, settings: Settings, names: list[str]) -> tuple[str, int]:
    """The first worker seen holding jobs (read, not yet answered), and how many."""
    stream = QueueKeys(settings.queue_name).requests
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for name in names:
            entries: Any = await client.xpending_range(
                stream, WORKER_GROUP, "-", "+", 1000, consumername=name
            )
            if entries:
                return name, len(entries)
        await asyncio.sleep(0.02)
    raise WorkerStartError("no worker picked up the takeover jobs within 60 s")


async def _check_reachable(url: str) -> None:
    """Fail at once with a clear message instead of waiting for workers that cannot connect."""
    client = connect(url)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise QueueUnavailableError(f"cannot reach {_safe_url(url)}: {exc}") from None
    finally:
        await client.aclose()


def _latency_summary(phase: Any) -> dict[str, Any]:
    return {
        "latency_p50_ms": _median(phase.latencies_ms),
        "overhead_p50_ms": _median(phase.overheads_ms),  # client latency minus the pipeline's own time
        "photos": phase.photos,
        "errors": dict(phase.errors),
    }


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def _safe_url(url: str) -> str:
    """The URL without a password (reports get pasted into READMEs)."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
