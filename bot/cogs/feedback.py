"""Discord side of the feedback buttons (👍 👎 🔄 🔍) and ``/forget``; rules and texts in ``bot.feedback``.

The buttons are ``discord.ui.DynamicItem``s (discord.py's ``views/dynamic_persistent.py`` pattern):
the comment id and the action live in the ``custom_id`` (``fb:<id>:<action>``), and the item class is
registered at start-up, so buttons of messages sent before a restart keep working without keeping
one ``View`` per message in memory.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot import messages
from bot.cogs.common import chat_ref_for, clip, may_switch_model, send_reply
from bot.core import ChatRef, PhotoService
from bot.feedback import (
    ACTIONS,
    BUTTON_PATTERN,
    FORGET_ADMIN_ONLY,
    LOOK_BUSY,
    LOOK_CAPTION,
    Action,
    Buttons,
    Outcome,
    button_data,
)
from bot.store import CommentRecord
from inference.results import CommentResult
from inference.serving.records import ReplyAddress
from inference.settings import Settings

logger = logging.getLogger(__name__)

_STYLES = {
    "up": discord.ButtonStyle.secondary,
    "down": discord.ButtonStyle.secondary,
    "again": discord.ButtonStyle.primary,
    "look": discord.ButtonStyle.secondary,
}
ANNOTATED_FILENAME = "mupl-detections.jpg"


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=BUTTON_PATTERN):
    """One of the four buttons; rebuilt from its ``custom_id`` on every press (also after a restart)."""

    def __init__(self, comment_id: int, action: Action, label: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label or Buttons(comment_id).label(action),
                style=_STYLES[action],
                custom_id=button_data(comment_id, action),
            )
        )
        self.comment_id = comment_id
        self.action: Action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> FeedbackButton:
        action = match["action"]
        assert action in ACTIONS  # the template allows nothing else
        return cls(int(match["comment_id"]), action)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        service = getattr(interaction.client, "service", None)
        if not isinstance(service, PhotoService):  # registered by FeedbackCog on a MupleBot only
            raise TypeError("feedback button pressed on a client without a PhotoService")
        await answer_press(interaction, service, self.comment_id, self.action)


def feedback_view(buttons: Buttons) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ACTIONS:
        view.add_item(FeedbackButton(buttons.comment_id, action, buttons.label(action)))
    return view


async def send_comment(
    message: discord.Message,
    attachment: discord.Attachment,
    chat: ChatRef,
    result: CommentResult,
    image: bytes,
    service: PhotoService,
    *,
    nonce: str,
    window_s: float = 0.0,
) -> None:
    """Reply to a photo with its comment and the buttons (the comment is stored first); transient send
    failures are retried under the reply's nonce, so a retry never posts the comment twice."""
    buttons = await service.feedback.record(
        platform="discord",
        chat_key=chat.key,
        chat_id=chat.chat_id,
        photo_message_id=message.id,
        photo_ref=str(attachment.id),
        image=image,
        result=result,
    )
    view = feedback_view(buttons) if buttons is not None else discord.utils.MISSING
    sent = await send_reply(message, result.comment, nonce=nonce, window_s=window_s, view=view)
    if sent is not None and buttons is not None:
        await service.feedback.sent(buttons, sent.id)


async def answer_press(
    interaction: discord.Interaction[Any], service: PhotoService, comment_id: int, action: Action
) -> None:
    """One press: every interaction gets exactly one response (Discord shows a failure otherwise)."""
    channel = interaction.channel
    if channel is None or not isinstance(channel, discord.abc.Messageable):
        await interaction.response.send_message(messages.GENERIC_ERROR, ephemeral=True)
        return
    chat = chat_ref_for(channel, interaction.user)
    message_id = interaction.message.id if interaction.message is not None else None
    found = await service.feedback.find(comment_id, chat.key, message_id)
    if isinstance(found, Outcome):
        await interaction.response.send_message(found.notice, ephemeral=True)
        return
    feedback = service.feedback
    if action in ("up", "down"):
        outcome = await feedback.vote(found, f"discord:{interaction.user.id}", 1 if action == "up" else -1)
        await _respond(interaction, outcome)
    elif action == "again":
        await interaction.response.defer()  # generating may take longer than Discord's 3 s
        await _respond(interaction, await feedback.regenerate(found))
    else:
        await _look(interaction, service, found)


