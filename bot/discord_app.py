"""Discord adapter: a ``commands.Bot`` whose Cogs translate between discord.py and ``bot.core``.

Modelled on discord.py's ``examples/advanced_startup.py``: the bot receives its resources (the
shared ``PhotoService`` and the settings) in the constructor, adds its Cogs and syncs the slash
commands in ``setup_hook``, and ``run_discord`` starts it inside an already running event loop so
that Telegram and Discord share one process and one inference queue.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages
from bot.cogs.feedback import DiscordLateSender, FeedbackCog
from bot.cogs.info import InfoCog
from bot.cogs.models import ModelsCog
from bot.cogs.photos import PhotosCog
from bot.core import PhotoService, PlatformStartupError
from inference.settings import Settings

logger = logging.getLogger(__name__)

MESSAGE_CONTENT_HELP = (
    "Discord refused the Message Content intent. The bot needs it to see image attachments in "
    "channel messages. Enable it at https://discord.com/developers/applications → your application "
    "→ Bot → Privileged Gateway Intents → MESSAGE CONTENT INTENT (bots in 100+ servers need Discord's "
    "approval), then start the bot again."
)
LOGIN_FAILED_HELP = (
    "Discord rejected DISCORD_BOT_TOKEN. Copy the token again from the Developer Portal "
    "(Bot → Reset Token) into .env and start the bot again."
)


# What the bot needs where it works: see the channel, read the message it replies to (Discord
# refuses replies without Read Message History), and answer, in threads too. Nothing else.
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True, read_message_history=True
)
INVITE_SCOPES = ("bot", "applications.commands")  # applications.commands: the slash commands


def invite_url(application_id: int) -> str:
    """The OAuth2 link that adds the bot to a server with exactly ``REQUIRED_PERMISSIONS``."""
    return discord.utils.oauth_url(application_id, permissions=REQUIRED_PERMISSIONS, scopes=INVITE_SCOPES)


class DiscordStartupError(PlatformStartupError):
    """Discord refused to start the bot (token or Message Content intent); ``str()`` says how to fix it."""


def make_intents() -> discord.Intents:
    """Default intents plus Message Content, without which attachments of ordinary channel
    messages arrive empty."""
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


class MupleBot(commands.Bot):
    """The 무플방지 bot on Discord."""

    def __init__(
        self, *, service: PhotoService, settings: Settings, intents: discord.Intents | None = None
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned_or(settings.discord_prefix),
            intents=intents or make_intents(),  # tests pass more (dpytest caches members)
            help_command=None,  # /help is ours (Korean), see InfoCog
            # Generated comments must never ping anyone, @everyone included.
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.service = service
        self.settings = settings

    async def setup_hook(self) -> None:
        await self.add_cogs()
        await self.sync_app_commands()
        self.service.late_replies.register("discord", DiscordLateSender(self, self.service))

    async def add_cogs(self) -> None:
        for cog in (
            PhotosCog(self.service, self.settings),
            ModelsCog(self.service, self.settings),
            InfoCog(self.service, self.settings),
            FeedbackCog(self, self.service, self.settings),
        ):
            await self.add_cog(cog)
        self.tree.error(self.on_app_command_error)

    async def sync_app_commands(self) -> list[app_commands.AppCommand]:
        """Sync to DISCORD_TEST_GUILD_ID when set (instant), else globally (can take a while to
        show up). A failure only costs the slash commands; prefix commands keep working."""
        guild_id = self.settings.discord_test_guild_id
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        try:
            synced = await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            logger.error(
                "could not sync slash commands (%s); was the bot invited with the "
                "applications.commands scope? Prefix commands (%smodel) still work.",
                exc,
                self.settings.discord_prefix,
            )
            return []
        logger.info(
            "synced %d slash commands %s",
            len(synced),
            f"to guild {guild_id}" if guild_id else "globally (may take up to an hour to appear)",
        )
        return synced

    async def on_ready(self) -> None:
        user = self.user
        logger.info("Discord bot ready as %s (id %s) in %d servers", user, user and user.id, len(self.guilds))
        if self.application_id is not None:
            logger.info("invite link: %s", invite_url(self.application_id))

    async def on_command_error(  # type: ignore[override]
        self, ctx: commands.Context[commands.Bot], error: commands.CommandError
    ) -> None:
        """Prefix and hybrid command failures: a Korean reply and a log line, never silence."""
        if isinstance(error, commands.CommandNotFound):
            return  # another bot's command, or a typo: staying quiet avoids noise in busy channels
        if isinstance(error, commands.UserInputError | commands.CheckFailure):
            logger.info("bad command %r from %s: %s", ctx.message.content[:100], ctx.author.id, error)
            await ctx.send(messages.UNKNOWN_COMMAND, ephemeral=True)
            return
        logger.error("command %s failed", ctx.command, exc_info=error)
        await ctx.send(messages.GENERIC_ERROR, ephemeral=True)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Slash command failures that did not go through ``on_command_error``."""
        name = interaction.command.name if interaction.command else "?"
        logger.error("slash command %s failed", name, exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(messages.GENERIC_ERROR, ephemeral=True)
            else:
                await interaction.response.send_message(messages.GENERIC_ERROR, ephemeral=True)
        except discord.HTTPException as exc:
            logger.warning("could not report the failure to the user: %s", exc)


async def run_discord(settings: Settings, service: PhotoService) -> None:
    """Run the Discord bot until cancelled (then close it cleanly).

    Meant to run as one task of the process's event loop next to Telegram, sharing ``service``.
    Raises ``DiscordStartupError`` with instructions when the token or the Message Content intent
    is refused (``python -m bot`` then exits non-zero).
    """
    if settings.discord_bot_token is None:
        raise ValueError("DISCORD_BOT_TOKEN is not set")
    bot = MupleBot(service=service, settings=settings)
    async with bot:  # closes the gateway connection and HTTP session on any exit, cancellation too
        try:
            await bot.start(settings.discord_bot_token.get_secret_value())
        except discord.PrivilegedIntentsRequired:
            logger.error(MESSAGE_CONTENT_HELP)
            raise DiscordStartupError(MESSAGE_CONTENT_HELP) from None
        except discord.LoginFailure:
            logger.error(LOGIN_FAILED_HELP)
            raise DiscordStartupError(LOGIN_FAILED_HELP) from None
