"""Which transport a client uses: ``QUEUE_URL`` set → the shared Redis queue, else a local worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from inference.errors import CommentBotError
from inference.results import CommentResult
from inference.serving.records import ReplyAddress
from inference.settings import Settings
from inference.transport import LocalProcessTransport, Transport

LateResultHandler = Callable[[ReplyAddress, CommentResult | CommentBotError], Awaitable[None]]


def make_transport(settings: Settings) -> Transport:
    if settings.queue_url is None:
        return LocalProcessTransport(settings)
    from inference.serving.redis_transport import RedisStreamsTransport  # redis only when configured

    return RedisStreamsTransport(settings)
