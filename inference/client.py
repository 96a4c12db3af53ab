"""The bot side of inference: an asyncio client that hands photos to the model worker.

It lives in the bot's process and never imports torch, ultralytics or transformers. It admits a
job only if the queue has room (``max_pending``) and the chat has fewer than ``per_chat_limit`` jobs in
flight, so overload is answered at once with a typed error instead of a growing queue. Each job has
a deadline (``job_timeout_s``); the worker skips jobs that are already late when it gets to them.

    client = InferenceClient(settings)
    await client.start()                      # spawns + warms up the worker
    result = await client.comment(photo, chat_key="telegram:42")
    await client.close()
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from inference.errors import (
    ChatLimitError,
    CommentBotError,
    ImageTooLargeError,
    InferenceFailedError,
    JobTimeoutError,
    QueueFullError,
    QueueUnavailableError,
    ShuttingDownError,
)
from inference.registry import discover_generators
from inference.results import CommentResult
from inference.serving.records import ReplyAddress, WorkerStatus
from inference.serving.select import LateResultHandler, make_transport
from inference.settings import Settings
from inference.transport import Job, Transport, WorkerInfo

logger = logging.getLogger(__name__)

LATENCY_WINDOW = 1000  # p50/p95 over the most recent jobs, so /stats reflects the current load


@dataclass(frozen=True, slots=True)
class QueueStats:
    jobs_done: int
    jobs_rejected: int  # refused at the door: queue full, chat limit, file too large, shutting down
    jobs_failed: int  # accepted but not answered with a comment: timeout, crash, bad image, ...
    latency_p50_ms: float | None  # submit → result, successful jobs; None before the first one
    latency_p95_ms: float | None
    queue_depth: int  # accepted, not yet picked up by the worker
    in_flight: int  # in the batch the worker is running now
    batch_size_counts: dict[int, int]  # batch size → number of batches
    worker_restarts: int
    errors_by_code: dict[str, int] = field(default_factory=dict)  # CommentBotError.code → count

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


class InferenceClient:
    """Submits photos to the worker with back-pressure, per-chat limits and deadlines."""

    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self._settings = settings
        self._transport: Transport = transport or make_transport(settings)
        self._job_ids = itertools.count(1)
        self._outstanding = 0
        self._per_chat: Counter[str] = Counter()
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._counts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._worker: WorkerInfo | None = None
        self._state = "new"  # new → running → closed

    @property
    def worker(self) -> WorkerInfo | None:
        """What the worker reported when it became ready (device, generators, load time)."""
        return self._worker

    async def start(self) -> None:
        """Start the worker and wait until it is warmed up (``WorkerStartError`` after the timeout)."""
        if self._state != "new":
            raise RuntimeError(f"client is {self._state}; start() runs once")
        try:
            self._worker = await self._transport.start()
        except BaseException:
            await self._transport.close(timeout_s=1.0)
            self._state = "closed"
            raise
        self._state = "running"

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking jobs; queued ones get up to ``timeout_s`` to finish, the rest fail with
        ``ShuttingDownError``. Idempotent and bounded."""
        if self._state == "closed":
            return
        self._state = "closed"
        logger.info("closing inference client (%d job(s) outstanding)", self._outstanding)
        await self._transport.close(timeout_s=timeout_s)

    async def __aenter__(self) -> InferenceClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def generator_names(self) -> list[str]:
        """Generators the worker loaded; before it is up, the ones on disk (torch-free)."""
        if self._worker is not None:
            return sorted(self._worker.generator_names)
        return sorted(discover_generators(self._settings.generators_dir))

    async def comment(
        self,
        image: bytes,
        *,
        chat_key: str,
        generator: str | None = None,
        sample: bool = True,
        keywords: Sequence[str] | None = None,
        reply_to: ReplyAddress | None = None,
    ) -> CommentResult:
        """A comment for one photo; raises a ``CommentBotError`` subclass the bot can show as is.

        With ``keywords`` (and ``image=b""``) the worker skips detection and writes a new comment for
        those keywords (🔄); it queues and counts like a photo. ``reply_to`` travels with the job on a
        shared queue, so the photo is still answered if this bot restarts before the result comes."""
        self._admit(image, chat_key)
        self._outstanding += 1
        self._per_chat[chat_key] += 1
        job = Job(
            job_id=next(self._job_ids),
            image=image,
            generator=generator,
            sample=sample,
            deadline=time.time() + self._settings.job_timeout_s,
            keywords=tuple(keywords) if keywords is not None else None,
            chat_key=chat_key,
            reply_to=reply_to,
        )
        started = time.perf_counter()
        try:
            result = await self._run(job)
        except CommentBotError as exc:
            self._count_failure(exc)
            logger.info("job %d for %s failed: %s (%s)", job.job_id, chat_key, exc.code, exc)
            raise
        finally:
            self._outstanding -= 1
            self._per_chat[chat_key] -= 1
            if self._per_chat[chat_key] <= 0:
                del self._per_chat[chat_key]
        self._latencies_ms.append((time.perf_counter() - started) * 1000.0)
        self._counts["done"] += 1
        return result

    def workers(self) -> list[WorkerStatus]:
        """Workers serving this bot: the shared queue's live ones, or the local process."""
        listed = getattr(self._transport, "workers", None)
        if listed is not None:
            return list(listed())
        if self._worker is None:
            return []
        info = self._worker
        pid = getattr(self._transport, "worker_pid", None) or info.pid  # the current one, after restarts
        try:
            rss_mb = psutil.Process(pid).memory_info().rss / 2**20
        except psutil.Error:
            rss_mb = 0.0
        return [
            WorkerStatus(
                f"local-{pid}", "localhost", pid, info.device, info.generator_names, rss_mb=round(rss_mb, 1)
            )
        ]

    def on_late_result(self, handler: LateResultHandler) -> None:
        """Where results of jobs accepted before a restart go (shared queue only; a local worker
        dies with its bot, so there are none)."""
        register = getattr(self._transport, "on_late_result", None)
        if register is not None:
            register(handler)

    @property
    def healthy(self) -> bool:
        """Running, and the shared queue (if any) reachable."""
        return self._state == "running" and bool(getattr(self._transport, "healthy", True))

    def stats(self) -> QueueStats:
        counters = self._transport.counters()
        p50, p95 = _percentiles(self._latencies_ms)
        return QueueStats(
            jobs_done=self._counts["done"],
            jobs_rejected=self._counts["rejected"],
            jobs_failed=self._counts["failed"],
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            queue_depth=counters.waiting,
            in_flight=counters.running,
            batch_size_counts=counters.batch_size_counts,
            worker_restarts=counters.restarts,
            errors_by_code=dict(self._errors),
        )

    # -- internals --------------------------------------------------------------------------------
    def _admit(self, image: bytes, chat_key: str) -> None:
        """Reject at the door, before anything is queued."""
        error: CommentBotError | None = None
        if self._state != "running":
            error = ShuttingDownError(f"client is {self._state}")
        elif len(image) > self._settings.max_image_bytes:
            error = ImageTooLargeError(f"{len(image)} bytes > {self._settings.max_image_bytes}")
        elif self._outstanding >= self._settings.max_pending:
            error = QueueFullError(f"{self._outstanding} jobs pending (max {self._settings.max_pending})")
        elif self._per_chat[chat_key] >= self._settings.per_chat_limit:
            error = ChatLimitError(f"{chat_key} has {self._per_chat[chat_key]} jobs in flight")
        if error is not None:
            self._counts["rejected"] += 1
            self._errors[error.code] += 1
            logger.info("rejected a photo from %s: %s (%s)", chat_key, error.code, error)
            raise error

    async def _run(self, job: Job) -> CommentResult:
        timeout_s = self._settings.job_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                outcome = await self._transport.submit(job)
        except TimeoutError:
            raise JobTimeoutError(f"job {job.job_id} took longer than {timeout_s:g} s") from None
        except CommentBotError:
            raise
        except Exception as exc:  # a transport bug must still reach the user as a typed error
            logger.exception("job %d: transport failed", job.job_id)
            raise InferenceFailedError(f"transport error: {type(exc).__name__}") from exc
        if outcome.error is not None:
            raise outcome.error
        if outcome.result is None:
            raise InferenceFailedError(f"job {job.job_id}: worker sent neither result nor error")
        return outcome.result

    def _count_failure(self, exc: CommentBotError) -> None:
        # A shared queue refuses at its own door (limits across replicas): still a rejection.
        refused = isinstance(exc, QueueFullError | ChatLimitError | QueueUnavailableError)
        self._counts["rejected" if refused else "failed"] += 1
        self._errors[exc.code] += 1


def _percentiles(values: deque[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94]
