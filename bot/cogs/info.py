"""``/help`` for everyone and ``/stats`` for the bot's admins."""

from __future__ import annotations

import logging

from discord.ext import commands

from bot import messages
from bot.core import PhotoService
from inference.settings import Settings

logger = logging.getLogger(__name__)


class InfoCog(commands.Cog, name="Info"):
    """Korean help text and queue statistics."""

    def __init__(self, service: PhotoService, settings: Settings) -> None:
        self.service = service
        self.settings = settings

    # The ``type: ignore`` on hybrid commands: mypy cannot solve discord.py's overloads of
    # ``hybrid_command`` for methods of a Cog (they work at runtime and are tested).
    @commands.hybrid_command(name="help", description="무플방지 봇 사용법을 보여 줘요")  # type: ignore[arg-type]
    async def help(self, ctx: commands.Context[commands.Bot]) -> None:
        await ctx.send(self.service.help_text("discord"), ephemeral=True)

    @commands.hybrid_command(name="stats", description="처리 통계를 보여 줘요 (관리자 전용)")  # type: ignore[arg-type]
    async def stats(self, ctx: commands.Context[commands.Bot]) -> None:
        if not self.service.is_admin(ctx.author.id):
            logger.info("user %s asked for /stats without being an admin", ctx.author.id)
            await ctx.send(messages.ADMIN_ONLY, ephemeral=True)
            return
        await ctx.send(await self.service.stats_report(), ephemeral=True)
