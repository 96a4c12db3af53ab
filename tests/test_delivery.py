"""Faults between the bot and Telegram: the real PTB ``Application`` against the fake Bot API with a
``FaultPlan`` (5xx, dropped connections, lost responses, short files, 429 storms, per-chat flood limits).

Every accepted photo must get exactly one reply that is its comment, the log must hold no traceback,
and refusals in a flood must not spend the chat's message budget.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.core import PhotoService
from bot.delivery import ShortDownloadError, check_length, telegram_not_delivered
from bot.pacing import BusyNotices
from bot.store import Store
from bot.telegram_app import build_application, telegram_running
from inference.errors import ChatLimitError
from inference.settings import Settings
from tests.conftest import make_settings
from tests.fakes.faults import FaultPlan, FloodLimits
from tests.fakes.inference_client import FakeInferenceClient
from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

TOKEN = "123456789:AAE-fake-TOKEN-for-faults_0123456789"
GROUP = -100777


def _jpeg(color: tuple[int, int, int] = (200, 120, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest_asyncio.fixture(loop_scope="module")
async def server() -> AsyncIterator[FakeTelegramServer]:
    fake = FakeTelegramServer(TOKEN)
    await fake.start()
    yield fake
    await fake.close()


def settings_for(server: FakeTelegramServer, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_bot_token": TOKEN,
        "telegram_api_base_url": server.base_url,
        "telegram_file_base_url": server.base_file_url,
        "state_db": tmp_path / "state.sqlite3",
        "delivery_window_s": 30.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@asynccontextmanager
async def running_bot(settings: Settings, client: FakeInferenceClient) -> AsyncIterator[None]:
    store = Store(settings.state_db)
    await store.open()
    application = build_application(settings, PhotoService(client, store, settings), owns_service=False)
    try:
        async with telegram_running(application, poll_timeout_s=1):
            yield
    finally:
        await store.close()


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO):
        yield caplog


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def push_photos(server: FakeTelegramServer, chats: list[int], per_chat: int) -> list[int]:
    ids = []
    for round_ in range(per_chat):
        for chat in chats:
            ids.append(
                await server.push_message(
                    chat_id=chat,
                    user_id=abs(chat),
                    chat_type="private" if chat > 0 else "supergroup",
                    photo=[(_jpeg((round_ * 40 % 255, 100, 90)), 96, 64)],
                )
            )
    return ids


def is_comment(params: dict[str, Any]) -> bool:
    return "사진이네요" in str(params.get("text"))  # FakeInferenceClient's comments


@pytest.mark.parametrize(
    "faults",
    [
        {"sendMessage": "502", "getFile": "drop", "download": "truncate"},
        {"sendMessage": "500", "getFile": "502", "download": "drop"},
        {"sendMessage": "drop", "getFile": "500", "download": "502"},
    ],
    ids=["502-drop-truncate", "500-502-drop", "drop-500-502"],
)
async def test_one_transient_fault_per_request_still_one_comment_per_photo(
    server: FakeTelegramServer, tmp_path: Path, log: pytest.LogCaptureFixture, faults: dict[str, Any]
) -> None:
    server.faults = FaultPlan(first_attempt=faults)
    async with running_bot(settings_for(server, tmp_path), FakeInferenceClient()):
        photos = await push_photos(server, [501, 502, GROUP], per_chat=2)
        await server.wait_for(lambda: all(server.delivered_replies_to(p) for p in photos), within_s=60)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
    replies = {p: server.delivered_replies_to(p) for p in photos}
    assert all(len(r) == 1 and is_comment(r[0]) for r in replies.values()), replies
    injected = server.faults.injected
    assert sum(n for key, n in injected.items() if key.startswith("sendMessage")) == len(photos), injected
    assert sum(n for key, n in injected.items() if key.startswith("download")) == len(photos), injected
    assert sum(n for key, n in injected.items() if key.startswith("getFile")) == len(photos), injected
    assert not tracebacks(log), tracebacks(log)
    assert "retrying in" in log.text


async def test_a_reply_whose_response_was_lost_is_not_sent_twice(
    server: FakeTelegramServer, tmp_path: Path, log: pytest.LogCaptureFixture
) -> None:
    """The fake applies the reply, then cuts the response: the bot cannot know, so it must not repeat it
    (a duplicate) nor send an error message instead."""
    server.faults = FaultPlan(first_attempt={"sendMessage": "lost"})
    async with running_bot(settings_for(server, tmp_path), FakeInferenceClient()):
        [photo] = await push_photos(server, [601], per_chat=1)
        await server.wait_for(lambda: server.delivered_replies_to(photo))
        await asyncio.sleep(1.5)
    assert len(server.delivered_replies_to(photo)) == 1 and is_comment(server.delivered_replies_to(photo)[0])
    assert len(server.replies_to(photo)) == 1  # one attempt only
    assert "not repeated" in log.text and not tracebacks(log)


async def test_429_storm_delays_but_loses_nothing(
    server: FakeTelegramServer, tmp_path: Path, log: pytest.LogCaptureFixture
) -> None:
    server.faults = FaultPlan()
    async with running_bot(settings_for(server, tmp_path), FakeInferenceClient()):
        server.faults.storm(2.0, retry_after=1)
        photos = await push_photos(server, [701, 702], per_chat=2)
        await server.wait_for(lambda: all(server.delivered_replies_to(p) for p in photos), within_s=40)
        await asyncio.sleep(0.5)
    assert all(len(server.delivered_replies_to(p)) == 1 for p in photos)
    assert server.rate_limited and not tracebacks(log)


@pytest.mark.parametrize("chat", [801, GROUP - 1], ids=["private", "group"])
async def test_a_flooding_chat_gets_every_promised_comment_and_one_busy_text(
    server: FakeTelegramServer, tmp_path: Path, log: pytest.LogCaptureFixture, chat: int
) -> None:
    """30 photos at once under Telegram's per-chat flood limits: refusals beyond the first are reactions,
    every photo that was not refused gets its comment, and the bot's pacing keeps it under the limits."""
    flood = FloodLimits()
    server.faults = FaultPlan(flood=flood)
    client = FakeInferenceClient(delay_s=0.2, per_chat_limit=3)
    async with running_bot(settings_for(server, tmp_path), client):
        photos = await push_photos(server, [chat], per_chat=30)
        refused_or_replied = lambda: all(  # noqa: E731
            server.delivered_replies_to(p) or _reacted(server, p) for p in photos
        )
        await server.wait_for(refused_or_replied, within_s=90)
        await asyncio.sleep(1.0)
    busy_texts = [
        p for p in photos for r in server.delivered_replies_to(p) if r["text"] == ChatLimitError.user_message
    ]
    commented = [p for p in photos if any(is_comment(r) for r in server.delivered_replies_to(p))]
    reacted = [p for p in photos if _reacted(server, p)]
    assert len(busy_texts) == 1
    assert len(commented) + len(busy_texts) + len(reacted) == len(photos)
    assert len(commented) >= 3 and all(len(server.delivered_replies_to(p)) == 1 for p in commented)
    assert client._stats.jobs_done == len(commented)  # every accepted photo was commented
    assert flood.refused[chat] <= 1, flood.refused  # paced, not bounced off the limit
    assert not tracebacks(log)


