"""Getting a reply out (and a photo in) despite transient faults: retries with backoff and jitter.

A finished comment is worth retrying: ``retrying`` (tenacity) repeats a send while the failure is one
that surely did not deliver it, waiting ``retry_after`` for flood limits and exponential backoff with
jitter otherwise, until ``window_s`` is spent. What "surely not delivered" means depends on the
platform, so each adapter passes its own classifier:

* Telegram has no idempotency key and no way to read a chat back, so a send is repeated only when the
  request cannot have been applied: an HTTP error status (5xx, 429), a connection that never carried
  the request (connect/pool/write errors), or the server closing the connection cleanly without
  answering (RFC 9112 §9.3.1: the keep-alive race, where the request was not processed). A read
  timeout or a reset after the request went out may have delivered it: not repeated (no duplicate),
  logged, and never replaced by an error message.
* Discord sends carry a nonce with ``enforce_nonce``, so Discord itself returns the first message when
  a retry repeats one that landed: every transient failure can be retried.

Downloads are reads, so every transient failure (and a short file) is retried.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import httpx
from telegram import InlineKeyboardMarkup, Message
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.stop import stop_base

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MIN_ATTEMPTS = 3  # even past the window: on a starved machine one slow attempt must not use it all up
# httpx failures before the request reached the server (or while it was still being written)
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
)
_CLOSED_WITHOUT_ANSWER = "without sending a response"  # httpx.RemoteProtocolError for a clean close
_TELEGRAM_FINAL = (BadRequest, Forbidden, InvalidToken, Conflict, ChatMigrated, EndPointNotFound)


class ShortDownloadError(Exception):
    """Fewer (or more) bytes arrived than the platform said the file has: a cut-off transfer."""


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    transient: Callable[[BaseException], bool],
    what: str,
    window_s: float,
) -> T:
    """``await attempt()``, repeated while it fails ``transient``-ly and ``window_s`` is not spent (but at
    least ``MIN_ATTEMPTS`` times, unless ``window_s`` is 0); the last error is raised as is. Each retry is
    one log line without a traceback."""
    stop: stop_base = stop_before_delay(window_s)
    if window_s > 0:
        stop = stop & stop_after_attempt(MIN_ATTEMPTS)
    retry = AsyncRetrying(
        retry=retry_if_exception(transient),
        wait=_wait,
        stop=stop,
        before_sleep=lambda state: _log_retry(state, what),
        reraise=True,
    )
    async for trial in retry:
        with trial:
            return await attempt()
    raise AssertionError("unreachable: tenacity re-raises the last error")


def _wait(state: RetryCallState) -> float:
    """The platform's ``retry_after`` when it gave one, else exponential backoff with full jitter."""
    error = state.outcome.exception() if state.outcome is not None else None
    hinted = retry_after_s(error) if error is not None else None
    if hinted is not None:
        return hinted + random.uniform(0.05, 0.3)
    ceiling = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (state.attempt_number - 1))
    return random.uniform(FIRST_BACKOFF_S / 2, ceiling)


def _log_retry(state: RetryCallState, what: str) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    sleep_s = state.next_action.sleep if state.next_action is not None else 0.0
    logger.warning(
        "%s failed (attempt %d: %s: %s); retrying in %.1f s",
        what,
        state.attempt_number,
        type(error).__name__,
        error,
        sleep_s,
    )


def retry_after_s(error: BaseException) -> float | None:
    """Seconds the platform asked us to wait (Telegram ``RetryAfter``, discord.py ``RateLimited``), if any."""
    hint = getattr(error, "retry_after", None)
    if isinstance(hint, timedelta):
        return hint.total_seconds()
    return float(hint) if isinstance(hint, int | float) else None


# --- Telegram ------------------------------------------------------------------------------------
def telegram_not_delivered(error: BaseException) -> bool:
    """True when a failed Telegram send surely did not reach the chat, so repeating it cannot duplicate."""
    if isinstance(error, RetryAfter):
        return True
    if not isinstance(error, NetworkError) or isinstance(error, _TELEGRAM_FINAL):
        return False
    cause = error.__cause__
    if cause is None or isinstance(cause, TelegramError):
        return not isinstance(error, TimedOut)  # the server answered with an error status (5xx)
    if isinstance(cause, _NOT_SENT):
        return True
    return isinstance(cause, httpx.RemoteProtocolError) and _CLOSED_WITHOUT_ANSWER in str(cause)


def telegram_refused(error: BaseException) -> bool:
    """Telegram answered "no" (bad request, blocked, chat gone): nothing to retry, nothing landed."""
    return isinstance(error, _TELEGRAM_FINAL)


def telegram_download_transient(error: BaseException) -> bool:
    """getFile and file downloads are reads: any network failure, 5xx, 429 or short file is retried."""
    if isinstance(error, ShortDownloadError | RetryAfter):
        return True
    return isinstance(error, NetworkError) and not isinstance(error, _TELEGRAM_FINAL)


def check_length(data: bytes, expected: int | None, what: str) -> bytes:
    """``data`` when it has the announced length (or none was announced), else ``ShortDownloadError``."""
    if expected is not None and expected > 0 and len(data) != expected:
        raise ShortDownloadError(f"{what}: got {len(data)} of {expected} bytes")
    return data


async def deliver_reply(
    message: Message, text: str, window_s: float, reply_markup: InlineKeyboardMarkup | None = None
) -> Message | None:
    """Reply to ``message``, retrying what surely was not delivered within ``window_s``
    (DELIVERY_WINDOW_S); a reply that still fails is logged (no traceback), never swapped for an error."""
    try:
        return await retrying(
            lambda: message.reply_text(text, do_quote=True, reply_markup=reply_markup),
            transient=telegram_not_delivered,
            what=f"reply to message {message.message_id} in chat {message.chat_id}",
            window_s=window_s,
        )
    except TelegramError as exc:
        if telegram_refused(exc):
            logger.warning(
                "Telegram refused the reply to message %s in chat %s: %s",
                message.message_id,
                message.chat_id,
                exc,
            )
        elif telegram_not_delivered(exc):
            logger.error(
                "reply to message %s in chat %s not delivered within %.0f s: %s: %s",
                message.message_id,
                message.chat_id,
                window_s,
                type(exc).__name__,
                exc,
            )
        else:  # e.g. the connection died after the request went out: repeating could duplicate it
            logger.warning(
                "reply to message %s in chat %s may or may not have landed (%s: %s); not repeated",
                message.message_id,
                message.chat_id,
                type(exc).__name__,
                exc,
            )
        return None
