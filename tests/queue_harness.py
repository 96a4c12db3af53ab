"""Harness for the shared-queue tests: worker processes started as operators start them
(``python -m inference.worker --queue …``, with the scripted pipeline of ``tests/test_queue_fakes.py``)
and bot-side clients on the same queue. The ``queue`` fixture (conftest) gives each test its own
queue name on the session's Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from inference.errors import CommentBotError
from inference.results import CommentResult
from inference.serving.client import InferenceClient
from inference.serving.records import ReplyAddress
from inference.serving.redis_transport import RedisStreamsTransport
from inference.serving.wire import WORKER_GROUP, QueueKeys
from inference.settings import REPO_ROOT, Settings
from tests.conftest import make_settings

FAKE = "tests.test_queue_fakes:FakePipeline.from_settings"
CLAIM_IDLE_S = 1.0
HEARTBEAT_S = 0.3


@dataclass
class WorkerProcess:
    name: str
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Queue:
    url: str
    name: str
    folder: Path
    workers: list[WorkerProcess]

    @property
    def keys(self) -> QueueKeys:
        return QueueKeys(self.name)

    def settings(self, instance: str = "bot-1", **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "queue_url": self.url,
            "queue_name": self.name,
            "queue_instance": instance,
            "queue_claim_idle_s": CLAIM_IDLE_S,
            "queue_heartbeat_s": HEARTBEAT_S,
            "worker_start_timeout_s": 60.0,
        }
        values.update(overrides)
        return make_settings(self.folder, **values)

    async def start_worker(self, name: str, *extra: str, **env: str) -> WorkerProcess:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "MAX_", "JOB_"))}
        environment.update(
            PYTHONPATH=str(REPO_ROOT),
            WEIGHTS_DIR=str(self.folder),
            QUEUE_NAME=self.name,
            QUEUE_CLAIM_IDLE_S=str(CLAIM_IDLE_S),
            QUEUE_HEARTBEAT_S=str(HEARTBEAT_S),
            MAX_BATCH_SIZE="4",
            MAX_WAIT_MS="50",
            DEVICE="cpu",
        )
        environment.update(env)
        log = self.folder / f"{name}.log"
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "inference.worker", "--queue", self.url, "--pipeline", FAKE,
                "--name", name, *extra,
                cwd=self.folder, env=environment, stdout=sink, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        worker = WorkerProcess(name, process, log)
        self.workers.append(worker)
        return worker

    async def wait_for_heartbeat(self, worker: WorkerProcess, within_s: float = 60.0) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + within_s
            while not await client.hexists(self.keys.workers, worker.name):
                assert worker.process.returncode is None, worker.output()
                assert time.monotonic() < deadline, f"no heartbeat from {worker.name}: {worker.output()}"
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def bot_client(settings: Settings) -> AsyncIterator[tuple[InferenceClient, list[Any]]]:
    """A client on the shared queue; the list collects late results (there must be none unless a
    test restarts a bot)."""
    client = InferenceClient(settings, RedisStreamsTransport(settings))
    late: list[Any] = []

    async def record(address: ReplyAddress, answer: CommentResult | CommentBotError) -> None:
        late.append((address, answer))

    client.on_late_result(record)
    await client.start()
    try:
        yield client, late
    finally:
        await client.close(timeout_s=5.0)


async def outcomes(client: InferenceClient, images: list[bytes]) -> list[Any]:
    calls = [client.comment(image, chat_key=f"chat-{i}") for i, image in enumerate(images)]
    return await asyncio.gather(*calls, return_exceptions=True)


async def queue_is_drained(queue: Queue) -> None:
    client = redis.Redis.from_url(queue.url)
    try:
        assert await client.xlen(queue.keys.requests) == 0  # every job acknowledged and deleted
        pending: Any = await client.xpending(queue.keys.requests, WORKER_GROUP)
        assert pending["pending"] == 0
        assert await client.zcard(queue.keys.inflight) == 0  # every admission released
    finally:
        await client.aclose()
