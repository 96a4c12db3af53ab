"""Auto-reply: every image attachment in a watched channel or DM gets a Korean comment as a reply."""

from __future__ import annotations

import contextlib
import io
import logging
import mimetypes
import warnings
from enum import Enum
from pathlib import PurePosixPath

import aiohttp
import discord
import pillow_heif
from discord.ext import commands
from PIL import Image, UnidentifiedImageError

from bot import messages
from bot.cogs.common import chat_ref_for, discord_transient, send_reply
from bot.cogs.feedback import send_comment
from bot.core import ChatRef, PhotoService, is_busy
from bot.delivery import ShortDownloadError, check_length, retrying
from bot.feedback import photo_sha256
from bot.pacing import BusyNotices
from inference.errors import CommentBotError
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


BUSY_REACTION = "🙏"  # refused photos after the burst's one "busy" text


def sniff_is_image(data: bytes) -> bool:
    """True when the bytes start like an image Pillow (or pillow-heif) can open; reads headers only.
    A header claiming too many pixels is an image too: the pipeline answers it with "too many pixels"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)):
                return True
    except Image.DecompressionBombError:
        return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
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
        self.busy_notices = BusyNotices(settings.busy_notice_interval_s)

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
                await send_reply(message, messages.NOT_ALLOWED, nonce=_nonce(message, 0))
            return
        async with contextlib.AsyncExitStack() as stack:
            await show_typing(stack, message.channel)
            # One image after another: replies keep the attachment order and the per-chat limit
            # of the queue is never hit by our own message. One bad attachment never stops the rest.
            for index, attachment in enumerate(candidates):
                try:
                    await self.answer_attachment(message, chat, attachment, index)
                except Exception:
                    logger.exception("attachment %s from %s failed unexpectedly", attachment.id, chat.key)
                    await send_reply(
                        message, messages.GENERIC_ERROR, nonce=_nonce(message, index), window_s=0
                    )

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
        self, message: discord.Message, chat: ChatRef, attachment: discord.Attachment, index: int = 0
    ) -> None:
        kind = classify_attachment(attachment)
        limit = self.settings.max_image_bytes
        window_s = self.settings.delivery_window_s
        nonce = _nonce(message, index)
        if attachment.size > limit:
            if kind is AttachmentKind.IMAGE:  # refused before downloading a byte
                logger.info("attachment from %s too big: %d bytes", chat.key, attachment.size)
                await send_reply(
                    message, messages.file_too_big(limit, "discord"), nonce=nonce, window_s=window_s
                )
            return
        try:
            data = await retrying(
                lambda: _read_whole(attachment),
                transient=discord_transient,
                what=f"download of attachment {attachment.id}",
                window_s=self.settings.download_window_s,
            )
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError, ShortDownloadError) as exc:
            logger.warning("could not download attachment %s from %s: %s", attachment.id, chat.key, exc)
            await send_reply(message, messages.DOWNLOAD_FAILED, nonce=nonce, window_s=window_s)
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
        outcome = await self.service.photo_outcome(chat, data, address)
        if not isinstance(outcome, CommentBotError):
            await send_comment(
                message, attachment, chat, outcome, data, self.service, nonce=nonce, window_s=window_s
            )
            return
        busy = is_busy(outcome)
        if busy and not self.busy_notices.text_allowed(chat.key):
            await _react(message, BUSY_REACTION)
            return
        await send_reply(message, outcome.user_message, nonce=nonce, window_s=window_s)
        if busy:
            self.busy_notices.text_sent(chat.key)


async def show_typing(stack: contextlib.AsyncExitStack, channel: discord.abc.Messageable) -> None:
    """Start the typing indicator; it is only cosmetic, so a refusal never stops the reply."""
    try:
        await stack.enter_async_context(channel.typing())
    except discord.HTTPException as exc:
        logger.debug("typing indicator refused: %s", exc)


async def _read_whole(attachment: discord.Attachment) -> bytes:
    return check_length(await attachment.read(), attachment.size, f"attachment {attachment.id}")


async def _react(message: discord.Message, emoji: str) -> None:
    """Best effort: a reaction is a courtesy, its failure costs nothing."""
    try:
        await message.add_reaction(emoji)
    except (discord.HTTPException, aiohttp.ClientError) as exc:
        logger.info("could not react to message %s: %s", message.id, exc)


def _nonce(message: discord.Message, index: int) -> str:
    """Unique per reply and stable across its retries (Discord allows 25 characters)."""
    return f"{message.id}{index:02d}"[-25:]