async def _respond(interaction: discord.Interaction[Any], outcome: Outcome) -> None:
    """New counts/text on the message itself; a refusal only to the presser."""
    done = interaction.response.is_done()
    if outcome.buttons is None:
        if done:
            await interaction.followup.send(outcome.notice, ephemeral=True)
        else:
            await interaction.response.send_message(outcome.notice, ephemeral=True)
        return
    view = feedback_view(outcome.buttons)
    content = clip(outcome.text) if outcome.text is not None else discord.utils.MISSING
    if done:
        await interaction.edit_original_response(content=content, view=view)
    else:
        await interaction.response.edit_message(content=content, view=view)


async def _look(interaction: discord.Interaction[Any], service: PhotoService, record: CommentRecord) -> None:
    """🔍: fetch the photo message again, draw the boxes, send the picture as the press's reply."""
    feedback = service.feedback
    with feedback.claim(record, "look") as mine:
        if not mine:
            await interaction.response.send_message(LOOK_BUSY, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        photo = await _fetch(interaction, record)
        drawn = await feedback.annotated_photo(record, photo)
    if isinstance(drawn, bytes):
        await interaction.followup.send(
            LOOK_CAPTION, file=discord.File(io.BytesIO(drawn), ANNOTATED_FILENAME)
        )
    else:
        await interaction.followup.send(drawn)


async def _fetch(interaction: discord.Interaction[Any], record: CommentRecord) -> bytes | None:
    channel = interaction.channel
    try:
        if not isinstance(channel, discord.abc.Messageable):
            return None
        message = await channel.fetch_message(record.photo_message_id)
        attachment = next((a for a in message.attachments if str(a.id) == record.photo_ref), None)
        return await attachment.read() if attachment is not None else None
    except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
        logger.info("🔍 of comment %d: photo message not available: %s", record.id, exc)
        return None


class FeedbackCog(commands.Cog, name="Feedback"):
    """Registers the persistent buttons and serves ``/forget``."""

    def __init__(self, bot: commands.Bot, service: PhotoService, settings: Settings) -> None:
        self.bot = bot
        self.service = service
        self.settings = settings

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(FeedbackButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(FeedbackButton)

    @commands.hybrid_command(name="forget", description="이 채널의 댓글 기록을 지워요 (서버에서는 관리자)")  # type: ignore[arg-type]
    async def forget(self, ctx: commands.Context[commands.Bot]) -> None:
        chat = chat_ref_for(ctx.channel, ctx.author)
        if not self.service.is_allowed(chat):
            await ctx.send(messages.NOT_ALLOWED, ephemeral=True)
            return
        if not may_switch_model(ctx, self.service, self.settings):
            logger.info("user %s may not forget the records of %s", ctx.author.id, chat.key)
            await ctx.send(FORGET_ADMIN_ONLY, ephemeral=True)
            return
        await ctx.send(await self.service.feedback.forget(chat.key))


class DiscordLateSender:
    """Replies to photos whose result came after a restart (``bot.late_replies``), like
    ``send_comment`` but addressed by channel and message id."""

    def __init__(self, client: discord.Client, service: PhotoService) -> None:
        self._client = client
        self._service = service

    async def send_comment(self, address: ReplyAddress, result: CommentResult) -> None:
        feedback = self._service.feedback
        buttons = await feedback.record_late("discord", address, result)
        view = feedback_view(buttons) if buttons is not None else discord.utils.MISSING
        sent = await self._send(address, result.comment, view)
        if sent is not None and buttons is not None:
            await feedback.sent(buttons, sent.id)

    async def send_text(self, address: ReplyAddress, text: str) -> None:
        await self._send(address, text, discord.utils.MISSING)

    async def _send(self, address: ReplyAddress, text: str, view: Any) -> discord.Message | None:
        try:
            channel = self._client.get_channel(address.chat_id) or await self._client.fetch_channel(
                address.chat_id
            )
            if not isinstance(channel, discord.abc.Messageable):
                logger.warning("late reply: channel %s cannot take messages", address.chat_id)
                return None
            reference = discord.MessageReference(
                message_id=address.message_id, channel_id=address.chat_id, fail_if_not_exists=False
            )
            return await channel.send(
                clip(text), reference=reference, allowed_mentions=discord.AllowedMentions.none(), view=view
            )
        except discord.HTTPException as exc:
            logger.warning("could not send the late reply in channel %s: %s", address.chat_id, exc)
            return None
