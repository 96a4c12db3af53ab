"""The bot side of inference: an asyncio client that hands photos to the model worker.

It lives in the bot's process and never imports torch, ultralytics or transformers. It admits a
job only if the queue has room (``max_pending``), the chat has fewer than ``per_chat_limit`` jobs in
flight, and the job's expected wait (the jobs ahead of it × the measured time per photo) fits in
``admission_headroom`` × ``job_timeout_s`` without pushing waiting jobs past theirs; overload is answered
at once with a typed error instead of a growing queue or a timeout. Admitted jobs wait here and go to
the worker round-robin by chat (``inference.serving.scheduler``), at most two batches ahead of it, so one
chat's burst never delays the others. Each job has a deadline (``job_timeout_s``); the worker skips
jobs that are already late and drops those that expire inside a batch before generation.

    client = InferenceClient(settings)
    await client.start()                      # spawns + warms up the worker
    result = await client.comment(photo, chat_key="telegram:42")
    await client.close()
"""

from __future__ import annotations

import asyncio
import contextlib
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
    ExpectedWaitError,
    ImageTooLargeError,
    InferenceFailedError,
    JobTimeoutError,
    QueueFullError,
    QueueUnavailableError,
    ShuttingDownError,
)
from inference.models.registry import discover_generators
from inference.results import CommentResult
from inference.serving.jobs import Job, JobOutcome, LateResultHandler, Transport, WorkerInfo
from inference.serving.records import ReplyAddress, WorkerStatus
from inference.serving.scheduler import FairQueue, ServiceTime
from inference.serving.select import make_transport
from inference.settings import Settings

logger = logging.getLogger(__name__)

LATENCY_WINDOW = 1000  # p50/p95 over the most recent jobs, so /stats reflects the current load
BATCHES_AHEAD = 2  # jobs at each worker at once, in batches: one running, one ready to start
SHED_AT = 0.95  # a waiting job projected to finish after this share of its deadline is refused at once


