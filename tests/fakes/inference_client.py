"""A scriptable in-process client with ``InferenceClient``'s API, for tests of the bot side only.

It really decodes the image with Pillow (so corrupt files fail the same way) and enforces the same
size, queue and per-chat limits, but writes the comment from the keywords instead of running
models. End-to-end tests use the real ``inference.serving.client.InferenceClient`` with tiny weights.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from inference.errors import (
    ChatLimitError,
    CommentBotError,
    ImageTooLargeError,
    NotAnImageError,
    QueueFullError,
    TooManyPixelsError,
    UnknownGeneratorError,
)
from inference.results import CommentResult, Face
from inference.serving.jobs import Job, JobOutcome, TransportCounters, WorkerInfo
from inference.serving.records import ReplyAddress, WorkerStatus


@dataclass
class FakeQueueStats:
    jobs_done: int = 0
    jobs_rejected: int = 0
    jobs_failed: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    queue_depth: int = 0
    in_flight: int = 0
    batch_size_counts: dict[int, int] = field(default_factory=dict)
    worker_restarts: int = 0


class FakeInferenceClient:
    def __init__(
        self,
        generators: tuple[str, ...] = ("gpt2", "t5"),
        default_generator: str = "t5",
        *,
        max_pending: int = 64,
        per_chat_limit: int = 3,
        max_image_bytes: int = 20 * 1024 * 1024,
        delay_s: float = 0.0,
    ) -> None:
        self.generators = generators
        self.default_generator = default_generator
        self.max_pending = max_pending
        self.per_chat_limit = per_chat_limit
        self.max_image_bytes = max_image_bytes
        self.delay_s = delay_s
        self.fail_with: BaseException | None = None  # raised by the next comment() calls
        self.regenerated = 0  # keywords-only (🔄) calls
        self.regenerate_texts: list[str] = []  # scripted 🔄 comments, used up first
        self.calls: list[tuple[str, str | None]] = []  # (chat_key, generator)
        self.reply_addresses: list[ReplyAddress | None] = []
        self._stats = FakeQueueStats()
        self.state = "new"
        self._per_chat: Counter[str] = Counter()

    async def start(self) -> None:
        self.state = "running"

    async def close(self) -> None:
        self.state = "closed"

    def generator_names(self) -> list[str]:
        return sorted(self.generators)

    def stats(self) -> FakeQueueStats:
        return self._stats

    def workers(self) -> list[WorkerStatus]:
        return [
            WorkerStatus(
                "fake-1", "localhost", 1, "fake", sorted(self.generators), jobs_done=self._stats.jobs_done
            )
        ]

    async def comment(
        self,
        image: bytes,
        *,
        chat_key: str,
        generator: str | None = None,
        keywords: Sequence[str] | None = None,
        reply_to: ReplyAddress | None = None,
    ) -> CommentResult:
        """A photo's comment, or with ``keywords`` a new one for them (🔄: no image, no decoding)."""
        self.calls.append((chat_key, generator))
        self.reply_addresses.append(reply_to)
        if self.fail_with is not None:
            raise self.fail_with
        if len(image) > self.max_image_bytes:
            self._stats.jobs_rejected += 1
            raise ImageTooLargeError(f"{len(image)} bytes")
        if self._stats.in_flight >= self.max_pending:
            self._stats.jobs_rejected += 1
            raise QueueFullError("fake queue full")
        if self._per_chat[chat_key] >= self.per_chat_limit:
            self._stats.jobs_rejected += 1
            raise ChatLimitError(chat_key)
        name = generator or self.default_generator
        if name not in self.generators:
            raise UnknownGeneratorError(name, self.generator_names())
        if keywords is not None:
            self.regenerated += 1
            text = self.regenerate_texts.pop(0) if self.regenerate_texts else ""
            return self._result(
                [*keywords], name, (0, 0), text or f"다시 봐도 {self.regenerated}번째로 좋아요 🔄✨"
            )
        self._stats.in_flight += 1
        self._per_chat[chat_key] += 1
        try:
            size = _decode(image)
            await asyncio.sleep(self.delay_s)
        except CommentBotError:
            self._stats.jobs_failed += 1
            raise
        finally:
            self._stats.in_flight -= 1
            self._per_chat[chat_key] -= 1
        self._stats.jobs_done += 1
        found = ["기쁨"] if size[0] >= size[1] else ["평온"]
        return self._result(found, name, size, f"{', '.join(found)} 가득한 사진이네요 😊✨ ({name})")

    def _result(self, keywords: list[str], name: str, size: tuple[int, int], text: str) -> CommentResult:
        faces = (
            [Face("happy", "기쁨", 0.9, (1.0, 1.0, size[0] / 2, size[1] / 2))] if "기쁨" in keywords else []
        )
        return CommentResult(
            comment=text, keywords=keywords, faces=faces, objects=[], generator=name, image_size=size
        )


def _decode(image: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(image)) as img:
            img.load()
            return img.size
    except Image.DecompressionBombError as exc:  # as inference.images answers it
        raise TooManyPixelsError(str(exc)) from None
    except (UnidentifiedImageError, OSError, ImportError) as exc:
        # ImportError: once ultralytics is imported (tiny weights fixture) it patches Image.open to
        # try importing pi_heif on failure, which is not installed.
        raise NotAnImageError(str(exc)) from None


class GatedTransport:
    """A ``Transport`` for the real ``InferenceClient`` whose jobs finish only when ``release`` is set,
    so tests can hold the queue full deterministically. Results are built like the fake client's."""

    def __init__(self, generators: tuple[str, ...] = ("gpt2", "t5"), default_generator: str = "t5") -> None:
        self.generators = generators
        self.default_generator = default_generator
        self.release = asyncio.Event()
        self.submitted: list[Job] = []
        self._running = 0

    async def start(self) -> WorkerInfo:
        return WorkerInfo(pid=0, device="cpu", generator_names=list(self.generators), load_s=0.0)

    async def submit(self, job: Job) -> JobOutcome:
        self.submitted.append(job)
        self._running += 1
        try:
            await self.release.wait()
        finally:
            self._running -= 1
        name = job.generator or self.default_generator
        try:
            size = _decode(job.image)
        except CommentBotError as exc:
            return JobOutcome(job.job_id, error=exc, batch_size=1)
        result = CommentResult(
            comment=f"천천히 봐도 멋진 사진이에요 😊 ({name})",
            keywords=["기쁨"],
            faces=[],
            objects=[],
            generator=name,
            image_size=size,
        )
        return JobOutcome(job.job_id, result=result, batch_size=1)

    async def close(self, timeout_s: float) -> None:
        self.release.set()

    def counters(self) -> TransportCounters:
        return TransportCounters(waiting=0, running=self._running, restarts=0, batch_size_counts={})
