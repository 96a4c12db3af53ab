"""Telegram bot end to end: the real PTB ``Application`` polls a local fake Bot API server.

The main photo tests run the real ``InferenceClient`` + worker process on tiny random weights (one
worker for the whole module); error-path tests that need a scripted client use the real client with
a gated transport or ``FakeInferenceClient``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image

from bot import app as bot_app
from bot import messages
from bot.app import TokenRedactingFilter, quiet_http_loggers
from bot.core import CommentClient, PhotoService, PlatformStartupError
from bot.store import Store, StoreClosedError
from bot.telegram_app import COMMANDS, build_application, run_telegram, telegram_running, webhook_arguments
from inference.errors import ImageError, QueueFullError
from inference.models.registry import discover_generators
from inference.serving.client import InferenceClient
from inference.settings import DEFAULT_WEIGHTS_DIR, Settings
from tests.conftest import make_settings
from tests.fakes.inference_client import FakeInferenceClient, GatedTransport
from tests.fakes.telegram_server import BOT_USERNAME, FakeTelegramServer, bot_message

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "123456789:AAE-fake-TOKEN-for-tests_0123456789"
USER = 1111
ADMIN = 2222
GROUP = -100555
HANGUL = re.compile(r"[가-힣]")
EMOJI = re.compile(r"[\U0001F300-\U0001FAFF\u2600-\u27BF\u2B50\u2764]")
IMAGE_ERROR_REPLIES = {cls.user_message for cls in (ImageError, *ImageError.__subclasses__())}


def _image(
    width: int = 96, height: int = 64, fmt: str = "JPEG", color: tuple[int, int, int] = (220, 150, 90)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def _has_korean_and_emoji(text: str) -> bool:
    return bool(HANGUL.search(text)) and bool(EMOJI.search(text))


# --- fixtures ----------------------------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def real_client(tiny_weights_dir: Path) -> AsyncIterator[InferenceClient]:
    """One real worker process on tiny weights, shared by the module (starting one costs seconds)."""
    client = InferenceClient(make_settings(tiny_weights_dir, torch_threads=1, job_timeout_s=60.0))
    await client.start()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="module")
async def server() -> AsyncIterator[FakeTelegramServer]:
    fake = FakeTelegramServer(TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def settings_for(tmp_path: Path, tiny_weights_dir: Path, server: FakeTelegramServer) -> Any:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "telegram_bot_token": TOKEN,
            "telegram_api_base_url": server.base_url,
            "telegram_file_base_url": server.base_file_url,
            "state_db": tmp_path / "state.sqlite3",
            "admin_user_ids": str(ADMIN),
        }
        values.update(overrides)
        return make_settings(values.pop("weights_dir", tiny_weights_dir), **values)

    return build


@asynccontextmanager
async def running_bot(
    settings: Settings, client: CommentClient, *, typing_interval_s: float = 4.0
) -> AsyncIterator[PhotoService]:
    """A real Application polling the fake server; the client is shared, the store is its own."""
    store = Store(settings.state_db)
    await store.open()
    service = PhotoService(client, store, settings)
    application = build_application(
        settings, service, owns_service=False, typing_interval_s=typing_interval_s
    )
    try:
        async with telegram_running(application, poll_timeout_s=1):
            yield service
    finally:
        await store.close()


@pytest.fixture(autouse=True)
def no_token_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test here runs with DEBUG logging as ``bot.app`` configures it; no record may carry the
    token (httpx would log it in request URLs at INFO if it were not quieted)."""
    quiet_http_loggers()
    with caplog.at_level(logging.DEBUG):
        yield
    leaked = [
        r.getMessage() for r in caplog.records if TOKEN in r.getMessage() or "AAE-fake" in r.getMessage()
    ]
    assert not leaked, leaked


