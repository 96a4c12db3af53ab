"""👍 👎 🔄 🔍 on Discord: component INTERACTION_CREATE payloads, as the gateway delivers them, go
through discord.py's own dispatch (``ConnectionState.parse_interaction_create`` → the view store →
``FeedbackButton``); the interaction responses are recorded by a local webhook adapter.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import discord
import discord.ext.test as dpytest
import pytest
from discord.ext.test import factories
from discord.webhook.async_ import async_context
from PIL import Image

from bot import feedback as fb
from bot.cogs.feedback import ANNOTATED_FILENAME, FeedbackCog
from bot.core import PhotoService
from bot.store import Store
from inference.errors import QueueFullError
from tests.fakes.inference_client import FakeInferenceClient
from tests.test_discord import (
    DiscordHarness,
    RecordingWebhookAdapter,
    interaction_payload,
    start_harness,
    write_jpeg,
)

UPDATE_MESSAGE = discord.InteractionResponseType.message_update.value
DEFERRED_UPDATE = discord.InteractionResponseType.deferred_message_update.value
DEFERRED_REPLY = discord.InteractionResponseType.deferred_channel_message.value
REPLY = discord.InteractionResponseType.channel_message.value
EPHEMERAL = discord.MessageFlags(ephemeral=True).value


class ComponentWebhookAdapter(RecordingWebhookAdapter):
    """Also records edits of the original response and follow-ups (with their files)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.edits: list[dict[str, Any]] = []
        self.followups: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def create_interaction_response(  # type: ignore[override]
        self, interaction_id: int, token: str, *, params: Any, **kwargs: Any
    ) -> dict[str, Any]:
        answer = await super().create_interaction_response(interaction_id, token, params=params, **kwargs)
        self.changed.set()
        return answer

    async def edit_original_interaction_response(  # type: ignore[override]
        self, application_id: int, token: str, *, payload: Any = None, **_: Any
    ) -> dict[str, Any]:
        self.edits.append(dict(payload or {}))
        self.changed.set()
        return factories.make_message_dict(self.channel, self.me, content=(payload or {}).get("content", ""))

    async def execute_webhook(  # type: ignore[override]
        self,
        webhook_id: int,
        token: str,
        *,
        payload: Any = None,
        multipart: Any = None,
        files: Any = None,
        **_: Any,
    ) -> dict[str, Any]:
        record = dict(payload or {})
        for part in multipart or []:  # with files the JSON travels as the multipart field payload_json
            if part["name"] == "payload_json":
                record.update(json.loads(part["value"]))
        record["files"] = [(f.filename, f.fp.read()) for f in files or []]
        self.followups.append(record)
        self.changed.set()
        return factories.make_message_dict(self.channel, self.me, content=record.get("content", ""))

    def all(self) -> int:
        return len(self.responses) + len(self.edits) + len(self.followups)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[DiscordHarness]:
    h = await start_harness(tmp_path, FakeInferenceClient(generators=("gpt2", "t5")))
    yield h
    await dpytest.empty_queue()
    await h.bot.service.store.close()


@pytest.fixture
def webhook(harness: DiscordHarness) -> Iterator[ComponentWebhookAdapter]:
    adapter = ComponentWebhookAdapter(harness.bot, harness.photos)
    token = async_context.set(adapter)
    yield adapter
    async_context.reset(token)


async def post_photo(harness: DiscordHarness, member: discord.Member | None = None) -> discord.Message:
    """Upload a photo; returns the bot's comment message."""
    path = write_jpeg(harness.tmp_path / f"photo-{len(harness.sent)}.jpg", (320, 240))
    await dpytest.message(
        "사진", channel=harness.photos, member=member or harness.alice, attachments=[str(path)]
    )
    [reply] = harness.replies()
    return reply


def custom_ids(harness: DiscordHarness) -> dict[str, str]:
    """action → custom_id of the buttons in the last message the bot sent."""
    [row] = harness.sent[-1]["components"]
    return {c["custom_id"].rsplit(":", 1)[1]: c["custom_id"] for c in row["components"]}


def press_payload(
    harness: DiscordHarness, comment: discord.Message, custom_id: str, member: discord.Member | None = None
) -> dict[str, Any]:
    """A button press (MESSAGE_COMPONENT) on ``comment``: the slash command payload's envelope."""
    payload = interaction_payload(harness, options=[], permissions=discord.Permissions.text(), member=member)
    payload.update(
        type=3,
        data={"custom_id": custom_id, "component_type": 2},
        message=comment_message_dict(harness, comment, custom_id),
    )
    return payload


def comment_message_dict(harness: DiscordHarness, comment: discord.Message, custom_id: str) -> dict[str, Any]:
    """The comment message as the gateway sends it with an interaction: with its buttons."""
    message = factories.make_message_dict(
        harness.photos, harness.me, id_num=comment.id, content=comment.content
    )
    comment_id = custom_id.split(":")[1]
    buttons = [
        {"type": 2, "style": 2, "label": action, "custom_id": f"fb:{comment_id}:{action}"}
        for action in ("up", "down", "again", "look")
    ]
    message["components"] = [{"type": 1, "components": buttons}]
    return message


async def press(
    harness: DiscordHarness,
    webhook: ComponentWebhookAdapter,
    comment: discord.Message,
    custom_id: str,
    member: discord.Member | None = None,
    *,
    calls: int = 1,
) -> None:
    """Dispatch the press like the gateway does; wait for ``calls`` interaction HTTP calls."""
    before = webhook.all()
    harness.bot._connection.parse_interaction_create(press_payload(harness, comment, custom_id, member))
    async with asyncio.timeout(10):
        while webhook.all() < before + calls:
            await webhook.changed.wait()
            webhook.changed.clear()