@dataclass(eq=False)
class _Waiting:
    """An admitted job on its way: waiting here, then at the worker (``task``)."""

    job: Job
    chat_key: str
    admitted_at: float  # time.monotonic()
    outcome: asyncio.Future[JobOutcome]
    task: asyncio.Task[None] | None = None


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
        self._waiting: FairQueue[_Waiting] = FairQueue()
        self._has_work = asyncio.Event()
        self._at_worker = 0
        self._dispatcher: asyncio.Task[None] | None = None
        self._service = ServiceTime()

    @property
    def service_time_s(self) -> float | None:
        """Measured seconds of worker time per photo (None until the worker reported any)."""
        return self._service.per_photo_s

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
        if self._worker.warmup_ms_per_photo:
            self._service = ServiceTime(self._worker.warmup_ms_per_photo / 1000.0)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="inference-dispatch")
        self._state = "running"

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking jobs; queued ones get up to ``timeout_s`` to finish, the rest fail with
        ``ShuttingDownError``. Idempotent and bounded."""
        if self._state == "closed":
            return
        self._state = "closed"
        logger.info("closing inference client (%d job(s) outstanding)", self._outstanding)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        while (entry := self._waiting.pop()) is not None:  # queued jobs get the same drain time
            self._send_to_worker(entry)
        await asyncio.sleep(0)  # let those tasks hand their jobs over before the transport closes
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
        entry = _Waiting(job, chat_key, time.monotonic(), asyncio.get_running_loop().create_future())
        self._waiting.push(chat_key, entry)
        self._has_work.set()
        started = time.perf_counter()
        try:
            result = await self._run(entry)
        except ExpectedWaitError as exc:  # shed while waiting: a refusal for load, like at the door
            self._counts["rejected"] += 1
            self._errors[exc.code] += 1
            logger.info("job %d for %s refused while waiting: %s", job.job_id, chat_key, exc)
            raise
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
            queue_depth=counters.waiting + len(self._waiting),
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
        elif (late := self._lateness_after_making_room(chat_key)) is not None:
            error = ExpectedWaitError(late)
        if error is not None:
            self._counts["rejected"] += 1
            self._errors[error.code] += 1
            logger.info("rejected a photo from %s: %s (%s)", chat_key, error.code, error)
            raise error

    def _lateness_after_making_room(self, chat_key: str) -> str | None:
        """``_expected_lateness``; but a chat with nothing in flight comes before other chats' second or
        third photo: while the new job would be late, the last waiting job of a chat with several is
        refused ("busy") to make room, so every chat gets its first photo commented."""
        late = self._expected_lateness(chat_key)
        while late is not None and self._per_chat[chat_key] == 0:
            order = self._waiting.dispatch_order()
            victim = next(
                (e for e in reversed(order) if e is not None and self._per_chat[e.chat_key] >= 2), None
            )
            if victim is None or not self._waiting.remove(victim.chat_key, victim):
                return late
            victim.outcome.set_exception(
                ExpectedWaitError(f"job {victim.job.job_id} made room for {chat_key}")
            )
            late = self._expected_lateness(chat_key)
        return late

    def _expected_lateness(self, chat_key: str) -> str | None:
        """Why a new job from ``chat_key`` would finish too late, or None when it fits.

        Round-robin order decides who waits for whom: the new job waits for the jobs at the worker and
        those leaving before it, and delays every waiting job that leaves after it by one photo.
        """
        per_photo_s = self._service.per_photo_s
        if per_photo_s is None:
            return None
        budget_s = self._settings.job_timeout_s * self._settings.admission_headroom
        now = time.monotonic()
        order = self._waiting.dispatch_order(new_for=chat_key)
        first = order.index(None)
        for position in range(first, len(order)):
            entry = order[position]
            waited_s = 0.0 if entry is None else now - entry.admitted_at
            done_in_s = (self._at_worker + position + 1) * per_photo_s
            if waited_s + done_in_s > budget_s:
                whose = "it" if entry is None else f"job {entry.job.job_id}"
                return (
                    f"{whose} would finish after {waited_s + done_in_s:.1f} s > {budget_s:.1f} s "
                    f"({self._at_worker} at the worker, {position} ahead, {per_photo_s * 1000:.0f} ms/photo)"
                )
        return None

    async def _dispatch(self) -> None:
        """Hand waiting jobs to the worker round-robin by chat, keeping it at most a window ahead."""
        while True:
            while self._at_worker >= self._window() or not self._waiting:
                self._has_work.clear()
                await self._has_work.wait()
            entry = self._waiting.pop()
            if entry is not None:
                self._send_to_worker(entry)

    def _window(self) -> int:
        """Jobs handed to the workers at once: a running and a ready batch for each live worker (the
        shared queue's workers from their heartbeats; one local process otherwise), so a second worker
        never idles for want of work."""
        listed = getattr(self._transport, "workers", None)
        workers = len(listed()) if listed is not None else 1
        return BATCHES_AHEAD * self._settings.max_batch_size * max(1, workers)

    def _send_to_worker(self, entry: _Waiting) -> None:
        self._at_worker += 1
        entry.task = asyncio.create_task(self._submit(entry), name=f"job-{entry.job.job_id}")

    async def _submit(self, entry: _Waiting) -> None:
        try:
            outcome = await self._transport.submit(entry.job)
        except asyncio.CancelledError:
            entry.outcome.cancel()
            raise
        except Exception as exc:
            if not entry.outcome.done():
                entry.outcome.set_exception(exc)
                entry.outcome.exception()  # retrieved here: the caller may have given up already
        else:
            self._service.observe(outcome.worker_ms, outcome.batch_size)
            if not entry.outcome.done():
                entry.outcome.set_result(outcome)
            self._shed_late()
        finally:
            self._at_worker -= 1
            self._has_work.set()

    def _shed_late(self) -> None:
        """When the measured time per photo rose (a slower machine), waiting jobs that can no longer make
        their deadline are refused now ("busy"), instead of timing out after the whole wait. First only
        extra photos of chats with several (the round-robin tail first), which moves every chat's only
        photo forward; then any photo still projected late."""
        per_photo_s = self._service.per_photo_s
        if per_photo_s is None or not self._waiting:
            return
        shed: Counter[str] = Counter()
        for keep_only_photos in (True, False):
            now = time.monotonic()
            ahead = self._at_worker
            for entry in self._waiting.dispatch_order():
                if entry is None:
                    continue
                ahead += 1
                if keep_only_photos and self._per_chat[entry.chat_key] - shed[entry.chat_key] <= 1:
                    continue
                projected_s = now - entry.admitted_at + ahead * per_photo_s
                if projected_s > self._settings.job_timeout_s * SHED_AT:
                    self._waiting.remove(entry.chat_key, entry)
                    ahead -= 1  # the jobs behind it move up
                    shed[entry.chat_key] += 1
                    entry.outcome.set_exception(
                        ExpectedWaitError(f"job {entry.job.job_id} would finish after {projected_s:.1f} s")
                    )

    def _forget(self, entry: _Waiting) -> None:
        """The caller gave up (timeout, cancellation): the job leaves the queue or the worker forgets it."""
        self._waiting.remove(entry.chat_key, entry)
        if entry.task is not None and not entry.task.done():
            entry.task.cancel()

    async def _run(self, entry: _Waiting) -> CommentResult:
        job = entry.job
        timeout_s = self._settings.job_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                outcome = await asyncio.shield(entry.outcome)
        except TimeoutError:
            self._forget(entry)
            raise JobTimeoutError(f"job {job.job_id} took longer than {timeout_s:g} s") from None
        except asyncio.CancelledError:
            self._forget(entry)
            raise
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