# --- photos ------------------------------------------------------------------------------------
async def test_photo_gets_a_korean_comment_replying_to_it(
    server: FakeTelegramServer, settings_for: Any, real_client: InferenceClient
) -> None:
    async with running_bot(settings_for(), real_client):
        large, small = _image(320, 240), _image(32, 24, color=(0, 0, 0))
        message_id = await server.push_message(
            chat_id=USER, user_id=USER, photo=[(small, 32, 24), (large, 320, 240)], caption="우리 강아지"
        )
        reply = await server.wait_for_reply(message_id, within_s=60)
    assert _has_korean_and_emoji(reply["text"]), reply["text"]
    assert int(reply["chat_id"]) == USER
    # the largest PhotoSize was fetched, and "typing" was shown before the reply
    fetched = [call.params["file_id"] for call in server.calls_of("getFile")]
    assert fetched == [server.calls_of("getFile")[0].params["file_id"]] and fetched[0].endswith(
        str(_last_file(server))
    )
    actions = server.calls_of("sendChatAction")
    assert actions and actions[0].params["action"] == "typing"
    assert actions[0].at <= server.calls_of("sendMessage")[0].at
    # the command menu was registered with Korean descriptions
    commands = server.calls_of("setMyCommands")[0].params["commands"]
    assert [c["command"] for c in commands] == [c.command for c in COMMANDS]
    assert all(HANGUL.search(c["description"]) for c in commands)


def _last_file(server: FakeTelegramServer) -> int:
    """Number of the most recently stored file (the largest photo size is added last)."""
    return max(int(file_id.split("-")[1]) for file_id in server._files)


async def test_image_documents_get_comments_other_files_get_told(
    server: FakeTelegramServer, settings_for: Any, real_client: InferenceClient
) -> None:
    async with running_bot(settings_for(), real_client):
        png = await server.push_message(
            chat_id=USER,
            user_id=USER,
            document=(_image(fmt="PNG"), "snap.png", "image/png"),
            caption="파일로",
        )
        webp = await server.push_message(  # no MIME type: recognised by its file name
            chat_id=USER, user_id=USER, document=(_image(fmt="WEBP"), "holiday.WEBP", None)
        )
        pdf = await server.push_message(
            chat_id=USER, user_id=USER, document=(b"%PDF-1.4 ...", "report.pdf", "application/pdf")
        )
        replies = [await server.wait_for_reply(m, within_s=60) for m in (png, webp, pdf)]
    assert _has_korean_and_emoji(replies[0]["text"]) and replies[0]["text"] not in IMAGE_ERROR_REPLIES
    assert _has_korean_and_emoji(replies[1]["text"]) and replies[1]["text"] not in IMAGE_ERROR_REPLIES
    assert replies[2]["text"] == messages.UNSUPPORTED_FILE
    assert len(server.calls_of("getFile")) == 2  # the PDF was never downloaded


async def test_edited_photo_message_gets_no_second_comment(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    client = FakeInferenceClient()
    async with running_bot(settings_for(), client):
        edited = await server.push_message(
            chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)], caption="고친 캡션", edited=True
        )
        fresh = await server.push_message(chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)])
        await server.wait_for_reply(fresh)
        await asyncio.sleep(0.3)
    assert not server.replies_to(edited) and len(client.calls) == 1


async def test_comment_still_arrives_when_the_photo_was_deleted_meanwhile(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    async with running_bot(settings_for(), FakeInferenceClient(delay_s=0.3)):
        message_id = await server.push_message(chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)])
        server.deleted_messages.add(message_id)
        reply = await server.wait_for_reply(message_id)
    assert _has_korean_and_emoji(reply["text"]) and len(server.sent_messages()) == 1


async def test_album_gets_one_comment_per_photo(
    server: FakeTelegramServer, settings_for: Any, real_client: InferenceClient
) -> None:
    async with running_bot(settings_for(), real_client):
        first = await server.push_message(
            chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)], media_group_id="album-1"
        )
        second = await server.push_message(
            chat_id=USER, user_id=USER, photo=[(_image(64, 96), 64, 96)], media_group_id="album-1"
        )
        replies = [await server.wait_for_reply(m, within_s=60) for m in (first, second)]
    assert all(_has_korean_and_emoji(r["text"]) for r in replies)
    assert len(server.sent_messages()) == 2


