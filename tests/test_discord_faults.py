"""Discord under faults: a decompression-bomb header, an attachment that blows up, server errors and
dropped connections on sends and downloads (dpytest's fake HTTP with injected failures)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import discord.ext.test as dpytest
import pytest

from bot import messages
from bot.cogs.photos import sniff_is_image
from inference.errors import TooManyPixelsError
from tests.fakes.inference_client import FakeInferenceClient
from tests.test_discord import DiscordHarness, FakeResponse, start_harness, write_jpeg


def bomb_png(width: int = 20_000, height: int = 10_000) -> bytes:
    """A valid PNG header claiming 200 MP (over Pillow's 2x bomb limit of ~179 MP), tiny on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[DiscordHarness]:
    h = await start_harness(tmp_path, FakeInferenceClient(), delivery_window_s=10.0, download_window_s=10.0)
    yield h
    await dpytest.empty_queue()
    await h.store.close()


def test_a_bomb_header_sniffs_as_an_image() -> None:
    assert sniff_is_image(bomb_png())


async def test_bomb_without_type_or_extension_is_answered_and_the_rest_still_are(
    harness: DiscordHarness, tmp_path: Path
) -> None:
    bomb = tmp_path / "upload"  # no extension, and dpytest sends no content type for it
    bomb.write_bytes(bomb_png())
    photo = write_jpeg(tmp_path / "photo.jpg")
    await dpytest.message("", channel=harness.photos, attachments=[str(bomb), str(photo)])
    replies = [m.content for m in harness.replies()]
    assert replies[0] == TooManyPixelsError.user_message
    assert len(replies) == 2 and "사진이네요" in replies[1]


async def test_an_attachment_that_fails_unexpectedly_does_not_stop_the_others(
    harness: DiscordHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = harness.bot.service.photo_outcome
    calls: list[int] = []

    async def flaky(chat: Any, image: bytes, *rest: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("scripted bug")
        return await real(chat, image, *rest)

    monkeypatch.setattr(harness.bot.service, "photo_outcome", flaky)
    first, second = write_jpeg(tmp_path / "a.jpg"), write_jpeg(tmp_path / "b.jpg")
    await dpytest.message("", channel=harness.photos, attachments=[str(first), str(second)])
    replies = [m.content for m in harness.replies()]
    assert replies[0] == messages.GENERIC_ERROR and "사진이네요" in replies[1]


async def test_server_errors_and_dropped_connections_are_retried_with_one_nonce(
    harness: DiscordHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = harness.bot.http
    real_send, real_cdn = http.send_message, http.get_from_cdn
    send_failures = [discord.DiscordServerError(FakeResponse(503, "Unavailable"), "down")]  # type: ignore[arg-type]
    cdn_failures: list[Exception] = [aiohttp.ServerDisconnectedError(), aiohttp.ClientPayloadError("cut")]
    nonces: list[str] = []

    async def send_message(channel_id: int, *, params: Any) -> Any:
        nonces.append(str((params.payload or {}).get("nonce")))
        if send_failures:
            raise send_failures.pop()
        return await real_send(channel_id, params=params)

    async def get_from_cdn(url: str) -> bytes:
        if cdn_failures:
            raise cdn_failures.pop()
        data: bytes = await real_cdn(url)
        return data

    monkeypatch.setattr(http, "send_message", send_message)
    monkeypatch.setattr(http, "get_from_cdn", get_from_cdn)
    await dpytest.message("", channel=harness.photos, attachments=[str(write_jpeg(tmp_path / "p.jpg"))])
    [reply] = [m.content for m in harness.replies()]
    assert "사진이네요" in reply
    assert len(nonces) == 2 and nonces[0] == nonces[1] != "None"  # Discord drops a repeat that landed
    assert not cdn_failures
