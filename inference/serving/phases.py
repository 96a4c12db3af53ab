"""One measured phase of a benchmark: ``count`` photos from ``concurrency`` submitters through a
client, with each photo's latency, errors and the pipeline's own stage timings. Shared by the local
benchmark (``benchmark``) and the shared-queue one (``queue_benchmark``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from inference.errors import CommentBotError
from inference.serving.client import InferenceClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Photo:
    name: str
    data: bytes


@dataclass
class PhaseResult:
    photos: int
    seconds: float
    latencies_ms: list[float]
    errors: Counter[str]
    timings_ms: dict[str, list[float]]
    fallbacks: int  # comments replaced by a template because the generator's output failed the check
    overheads_ms: list[float]  # client latency minus the pipeline's own time

    @property
    def throughput(self) -> float:
        return self.photos / self.seconds if self.seconds > 0 else 0.0


async def run_phase(
    client: InferenceClient, photos: Sequence[Photo], count: int, concurrency: int, generator: str | None
) -> PhaseResult:
    """``count`` photos (cycling through ``photos``) from ``concurrency`` submitters."""
    order = itertools.islice(itertools.cycle(photos), count)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    timings: dict[str, list[float]] = {}
    fallbacks = 0
    overheads: list[float] = []

    async def submitter(index: int) -> None:
        nonlocal fallbacks
        for photo in order:  # shared iterator: each photo is taken by exactly one submitter
            started = time.perf_counter()
            try:
                result = await client.comment(photo.data, chat_key=f"bench-{index}", generator=generator)
            except CommentBotError as exc:
                errors[exc.code] += 1
                logger.warning("%s: %s", photo.name, exc)
                continue
            latencies.append((time.perf_counter() - started) * 1000.0)
            fallbacks += result.fallback
            if "batch" in result.timings_ms:  # what the queue adds: batching window, IPC, scheduling
                overheads.append(latencies[-1] - result.timings_ms["batch"])
            for stage, ms in result.timings_ms.items():
                timings.setdefault(stage, []).append(ms)

    started = time.perf_counter()
    await asyncio.gather(*(submitter(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return PhaseResult(count, elapsed, latencies, errors, timings, fallbacks, overheads)
