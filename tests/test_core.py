"""PhotoService + ChatRef: the shared photo → reply path and commands, with a real SQLite store."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot import messages
from bot.core import ChatRef, PhotoService
from bot.store import Store
from inference.errors import CommentBotError, JobTimeoutError, NotAnImageError, QueueFullError
from inference.settings import Settings
from tests.fakes.inference_client import FakeInferenceClient

PRIVATE = ChatRef(platform="telegram", chat_id=42, user_id=42, is_group=False)
GROUP = ChatRef(platform="telegram", chat_id=-1001, user_id=7, is_group=True)


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "weights_dir": tmp_path / "weights",
        "state_db": tmp_path / "state.sqlite3",
        "default_generator": "t5",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "state.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def client() -> FakeInferenceClient:
    return FakeInferenceClient(generators=("gpt2", "t5"))


@pytest.fixture
def service(tmp_path: Path, client: FakeInferenceClient, store: Store) -> PhotoService:
    return PhotoService(client, store, _settings(tmp_path))


def test_chat_keys_are_stable_per_platform() -> None:
    assert PRIVATE.key == "telegram:42"
    assert GROUP.key == "telegram:-1001"
    assert ChatRef("discord", 555, 9, True).key == "discord:555"
    assert ChatRef("discord", 9, 9, False).key == "discord:dm:9"


def test_allow_list_and_admins(tmp_path: Path, client: FakeInferenceClient, store: Store) -> None:
    open_service = PhotoService(client, store, _settings(tmp_path))
    assert open_service.is_allowed(PRIVATE) and open_service.is_allowed(GROUP)
    assert not open_service.is_admin(42) and not open_service.is_admin(None)

    closed = PhotoService(client, store, _settings(tmp_path, allowed_chat_ids="-1001", admin_user_ids="42"))
    assert closed.is_allowed(GROUP)
    assert not closed.is_allowed(PRIVATE)
    assert closed.is_admin(42) and not closed.is_admin(7)


async def test_photo_gets_the_comment_with_the_chat_key(
    service: PhotoService, client: FakeInferenceClient
) -> None:
    reply = await service.comment_for_photo(GROUP, _jpeg())
    assert "기쁨" in reply and "😊" in reply
    assert client.calls == [("telegram:-1001", None)]  # no stored choice: the worker's default


async def test_switched_generator_is_used_and_persisted(
    tmp_path: Path, service: PhotoService, client: FakeInferenceClient
) -> None:
    assert await service.switch_model(GROUP, " GPT2 ") == messages.model_switched("gpt2")
    reply = await service.comment_for_photo(GROUP, _jpeg())
    assert reply.endswith("(gpt2)")
    assert client.calls[-1] == ("telegram:-1001", "gpt2")
    # another chat is unaffected
    await service.comment_for_photo(PRIVATE, _jpeg())
    assert client.calls[-1] == ("telegram:42", None)

    models = await service.models_text(GROUP)
    assert "✅ gpt2" in models and "▫️ t5" in models
    assert "✅ t5" in await service.models_text(PRIVATE)


async def test_unknown_model_lists_names_and_keeps_choice(service: PhotoService) -> None:
    reply = await service.switch_model(PRIVATE, "llama")
    assert "llama" in reply and "gpt2, t5" in reply
    assert "✅ t5" in await service.models_text(PRIVATE)


async def test_stale_stored_generator_falls_back_to_default(
    service: PhotoService,
    store: Store,
    client: FakeInferenceClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await store.set_generator(PRIVATE.key, "removed-model")
    with caplog.at_level(logging.WARNING, logger="bot.core"):
        reply = await service.comment_for_photo(PRIVATE, _jpeg())
    assert "(t5)" in reply
    assert client.calls[-1] == ("telegram:42", None)
    assert "removed-model" in caplog.text


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (QueueFullError("full"), "지금 요청이 많아요"),
        (JobTimeoutError("slow"), "너무 오래 걸렸어요"),
    ],
)
async def test_inference_errors_become_their_korean_message(
    service: PhotoService,
    client: FakeInferenceClient,
    caplog: pytest.LogCaptureFixture,
    error: CommentBotError,
    expected: str,
) -> None:
    client.fail_with = error
    with caplog.at_level(logging.INFO, logger="bot.core"):
        reply = await service.comment_for_photo(GROUP, _jpeg())
    assert expected in reply
    assert error.code in caplog.text and GROUP.key in caplog.text
    assert "Traceback" not in caplog.text


async def test_corrupt_image_gets_the_image_error_message(service: PhotoService) -> None:
    reply = await service.comment_for_photo(PRIVATE, b"\xff\xd8\xff not really a jpeg")
    assert reply == NotAnImageError.user_message


async def test_unexpected_exception_gets_generic_apology_and_traceback_in_log(
    service: PhotoService, client: FakeInferenceClient, caplog: pytest.LogCaptureFixture
) -> None:
    client.fail_with = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="bot.core"):
        reply = await service.comment_for_photo(PRIVATE, _jpeg())
    assert reply == messages.GENERIC_ERROR
    assert any(record.exc_info for record in caplog.records)


async def test_stats_text_reports_counters(service: PhotoService, client: FakeInferenceClient) -> None:
    await service.comment_for_photo(PRIVATE, _jpeg())
    await service.comment_for_photo(PRIVATE, b"garbage")
    text = service.stats_text()
    assert "완료: 1건" in text and "실패: 1건" in text and "대기열: 0건" in text


def test_help_text_names_the_commands_per_platform(service: PhotoService) -> None:
    telegram = service.help_text("telegram")
    assert "/model" in telegram and "/stats" in telegram and "프라이버시" in telegram
    assert "!model" in service.help_text("discord")


def test_file_too_big_mentions_the_limit() -> None:
    assert "20MB" in messages.file_too_big(20 * 1024 * 1024)
