"""``python -m bot``: one process, one inference queue, Telegram and/or Discord on one event loop.

Start-up: settings → logging (tokens never reach logs) → the store (migrated to the newest schema) →
the inference worker (models load once, shared by both platforms) → each platform whose token is set.
Shutdown on SIGINT/SIGTERM: stop taking updates, let handlers in flight finish (or fail) their jobs,
close the inference client, close the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Iterable
from typing import Any

from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from bot.core import PhotoService, PlatformStartupError
from bot.store import Store, store_url
from inference.errors import CommentBotError
from inference.serving.client import InferenceClient
from inference.serving.metrics import BotMetrics, start_ops_server
from inference.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# httpx logs every request URL at INFO, and Telegram's URLs contain the bot token.
NOISY_HTTP_LOGGERS = ("httpx", "httpcore", "hpack")
NO_TOKEN_MESSAGE = (
    "봇 토큰이 없어요: .env 또는 환경 변수에 TELEGRAM_BOT_TOKEN 이나 DISCORD_BOT_TOKEN 을 설정해 주세요.\n"
    "No bot token: set TELEGRAM_BOT_TOKEN and/or DISCORD_BOT_TOKEN in .env or the environment."
)
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class TokenRedactingFilter(logging.Filter):
    """Replaces secrets in log messages and tracebacks with ``***`` (belt and braces: the HTTP
    loggers that would print them are already quiet)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def quiet_http_loggers() -> None:
    for name in NOISY_HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    quiet_http_loggers()
    redactor = TokenRedactingFilter(_secrets(settings))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)


def _secrets(settings: Settings) -> list[str]:
    values = (settings.telegram_bot_token, settings.discord_bot_token, settings.telegram_webhook_secret)
    return [value.get_secret_value() for value in values if value is not None]


async def run(settings: Settings) -> int:
    """Run the platforms whose tokens are set until a signal or a platform stops; return the exit code."""
    client = InferenceClient(settings)
    metrics = BotMetrics.create(client)
    store = Store(store_url(settings))
    service = PhotoService(client, store, settings, metrics)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    try:
        await store.open()
    except (OSError, SQLAlchemyError, CommandError) as exc:
        logger.error("cannot open the store (STATE_DB %s / DATABASE_URL): %s", settings.state_db, exc)
        return EXIT_FAILED
    ops = await _start_ops_server(settings, metrics, client)
    try:
        logger.info("starting the inference worker (loading models)…")
        await client.start()
        logger.info("inference worker ready; generators: %s", ", ".join(client.generator_names()))
        return await _run_platforms(settings, service, stop)
    except CommentBotError as exc:  # e.g. the worker could not load the models
        logger.error("could not start the inference worker: %s", exc)
        return EXIT_FAILED
    finally:
        await client.close()
        await store.close()
        if ops is not None:
            await ops.cleanup()
        logger.info("shut down cleanly")


async def _start_ops_server(settings: Settings, metrics: BotMetrics, client: InferenceClient) -> Any:
    """``/metrics`` and ``/healthz`` on ``METRICS_PORT`` (off when unset)."""
    if settings.metrics_port is None:
        return None

    def health() -> tuple[bool, dict[str, Any]]:
        queue = "redis" if settings.queue_url else "local"
        return client.healthy, {"queue": queue, "workers": len(client.workers())}

    try:
        runner, _ = await start_ops_server(
            settings.metrics_listen, settings.metrics_port, metrics.registry, health
        )
    except OSError as exc:  # port taken: the bot still serves its users
        logger.error(
            "cannot serve /metrics on %s:%s: %s", settings.metrics_listen, settings.metrics_port, exc
        )
        return None
    return runner


async def _run_platforms(settings: Settings, service: PhotoService, stop: asyncio.Event) -> int:
    platforms: dict[str, Coroutine[Any, Any, None]] = {}
    if settings.telegram_bot_token is not None:
        from bot.telegram_app import run_telegram

        platforms["telegram"] = run_telegram(settings, service, stop)  # returns once ``stop`` is set
    if settings.discord_bot_token is not None:
        from bot.discord_app import run_discord  # lazy: Telegram-only installs never load discord.py

        platforms["discord"] = run_discord(settings, service)  # runs until cancelled
    tasks = {name: asyncio.create_task(_platform(name, coro), name=name) for name, coro in platforms.items()}
    # Any platform ending (crash, refused token) stops the process rather than leaving it half up.
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks.values(), waiter], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    if "discord" in tasks:
        tasks["discord"].cancel()  # discord.py closes its gateway connection on cancellation
    outcomes = await asyncio.gather(*tasks.values(), return_exceptions=True)
    waiter.cancel()
    failed = [
        name for name, ok in zip(tasks, outcomes, strict=True) if ok is False or isinstance(ok, Exception)
    ]
    return EXIT_FAILED if failed else EXIT_OK


async def _platform(name: str, coro: Coroutine[Any, Any, None]) -> bool:
    """Run one platform; a refused token or intent (``PlatformStartupError``, whose message says how
    to fix it) is logged in one line, anything else with its traceback."""
    try:
        await coro
    except PlatformStartupError as exc:
        logger.error("%s stopped: %s", name, exc)
        return False
    except Exception:
        logger.exception("%s stopped unexpectedly", name)
        return False
    return True


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _on_signal, sig, stop)
        except (NotImplementedError, RuntimeError):  # not the main thread / platform without signals
            logger.debug("cannot install a handler for %s", sig.name)


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    logger.info("%s received: stopping (jobs in flight finish first)", sig.name)
    stop.set()


def main() -> int:
    """Console entry point (``mupl-bot`` / ``python -m bot``)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"설정이 잘못됐어요 / invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.telegram_bot_token is None and settings.discord_bot_token is None:
        print(NO_TOKEN_MESSAGE, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings)
    return asyncio.run(run(settings))