async def test_corrupt_and_oversize_files_get_korean_errors(
    server: FakeTelegramServer, settings_for: Any, real_client: InferenceClient
) -> None:
    async with running_bot(settings_for(), real_client):
        corrupt = await server.push_message(
            chat_id=USER, user_id=USER, document=(b"\xff\xd8\xff\xe0 broken jpeg", "broken.jpg", "image/jpeg")
        )
        too_big = await server.push_message(
            chat_id=USER, user_id=USER, photo=[(_image(), 4000, 3000)], declared_size=25 * 1024 * 1024
        )
        corrupt_reply = await server.wait_for_reply(corrupt, within_s=60)
        too_big_reply = await server.wait_for_reply(too_big)
    assert corrupt_reply["text"] in IMAGE_ERROR_REPLIES
    assert too_big_reply["text"] == messages.file_too_big(20 * 1024 * 1024)
    assert "20MB" in too_big_reply["text"]
    assert len(server.calls_of("getFile")) == 1  # the oversize photo was refused before downloading


async def test_file_refused_by_the_bot_api_gets_the_too_big_reply(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    """A self-hosted server setting lifts our limit, but the (cloud) API still refuses: same reply."""
    settings = settings_for(telegram_max_download_bytes=100 * 1024 * 1024)
    async with running_bot(settings, FakeInferenceClient()):
        message_id = await server.push_message(
            chat_id=USER,
            user_id=USER,
            document=(_image(), "big.jpg", "image/jpeg"),
            declared_size=30 * 1024 * 1024,
        )
        reply = await server.wait_for_reply(message_id)
    assert reply["text"] == messages.file_too_big(100 * 1024 * 1024)


# --- commands and per-chat settings --------------------------------------------------------------
async def test_application_owning_its_resources_opens_and_closes_them(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    """The PTB-example path: post_init opens the store and starts the client, post_shutdown closes them."""
    settings = settings_for()
    client = FakeInferenceClient()
    store = Store(settings.state_db)
    application = build_application(settings, PhotoService(client, store, settings), owns_service=True)
    async with telegram_running(application, poll_timeout_s=1):
        assert client.state == "running"
        switched = await server.push_message(chat_id=USER, user_id=USER, text="/model gpt2")
        assert (await server.wait_for_reply(switched))["text"] == messages.model_switched("gpt2")
    assert client.state == "closed"
    with pytest.raises(StoreClosedError):
        await store.get_generator(f"telegram:{USER}")


async def test_help_and_unknown_command(server: FakeTelegramServer, settings_for: Any) -> None:
    async with running_bot(settings_for(), FakeInferenceClient()):
        start = await server.push_message(chat_id=USER, user_id=USER, text="/start")
        unknown = await server.push_message(chat_id=USER, user_id=USER, text="/dance now")
        start_reply = await server.wait_for_reply(start)
        unknown_reply = await server.wait_for_reply(unknown)
    assert "/model" in start_reply["text"] and "사진" in start_reply["text"]
    assert unknown_reply["text"] == messages.UNKNOWN_COMMAND


async def test_model_switch_persists_across_restart(
    server: FakeTelegramServer, settings_for: Any, real_client: InferenceClient
) -> None:
    settings = settings_for()
    names = real_client.generator_names()
    assert len(names) >= 2
    other = next(n for n in names if n != settings.default_generator)
    async with running_bot(settings, real_client):
        listing = await server.wait_for_reply(
            await server.push_message(chat_id=USER, user_id=USER, text="/model")
        )
        switched = await server.wait_for_reply(
            await server.push_message(chat_id=USER, user_id=USER, text=f"/model {other.upper()}")
        )
        unknown = await server.wait_for_reply(
            await server.push_message(chat_id=USER, user_id=USER, text="/model llama-70b")
        )
    assert f"✅ {settings.default_generator}" in listing["text"]
    assert switched["text"] == messages.model_switched(other)
    assert "llama-70b" in unknown["text"] and all(n in unknown["text"] for n in names)

    # a brand-new Application on the same SQLite file remembers the choice and uses it
    async with running_bot(settings, real_client):
        listing = await server.wait_for_reply(
            await server.push_message(chat_id=USER, user_id=USER, text="/model")
        )
        photo = await server.push_message(chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)])
        await server.wait_for_reply(photo, within_s=60)
    assert f"✅ {other}" in listing["text"] and f"▫️ {settings.default_generator}" in listing["text"]


