"""Which transport a client uses: ``QUEUE_URL`` set → the shared Redis queue, else a local worker."""

from __future__ import annotations

from inference.serving.jobs import Transport
from inference.serving.local_transport import LocalProcessTransport
from inference.settings import Settings


def make_transport(settings: Settings) -> Transport:
    if settings.queue_url is None:
        return LocalProcessTransport(settings)
    from inference.serving.redis_transport import RedisStreamsTransport  # redis only when configured

    return RedisStreamsTransport(settings)
