"""The shared queue against a real Redis: worker processes started as users start them
(``python -m inference.worker --queue redis://…``) with the scripted pipeline of
``tests/test_queue_fakes.py``, and the bot-side ``RedisStreamsTransport`` behind ``InferenceClient``."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from inference.errors import (
    ChatLimitError,
    CommentBotError,
    JobDeadLetteredError,
    QueueFullError,
    QueueUnavailableError,
)
from inference.results import CommentResult
from inference.serving.client import InferenceClient
from inference.serving.wire import WORKER_GROUP
from tests.queue_harness import CLAIM_IDLE_S, HEARTBEAT_S, Queue, bot_client, outcomes, queue_is_drained
from tests.servers import RedisServer, free_port

pytestmark = pytest.mark.timeout(180)


# --- tests ---------------------------------------------------------------------------------------
async def test_round_trip_batches_heartbeats_and_worker_metrics(queue: Queue) -> None:
    port = free_port()
    worker = await queue.start_worker("w1", "--metrics-port", str(port))
    await queue.wait_for_heartbeat(worker)
    async with bot_client(queue.settings()) as (client, late):
        assert client.generator_names() == ["gpt2", "t5"]  # from the worker's heartbeat
        results = await outcomes(client, [b"ok:first", b"ok:second", b"sleep:0.2", b"bad"])
        assert [r.comment for r in results[:2]] == ["first", "second"]
        assert results[2].comment == "sleep:0.2"
        assert results[3].code == "not_an_image" and "사진" in results[3].user_message
        await asyncio.sleep(4 * HEARTBEAT_S)
        [listed] = client.workers()
        assert (listed.name, listed.device, listed.generators) == ("w1", "fake", ["gpt2", "t5"])
        assert listed.jobs_done == 4 and listed.rss_mb > 0
        stats = client.stats()
        assert (stats.jobs_done, stats.jobs_failed, stats.queue_depth) == (3, 1, 0)
        assert late == []
        async with aiohttp.ClientSession() as http:
            metrics = await (await http.get(f"http://127.0.0.1:{port}/metrics")).text()
            health = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert health.status == 200 and (await health.json())["redis"] is True
    assert (
        "mupl_worker_batch_size_count" in metrics and 'mupl_worker_jobs_total{outcome="done"} 3.0' in metrics
    )
    await queue_is_drained(queue)
    worker.process.send_signal(signal.SIGTERM)  # how a supervisor stops it: clean exit, heartbeat gone
    assert await asyncio.wait_for(worker.process.wait(), 15) == 0
    probe = redis.Redis.from_url(queue.url)
    try:
        assert not await probe.hexists(queue.keys.workers, "w1")
    finally:
        await probe.aclose()
    assert "stopped after 4 job(s)" in worker.output()


async def test_limits_hold_across_two_bot_replicas(queue: Queue) -> None:
    worker = await queue.start_worker("w1")
    await queue.wait_for_heartbeat(worker)
    limits = {"per_chat_limit": 1, "max_pending": 3}
    async with (
        bot_client(queue.settings("bot-a", **limits)) as (first, _),
        bot_client(queue.settings("bot-b", **limits)) as (second, _),
    ):
        slow = asyncio.create_task(first.comment(b"sleep:1.5", chat_key="telegram:1"))
        await asyncio.sleep(0.2)
        with pytest.raises(ChatLimitError):  # the same chat through the other replica
            await second.comment(b"ok:x", chat_key="telegram:1")
        more = [asyncio.create_task(second.comment(b"sleep:1.5", chat_key=f"telegram:{i}")) for i in (2, 3)]
        await asyncio.sleep(0.2)
        with pytest.raises(QueueFullError) as full:
            await first.comment(b"ok:x", chat_key="telegram:4")
        assert "잠시 후" in full.value.user_message
        assert [r.comment for r in await asyncio.gather(slow, *more)] == ["sleep:1.5"] * 3
        assert (await second.comment(b"ok:again", chat_key="telegram:1")).comment == "again"  # released
        assert first.stats().jobs_rejected == 1 and second.stats().jobs_rejected == 1
    await queue_is_drained(queue)


async def test_a_killed_workers_jobs_finish_on_the_other_exactly_once(queue: Queue) -> None:
    workers = [await queue.start_worker(name) for name in ("w1", "w2")]
    for worker in workers:
        await queue.wait_for_heartbeat(worker)
    async with bot_client(queue.settings()) as (client, late):
        jobs = asyncio.create_task(outcomes(client, [b"who:2"] * 6))
        probe = redis.Redis.from_url(queue.url)
        try:
            held: dict[str, int] = {}
            while not held:
                await asyncio.sleep(0.05)
                for worker in workers:
                    entries: Any = await probe.xpending_range(
                        queue.keys.requests, WORKER_GROUP, "-", "+", 10, consumername=worker.name
                    )
                    if entries:
                        held[worker.name] = len(entries)
        finally:
            await probe.aclose()
        victim = next(w for w in workers if w.name in held)
        survivor = next(w for w in workers if w is not victim)
        victim.process.send_signal(signal.SIGKILL)  # mid-batch: its jobs are read, not answered
        killed_at = time.monotonic()
        results = await jobs
        finished_after_s = time.monotonic() - killed_at
    answered_by = [r.comment for r in results]
    assert all(isinstance(r, CommentResult) for r in results), results
    assert answered_by.count(str(survivor.process.pid)) >= held[victim.name]
    assert str(victim.process.pid) not in answered_by  # killed before it could answer
    assert finished_after_s <= CLAIM_IDLE_S + 5.0
    assert late == []  # nothing answered twice
    await queue_is_drained(queue)
    assert "took over" in survivor.output()


async def test_a_job_that_kills_every_worker_is_dead_lettered_with_a_korean_error(queue: Queue) -> None:
    settings = queue.settings(job_timeout_s=90.0)
    env = {"QUEUE_MAX_TRIES": "2"}
    first = await queue.start_worker("w1", **env)
    await queue.wait_for_heartbeat(first)
    async with bot_client(settings) as (client, late):
        job = asyncio.create_task(client.comment(b"crash", chat_key="telegram:7"))
        for name in ("w2", "w3"):  # each successor takes the job over after the claim time
            dying = queue.workers[-1]
            await asyncio.wait_for(dying.process.wait(), 30)
            await queue.start_worker(name, **env)
        with pytest.raises(JobDeadLetteredError) as error:
            await asyncio.wait_for(job, 60)
        assert "다른 사진" in error.value.user_message
        assert late == []
    assert [w.process.returncode for w in queue.workers[:2]] == [3, 3]  # os._exit(3): both died on it
    assert queue.workers[2].process.returncode is None  # the third put it aside and lives on
    probe = redis.Redis.from_url(queue.url)
    try:
        [(_, fields)] = await probe.xrange(queue.keys.dead)  # type: ignore[misc]
    finally:
        await probe.aclose()
    assert b"delivered 3 times" in fields[b"reason"] and b"image" not in fields  # the photo is not kept
    assert b'"image_bytes": 5' in fields[b"job"]
    await queue_is_drained(queue)


async def test_redis_stopped_and_restarted_korean_busy_meanwhile_then_recovery(tmp_path: Path) -> None:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    queue = Queue(server.url, "outage", tmp_path, [])
    try:
        worker = await queue.start_worker("w1")
        await queue.wait_for_heartbeat(worker)
        async with bot_client(queue.settings()) as (client, _):
            assert (await client.comment(b"ok:before", chat_key="c")).comment == "before"
            server.stop()
            started = time.monotonic()
            with pytest.raises(QueueUnavailableError) as error:
                await client.comment(b"ok:during", chat_key="c")
            assert time.monotonic() - started < 3.0  # at once, not after the job timeout
            assert "대기열" in error.value.user_message
            await asyncio.sleep(2 * HEARTBEAT_S + 1.0)
            assert not client.healthy
            server.start()  # empty: no persistence, streams and groups are gone
            answer = await _until_answered(client, b"ok:after", within_s=30)
            assert answer.comment == "after" and client.healthy
            assert client.stats().errors_by_code["queue_unavailable"] >= 1
        assert worker.process.returncode is None  # neither side needed a restart
    finally:
        for started_worker in queue.workers:
            started_worker.process.kill()
            await started_worker.process.wait()
        server.stop()


async def _until_answered(client: InferenceClient, image: bytes, within_s: float) -> CommentResult:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await asyncio.wait_for(client.comment(image, chat_key="retry"), 5)
        except (CommentBotError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
