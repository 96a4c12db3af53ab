"""Auto-reply: every image attachment in a watched channel or DM gets a Korean comment as a reply."""

from __future__ import annotations

import contextlib
import io
import logging
import mimetypes
from enum import Enum
from pathlib import PurePosixPath

import aiohttp
import discord
import pillow_heif
from discord.ext import commands
from PIL import Image, UnidentifiedImageError

from bot import messages
from bot.cogs.common import chat_ref_for, clip
from bot.cogs.feedback import send_comment
from bot.core import ChatRef, PhotoService
from bot.feedback import photo_sha256
from inference.serving.records import ReplyAddress
from inference.settings import Settings

logger = logging.getLogger(__name__)

# Formats the pipeline decodes; mimetypes does not know HEIC/HEIF/AVIF on every Python.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
# Content types that say nothing about the file, so the name and the bytes must decide.
VAGUE_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class AttachmentKind(Enum):
    IMAGE = "image"  # content type or file name says image: broken files get an error reply
    OTHER = "other"  # clearly something else (video, text, ...): ignored quietly
    UNKNOWN = "unknown"  # no usable hint: the bytes decide, and non-images are ignored quietly


def classify_attachment(attachment: discord.Attachment) -> AttachmentKind:
    return classify_upload(attachment.content_type, attachment.filename)


def classify_upload(content_type: str | None, filename: str) -> AttachmentKind:
    """Decide by content type, then by file name (``content_type`` is missing for some uploads)."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if content_type.startswith("image/"):
        return AttachmentKind.IMAGE
    if content_type not in VAGUE_CONTENT_TYPES:
        return AttachmentKind.OTHER
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return AttachmentKind.IMAGE
    guessed, _ = mimetypes.guess_type(f"file{suffix}") if suffix else (None, None)
    return AttachmentKind.OTHER if guessed else AttachmentKind.UNKNOWN


def sniff_is_image(data: bytes) -> bool:
    """True when the bytes start like an image Pillow (or pillow-heif) can open; reads headers only."""
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    try:  # iPhone HEIC/HEIF photos, unless pillow-heif's opener is registered with Pillow anyway
        return bool(pillow_heif.is_supported(data))
    except (OSError, ValueError):
        return False


class PhotosCog(commands.Cog, name="Photos"):
    """Watches messages and answers each image attachment with one reply."""

    def __init__(self, service: PhotoService, settings: Settings) -> None:
        self.service = service
        self.settings = settings

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not message.attachments:
            return  # bots (this one included) are never answered
        if not self.watches(message.channel):
            return
        chat = chat_ref_for(message.channel, message.author)
        candidates = [a for a in message.attachments if classify_attachment(a) is not AttachmentKind.OTHER]
        if not candidates:
            logger.debug("message %s in %s has no image attachments", message.id, chat.key)
            return
        if not self.service.is_allowed(chat):
            logger.info("ignoring photo from %s: chat not allowed", chat.key)
            if not chat.is_group:  # in a DM the user is talking to us: say why nothing happens
                await send_reply(message, messages.NOT_ALLOWED)
            return
        async with contextlib.AsyncExitStack() as stack:
            await show_typing(stack, message.channel)
            # One image after another: replies keep the attachment order and the per-chat limit
            # of the queue is never hit by our own message.
            for attachment in candidates:
                await self.answer_attachment(message, chat, attachment)

    def watches(self, channel: discord.abc.Messageable) -> bool:
        """DMs always; guild channels when DISCORD_CHANNEL_IDS is empty or lists them (or their
        parent, for threads)."""
        if getattr(channel, "guild", None) is None:
            return True
        wanted = self.settings.discord_channel_ids
        if not wanted:
            return True
        return getattr(channel, "id", None) in wanted or getattr(channel, "parent_id", None) in wanted

    async def answer_attachment(
        self, message: discord.Message, chat: ChatRef, attachment: discord.Attachment
    ) -> None:
        kind = classify_attachment(attachment)
        limit = self.settings.max_image_bytes
        if attachment.size > limit:
            if kind is AttachmentKind.IMAGE:  # refused before downloading a byte
                logger.info("attachment from %s too big: %d bytes", chat.key, attachment.size)
                await send_reply(message, messages.file_too_big(limit, "discord"))
            return
        try:
            data = await attachment.read()
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            logger.warning("could not download attachment %s from %s: %s", attachment.id, chat.key, exc)
            await send_reply(message, messages.DOWNLOAD_FAILED)
            return
        if kind is AttachmentKind.UNKNOWN and not sniff_is_image(data):
            logger.debug("attachment %s from %s is not an image; ignored", attachment.id, chat.key)
            return
        address = ReplyAddress(
            platform="discord",
            chat_id=message.channel.id,
            message_id=message.id,
            chat_key=chat.key,
            photo_ref=str(attachment.id),
            photo_sha256=photo_sha256(data),
        )
        reply = await self.service.comment_result(chat, data, address)
        if isinstance(reply, str):
            await send_reply(message, reply)
        else:
            await send_comment(message, attachment, chat, reply, data, self.service)


async def show_typing(stack: contextlib.AsyncExitStack, channel: discord.abc.Messageable) -> None:
    """Start the typing indicator; it is only cosmetic, so a refusal never stops the reply."""
    try:
        await stack.enter_async_context(channel.typing())
    except discord.HTTPException as exc:
        logger.debug("typing indicator refused: %s", exc)


async def send_reply(message: discord.Message, text: str) -> None:
    """Reply to ``message`` (as a normal message if it was deleted meanwhile); never raises."""
    try:
        await message.channel.send(
            clip(text),
            reference=message.to_reference(fail_if_not_exists=False),
            allowed_mentions=discord.AllowedMentions.none(),  # generated text must never ping anyone
        )
    except discord.HTTPException as exc:
        # Typically Missing Permissions (no Send Messages in that channel): nothing to tell anyone.
        logger.warning("could not reply in channel %s: %s", getattr(message.channel, "id", "?"), exc)
