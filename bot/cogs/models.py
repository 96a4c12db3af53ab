"""``/model``: list the comment generators or switch this channel's (DM: this user's) generator."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages
from bot.cogs.common import chat_ref_for, clip, may_switch_model
from bot.core import PhotoService
from inference.settings import Settings

logger = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices


class ModelsCog(commands.Cog, name="Models"):
    """The hybrid ``/model`` command (slash command and prefix command)."""

    def __init__(self, service: PhotoService, settings: Settings) -> None:
        self.service = service
        self.settings = settings

    # The ``type: ignore`` on hybrid commands: mypy cannot solve discord.py's overloads of
    # ``hybrid_command`` for methods of a Cog (they work at runtime and are tested).
    @commands.hybrid_command(name="model", description="댓글 모델 목록을 보거나 이 채널의 모델을 바꿔요")  # type: ignore[arg-type]
    @app_commands.describe(name="바꿀 모델 이름 (비워 두면 목록을 보여 줘요)")
    async def model(self, ctx: commands.Context[commands.Bot], *, name: str | None = None) -> None:
        chat = chat_ref_for(ctx.channel, ctx.author)
        if not self.service.is_allowed(chat):
            await ctx.send(messages.NOT_ALLOWED, ephemeral=True)
            return
        if not name or not name.strip():
            await ctx.send(clip(await self.service.models_text(chat)))
            return
        if not may_switch_model(ctx, self.service, self.settings):
            logger.info("user %s may not switch the model of %s", ctx.author.id, chat.key)
            await ctx.send(messages.GUILD_MANAGER_ONLY, ephemeral=True)
            return
        await ctx.send(clip(await self.service.switch_model(chat, name)))

    @model.autocomplete("name")
    async def model_name_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Generator names are read from ``weights/generators`` (torch-free), so drop-ins show up."""
        typed = current.strip().lower()
        names = [n for n in self.service.client.generator_names() if typed in n.lower()]
        return [app_commands.Choice(name=n, value=n) for n in names[:MAX_CHOICES]]
