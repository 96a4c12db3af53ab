"""👍 👎 🔄 🔍 under every comment, through the real PTB ``Application`` and the fake Bot API.

Button presses are real ``callback_query`` updates; the bot answers them, edits the comment message
(counts, new text) and sends the annotated photo as a reply. The store is a real SQLite file.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image, ImageChops

from bot import feedback as fb
from bot.core import ChatRef, CommentClient, PhotoService
from bot.store import CommentRecord, Store
from bot.telegram_app import build_application, telegram_running
from inference.errors import QueueFullError
from inference.serving.client import InferenceClient
from tests.conftest import make_settings
from tests.fakes.inference_client import FakeInferenceClient
from tests.fakes.telegram_buttons import ButtonsTelegramServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "123456789:AAE-fake-TOKEN-for-feedback_0123456"
USER, OTHER, ADMIN = 1111, 3333, 2222
GROUP = -100777
BUTTON = re.compile(r"^fb:(\d+):(up|down|again|look)$")


def jpeg(width: int = 320, height: int = 240, color: tuple[int, int, int] = (90, 160, 220)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest_asyncio.fixture(loop_scope="module")
async def server() -> AsyncIterator[ButtonsTelegramServer]:
    fake = ButtonsTelegramServer(TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def settings_for(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, server: ButtonsTelegramServer
) -> Any:
    def build(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "telegram_bot_token": TOKEN,
            "telegram_api_base_url": server.base_url,
            "telegram_file_base_url": server.base_file_url,
            "state_db": tmp_path / "db" / "state.sqlite3",
            "admin_user_ids": str(ADMIN),
        }
        values.update(overrides)
        return make_settings(values.pop("weights_dir", tmp_path / "weights"), **values)

    return build


@asynccontextmanager
async def running_bot(settings: Any, client: CommentClient) -> AsyncIterator[PhotoService]:
    store = Store(settings.state_db)
    await store.open()
    service = PhotoService(client, store, settings)
    application = build_application(settings, service, owns_service=False)
    try:
        async with telegram_running(application, poll_timeout_s=1):
            yield service
    finally:
        await store.close()


async def post_photo(
    server: ButtonsTelegramServer, chat_id: int = USER, user_id: int = USER, photo: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """A photo; returns the comment's message id and the reply's parameters."""
    content = photo or jpeg()
    photo_id = await server.push_message(
        chat_id=chat_id,
        user_id=user_id,
        chat_type="private" if chat_id > 0 else "supergroup",
        photo=[(content, 320, 240)],
    )
    reply = await server.wait_for_reply(photo_id)
    return server.reply_ids[photo_id], reply


def buttons_of(server: ButtonsTelegramServer, message_id: int) -> dict[str, str]:
    """action → label of the keyboard the comment shows now."""
    [row] = server.reply_markup_of(message_id)
    parsed = {}
    for button in row:
        match = BUTTON.match(button["callback_data"])
        assert match, button
        parsed[match[2]] = button["text"]
    return parsed


async def press(
    server: ButtonsTelegramServer,
    message_id: int,
    action: str,
    *,
    user_id: int = USER,
    chat_id: int = USER,
    **kw: Any,
) -> dict[str, Any]:
    """Press a button of the comment; returns the answerCallbackQuery parameters."""
    [row] = server.reply_markup_of(message_id)
    data = next(b["callback_data"] for b in row if b["callback_data"].endswith(f":{action}"))
    chat_type = "private" if chat_id > 0 else "supergroup"
    query = await server.push_callback_query(
        chat_id=chat_id, user_id=user_id, message_id=message_id, data=data, chat_type=chat_type, **kw
    )
    answers = await server.wait_for(lambda: server.answers_to(query))
    return dict(answers[0])


# --- buttons and votes ---------------------------------------------------------------------------
async def test_every_comment_has_four_buttons_and_is_stored(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    settings = settings_for()
    photo = jpeg()
    async with running_bot(settings, FakeInferenceClient()) as service:
        message_id, reply = await post_photo(server, photo=photo)
        labels = buttons_of(server, message_id)
        [row] = server.reply_markup_of(message_id)
        comment_id = int(BUTTON.match(row[0]["callback_data"])[1])  # type: ignore[index]
        await press(server, message_id, "up")  # a round trip: the handler stored the message id by now
        record = await service.store.comment(comment_id)
    assert labels == {"up": "👍", "down": "👎", "again": "🔄", "look": "🔍"}
    assert record is not None and record.text == reply["text"] and record.reply_message_id == message_id
    assert record.chat_key == f"telegram:{USER}" and record.keywords == ["기쁨"] and record.version == 1
    assert record.photo_ref == server.calls_of("getFile")[-1].params["file_id"]
    assert record.detections["faces"][0]["keyword"] == "기쁨"


async def test_votes_one_per_user_change_and_withdraw(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    async with running_bot(settings_for(), FakeInferenceClient()):
        message_id, _ = await post_photo(server)
        first = await press(server, message_id, "up")
        assert first["text"] == fb.VOTED_UP and buttons_of(server, message_id)["up"] == "👍 1"
        await press(server, message_id, "down", user_id=OTHER)
        assert buttons_of(server, message_id) | {} == {
            "up": "👍 1",
            "down": "👎 1",
            "again": "🔄",
            "look": "🔍",
        }
        changed = await press(server, message_id, "down")  # USER changes 👍 → 👎
        assert changed["text"] == fb.VOTED_DOWN
        assert (buttons_of(server, message_id)["up"], buttons_of(server, message_id)["down"]) == (
            "👍",
            "👎 2",
        )
        withdrawn = await press(server, message_id, "down")  # the same again: withdrawn
        assert withdrawn["text"] == fb.VOTE_WITHDRAWN and buttons_of(server, message_id)["down"] == "👎 1"


async def test_buttons_of_messages_sent_before_a_restart_keep_working(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    settings = settings_for()
    async with running_bot(settings, FakeInferenceClient()):
        message_id, _ = await post_photo(server)
        await press(server, message_id, "up")
    async with running_bot(settings, FakeInferenceClient()):  # a new process: same database file
        answer = await press(server, message_id, "up", user_id=OTHER, accessible=False)  # an old message
        assert answer["text"] == fb.VOTED_UP
        assert buttons_of(server, message_id)["up"] == "👍 2"
        again = await press(server, message_id, "again", accessible=False)
    assert again["text"] == fb.REGENERATED


async def test_a_forged_button_from_another_chat_is_refused(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    async with running_bot(settings_for(), FakeInferenceClient()):
        message_id, _ = await post_photo(server)
        [row] = server.reply_markup_of(message_id)
        query = await server.push_callback_query(
            chat_id=OTHER, user_id=OTHER, message_id=message_id, data=row[0]["callback_data"]
        )
        [answer] = await server.wait_for(lambda: server.answers_to(query))
        unknown = await server.push_callback_query(
            chat_id=USER, user_id=USER, message_id=1, data="fb:999999:up"
        )
        [gone] = await server.wait_for(lambda: server.answers_to(unknown))
    assert answer["text"] == fb.WRONG_CHAT and answer["show_alert"] is True
    assert gone["text"] == fb.RECORD_GONE
    assert buttons_of(server, message_id)["up"] == "👍"  # nothing counted


# --- 🔄 --------------------------------------------------------------------------------------------
async def test_regenerate_edits_the_comment_keeps_versions_and_stops_at_the_limit(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    client = FakeInferenceClient()
    async with running_bot(settings_for(), client) as service:
        message_id, reply = await post_photo(server)
        await press(server, message_id, "up")
        texts = [reply["text"]]
        for _ in range(3):
            answer = await press(server, message_id, "again")
            assert answer["text"] == fb.REGENERATED
            texts.append(server.text_of(message_id))
            assert buttons_of(server, message_id)["up"] == "👍"  # the new text starts at 0 votes
        refused = await press(server, message_id, "again")
        [row] = server.reply_markup_of(message_id)
        record = await service.store.comment(int(BUTTON.match(row[0]["callback_data"])[1]))  # type: ignore[index]
        replaced = await service.store.replaced_pairs()
    assert len(set(texts)) == 4 and client.regenerated == 3
    assert refused["text"] == fb.regenerate_limit_reached(3) and refused["show_alert"] is True
    assert record is not None and record.version == 4 and record.text == texts[-1]
    assert [pair.comment for pair in replaced] == texts[:3]
    assert replaced[0].net_votes == 1  # the first text keeps its 👍
    assert [generator for _, generator in client.calls[1:]] == ["t5", "t5", "t5"]  # the comment's own


async def test_regenerate_draws_again_when_it_repeats_the_shown_comment(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    client = FakeInferenceClient()
    async with running_bot(settings_for(), client):
        message_id, reply = await post_photo(server)
        client.regenerate_texts = [reply["text"], "새로 쓴 댓글이에요 🌟"]  # sampling repeated itself once
        answer = await press(server, message_id, "again")
    assert answer["text"] == fb.REGENERATED
    assert server.text_of(message_id) == "새로 쓴 댓글이에요 🌟"
    assert client.regenerated == 2


async def test_regenerate_per_chat_limit(server: ButtonsTelegramServer, settings_for: Any) -> None:
    client = FakeInferenceClient()
    async with running_bot(settings_for(regenerate_per_chat_per_hour=2), client):
        first, _ = await post_photo(server)
        second, _ = await post_photo(server)
        await press(server, first, "again")
        await press(server, second, "again")
        limited = await press(server, first, "again")
        other_chat, _ = await post_photo(server, chat_id=OTHER, user_id=OTHER)
        elsewhere = await press(server, other_chat, "again", user_id=OTHER, chat_id=OTHER)
    assert limited["text"] == fb.chat_regenerate_limit_reached(2) and limited["show_alert"] is True
    assert elsewhere["text"] == fb.REGENERATED  # the limit is per chat
    assert client.regenerated == 3


async def test_regenerate_reports_a_busy_queue(server: ButtonsTelegramServer, settings_for: Any) -> None:
    client = FakeInferenceClient()
    async with running_bot(settings_for(), client):
        message_id, reply = await post_photo(server)
        client.fail_with = QueueFullError("busy")
        answer = await press(server, message_id, "again")
    assert answer["text"] == QueueFullError.user_message and answer["show_alert"] is True
    assert server.text_of(message_id) == reply["text"]  # unchanged


# --- 🔍 --------------------------------------------------------------------------------------------
async def test_look_sends_the_photo_with_the_boxes_drawn_as_a_reply(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    photo = jpeg()
    async with running_bot(settings_for(), FakeInferenceClient()):
        message_id, _ = await post_photo(server, photo=photo)
        downloads = len(server.calls_of("getFile"))
        answer = await press(server, message_id, "look")
        await server.wait_for(lambda: server.photos_sent)
    assert answer["text"] == fb.LOOK_STARTED
    [call] = server.calls_of("sendPhoto")
    assert call.params["caption"] == fb.LOOK_CAPTION
    assert call.params["reply_parameters"]["message_id"] == message_id
    assert len(server.calls_of("getFile")) == downloads + 1  # fetched again from Telegram by file_id
    drawn = Image.open(io.BytesIO(server.photos_sent[0])).convert("RGB")
    original = Image.open(io.BytesIO(photo)).convert("RGB")
    assert drawn.size == original.size
    assert ImageChops.difference(drawn, original).getbbox() is not None  # something was drawn
    # the face box of the fake result (top-left quarter) is outlined in the emotion's colour
    assert drawn.getpixel((80, 120))[0] > 150 and drawn.getpixel((300, 230)) == pytest.approx(
        original.getpixel((300, 230)), abs=12
    )


async def test_look_when_the_photo_is_gone_gets_a_korean_reply(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    async with running_bot(settings_for(), FakeInferenceClient()):
        message_id, _ = await post_photo(server)
        server._files.clear()  # Telegram no longer has the file
        await press(server, message_id, "look")
        replies = await server.wait_for(lambda: server.replies_to(message_id))
    assert replies[0]["text"] == fb.PHOTO_GONE


# --- /forget, /stats, nothing of the photo at rest ------------------------------------------------
async def test_forget_needs_a_group_admin_and_deletes_the_chats_records(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    server.member_status[ADMIN + 1] = "administrator"
    async with running_bot(settings_for(), FakeInferenceClient()) as service:
        message_id, _ = await post_photo(server, chat_id=GROUP, user_id=USER)
        kept, _ = await post_photo(server, chat_id=USER, user_id=USER)
        refused = await server.push_message(
            chat_id=GROUP, user_id=USER, chat_type="supergroup", text="/forget"
        )
        allowed = await server.push_message(
            chat_id=GROUP, user_id=ADMIN + 1, chat_type="supergroup", text="/forget"
        )
        refusal, done = [await server.wait_for_reply(m) for m in (refused, allowed)]
        gone = await press(server, message_id, "up", chat_id=GROUP)
        still = await press(server, kept, "up")
        stats = await service.feedback.stats_text()
    assert refusal["text"] == fb.FORGET_ADMIN_ONLY
    assert done["text"] == fb.forgotten(1, 180)
    assert gone["text"] == fb.RECORD_GONE and still["text"] == fb.VOTED_UP
    assert "댓글 1개" in stats


async def test_stats_for_admins_show_like_and_regenerate_rates_per_generator(
    server: ButtonsTelegramServer, settings_for: Any
) -> None:
    async with running_bot(settings_for(), FakeInferenceClient()) as service:
        first, _ = await post_photo(server)
        second, _ = await post_photo(server)
        await press(server, first, "up")
        await press(server, second, "down")
        await press(server, second, "again")
        await service.switch_model(ChatRef("telegram", USER, USER, is_group=False), "gpt2")
        await press(server, first, "up", user_id=OTHER)
        asked = await server.push_message(chat_id=ADMIN, user_id=ADMIN, text="/stats")
        reply = await server.wait_for_reply(asked)
    assert "📊 처리 통계" in reply["text"]
    assert "• t5: 댓글 2개, 👍 2 / 👎 1 (67%), 🔄 50%" in reply["text"]
    assert "• 기쁨: 댓글 2개" in reply["text"]


async def test_no_photo_bytes_at_rest(server: ButtonsTelegramServer, settings_for: Any) -> None:
    settings = settings_for()
    photos = [jpeg(color=(i * 40, 100, 200 - i * 30)) for i in range(3)]
    async with running_bot(settings, FakeInferenceClient()):
        for photo in photos:
            message_id, _ = await post_photo(server, photo=photo)
            await press(server, message_id, "look")
            await press(server, message_id, "again")
        await server.wait_for(lambda: len(server.photos_sent) == 3)
    assert_no_photo_bytes(Path(settings.state_db), photos)


def assert_no_photo_bytes(database: Path, photos: list[bytes]) -> None:
    """Only the database file exists, and it holds no piece of any photo nor any image header."""
    folder = database.parent
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["state.sqlite3"]  # no photo files, no leftover journal
    stored = database.read_bytes()
    for photo in photos:
        chunks = {photo[i : i + 64] for i in range(0, len(photo) - 64, 997)}
        assert not any(chunk in stored for chunk in chunks)
    for marker in (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"ftypheic"):
        assert marker not in stored


async def test_regenerate_through_the_real_worker_skips_detection(
    server: ButtonsTelegramServer, settings_for: Any, tiny_weights_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.feedback")
    settings = settings_for(weights_dir=tiny_weights_dir, torch_threads=1, job_timeout_s=60.0)
    client = InferenceClient(settings)
    await client.start()
    try:
        async with running_bot(settings, client) as service:
            message_id, _ = await post_photo(server)
            answer = await press(server, message_id, "again")
            [row] = server.reply_markup_of(message_id)
            record = await service.store.comment(int(BUTTON.match(row[0]["callback_data"])[1]))  # type: ignore[index]
    finally:
        await client.close()
    assert answer["text"] == fb.REGENERATED
    assert record is not None and record.version == 2 and record.text == server.text_of(message_id)
    # One job for the photo, one per 🔄 draw (a draw that repeats the shown text is drawn again)
    redraws = sum("drew the same text" in r.getMessage() for r in caplog.records)
    assert client.stats().jobs_done == 2 + redraws


async def test_a_double_press_runs_once_and_a_failure_frees_the_comment(tmp_path: Path) -> None:
    service = PhotoService(FakeInferenceClient(), Store(tmp_path / "unused.sqlite3"), make_settings(tmp_path))
    record = CommentRecord(1, "telegram", "telegram:1", 1, 2, 3, "file", "t5", ["기쁨"], {}, 1, "좋아요")
    feedback = service.feedback
    with feedback.claim(record, "look") as first, feedback.claim(record, "look") as second:
        assert (first, second) == (True, False)
        with feedback.claim(record, "again") as other_action:
            assert other_action  # 🔄 and 🔍 of one comment do not block each other
    with pytest.raises(RuntimeError), feedback.claim(record, "look") as again:
        assert again
        raise RuntimeError("fetching the photo blew up")
    with feedback.claim(record, "look") as after_failure:
        assert after_failure
