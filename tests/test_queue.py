"""The worker queue end to end through a real spawned worker process, with scripted pipelines
(``tests/test_queue_fakes.py``) so each behaviour can be provoked exactly: batching, waiting,
back-pressure, deadlines, isolation of failures and crashes, bounded shutdown, start errors."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from inference.errors import (
    ChatLimitError,
    ImageTooLargeError,
    InferenceFailedError,
    JobTimeoutError,
    NotAnImageError,
    QueueFullError,
    ShuttingDownError,
    UnknownGeneratorError,
    WorkerCrashedError,
    WorkerStartError,
)
from inference.results import CommentResult
from inference.serving.client import InferenceClient
from inference.serving.local_transport import LocalProcessTransport
from tests.conftest import make_settings
from tests.test_queue_fakes import CRASH_ON_LOAD

FAKES = "tests.test_queue_fakes"
FAKE = f"{FAKES}:FakePipeline.from_settings"

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def running_client(
    tmp_path: Path, factory: str = FAKE, **overrides: Any
) -> AsyncIterator[InferenceClient]:
    settings = make_settings(tmp_path, **overrides)
    client = InferenceClient(settings, LocalProcessTransport(settings, factory))
    await client.start()
    try:
        yield client
    finally:
        await client.close(timeout_s=5.0)


async def gather_outcomes(client: InferenceClient, images: list[bytes], **kwargs: Any) -> list[Any]:
    """Submit all at once (distinct chats) and collect results or exceptions, in order."""
    calls = [client.comment(image, chat_key=f"chat-{i}", **kwargs) for i, image in enumerate(images)]
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_comment_round_trip_and_stats(tmp_path: Path) -> None:
    async with running_client(tmp_path) as client:
        assert client.generator_names() == ["gpt2", "t5"]
        assert client.worker is not None and client.worker.device == "fake"
        result = await client.comment("ok:안녕하세요".encode(), chat_key="telegram:1")
        assert result.comment == "안녕하세요"
        assert result.generator == "t5"  # settings.default_generator
        assert (await client.comment(b"ok:x", chat_key="telegram:1", generator="gpt2")).generator == "gpt2"
        stats = client.stats()
    assert stats.jobs_done == 2
    assert stats.jobs_failed == stats.jobs_rejected == 0
    assert stats.latency_p50_ms is not None and stats.latency_p95_ms is not None
    assert 0 < stats.latency_p50_ms <= stats.latency_p95_ms
    assert stats.queue_depth == stats.in_flight == 0
    assert stats.batch_size_counts == {1: 2}
    assert stats.to_json_dict()["jobs_done"] == 2


async def test_concurrent_jobs_are_batched_up_to_max_batch_size(tmp_path: Path) -> None:
    async with running_client(tmp_path, max_batch_size=4, max_wait_ms=200.0) as client:
        outcomes = await gather_outcomes(client, [b"sleep:0.05"] * 10)
        counts = client.stats().batch_size_counts
    assert all(result.comment == "sleep:0.05" for result in outcomes), outcomes
    assert max(counts) == 4, counts  # full batches happened, and none larger
    assert sum(size * n for size, n in counts.items()) == 10
    assert max(int(r.timings_ms["batch_size"]) for r in outcomes) == 4


async def test_max_wait_groups_jobs_arriving_within_the_window(tmp_path: Path) -> None:
    async with running_client(tmp_path, max_batch_size=8, max_wait_ms=600.0) as client:
        first = asyncio.create_task(client.comment(b"ok:a", chat_key="a"))
        await asyncio.sleep(0.1)
        second = await client.comment(b"ok:b", chat_key="b")
        assert (await first).timings_ms["batch_size"] == second.timings_ms["batch_size"] == 2
        # alone, a job waits out the window before it runs, and not much longer
        started = time.perf_counter()
        await client.comment(b"ok:c", chat_key="c")
        assert 0.55 <= time.perf_counter() - started < 3.0


async def test_zero_max_wait_runs_jobs_without_waiting_for_company(tmp_path: Path) -> None:
    async with running_client(tmp_path, max_batch_size=8, max_wait_ms=0.0) as client:
        first = asyncio.create_task(client.comment(b"ok:a", chat_key="a"))
        await asyncio.sleep(0.5)
        second = await client.comment(b"ok:b", chat_key="b")
        assert (await first).timings_ms["batch_size"] == second.timings_ms["batch_size"] == 1
        assert client.stats().batch_size_counts == {1: 2}


async def test_full_queue_rejects_at_once_and_never_grows(tmp_path: Path) -> None:
    async with running_client(tmp_path, max_pending=2, max_batch_size=1) as client:
        busy = [asyncio.create_task(client.comment(b"sleep:1.0", chat_key=f"c{i}")) for i in range(2)]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        with pytest.raises(QueueFullError) as excinfo:
            await client.comment(b"ok:late", chat_key="other")
        assert time.perf_counter() - started < 0.5  # did not wait for the 1 s jobs ahead of it
        assert "요청이 많아요" in excinfo.value.user_message
        stats = client.stats()
        assert stats.queue_depth + stats.in_flight == 2
        assert [r.comment for r in await asyncio.gather(*busy)] == ["sleep:1.0"] * 2
        # room again once they are done
        assert (await client.comment(b"ok:again", chat_key="other")).comment == "again"
        stats = client.stats()
    assert stats.jobs_rejected == 1 and stats.errors_by_code == {"queue_full": 1}
    assert stats.jobs_done == 3


async def test_per_chat_limit(tmp_path: Path) -> None:
    async with running_client(tmp_path, per_chat_limit=2, max_batch_size=4) as client:
        mine = [asyncio.create_task(client.comment(b"sleep:0.5", chat_key="telegram:7")) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(ChatLimitError):
            await client.comment(b"ok:third", chat_key="telegram:7")
        other_chat = await client.comment(b"ok:other", chat_key="discord:9")
        assert other_chat.comment == "other"
        await asyncio.gather(*mine)
        assert (await client.comment(b"ok:later", chat_key="telegram:7")).comment == "later"
        assert client.stats().errors_by_code == {"chat_limit": 1}


async def test_image_too_large_is_refused_before_sending(tmp_path: Path) -> None:
    async with running_client(tmp_path, max_image_bytes=2048) as client:
        with pytest.raises(ImageTooLargeError):
            await client.comment(b"ok:" + b"x" * 4096, chat_key="c")
        stats = client.stats()
    assert stats.jobs_rejected == 1 and stats.batch_size_counts == {}


async def test_late_job_fails_with_timeout_and_worker_skips_expired_jobs(tmp_path: Path) -> None:
    async with running_client(tmp_path, job_timeout_s=0.5, max_batch_size=1) as client:
        started = time.perf_counter()
        slow = asyncio.create_task(client.comment(b"sleep:1.5", chat_key="a"))
        queued = asyncio.create_task(client.comment(b"ok:queued", chat_key="b"))
        for task in (slow, queued):
            with pytest.raises(JobTimeoutError):
                await task
        assert time.perf_counter() - started < 1.5  # failed at the deadline, not when the worker got to it
        await asyncio.sleep(2.0)  # the worker finishes the slow job, then meets the expired one
        assert (await client.comment(b"ok:next", chat_key="c")).comment == "next"
        stats = client.stats()
    # the slow job and "next" ran; the expired one was skipped, not run
    assert stats.batch_size_counts == {1: 2}
    assert stats.jobs_failed == 2 and stats.errors_by_code == {"timeout": 2}


async def test_one_failing_job_does_not_fail_its_batch(tmp_path: Path) -> None:
    async with running_client(tmp_path, max_batch_size=8, max_wait_ms=300.0) as client:
        outcomes = await gather_outcomes(client, [b"ok:a", b"fail", b"bad", b"ok:b"])
        unknown = await gather_outcomes(client, [b"ok:c"], generator="nope")
        odd = await gather_outcomes(client, [b"odd", b"ok:d"])
        stats = client.stats()
    assert outcomes[0].comment == "a" and outcomes[3].comment == "b"
    assert isinstance(outcomes[1], InferenceFailedError)
    assert isinstance(outcomes[2], NotAnImageError)
    assert isinstance(unknown[0], UnknownGeneratorError)
    assert "gpt2, t5" in unknown[0].user_message
    assert isinstance(odd[0], InferenceFailedError) and odd[1].comment == "d"
    assert stats.jobs_done == 3 and stats.jobs_failed == 4 and stats.worker_restarts == 0


async def test_worker_crash_fails_its_jobs_and_the_worker_restarts(tmp_path: Path) -> None:
    async with running_client(tmp_path, max_batch_size=8, max_wait_ms=300.0) as client:
        first_pid = int((await client.comment(b"pid", chat_key="a")).comment)
        outcomes = await gather_outcomes(client, [b"crash", b"sleep:0.1"])
        assert all(isinstance(o, WorkerCrashedError) for o in outcomes), outcomes
        assert "다시 시작" in outcomes[0].user_message
        second_pid = int((await client.comment(b"pid", chat_key="a")).comment)
        assert (await client.comment(b"ok:fine", chat_key="b")).comment == "fine"
        stats = client.stats()
    assert second_pid != first_pid
    assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
    assert stats.worker_restarts == 1
    assert stats.errors_by_code == {"worker_crashed": 2}


async def test_worker_that_keeps_dying_is_restarted_with_backoff_and_recovers(tmp_path: Path) -> None:
    marker = tmp_path / CRASH_ON_LOAD
    async with running_client(tmp_path, job_timeout_s=1.0) as client:
        marker.touch()  # from now on new workers die while loading
        with pytest.raises(WorkerCrashedError):
            await client.comment(b"crash", chat_key="a")
        await asyncio.sleep(4.0)
        restarts = client.stats().worker_restarts
        # died at once, then after 1 s, 2 s, ... of back-off: a few tries, not a hot loop
        assert 2 <= restarts <= 5, restarts
        with pytest.raises((WorkerCrashedError, JobTimeoutError)):
            await client.comment(b"ok:meanwhile", chat_key="a")  # fails in bounded time, never hangs
        marker.unlink()
        result = await until_answered(client, b"ok:back", within_s=30.0)
        assert result.comment == "back"
        assert (await client.comment(b"ok:steady", chat_key="a")).comment == "steady"


async def until_answered(client: InferenceClient, image: bytes, within_s: float) -> CommentResult:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await client.comment(image, chat_key="retry")
        except (WorkerCrashedError, JobTimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_shutdown_with_pending_jobs_is_bounded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_batch_size=1)
    transport = LocalProcessTransport(settings, FAKE)
    client = InferenceClient(settings, transport)
    await client.start()
    pid = transport.worker_pid
    assert pid is not None
    tasks = [asyncio.create_task(client.comment(b"sleep:1.0", chat_key=f"c{i}")) for i in range(5)]
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await client.close(timeout_s=0.5)
    assert time.perf_counter() - started < 0.5 + 3.0 + 1.0  # drain window + SIGTERM grace + slack
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, ShuttingDownError) for o in outcomes), outcomes
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(ShuttingDownError):
        await client.comment(b"ok:x", chat_key="c")
    await client.close()  # idempotent


async def test_shutdown_drains_queued_jobs_when_there_is_time(tmp_path: Path) -> None:
    async with running_client(tmp_path, max_batch_size=2, max_wait_ms=0.0) as client:
        tasks = [asyncio.create_task(client.comment(f"ok:{i}".encode(), chat_key=f"c{i}")) for i in range(4)]
        await asyncio.sleep(0)  # let them be submitted
        await client.close(timeout_s=20.0)
        assert [t.result().comment for t in tasks] == ["0", "1", "2", "3"]


async def test_start_reports_a_broken_pipeline_clearly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    client = InferenceClient(
        settings, LocalProcessTransport(settings, f"{FAKES}:BrokenPipeline.from_settings")
    )
    with pytest.raises(WorkerStartError, match=r"FileNotFoundError: emotion/model\.pt not found"):
        await client.start()
    with pytest.raises(ShuttingDownError):
        await client.comment(b"ok:x", chat_key="c")


async def test_start_times_out_and_kills_a_worker_that_never_gets_ready(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker_start_timeout_s=3.0)
    transport = LocalProcessTransport(settings, f"{FAKES}:SlowLoadingPipeline.from_settings")
    client = InferenceClient(settings, transport)
    started = time.perf_counter()
    with pytest.raises(WorkerStartError, match="not ready after 3 s"):
        await client.start()
    assert time.perf_counter() - started < 10.0
    pid = transport.worker_pid
    assert pid is not None
    await asyncio.sleep(0.5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_worker_gets_no_bot_tokens(tmp_path: Path) -> None:
    tokens = {"telegram_bot_token": "123:secret", "discord_bot_token": "d-secret"}
    async with running_client(tmp_path, **tokens) as client:
        assert (await client.comment(b"tokens", chat_key="c")).comment == "None|None"


def test_worker_module_is_torch_free_until_the_pipeline_loads() -> None:
    code = (
        "import sys, inference.serving.client, inference.serving.local_transport\n"
        "import inference.serving.local_worker, inference.serving.redis_worker, inference.worker\n"
        "print(sorted({'torch', 'ultralytics', 'transformers'} & set(sys.modules)))"
    )
    repo_root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root
    )
    assert out.stdout.strip() == "[]"