def _reacted(server: FakeTelegramServer, message_id: int) -> bool:
    return any(int(r["message_id"]) == message_id for r in server.reactions)


async def test_busy_notices_one_text_per_chat_per_burst() -> None:
    now = [0.0]
    notices = BusyNotices(10.0, clock=lambda: now[0])
    assert notices.text_allowed("a") and not notices.text_allowed("a") and notices.text_allowed("b")
    now[0] = 9.9
    assert not notices.text_allowed("a")  # the burst goes on
    now[0] = 19.0
    assert not notices.text_allowed("a")  # still < 10 s after the last refusal
    now[0] = 29.5
    assert notices.text_allowed("a")  # a quiet 10 s: a new burst
    now[0] = 35.0
    notices.text_sent("a")  # that text landed late (pacing, retries)
    now[0] = 41.0
    assert not notices.text_allowed("a")  # 11.5 s after the last refusal, but 6 s after the text landed


async def test_short_download_is_detected_and_classified() -> None:
    assert check_length(b"abcd", 4, "f") == b"abcd"
    assert check_length(b"abcd", None, "f") == b"abcd"
    with pytest.raises(ShortDownloadError):
        check_length(b"ab", 4, "f")
    from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

    assert telegram_not_delivered(NetworkError("Bad Gateway"))  # an HTTP error status: not applied
    assert telegram_not_delivered(RetryAfter(1))
    assert not telegram_not_delivered(BadRequest("chat not found"))
    assert not telegram_not_delivered(TimedOut())  # may have landed


async def test_retrying_makes_a_few_attempts_even_when_one_attempt_used_up_the_window() -> None:
    from bot.delivery import MIN_ATTEMPTS, retrying

    attempts: list[int] = []

    async def slow_then_fine() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(0.3)  # longer than the whole window, like a starved event loop
        if len(attempts) < MIN_ATTEMPTS:
            raise ShortDownloadError("cut")
        return "ok"

    assert await retrying(slow_then_fine, transient=lambda e: True, what="t", window_s=0.2) == "ok"
    assert len(attempts) == MIN_ATTEMPTS