async def test_stats_only_for_admins(
    server: FakeTelegramServer, settings_for: Any, real_client: InferenceClient
) -> None:
    async with running_bot(settings_for(), real_client):
        denied = await server.wait_for_reply(
            await server.push_message(chat_id=USER, user_id=USER, text="/stats")
        )
        shown = await server.wait_for_reply(
            await server.push_message(chat_id=ADMIN, user_id=ADMIN, text="/stats")
        )
    assert denied["text"] == messages.ADMIN_ONLY
    done = real_client.stats().jobs_done
    assert f"완료: {done}건" in shown["text"] and "p95" in shown["text"]


# --- groups and access -----------------------------------------------------------------------------
async def test_group_photos_and_admin_only_model_switch(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    server.member_status[ADMIN + 1] = "administrator"
    async with running_bot(settings_for(), FakeInferenceClient()):
        photo = await server.push_message(
            chat_id=GROUP, user_id=USER, chat_type="supergroup", photo=[(_image(), 96, 64)]
        )
        denied = await server.push_message(
            chat_id=GROUP, user_id=USER, chat_type="supergroup", text="/model gpt2"
        )
        allowed = await server.push_message(
            chat_id=GROUP, user_id=ADMIN + 1, chat_type="supergroup", text="/model@mupl_test_bot gpt2"
        )
        other_bot = await server.push_message(
            chat_id=GROUP, user_id=USER, chat_type="supergroup", text="/roll"
        )
        other_bot2 = await server.push_message(
            chat_id=GROUP, user_id=USER, chat_type="supergroup", text="/roll@dice_bot"
        )
        ours = await server.push_message(
            chat_id=GROUP, user_id=USER, chat_type="supergroup", text=f"/roll@{BOT_USERNAME}"
        )
        assert (await server.wait_for_reply(ours))["text"] == messages.UNKNOWN_COMMAND
        assert _has_korean_and_emoji((await server.wait_for_reply(photo))["text"])
        assert (await server.wait_for_reply(denied))["text"] == messages.GROUP_ADMIN_ONLY
        assert (await server.wait_for_reply(allowed))["text"] == messages.model_switched("gpt2")
        await asyncio.sleep(0.3)
    # a bare unknown /command in a group, or one for another bot, is not ours to answer
    assert not server.replies_to(other_bot) and not server.replies_to(other_bot2)
    assert {int(c.params["user_id"]) for c in server.calls_of("getChatMember")} == {USER, ADMIN + 1}


async def test_group_mention_trigger(server: FakeTelegramServer, settings_for: Any) -> None:
    client = FakeInferenceClient()
    async with running_bot(settings_for(telegram_group_trigger="mention"), client):
        ignored = await server.push_message(
            chat_id=GROUP, user_id=USER, chat_type="group", photo=[(_image(), 96, 64)], caption="그냥 사진"
        )
        mentioned = await server.push_message(
            chat_id=GROUP,
            user_id=USER,
            chat_type="group",
            photo=[(_image(), 96, 64)],
            caption=f"@{BOT_USERNAME.upper()} 봐줘",
        )
        replying = await server.push_message(
            chat_id=GROUP,
            user_id=USER,
            chat_type="group",
            photo=[(_image(), 96, 64)],
            reply_to=bot_message(GROUP, 7),
        )
        await server.wait_for_reply(mentioned)
        await server.wait_for_reply(replying)
        await asyncio.sleep(0.3)
    assert not server.replies_to(ignored)
    assert len(client.calls) == 2


async def test_chats_outside_the_allow_list_are_ignored(
    server: FakeTelegramServer, settings_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeInferenceClient()
    async with running_bot(settings_for(allowed_chat_ids=str(GROUP)), client):
        with caplog.at_level(logging.INFO, logger="bot.telegram_app"):
            stranger = await server.push_message(chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)])
            member = await server.push_message(
                chat_id=GROUP, user_id=USER, chat_type="supergroup", photo=[(_image(), 96, 64)]
            )
            await server.wait_for_reply(member)
            await asyncio.sleep(0.3)
    assert not server.replies_to(stranger)
    assert client.calls == [(f"telegram:{GROUP}", None)]
    assert str(USER) in caplog.text and "ALLOWED_CHAT_IDS" in caplog.text


