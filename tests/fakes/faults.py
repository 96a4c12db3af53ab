"""Fault injection for the fake Bot API: transient errors, dropped connections, short files, 429 storms
and Telegram's per-chat flood limits.

``FaultPlan`` decides, per request, whether the fake misbehaves:

* ``first_attempt``: method → fault for the *first* attempt of every distinct request (a reply is
  identified by chat, target and text, getFile by file id, a download by file path), so "one
  transient fault per request" is exact and a correct client still gets everything through;
* ``storm(seconds, retry_after)``: every call answers 429 for a while;
* ``flood``: Telegram-like leaky buckets per chat for messages (1 a second in a private chat, 20 a
  minute in a group), answering 429 with ``retry_after`` when a chat sends faster.

Faults:

* ``"500"`` (JSON error body), ``"502"`` (an HTML page, like a proxy's) — not applied;
* ``"drop"``: the connection is closed without an answer and the request is *not* applied;
* ``"lost"``: the request *is* applied, then the response is cut off mid-body (the client cannot know);
* ``"truncate"`` (downloads): half the file with a matching Content-Length, as a broken proxy sends it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal["500", "502", "drop", "lost", "truncate"]
MESSAGE_METHODS = frozenset({"sendmessage", "sendphoto", "senddocument"})


@dataclass
class _Bucket:
    level: float = 0.0
    at: float = field(default_factory=time.monotonic)


@dataclass
class FloodLimits:
    """Telegram's per-chat message limits as leaky buckets (capacity = the rate's count)."""

    private_per_s: float = 1.0
    group_per_minute: float = 20.0
    tolerance: float = 0.1  # drains this much faster, so a client pacing exactly at the limit passes
    refused: Counter[int] = field(default_factory=Counter)  # chat → 429s answered
    _buckets: dict[int, _Bucket] = field(default_factory=dict)

    def retry_after(self, chat_id: int) -> int | None:
        """None when the chat may send now (and count it), else seconds to wait."""
        capacity, per_s = (self.group_per_minute, self.group_per_minute / 60.0)
        if chat_id > 0:
            capacity, per_s = (1.0, self.private_per_s)
        now = time.monotonic()
        bucket = self._buckets.setdefault(chat_id, _Bucket(at=now))
        bucket.level = max(0.0, bucket.level - (now - bucket.at) * per_s * (1.0 + self.tolerance))
        bucket.at = now
        if bucket.level + 1.0 > capacity + 1e-9:
            self.refused[chat_id] += 1
            return max(1, math.ceil((bucket.level + 1.0 - capacity) / per_s))
        bucket.level += 1.0
        return None


@dataclass
class FaultPlan:
    first_attempt: dict[str, Fault] = field(default_factory=dict)  # method (any case) or "download"
    flood: FloodLimits | None = None
    storm_retry_after: int = 1
    injected: Counter[str] = field(default_factory=Counter)  # "method:fault" → count
    _seen: set[tuple[object, ...]] = field(default_factory=set)
    _storm_until: float = 0.0

    def storm(self, seconds: float, retry_after: int = 1) -> None:
        """Answer every call with 429 for ``seconds``."""
        self._storm_until = time.monotonic() + seconds
        self.storm_retry_after = retry_after

    def storming(self) -> bool:
        return time.monotonic() < self._storm_until

    def fault_for(self, method: str, key: tuple[object, ...]) -> Fault | None:
        """The fault for this attempt, if any (each distinct request faults on its first attempt only)."""
        fault = self.first_attempt.get(method.lower()) or self.first_attempt.get(method)
        if fault is None or (method.lower(), *key) in self._seen:
            return None
        self._seen.add((method.lower(), *key))
        self.injected[f"{method}:{fault}"] += 1
        return fault
