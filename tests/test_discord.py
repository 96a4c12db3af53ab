"""The Discord adapter on dpytest's fake discord.py backend: auto-replies and prefix commands.

dpytest attachments carry no ``content_type`` and are downloaded through the client's HTTP object,
which is exactly the path the bot has to handle. Slash commands are in ``test_discord_slash.py``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import discord.ext.test as dpytest
import pytest
from discord.ext.test import backend, callbacks, factories
from discord.webhook.async_ import AsyncWebhookAdapter, async_context
from PIL import Image

from bot import messages
from bot.cogs.feedback import DiscordLateSender
from bot.cogs.photos import AttachmentKind, classify_upload, sniff_is_image
from bot.core import ChatRef, CommentClient, PhotoService
from bot.discord_app import (
    REQUIRED_PERMISSIONS,
    DiscordStartupError,
    MupleBot,
    invite_url,
    make_intents,
    run_discord,
)
from bot.store import Store
from inference.errors import ImageError, QueueFullError
from inference.results import CommentResult
from inference.serving.client import InferenceClient
from inference.serving.records import ReplyAddress
from inference.settings import Settings
from tests.conftest import make_settings
from tests.fakes.inference_client import FakeInferenceClient

IMAGE_ERROR_CLASSES: list[type[ImageError]] = [ImageError, *ImageError.__subclasses__()]
IMAGE_ERROR_REPLIES = {cls.user_message for cls in IMAGE_ERROR_CLASSES}
MANAGE_GUILD = discord.Permissions(manage_guild=True)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    """Test settings (no ``.env``); the weights folder only matters for generator descriptions."""
    overrides.setdefault("state_db", tmp_path / "state.sqlite3")
    return make_settings(overrides.pop("weights_dir", tmp_path / "weights"), **overrides)


def write_jpeg(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, (220, 140, 60)).save(path, "JPEG")
    return path


def write_noise_png(path: Path, side: int = 48) -> Path:
    """Incompressible pixels, so the file is comfortably over 1 KiB (the smallest size limit)."""
    pixels = random.Random(0).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), pixels).save(path)
    return path


@dataclass
class DiscordHarness:
    bot: MupleBot
    client: CommentClient
    store: Store
    settings: Settings
    tmp_path: Path
    sent: list[dict[str, Any]] = field(default_factory=list)  # payloads of every message the bot sent
    typing_in: list[int] = field(default_factory=list)  # channel ids that got a typing indicator

    @property
    def config(self) -> dpytest.RunnerConfig:
        return dpytest.get_config()

    @property
    def photos(self) -> discord.TextChannel:
        return self._text_channel(0)

    @property
    def chatter(self) -> discord.TextChannel:
        return self._text_channel(1)

    def _text_channel(self, index: int) -> discord.TextChannel:
        channel = self.config.channels[index]
        assert isinstance(channel, discord.TextChannel)
        return channel

    @property
    def alice(self) -> discord.Member:
        return self.config.members[0]

    def use_settings(self, **updates: Any) -> None:
        """Change settings after dpytest made the ids (channel/user ids are only known now)."""
        self.settings = self.settings.model_copy(update=updates)
        self.bot.settings = self.bot.service.settings = self.settings
        for cog in self.bot.cogs.values():
            cog.settings = self.settings  # type: ignore[attr-defined]

    @property
    def fake(self) -> FakeInferenceClient:
        assert isinstance(self.client, FakeInferenceClient)
        return self.client

    @property
    def me(self) -> discord.ClientUser:
        assert self.bot.user is not None
        return self.bot.user

    def replies(self) -> list[discord.Message]:
        out = []
        while not dpytest.sent_queue.empty():
            out.append(dpytest.get_message())
        return out


async def start_harness(tmp_path: Path, client: CommentClient, **overrides: Any) -> DiscordHarness:
    settings = settings_for(tmp_path, **overrides)
    store = Store(settings.state_db)
    await store.open()
    service = PhotoService(client, store, settings)
    # dpytest only caches members when the members intent is on; production intents are tested below.
    bot = MupleBot(service=service, settings=settings, intents=discord.Intents.all())
    allowed_mentions = bot.allowed_mentions
    dpytest.configure(bot, text_channels=["photos", "chatter"], voice_channels=0, members=["alice", "bob"])
    bot.allowed_mentions = allowed_mentions  # dpytest's fake state drops the bot's own choice
    await bot._async_setup_hook()  # after configure: binds dpytest's fake state to the running loop
    await bot.add_cogs()
    harness = DiscordHarness(bot=bot, client=client, store=store, settings=settings, tmp_path=tmp_path)
    _record_sent_payloads(harness)

    async def on_typing(channel: discord.abc.Messageable) -> None:
        harness.typing_in.append(getattr(channel, "id", 0))

    callbacks.set_callback(on_typing, "send_typing")
    return harness


def _record_sent_payloads(harness: DiscordHarness) -> None:
    fake_http = harness.bot.http
    real_send = fake_http.send_message

    async def send_message(channel_id: int, *, params: Any) -> Any:
        # dpytest's FakeHttp reads ``channel`` from its caller's frame, so keep that local here.
        channel = harness.bot.get_channel(channel_id) or harness.bot.get_partial_messageable(channel_id)
        harness.sent.append(dict(params.payload or {}, channel_id=channel.id))
        return await real_send(channel_id, params=params)

    fake_http.send_message = send_message  # type: ignore[method-assign,assignment]


@pytest.fixture
def client() -> FakeInferenceClient:
    return FakeInferenceClient(generators=("gpt2", "t5"))


@pytest.fixture
async def harness(tmp_path: Path, client: FakeInferenceClient) -> AsyncIterator[DiscordHarness]:
    h = await start_harness(tmp_path, client)
    yield h
    await dpytest.empty_queue()
    await h.store.close()


@pytest.fixture
def images(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    folder = tmp_path / "uploads"
    folder.mkdir()

    def make(name: str) -> Path:
        path = folder / name
        if name.startswith("photo"):
            return write_jpeg(path)
        if name.startswith("tall"):
            return write_jpeg(path, (32, 96))
        if name.startswith("noext-png"):
            buffer = io.BytesIO()
            Image.new("RGB", (40, 30), (10, 200, 90)).save(buffer, "PNG")
            path.write_bytes(buffer.getvalue())
            return path
        if name.startswith("broken"):
            path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
            return path
        if name.startswith("noise"):
            return write_noise_png(path)
        path.write_text("그냥 메모예요", encoding="utf-8")
        return path

    yield make


# --- auto-replies -------------------------------------------------------------------------------
def test_invite_url_asks_for_the_documented_permissions() -> None:
    url = invite_url(123)
    assert "client_id=123" in url and "scope=bot+applications.commands" in url
    assert "permissions=274877975552" in url  # the number in the README
    granted = {name for name, value in REQUIRED_PERMISSIONS if value}  # read_messages = View Channel
    assert granted == {"read_messages", "send_messages", "send_messages_in_threads", "read_message_history"}


def test_production_intents_request_message_content_only() -> None:
    intents = make_intents()
    assert intents.message_content  # attachments of ordinary channel messages need it
    assert intents.guild_messages and intents.dm_messages
    assert not intents.members and not intents.presences  # no other privileged intent


async def test_image_in_channel_gets_a_comment_as_reply(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    sent = await dpytest.message(
        "오늘 찍은 사진!", channel=harness.photos, attachments=[str(images("photo.jpg"))]
    )

    [reply] = harness.replies()
    chat_key = f"discord:{harness.photos.id}"
    assert harness.fake.calls == [(chat_key, None)]  # the stored default: no per-chat generator yet
    assert reply.content.endswith("(t5)") and "사진" in reply.content
    assert reply.channel.id == harness.photos.id
    [payload] = harness.sent
    assert int(payload["message_reference"]["message_id"]) == sent.id  # a reply to that message
    assert payload["allowed_mentions"]["parse"] == []  # generated text can never ping anyone
    assert harness.typing_in == [harness.photos.id]


async def test_one_reply_per_image_in_order_and_other_files_ignored(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    files = [images("photo.jpg"), images("notes.txt"), images("tall.jpg")]
    await dpytest.message("", channel=harness.photos, attachments=[str(p) for p in files])

    replies = [m.content for m in harness.replies()]
    assert len(replies) == 2 == len(harness.fake.calls)
    # The fake client's keyword follows the photo's orientation: landscape 기쁨, portrait 평온.
    assert replies[0].startswith("기쁨") and replies[1].startswith("평온")


async def test_images_without_content_type_or_extension_are_sniffed(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    await dpytest.message("", channel=harness.photos, attachments=[str(images("noext-png"))])
    assert len(harness.replies()) == 1

    await dpytest.message("", channel=harness.photos, attachments=[str(images("noext-text"))])
    assert harness.replies() == []  # unknown kind and not an image: quietly ignored
    assert len(harness.fake.calls) == 1


async def test_non_image_attachment_is_ignored_quietly(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    await dpytest.message("회의록", channel=harness.photos, attachments=[str(images("notes.txt"))])
    assert harness.replies() == []
    assert harness.fake.calls == []
    assert harness.typing_in == []


async def test_broken_image_gets_a_korean_error_reply(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    await dpytest.message("", channel=harness.photos, attachments=[str(images("broken.jpg"))])
    [reply] = harness.replies()
    assert reply.content in IMAGE_ERROR_REPLIES


async def test_busy_queue_reply_comes_from_the_core(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    harness.fake.fail_with = QueueFullError("test: queue full")
    await dpytest.message("", channel=harness.photos, attachments=[str(images("photo.jpg"))])
    [reply] = harness.replies()
    assert reply.content == QueueFullError.user_message


async def test_failed_download_gets_a_korean_reply(
    harness: DiscordHarness, images: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def get_from_cdn(url: str) -> bytes:
        raise discord.NotFound(FakeResponse(404, "Not Found"), "Unknown attachment")  # type: ignore[arg-type]

    monkeypatch.setattr(harness.bot.http, "get_from_cdn", get_from_cdn)
    await dpytest.message("", channel=harness.photos, attachments=[str(images("photo.jpg"))])
    assert [m.content for m in harness.replies()] == [messages.DOWNLOAD_FAILED]
    assert harness.fake.calls == []


async def test_image_over_the_size_limit_is_refused_before_download(
    tmp_path: Path, client: FakeInferenceClient, images: Callable[[str], Path]
) -> None:
    h = await start_harness(tmp_path, client, max_image_bytes=1024)
    try:
        path = images("noise.png")
        assert path.stat().st_size > 1024
        downloads: list[str] = []
        real_get = h.bot.http.get_from_cdn

        async def get_from_cdn(url: str) -> bytes:
            downloads.append(url)
            return await real_get(url)

        h.bot.http.get_from_cdn = get_from_cdn  # type: ignore[method-assign]
        # dpytest.message() reports size 0; make_attachment reports the real file size.
        backend.make_message("", h.alice, h.photos, attachments=[backend.make_attachment(path)])
        await dpytest.run_all_events()

        [reply] = h.replies()
        assert reply.content == messages.file_too_big(1024, "discord")
        assert downloads == [] and client.calls == []
    finally:
        await dpytest.empty_queue()
        await h.store.close()


async def test_only_configured_channels_are_watched(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    harness.use_settings(discord_channel_ids=frozenset({harness.photos.id}))
    photo = str(images("photo.jpg"))
    await dpytest.message("", channel=harness.chatter, attachments=[photo])
    assert harness.replies() == []
    await dpytest.message("", channel=harness.photos, attachments=[photo])
    assert len(harness.replies()) == 1
    assert [key for key, _ in harness.fake.calls] == [f"discord:{harness.photos.id}"]


async def test_disallowed_dm_is_told_why(harness: DiscordHarness, images: Callable[[str], Path]) -> None:
    harness.use_settings(allowed_chat_ids=frozenset({harness.photos.id}))
    dm = await harness.alice.create_dm()
    backend.make_message(
        "", harness.alice._user, dm, attachments=[backend.make_attachment(images("photo.jpg"))]
    )
    await dpytest.run_all_events()
    assert [m.content for m in harness.replies()] == [messages.NOT_ALLOWED]
    assert harness.fake.calls == []


async def test_direct_message_image_is_answered_and_keyed_by_user(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    dm = await harness.alice.create_dm()
    backend.make_message(
        "", harness.alice._user, dm, attachments=[backend.make_attachment(images("photo.jpg"))]
    )
    await dpytest.run_all_events()

    [reply] = harness.replies()
    assert reply.content.endswith("(t5)")
    assert harness.fake.calls == [(f"discord:dm:{harness.alice.id}", None)]
    assert harness.typing_in == [dm.id]


async def test_bot_authors_are_never_answered(harness: DiscordHarness, images: Callable[[str], Path]) -> None:
    state = backend.get_state()
    robot = state.store_user(factories.make_user_dict("robot", "0042", None, bot=True))  # type: ignore[arg-type]
    backend.make_member(robot, harness.photos.guild)
    photo = backend.make_attachment(images("photo.jpg"))

    backend.make_message("", robot, harness.photos, attachments=[photo])
    backend.make_message("", harness.me, harness.photos, attachments=[photo])  # itself
    await dpytest.run_all_events()
    assert harness.replies() == []
    assert harness.fake.calls == []


def test_attachment_kind_from_type_then_name_then_bytes(tmp_path: Path) -> None:
    assert classify_upload("image/png", "x.txt") is AttachmentKind.IMAGE  # content type first
    assert classify_upload("image/jpeg; charset=binary", "x") is AttachmentKind.IMAGE
    assert classify_upload("video/mp4", "x.jpg") is AttachmentKind.OTHER
    assert classify_upload(None, "IMG_0001.HEIC") is AttachmentKind.IMAGE  # then the file name
    assert classify_upload("application/octet-stream", "x.jpg") is AttachmentKind.IMAGE
    assert classify_upload(None, "report.pdf") is AttachmentKind.OTHER
    assert classify_upload(None, "blob") is AttachmentKind.UNKNOWN  # then the bytes decide
    assert classify_upload("", "x.unknownext") is AttachmentKind.UNKNOWN
    assert sniff_is_image(write_jpeg(tmp_path / "a").read_bytes())
    assert not sniff_is_image(b"%PDF-1.7 not an image")
    assert not sniff_is_image(b"")


# --- prefix commands ----------------------------------------------------------------------------
async def test_prefix_model_lists_generators_with_current_marked(harness: DiscordHarness) -> None:
    await dpytest.message("!model", channel=harness.photos)
    [reply] = harness.replies()
    lines = reply.content.splitlines()
    assert "✅ t5" in lines and "▫️ gpt2" in lines


async def test_prefix_model_switch_needs_manage_server(
    harness: DiscordHarness, images: Callable[[str], Path]
) -> None:
    await dpytest.message("!model gpt2", channel=harness.photos, member=harness.alice)
    [refusal] = harness.replies()
    assert refusal.content == messages.GUILD_MANAGER_ONLY
    assert await harness.store.get_generator(f"discord:{harness.photos.id}") is None

    managers = backend.make_role("managers", harness.photos.guild, permissions=MANAGE_GUILD.value)
    await dpytest.add_role(harness.alice, managers)
    await dpytest.message("!model GPT2", channel=harness.photos, member=harness.alice)
    [confirmation] = harness.replies()
    assert confirmation.content == messages.model_switched("gpt2")
    assert await harness.store.get_generator(f"discord:{harness.photos.id}") == "gpt2"

    # The next photo in that channel uses the switched generator; other channels keep the default.
    photo = str(images("photo.jpg"))
    await dpytest.message("", channel=harness.photos, attachments=[photo])
    await dpytest.message("", channel=harness.chatter, attachments=[photo])
    assert [gen for _, gen in harness.fake.calls] == ["gpt2", None]
    assert [m.content.rsplit(" ", 1)[-1] for m in harness.replies()] == ["(gpt2)", "(t5)"]


async def test_prefix_model_switch_with_configured_admin_role(
    tmp_path: Path, client: FakeInferenceClient
) -> None:
    h = await start_harness(tmp_path, client, discord_admin_role="봇관리")
    try:
        role = backend.make_role("봇관리", h.photos.guild, permissions=0)
        await dpytest.add_role(h.alice, role)
        await dpytest.message("!model gpt2", channel=h.photos, member=h.alice)
        [reply] = h.replies()
        assert reply.content == messages.model_switched("gpt2")
    finally:
        await dpytest.empty_queue()
        await h.store.close()


async def test_prefix_model_unknown_name(harness: DiscordHarness) -> None:
    owner = backend.make_role(
        "owner", harness.photos.guild, permissions=discord.Permissions(administrator=True).value
    )
    await dpytest.add_role(harness.alice, owner)
    await dpytest.message("!model kogpt", channel=harness.photos, member=harness.alice)
    [reply] = harness.replies()
    assert reply.content == messages.unknown_model("kogpt", ["gpt2", "t5"])


async def test_dm_model_switch_is_the_users_own(harness: DiscordHarness) -> None:
    dm = await harness.alice.create_dm()
    backend.make_message("!model gpt2", harness.alice._user, dm)
    await dpytest.run_all_events()
    [reply] = harness.replies()
    assert reply.content == messages.model_switched("gpt2")
    assert await harness.store.get_generator(f"discord:dm:{harness.alice.id}") == "gpt2"


async def test_prefix_help_and_admin_only_stats(harness: DiscordHarness) -> None:
    await dpytest.message("!help", channel=harness.photos)
    [help_reply] = harness.replies()
    assert help_reply.content == harness.bot.service.help_text("discord")
    assert "!model" in help_reply.content

    await dpytest.message("!stats", channel=harness.photos, member=harness.alice)
    assert [m.content for m in harness.replies()] == [messages.ADMIN_ONLY]

    harness.use_settings(admin_user_ids=frozenset({harness.alice.id}))
    await dpytest.message("!stats", channel=harness.photos, member=harness.alice)
    [stats] = harness.replies()
    assert stats.content == await harness.bot.service.stats_report()
    assert stats.content.startswith("📊")


# --- slash commands: interaction payloads through the command tree ------------------------------
class RecordingWebhookAdapter(AsyncWebhookAdapter):
    """Answers interaction callbacks locally (discord.py sends them over HTTPS) and records them."""

    def __init__(self, bot: MupleBot, channel: discord.TextChannel) -> None:
        super().__init__()
        self.bot = bot
        self.channel = channel
        self.responses: list[dict[str, Any]] = []
        assert bot.user is not None
        self.me = bot.user

    async def create_interaction_response(  # type: ignore[override]
        self, interaction_id: int, token: str, *, params: Any, **_: Any
    ) -> dict[str, Any]:
        payload = dict(params.payload)
        self.responses.append(payload)
        answer: dict[str, Any] = {"interaction": {"id": str(interaction_id), "type": 2}}
        if payload["type"] == discord.InteractionResponseType.channel_message.value:
            content = payload["data"].get("content", "")
            message = factories.make_message_dict(self.channel, self.me, content=content)
            answer["resource"] = {"type": payload["type"], "message": message}
        return answer


@pytest.fixture
def webhook(harness: DiscordHarness) -> Iterator[RecordingWebhookAdapter]:
    adapter = RecordingWebhookAdapter(harness.bot, harness.photos)
    token = async_context.set(adapter)
    yield adapter
    async_context.reset(token)


def interaction_payload(
    harness: DiscordHarness,
    *,
    options: list[dict[str, Any]],
    permissions: discord.Permissions,
    member: discord.Member | None = None,
    autocomplete: bool = False,
) -> dict[str, Any]:
    """A ``/model`` INTERACTION_CREATE payload in a guild channel, as the gateway delivers it."""
    member = member or harness.alice
    channel = harness.photos
    guild = channel.guild
    return {
        "id": str(discord.utils.time_snowflake(discord.utils.utcnow())),  # fresh: not expired
        "application_id": str(harness.me.id),
        "type": 4 if autocomplete else 2,  # APPLICATION_COMMAND_AUTOCOMPLETE / APPLICATION_COMMAND
        "token": "interaction-token",
        "version": 1,
        "guild_id": str(guild.id),
        "channel_id": str(channel.id),
        "channel": {"id": str(channel.id), "type": 0, "guild_id": str(guild.id), "name": channel.name},
        "member": {
            "user": {"id": str(member.id), "username": member.name, "discriminator": "0001", "avatar": None},
            "roles": [str(role.id) for role in member.roles if not role.is_default()],
            "joined_at": "2025-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": str(permissions.value),
        },
        "data": {"id": "1", "name": "model", "type": 1, "options": options},
        "locale": "ko",
        "guild_locale": "ko",
        "app_permissions": str(discord.Permissions.text().value),
        "entitlements": [],
        "attachment_size_limit": 10 * 1024 * 1024,
        "authorizing_integration_owners": {"0": str(guild.id)},
        "context": 0,
    }


async def invoke(harness: DiscordHarness, payload: dict[str, Any]) -> None:
    interaction: discord.Interaction[MupleBot] = discord.Interaction(
        data=payload,  # type: ignore[arg-type]
        state=harness.bot._connection,
    )
    await harness.bot.tree._call(interaction)


EPHEMERAL = discord.MessageFlags(ephemeral=True).value


async def test_slash_model_lists_generators(
    harness: DiscordHarness, webhook: RecordingWebhookAdapter
) -> None:
    await invoke(harness, interaction_payload(harness, options=[], permissions=discord.Permissions.text()))
    [response] = webhook.responses
    assert response["type"] == discord.InteractionResponseType.channel_message.value
    assert response["data"]["content"] == await harness.bot.service.models_text(
        ChatRef("discord", harness.photos.id, harness.alice.id, is_group=True)
    )
    assert "✅ t5" in response["data"]["content"].splitlines()


async def test_slash_model_switch_is_refused_without_manage_server(
    harness: DiscordHarness, webhook: RecordingWebhookAdapter
) -> None:
    options = [{"type": 3, "name": "name", "value": "gpt2"}]
    await invoke(
        harness, interaction_payload(harness, options=options, permissions=discord.Permissions.text())
    )
    [response] = webhook.responses
    assert response["data"]["content"] == messages.GUILD_MANAGER_ONLY
    assert response["data"]["flags"] & EPHEMERAL  # only the asker sees the refusal
    assert await harness.store.get_generator(f"discord:{harness.photos.id}") is None


async def test_slash_model_switch_with_manage_server_is_persisted(
    harness: DiscordHarness, webhook: RecordingWebhookAdapter
) -> None:
    options = [{"type": 3, "name": "name", "value": "gpt2"}]
    permissions = discord.Permissions.text() | discord.Permissions(manage_guild=True)
    await invoke(harness, interaction_payload(harness, options=options, permissions=permissions))
    [response] = webhook.responses
    assert response["data"]["content"] == messages.model_switched("gpt2")
    assert await harness.store.get_generator(f"discord:{harness.photos.id}") == "gpt2"


async def test_slash_model_autocomplete_offers_generator_names(
    harness: DiscordHarness, webhook: RecordingWebhookAdapter
) -> None:
    options = [{"type": 3, "name": "name", "value": "g", "focused": True}]
    payload = interaction_payload(
        harness, options=options, permissions=discord.Permissions.text(), autocomplete=True
    )
    await invoke(harness, payload)
    [response] = webhook.responses
    assert response["type"] == discord.InteractionResponseType.autocomplete_result.value
    assert response["data"]["choices"] == [{"name": "gpt2", "value": "gpt2"}]


# --- start-up ------------------------------------------------------------------------------------
async def test_setup_hook_adds_cogs_and_syncs_to_the_test_guild(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, discord_test_guild_id=1234)
    service = PhotoService(FakeInferenceClient(), Store(settings.state_db), settings)
    bot = MupleBot(service=service, settings=settings)
    synced: list[tuple[int, list[str]]] = []

    async def bulk_upsert_guild_commands(
        application_id: int, guild_id: int, payload: list[dict[str, Any]]
    ) -> Any:
        synced.append((guild_id, sorted(command["name"] for command in payload)))
        return [
            dict(command, id=str(n + 1), application_id="99", version="1")
            for n, command in enumerate(payload)
        ]

    bot.http.bulk_upsert_guild_commands = bulk_upsert_guild_commands  # type: ignore[method-assign,assignment]
    bot._application = discord.utils.MISSING
    bot._connection.application_id = 99
    await bot.setup_hook()
    assert sorted(bot.cogs) == ["Feedback", "Info", "Models", "Photos"]
    assert synced == [(1234, ["forget", "help", "model", "stats"])]
    await bot.close()


async def test_sync_failure_keeps_the_bot_running(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path)
    service = PhotoService(FakeInferenceClient(), Store(settings.state_db), settings)
    bot = MupleBot(service=service, settings=settings)
    bot._connection.application_id = 99

    async def bulk_upsert_global_commands(application_id: int, payload: list[dict[str, Any]]) -> Any:
        response = FakeResponse(403, "Forbidden")
        raise discord.Forbidden(response, {"code": 50001, "message": "Missing Access"})  # type: ignore[arg-type]

    bot.http.bulk_upsert_global_commands = bulk_upsert_global_commands  # type: ignore[method-assign,assignment]
    await bot.add_cogs()
    assert await bot.sync_app_commands() == []
    assert "applications.commands" in caplog.text
    await bot.close()


@dataclass
class FakeResponse:
    status: int
    reason: str


@pytest.mark.parametrize(
    ("refusal", "hint"),
    [
        # what discord.py raises for the gateway's close code 4014 / an HTTP 401 on login
        (discord.PrivilegedIntentsRequired(shard_id=None), "MESSAGE CONTENT INTENT"),
        (discord.LoginFailure("Improper token has been passed."), "Reset Token"),
    ],
)
async def test_refused_start_stops_with_instructions_and_closes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    refusal: Exception,
    hint: str,
) -> None:
    secret = "very-secret-discord-token"
    settings = settings_for(tmp_path, discord_bot_token=secret)
    service = PhotoService(FakeInferenceClient(), Store(settings.state_db), settings)
    bots: list[MupleBot] = []

    async def login(self: MupleBot, token: str) -> None:
        assert token == secret
        bots.append(self)
        if isinstance(refusal, discord.LoginFailure):
            raise refusal

    async def connect(self: MupleBot, *, reconnect: bool = True) -> None:
        raise refusal

    monkeypatch.setattr(MupleBot, "login", login)
    monkeypatch.setattr(MupleBot, "connect", connect)
    with pytest.raises(DiscordStartupError, match=hint):
        await run_discord(settings, service)
    assert hint in caplog.text  # the log says how to fix it, too
    assert secret not in caplog.text
    [bot] = bots
    assert bot.is_closed()


async def test_run_discord_closes_cleanly_when_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, discord_bot_token="t")
    service = PhotoService(FakeInferenceClient(), Store(settings.state_db), settings)
    connected = asyncio.Event()
    bots: list[MupleBot] = []

    async def login(self: MupleBot, token: str) -> None:
        bots.append(self)

    async def connect(self: MupleBot, *, reconnect: bool = True) -> None:
        connected.set()
        await asyncio.Event().wait()  # a gateway session that lasts until cancelled

    monkeypatch.setattr(MupleBot, "login", login)
    monkeypatch.setattr(MupleBot, "connect", connect)
    task = asyncio.create_task(run_discord(settings, service))
    await asyncio.wait_for(connected.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    [bot] = bots
    assert bot.is_closed()


def test_discord_adapter_never_imports_the_models() -> None:
    code = (
        "import sys, bot.discord_app, bot.cogs.photos, bot.cogs.models, bot.cogs.info\n"
        "heavy = sorted(m for m in ('torch', 'ultralytics', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


# --- end to end: the real inference client and worker on tiny random weights ---------------------
async def test_real_worker_behind_the_discord_bot(
    tmp_path: Path,
    tiny_weights_dir: Path,
    zidane_jpg: Path,
    images: Callable[[str], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.core")
    settings = make_settings(tiny_weights_dir, state_db=tmp_path / "state.sqlite3", max_wait_ms=0)
    async with InferenceClient(settings) as client:
        h = await start_harness(tmp_path, client, weights_dir=tiny_weights_dir, max_wait_ms=0)
        try:
            photo = str(zidane_jpg)  # a real photo with faces, named .jpg, no content type
            await dpytest.message("", channel=h.photos, attachments=[photo])
            [comment] = h.replies()
            assert comment.content.strip()
            assert comment.content not in IMAGE_ERROR_REPLIES | {messages.GENERIC_ERROR}

            managers = backend.make_role("managers", h.photos.guild, permissions=MANAGE_GUILD.value)
            await dpytest.add_role(h.alice, managers)
            await dpytest.message("!model gpt2", channel=h.photos, member=h.alice)
            await dpytest.message("", channel=h.photos, attachments=[photo])
            [switched, second] = h.replies()
            assert switched.content == messages.model_switched("gpt2")
            assert second.content.strip() and second.content not in IMAGE_ERROR_REPLIES

            await dpytest.message("", channel=h.photos, attachments=[str(images("broken.jpg"))])
            [broken] = h.replies()
            assert broken.content in IMAGE_ERROR_REPLIES  # the worker's typed error, in Korean
        finally:
            await dpytest.empty_queue()
            await h.store.close()
        stats = client.stats()
    assert stats.jobs_done == 2 and stats.jobs_failed == 1
    used = [r.getMessage() for r in caplog.records if r.getMessage().startswith("commented photo")]
    assert [" with t5 " in line for line in used] == [True, False]
    assert " with gpt2 " in used[1]


async def test_a_result_after_a_restart_goes_out_as_a_reply_with_buttons(harness: DiscordHarness) -> None:
    """``DiscordLateSender`` (shared queue): the photo's message is gone from memory, its address is not."""
    sender = DiscordLateSender(harness.bot, harness.bot.service)
    address = ReplyAddress(
        "discord", harness.photos.id, 5555, f"discord:{harness.photos.id}", "77", "ab" * 32
    )
    await sender.send_comment(address, CommentResult("늦었지만 좋아요 😊", ["기쁨"], [], [], "t5"))
    await sender.send_text(address, QueueFullError.user_message)
    comment, error = harness.sent
    assert (
        comment["content"] == "늦었지만 좋아요 😊" and int(comment["message_reference"]["message_id"]) == 5555
    )
    assert comment["components"] and "components" not in error  # buttons under the comment only
    assert error["content"] == QueueFullError.user_message
    assert comment["allowed_mentions"]["parse"] == []
    record = await harness.store.comment(1)  # stored before sending, like any comment
    assert record is not None
    assert (record.photo_message_id, record.photo_ref, record.text) == (5555, "77", "늦었지만 좋아요 😊")
