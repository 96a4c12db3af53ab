"""Small translations from discord.py objects to the platform-neutral core, shared by the Cogs."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.core import ChatRef, PhotoService
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
