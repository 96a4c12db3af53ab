"""Pacing Telegram messages per chat, and at most one "busy" text per chat per burst.

``ChatPacer`` is PTB's rate-limiter hook (``BaseRateLimiter``) built on aiolimiter, like PTB's own
``AIORateLimiter``, but shaped for a bot that answers bursts of photos:

* messages (``send*`` methods except chat actions) wait for their chat's budget: about one a second in
  a private chat, 20 a minute in a group (Telegram's documented limits), and 30 a second overall;
* chat actions, getFile, reactions, callback answers and edits are not counted against a chat's
  message budget; a 429 on one of them (it surely did not land) is waited out and repeated here,
  up to ``OTHER_RETRIES`` times, as PTB's limiter did;
* a 429 pauses only the chat it came from (PTB's limiter stops every request of the bot) and is
  raised to the caller, whose retry (``bot.delivery``) waits ``retry_after``.

``BusyNotices`` decides whether a refused photo gets the "busy" text or only a reaction, so a flood
does not spend the chat's message budget on refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiolimiter import AsyncLimiter
from telegram.constants import FloodLimit
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.delivery import retry_after_s

logger = logging.getLogger(__name__)

# A little under Telegram's documented limits: a request can reach Telegram later than it left the
# limiter (a busy event loop, a slow connection), and two that arrive closer than the limit cost a 429.
SAFETY_MARGIN = 0.85
PRIVATE_MESSAGES_PER_S = 1.0 * SAFETY_MARGIN
GROUP_MESSAGES_PER_MINUTE = FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP * SAFETY_MARGIN  # 17 of 20
OVERALL_MESSAGES_PER_S = FloodLimit.MESSAGES_PER_SECOND * SAFETY_MARGIN
_UNPACED_SEND_METHODS = frozenset({"sendchataction"})
_MAX_CHAT_LIMITERS = 4096  # idle ones are dropped beyond this
OTHER_RETRIES = 3


def is_message(endpoint: str) -> bool:
    """Methods that put a message into a chat (and so count against its flood limit)."""
    name = endpoint.lower()
    return name.startswith(("send", "copymessage", "forwardmessage")) and name not in _UNPACED_SEND_METHODS


class ChatPacer(BaseRateLimiter[int]):
    """Per-chat message pacing within Telegram's flood limits (see the module docstring)."""

    def __init__(
        self,
        *,
        private_per_s: float = PRIVATE_MESSAGES_PER_S,
        group_per_minute: float = GROUP_MESSAGES_PER_MINUTE,
        overall_per_s: float = OVERALL_MESSAGES_PER_S,
    ) -> None:
        self._private_per_s = private_per_s
        self._group_per_minute = group_per_minute
        self._overall = AsyncLimiter(overall_per_s, 1.0)
        self._chats: dict[int | str, AsyncLimiter] = {}
        self._paused_until: dict[int | str, float] = {}

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = data.get("chat_id")
        if chat_id is None or not is_message(endpoint):
            return await _waiting_out_429s(callback, args, kwargs, endpoint)
        chat = _chat_key(chat_id)
        await self._wait_out_pause(chat)
        async with self._limiter(chat), self._overall:
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                pause_s = retry_after_s(exc) or 1.0
                self._paused_until[chat] = time.monotonic() + pause_s
                logger.info("Telegram asked to wait %.0f s before the next message to chat %s", pause_s, chat)
                raise

    async def _wait_out_pause(self, chat: int | str) -> None:
        until = self._paused_until.get(chat)
        if until is None:
            return
        remaining = until - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
        elif self._paused_until.get(chat) == until:
            del self._paused_until[chat]

    def _limiter(self, chat: int | str) -> AsyncLimiter:
        limiter = self._chats.get(chat)
        if limiter is None:
            if len(self._chats) > _MAX_CHAT_LIMITERS:
                self._forget_idle()
            is_group = isinstance(chat, str) or chat < 0
            limiter = (
                AsyncLimiter(self._group_per_minute, 60.0)
                if is_group
                else AsyncLimiter(1.0, 1.0 / self._private_per_s)
            )
            self._chats[chat] = limiter
        return limiter

    def _forget_idle(self) -> None:
        for chat, limiter in list(self._chats.items()):
            if limiter.has_capacity(limiter.max_rate):
                del self._chats[chat]


async def _waiting_out_429s(
    callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
    args: Any,
    kwargs: dict[str, Any],
    endpoint: str,
) -> bool | dict[str, Any] | list[dict[str, Any]]:
    """A request that is not a message: a 429 means it did not land, so wait and send it again."""
    for attempt in range(OTHER_RETRIES + 1):
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as exc:
            if attempt == OTHER_RETRIES:
                raise
            pause_s = retry_after_s(exc) or 1.0
            logger.info("Telegram asked to wait %.0f s before repeating %s", pause_s, endpoint)
            await asyncio.sleep(pause_s)
    raise AssertionError("unreachable")


def _chat_key(chat_id: object) -> int | str:
    with contextlib.suppress(TypeError, ValueError):
        return int(chat_id)  # type: ignore[call-overload]
    return str(chat_id)  # @channelusername


class BusyNotices:
    """One "busy" text per chat per burst of refusals; the other refusals of the burst get a reaction,
    so refusals do not eat the chat's message budget. A burst lasts while refusals come less than
    ``interval_s`` apart, and a new text also waits ``interval_s`` after the last one *landed* (pacing and
    retries can delay it), so the user never sees two busy texts closer than ``interval_s``."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last_refusal: dict[str, float] = {}
        self._last_text: dict[str, float] = {}

    def text_allowed(self, chat_key: str) -> bool:
        """Record a refusal in this chat; True when it starts a new burst (so it gets the text)."""
        now = self._clock()
        last = self._last_refusal.get(chat_key)
        self._last_refusal[chat_key] = now
        if len(self._last_refusal) > _MAX_CHAT_LIMITERS:
            self._forget_quiet_chats(now)
        if last is not None and now - last < self.interval_s:
            return False
        text_at = self._last_text.get(chat_key)
        if text_at is not None and now - text_at < self.interval_s:
            return False
        self._last_text[chat_key] = now
        return True

    def text_sent(self, chat_key: str) -> None:
        """The busy text landed (later than it was decided, after pacing or retries)."""
        self._last_text[chat_key] = self._clock()

    def _forget_quiet_chats(self, now: float) -> None:
        self._last_refusal = {k: t for k, t in self._last_refusal.items() if now - t < self.interval_s}
        self._last_text = {k: t for k, t in self._last_text.items() if now - t < self.interval_s}