def labels(components: list[dict[str, Any]]) -> list[str]:
    [row] = components
    return [c["label"] for c in row["components"]]


# --- tests -----------------------------------------------------------------------------------------
async def test_comment_has_persistent_buttons_and_votes_update_counts(
    harness: DiscordHarness, webhook: ComponentWebhookAdapter
) -> None:
    comment = await post_photo(harness)
    ids = custom_ids(harness)
    assert labels(harness.sent[-1]["components"]) == ["👍", "👎", "🔄", "🔍"]
    assert all(c.startswith("fb:") for c in ids.values())
    bob = harness.config.members[1]
    await press(harness, webhook, comment, ids["up"])
    await press(harness, webhook, comment, ids["down"], member=bob)
    await press(harness, webhook, comment, ids["down"])  # alice changes her vote
    await press(harness, webhook, comment, ids["down"])  # … and withdraws it
    kinds = [r["type"] for r in webhook.responses]
    assert kinds == [UPDATE_MESSAGE] * 4  # one response each: the message with its new counts
    assert [labels(r["data"]["components"])[:2] for r in webhook.responses] == [
        ["👍 1", "👎"],
        ["👍 1", "👎 1"],
        ["👍", "👎 2"],
        ["👍", "👎 1"],
    ]


async def test_regenerate_edits_the_message_and_stops_at_the_limit(
    harness: DiscordHarness, webhook: ComponentWebhookAdapter
) -> None:
    comment = await post_photo(harness)
    ids = custom_ids(harness)
    for _ in range(3):
        await press(harness, webhook, comment, ids["again"], calls=2)  # defer + edit
    await press(harness, webhook, comment, ids["again"], calls=2)  # defer + refusal
    assert [r["type"] for r in webhook.responses] == [DEFERRED_UPDATE] * 4
    assert len({e["content"] for e in webhook.edits}) == 3
    assert all(labels(e["components"])[0] == "👍" for e in webhook.edits)
    [refusal] = webhook.followups
    assert refusal["content"] == fb.regenerate_limit_reached(3) and refusal["flags"] == EPHEMERAL
    assert harness.fake.regenerated == 3


async def test_look_sends_the_annotated_photo(
    harness: DiscordHarness, webhook: ComponentWebhookAdapter
) -> None:
    comment = await post_photo(harness)
    await press(harness, webhook, comment, custom_ids(harness)["look"], calls=2)
    assert webhook.responses[0]["type"] == DEFERRED_REPLY
    [followup] = webhook.followups
    [(name, data)] = followup["files"]
    assert followup["content"] == fb.LOOK_CAPTION and name == ANNOTATED_FILENAME
    drawn = Image.open(io.BytesIO(data)).convert("RGB")
    assert drawn.size == (320, 240) and drawn.getpixel((80, 120))[0] > 150  # the face box's yellow line


async def test_buttons_work_after_a_restart_and_refuse_other_channels(
    harness: DiscordHarness, webhook: ComponentWebhookAdapter
) -> None:
    comment = await post_photo(harness)
    ids = custom_ids(harness)
    await press(harness, webhook, comment, ids["up"])
    # "Restart": a new store and service on the same file, the Cog loaded again, no views in memory.
    bot = harness.bot
    await bot.service.store.close()
    store = Store(harness.settings.state_db)
    await store.open()
    bot.service = PhotoService(harness.client, store, harness.settings)
    await bot.remove_cog("Feedback")
    store_of_views = bot._connection._view_store
    store_of_views._views.clear()
    store_of_views._synced_message_views.clear()
    assert not store_of_views._dynamic_items
    await bot.add_cog(FeedbackCog(bot, bot.service, harness.settings))
    await press(harness, webhook, comment, ids["up"], member=harness.config.members[1])
    assert labels(webhook.responses[-1]["data"]["components"])[0] == "👍 2"
    # the same custom_id pressed under another message (a forged one) is refused
    other = await post_photo(harness)
    await press(harness, webhook, other, ids["up"])
    assert webhook.responses[-1]["type"] == REPLY
    assert webhook.responses[-1]["data"]["content"] == fb.WRONG_CHAT


async def test_forget_needs_manage_server(harness: DiscordHarness) -> None:
    await post_photo(harness)
    await dpytest.message("!forget", channel=harness.photos, member=harness.alice)
    [refused] = harness.replies()
    assert refused.content == fb.FORGET_ADMIN_ONLY
    harness.use_settings(admin_user_ids=frozenset({harness.alice.id}))
    harness.bot.get_cog("Feedback").settings = harness.settings  # type: ignore[union-attr]
    await dpytest.message("!forget", channel=harness.photos, member=harness.alice)
    [done] = harness.replies()
    assert done.content == fb.forgotten(1, 180)
    assert await harness.bot.service.store.feedback_by("generator") == []


async def test_errors_are_plain_replies_without_buttons(harness: DiscordHarness) -> None:
    harness.fake.fail_with = QueueFullError("busy")
    path = write_jpeg(harness.tmp_path / "busy.jpg")
    await dpytest.message("사진", channel=harness.photos, member=harness.alice, attachments=[str(path)])
    [reply] = harness.replies()
    assert reply.content == QueueFullError.user_message and not harness.sent[-1].get("components")
