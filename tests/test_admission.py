"""Admission by expected wait and round-robin service, through a real worker process running a slow
fake model (``tests/fakes/slow_pipeline.py``) that got twice as slow after it measured itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from inference.errors import ChatLimitError, CommentBotError, ExpectedWaitError, JobTimeoutError
from inference.serving.client import InferenceClient
from inference.serving.local_transport import LocalProcessTransport
from inference.serving.scheduler import FairQueue, ServiceTime
from tests.conftest import make_settings
from tests.fakes.slow_pipeline import CONFIG_FILE

SLOW = "tests.fakes.slow_pipeline:SlowFakePipeline.from_settings"

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def slow_client(
    tmp_path: Path, *, photo_ms: float, slowdown: float, **overrides: Any
) -> AsyncIterator[InferenceClient]:
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"photo_ms": photo_ms, "slowdown": slowdown}))
    settings = make_settings(tmp_path, **overrides)
    client = InferenceClient(settings, LocalProcessTransport(settings, SLOW))
    await client.start()
    try:
        yield client
    finally:
        await client.close(timeout_s=5.0)


async def outcome(client: InferenceClient, chat: str) -> tuple[str, Any, float]:
    started = time.perf_counter()
    try:
        result: Any = await client.comment(b"photo", chat_key=chat)
    except CommentBotError as exc:
        result = exc
    return chat, result, time.perf_counter() - started


def test_fair_queue_serves_chats_in_turn_and_predicts_the_order() -> None:
    queue: FairQueue[str] = FairQueue()
    for item in ("a1", "a2", "a3"):
        queue.push("a", item)
    queue.push("b", "b1")
    assert queue.dispatch_order(new_for="c") == ["a1", "b1", None, "a2", "a3"]
    assert [queue.pop() for _ in range(4)] == ["a1", "b1", "a2", "a3"]
    assert queue.pop() is None and len(queue) == 0
    service = ServiceTime(0.1)
    service.observe(batch_ms=800.0, batch_size=4)
    assert 0.1 < (service.per_photo_s or 0) < 0.2


async def test_a_flood_on_a_twice_slower_model_is_refused_at_the_door_not_timed_out(tmp_path: Path) -> None:
    """20 chats send 10 photos each within a second to a model that became 2x slower than its warm-up:
    what cannot finish in time is refused at once; of the accepted jobs at most 2% time out."""
    async with slow_client(
        tmp_path, photo_ms=40, slowdown=2.0, job_timeout_s=3.0, max_batch_size=4, per_chat_limit=3
    ) as client:
        calls = []
        for _round in range(10):
            for chat in range(20):
                calls.append(asyncio.create_task(outcome(client, f"chat-{chat}")))
            await asyncio.sleep(0.1)
        results = await asyncio.gather(*calls)
    accepted = [r for _, r, _ in results if not isinstance(r, ChatLimitError | ExpectedWaitError)]
    timed_out = [r for r in accepted if isinstance(r, JobTimeoutError)]
    commented_chats = {chat for chat, r, _ in results if not isinstance(r, CommentBotError)}
    codes = Counter(getattr(r, "code", "ok") for _, r, _ in results)
    assert codes["expected_wait"] > 0, codes  # admission did refuse on expected wait
    assert len(accepted) >= 30, codes
    assert len(timed_out) <= 0.02 * len(accepted), codes
    assert len(commented_chats) == 20, codes


async def test_a_light_chat_is_answered_quickly_while_another_floods(tmp_path: Path) -> None:
    """Round-robin: one chat queues 40 photos (4 s of work); another chat's single photo still comes back
    within 3 s instead of waiting behind the whole burst."""
    async with slow_client(
        tmp_path, photo_ms=50, slowdown=2.0, job_timeout_s=30.0, max_batch_size=4, per_chat_limit=100
    ) as client:
        flood = [asyncio.create_task(outcome(client, "heavy")) for _ in range(40)]
        await asyncio.sleep(0.5)
        _, light, light_s = await outcome(client, "light")
        heavy = await asyncio.gather(*flood)
    assert not isinstance(light, CommentBotError), light
    assert light_s < 3.0, light_s
    assert max(seconds for _, _, seconds in heavy) > light_s + 0.5  # the burst was still being served


async def test_a_chat_with_nothing_in_flight_gets_room_before_other_chats_third_photo(tmp_path: Path) -> None:
    """The queue is full of two chats' bursts; a third chat's first photo is still admitted (the last
    waiting job of a chat with several makes room) and commented."""
    async with slow_client(
        tmp_path, photo_ms=100, slowdown=1.0, job_timeout_s=2.0, max_batch_size=2, per_chat_limit=20
    ) as client:
        burst = [asyncio.create_task(outcome(client, chat)) for chat in ("a", "b") for _ in range(12)]
        await asyncio.sleep(0.2)
        _, newcomer, _ = await outcome(client, "c")
        results = await asyncio.gather(*burst)
    assert not isinstance(newcomer, CommentBotError), newcomer
    codes = Counter(getattr(r, "code", "ok") for _, r, _ in results)
    assert codes["expected_wait"] > 0 and codes["timeout"] == 0, codes
