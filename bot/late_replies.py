"""Replies to photos whose result came after a restart of this bot (shared queue only).

The handler that accepted the photo is gone, but the job carried its reply address (platform, chat,
message, photo reference), so the comment still goes out as a reply to the photo, with its feedback
buttons, through whichever platform adapter registered a ``LateSender`` for that platform. A result
that arrives before the platform is up waits for it (bounded); the transport made sure this is the
only reply the photo gets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from inference.errors import CommentBotError
from inference.results import CommentResult
from inference.serving.records import ReplyAddress

logger = logging.getLogger(__name__)

SENDER_WAIT_S = 60.0  # a platform that is not up by then: the reply is logged as lost


class LateSender(Protocol):
    async def send_comment(self, address: ReplyAddress, result: CommentResult) -> None: ...
    async def send_text(self, address: ReplyAddress, text: str) -> None: ...


class LateReplies:
    """Platform name → sender, and the one entry point the inference client calls."""

    def __init__(self, wait_s: float = SENDER_WAIT_S) -> None:
        self._senders: dict[str, LateSender] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._wait_s = wait_s
        self.delivered = 0

    def register(self, platform: str, sender: LateSender) -> None:
        self._senders[platform] = sender
        self._event(platform).set()

    async def deliver(self, address: ReplyAddress, answer: CommentResult | CommentBotError) -> None:
        """Reply to the photo at ``address`` with its comment, or with the error's Korean sentence."""
        try:
            await asyncio.wait_for(self._event(address.platform).wait(), self._wait_s)
        except TimeoutError:
            logger.error(
                "no %s connection within %.0f s; the late reply to %s is lost",
                address.platform,
                self._wait_s,
                address.chat_key,
            )
            return
        sender = self._senders[address.platform]
        if isinstance(answer, CommentResult):
            await sender.send_comment(address, answer)
        else:
            logger.info("late result for %s: %s (%s)", address.chat_key, answer.code, answer)
            await sender.send_text(address, answer.user_message)
        self.delivered += 1
        logger.info("answered photo %s in %s after a restart", address.message_id, address.chat_key)

    def _event(self, platform: str) -> asyncio.Event:
        return self._ready.setdefault(platform, asyncio.Event())
