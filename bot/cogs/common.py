"""Small translations from discord.py objects to the platform-neutral core, shared by the Cogs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.core import ChatRef, PhotoService
from bot.delivery import ShortDownloadError, retrying
from inference.settings import Settings

logger = logging.getLogger(__name__)

# Discord rejects longer messages; our replies are short, this only guards against surprises.
MAX_MESSAGE_CHARS = 2000


def chat_ref_for(channel: discord.abc.Messageable, author: discord.abc.User) -> ChatRef:
    """Guild channels (and threads) are chats of their own; a DM is keyed by the user."""
    if getattr(channel, "guild", None) is None:
        return ChatRef(platform="discord", chat_id=author.id, user_id=author.id, is_group=False)
    channel_id = getattr(channel, "id", author.id)
    return ChatRef(platform="discord", chat_id=channel_id, user_id=author.id, is_group=True)


def may_switch_model(ctx: commands.Context[commands.Bot], service: PhotoService, settings: Settings) -> bool:
    """DMs: always (the setting is the user's own). Guilds: bot admins, members with Manage Server,
    or members holding ``DISCORD_ADMIN_ROLE`` (matched by role name or id)."""
    if ctx.guild is None or service.is_admin(ctx.author.id):
        return True
    if ctx.permissions.manage_guild:
        return True
    wanted = settings.discord_admin_role
    if wanted and isinstance(ctx.author, discord.Member):
        return any(role.name == wanted or str(role.id) == wanted for role in ctx.author.roles)
    return False


def clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def discord_transient(error: BaseException) -> bool:
    """Server errors, rate limits, dropped connections, timeouts and short files. Safe for sends too:
    they carry a nonce that Discord enforces, so a repeat of a message that landed is not posted again."""
    if isinstance(error, discord.DiscordServerError | discord.RateLimited | ShortDownloadError):
        return True
    if isinstance(error, discord.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(
        error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | asyncio.TimeoutError
    )


async def send_reply(
    message: discord.Message,
    text: str,
    *,
    nonce: str,
    window_s: float = 0.0,
    view: Any = discord.utils.MISSING,
) -> discord.Message | None:
    """Reply to ``message`` (as a normal message if it was deleted meanwhile); never raises. Transient
    failures are retried for ``window_s``; the nonce (enforced by Discord) keeps a retry from posting
    a reply that already landed a second time. Returns the sent message, ``None`` when it failed."""
    channel = message.channel

    async def send() -> discord.Message:
        return await channel.send(
            clip(text),
            reference=message.to_reference(fail_if_not_exists=False),
            allowed_mentions=discord.AllowedMentions.none(),  # generated text must never ping anyone
            nonce=nonce,
            view=view,
        )

    try:
        sent: discord.Message = await retrying(
            send, transient=discord_transient, what=f"reply to {message.id}", window_s=window_s
        )
    except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        # Typically Missing Permissions (no Send Messages in that channel): nothing to tell anyone.
        logger.warning("could not reply in channel %s: %s", getattr(channel, "id", "?"), exc)
        return None
    return sent
