"""Which photo goes to the worker next, and how long a new one would wait: round-robin by chat.

``FairQueue`` holds the jobs the client admitted but has not yet handed to the worker. It serves chats
in turn (one job per chat per round) instead of first-come-first-served, so one chat's burst never
pushes the other chats' photos behind it. ``dispatch_order`` predicts the order the jobs will leave in,
which is what admission uses to estimate each job's wait.

``ServiceTime`` is the measured cost of one photo in the worker (a moving average over batches of batch
time / batch size), seeded by the worker's warm-up.

Torch-free: this module runs in the bot's process.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)

# Weight of the newest *batch* in the moving average: a real slowdown shows within a few batches, while
# one batch stalled by the OS scheduler moves the estimate by a third, not all the way.
BATCH_SMOOTHING = 0.3


class FairQueue(Generic[T]):
    """Items per chat, served round-robin: each chat in turn gives its oldest item."""

    def __init__(self) -> None:
        self._chats: OrderedDict[str, deque[T]] = OrderedDict()  # rotation order: next chat first
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, chat: str, item: T) -> None:
        """A chat that had nothing waiting joins the end of the rotation."""
        self._chats.setdefault(chat, deque()).append(item)
        self._size += 1

    def pop(self) -> T | None:
        """The next item, or None when empty; its chat moves to the end of the rotation."""
        if not self._chats:
            return None
        chat, items = next(iter(self._chats.items()))
        item = items.popleft()
        self._size -= 1
        if items:
            self._chats.move_to_end(chat)
        else:
            del self._chats[chat]
        return item

    def remove(self, chat: str, item: T) -> bool:
        """Take ``item`` out (its caller gave up); False when it already left."""
        items = self._chats.get(chat)
        if items is None or item not in items:
            return False
        items.remove(item)
        self._size -= 1
        if not items:
            del self._chats[chat]
        return True

    def dispatch_order(self, new_for: str | None = None) -> list[T | None]:
        """Every waiting item in the order ``pop`` will return them; with ``new_for``, ``None`` marks where
        an item pushed now for that chat would leave."""
        queues: list[list[T | None]] = [list(items) for items in self._chats.values()]
        if new_for is not None:
            if new_for in self._chats:
                queues[list(self._chats).index(new_for)].append(None)
            else:
                queues.append([None])
        depth = max((len(q) for q in queues), default=0)
        return [q[turn] for turn in range(depth) for q in queues if turn < len(q)]


class ServiceTime:
    """Seconds the worker needs per photo, as an exponential moving average of what it reports."""

    def __init__(self, initial_s: float | None = None) -> None:
        self.per_photo_s = initial_s

    def observe(self, batch_ms: float, batch_size: int) -> None:
        """One job's report; every job of a batch reports the same batch, so each carries 1/size of the
        batch's weight."""
        if batch_size <= 0:
            return  # expired before it ran: says nothing about the model's speed
        sample = batch_ms / 1000.0 / batch_size
        if self.per_photo_s is None:
            self.per_photo_s = sample
        else:
            weight = 1.0 - (1.0 - BATCH_SMOOTHING) ** (1.0 / batch_size)
            self.per_photo_s += weight * (sample - self.per_photo_s)