async def test_unexpected_failure_gets_a_generic_apology(
    server: FakeTelegramServer, settings_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler crashing (here: the store closed under it) reaches the one error handler."""
    async with running_bot(settings_for(), FakeInferenceClient()) as service:
        await service.store.close()
        with caplog.at_level(logging.ERROR, logger="bot.telegram_app"):
            reply = await server.wait_for_reply(
                await server.push_message(chat_id=USER, user_id=USER, text="/model")
            )
    assert reply["text"] == messages.GENERIC_ERROR
    assert any(r.exc_info and "StoreClosedError" in repr(r.exc_info[1]) for r in caplog.records)


# --- load, rate limits, logs ------------------------------------------------------------------------
async def test_full_queue_gets_the_busy_reply(server: FakeTelegramServer, settings_for: Any) -> None:
    """The real client with max_pending=1 and a job held in its transport: the next photo is refused."""
    settings = settings_for(max_pending=1)
    transport = GatedTransport()
    client = InferenceClient(settings, transport=transport)
    await client.start()
    try:
        async with running_bot(settings, client):
            slow = await server.push_message(chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)])
            await server.wait_for(lambda: transport.submitted)
            busy = await server.push_message(chat_id=ADMIN, user_id=ADMIN, photo=[(_image(), 96, 64)])
            busy_reply = await server.wait_for_reply(busy)
            transport.release.set()
            slow_reply = await server.wait_for_reply(slow)
    finally:
        await client.close()
    assert busy_reply["text"] == QueueFullError.user_message
    assert _has_korean_and_emoji(slow_reply["text"]) and slow_reply["text"] != QueueFullError.user_message
    assert client.stats().jobs_rejected == 1 and client.stats().jobs_done == 1


async def test_typing_is_repeated_while_slow_jobs_run_but_not_spammed(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    """Two slow photos in one chat share one "typing" loop: re-sent every interval, once per chat."""
    client = FakeInferenceClient(delay_s=1.2)
    async with running_bot(settings_for(), client, typing_interval_s=0.3):
        first = await server.push_message(chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)])
        second = await server.push_message(chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)])
        await server.wait_for_reply(first)
        await server.wait_for_reply(second)
        await asyncio.sleep(0.5)
    actions = server.calls_of("sendChatAction")
    last_reply_at = server.calls_of("sendMessage")[-1].at
    assert 3 <= len(actions) <= 8, len(actions)  # two independent loops would send ~10
    assert all(a.params["action"] == "typing" for a in actions)
    assert all(a.at <= last_reply_at for a in actions)  # stopped with the replies


async def test_rate_limited_reply_is_retried(server: FakeTelegramServer, settings_for: Any) -> None:
    server.rate_limit_next["sendMessage"] = 1
    async with running_bot(settings_for(), FakeInferenceClient()):
        message_id = await server.push_message(chat_id=USER, user_id=USER, photo=[(_image(), 96, 64)])
        reply = await server.wait_for_reply(message_id)
    assert server.rate_limited == ["sendMessage"]
    assert len(server.calls_of("sendMessage")) == 2  # the 429 and the retry
    attempts = server.calls_of("sendMessage")
    assert attempts[1].at - attempts[0].at >= 1.0  # retry_after honoured
    assert _has_korean_and_emoji(reply["text"])


async def test_token_redaction_filter_and_webhook_path(settings_for: Any) -> None:
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "HTTP Request: POST https://api.telegram.org/bot%s/getMe",
        (TOKEN,),
        None,
    )
    assert TokenRedactingFilter([TOKEN]).filter(record)
    assert TOKEN not in record.getMessage()
    assert record.getMessage().endswith("/bot***/getMe")
    settings = settings_for(telegram_mode="webhook", telegram_webhook_url="https://example.org/hooks/tg")
    arguments = webhook_arguments(settings)
    assert arguments["url_path"] == "hooks/tg" and TOKEN not in str(arguments)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_shipped_weights_comment_a_real_photo(
    server: FakeTelegramServer, settings_for: Any, zidane_jpg: Path
) -> None:
    """The weights in ``weights/`` (when trained and present) answer a real photo through Telegram."""
    settings = settings_for(weights_dir=DEFAULT_WEIGHTS_DIR, torch_threads=2, job_timeout_s=120.0)
    if not settings.weights_path(settings.emotion_weights).is_file() or not discover_generators(
        settings.generators_dir
    ):
        pytest.skip("shipped weights not present in weights/")
    client = InferenceClient(settings)
    await client.start()
    try:
        async with running_bot(settings, client):
            image = await asyncio.to_thread(zidane_jpg.read_bytes)
            message_id = await server.push_message(
                chat_id=USER, user_id=USER, document=(image, "zidane.jpg", "image/jpeg")
            )
            reply = await server.wait_for_reply(message_id, within_s=150)
    finally:
        await client.close()
    assert _has_korean_and_emoji(reply["text"]) and reply["text"] not in IMAGE_ERROR_REPLIES
    assert client.stats().jobs_done == 1


async def test_webhook_mode_checks_the_secret_and_answers(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    port = _free_port()
    settings = settings_for(
        telegram_mode="webhook",
        telegram_webhook_url=f"http://127.0.0.1:{port}/hooks/tg",
        telegram_webhook_listen="127.0.0.1",
        telegram_webhook_port=port,
        telegram_webhook_secret="s3cret-hook",
    )
    async with running_bot(settings, FakeInferenceClient()), aiohttp.ClientSession() as http:
        registered = server.calls_of("setWebhook")[0].params
        assert (
            registered["url"] == settings.telegram_webhook_url and registered["secret_token"] == "s3cret-hook"
        )
        update = server.message_update(chat_id=USER, user_id=USER, text="/help")
        url = f"http://127.0.0.1:{port}/hooks/tg"
        forged = await http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
        accepted = await http.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-hook"}
        )
        reply = await server.wait_for_reply(update["message"]["message_id"])
    assert forged.status == 403 and accepted.status == 200
    assert "/model" in reply["text"]
    assert len(server.replies_to(update["message"]["message_id"])) == 1  # the forged one was dropped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_rejected_token_stops_with_a_clear_message(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    settings = settings_for(telegram_bot_token="111:wrong-token")
    store = Store(settings.state_db)
    service = PhotoService(FakeInferenceClient(), store, settings)
    with pytest.raises(PlatformStartupError, match="TELEGRAM_BOT_TOKEN"):
        async with asyncio.timeout(20):
            await run_telegram(settings, service, asyncio.Event())


async def test_a_platform_failing_at_start_stops_the_process_with_exit_1(
    server: FakeTelegramServer, settings_for: Any
) -> None:
    settings = settings_for(telegram_bot_token="111:wrong-token")
    store = Store(settings.state_db)
    service = PhotoService(FakeInferenceClient(), store, settings)
    stop = asyncio.Event()
    async with asyncio.timeout(20):
        exit_code = await bot_app._run_platforms(settings, service, stop)
    assert exit_code == 1 and stop.is_set()
