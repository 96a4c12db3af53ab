"""What travels between the bot-side client and the model workers: jobs and outcomes as plain,
picklable data, and the ``Transport`` interface every way of moving them implements.

``Transport`` is the seam: the client only calls ``start`` / ``submit`` / ``close`` / ``counters``.
Two transports implement it: ``local_transport.LocalProcessTransport`` (one worker process on this
machine, the default) and ``redis_transport.RedisStreamsTransport`` (workers on any machine behind
a shared Redis Streams queue). Both worker loops import this module, never a transport, so there is
no import circle between the two sides.

Torch-free: this module runs in the bot's process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from inference.errors import CommentBotError
from inference.results import CommentResult
from inference.serving.records import ReplyAddress

DEFAULT_PIPELINE_FACTORY = "inference.models.pipeline:Pipeline.from_settings"


# --- messages ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Job:
    job_id: int
    image: bytes
    generator: str | None
    sample: bool
    # Wall-clock (time.time) on purpose: the deadline crosses process and, later, machine boundaries.
    deadline: float
    keywords: tuple[str, ...] | None = None  # set: a new comment for these keywords, no image (🔄)
    chat_key: str = ""  # per-chat limits of a shared queue
    reply_to: ReplyAddress | None = None  # lets a restarted bot still answer the photo (shared queue)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    job_id: int
    result: CommentResult | None = None
    error: CommentBotError | None = None
    batch_size: int = 0  # size of the batch the job ran in; 0 when it never ran (expired)
    worker_ms: float = 0.0  # time inside the pipeline for the whole batch


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    pid: int
    device: str
    generator_names: list[str]
    load_s: float  # model loading + warm-up
    # warm-up time per photo: the first estimate of the service time, until real batches are measured
    warmup_ms_per_photo: float | None = None


@dataclass(frozen=True, slots=True)
class TransportCounters:
    waiting: int  # submitted, not yet picked up by a worker
    running: int  # in a batch the worker is running now
    restarts: int
    batch_size_counts: dict[int, int]


# Worker → client messages are small tuples: ("ready", WorkerInfo) | ("fatal", str) |
# ("started", list[int]) | ("done", list[JobOutcome]).
WorkerMessage = tuple[str, Any]


class Transport(Protocol):
    async def start(self) -> WorkerInfo:
        """Start the worker(s); return when one is warmed up and ready (``WorkerStartError`` if not)."""
        ...

    async def submit(self, job: Job) -> JobOutcome:
        """Run one job; cancelling the await forgets the job. Raises ``WorkerCrashedError`` or
        ``ShuttingDownError``; per-job problems come back in ``JobOutcome.error``."""
        ...

    async def close(self, timeout_s: float) -> None:
        """Let queued jobs finish for up to ``timeout_s``, then stop the worker(s) by force;
        jobs still pending fail with ``ShuttingDownError``. Never hangs."""
        ...

    def counters(self) -> TransportCounters: ...


# Called with the reply address and the outcome of a job accepted before a bot restart (shared queue).
LateResultHandler = Callable[[ReplyAddress, CommentResult | CommentBotError], Awaitable[None]]
