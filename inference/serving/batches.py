"""What both model workers share: loading the pipeline by name and running one batch of jobs.

The local worker process (``local_worker``) and the shared-queue worker (``redis_worker``) differ in
how jobs reach them and how outcomes leave; turning a batch of ``Job`` into ``JobOutcome`` is this
module. Torch-free itself; the pipeline's module imports torch.
"""

from __future__ import annotations

import logging
import pkgutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from inference.errors import CommentBotError, InferenceFailedError
from inference.results import CommentResult
from inference.serving.jobs import Job, JobOutcome
from inference.settings import Settings

logger = logging.getLogger(__name__)


class BatchPipeline(Protocol):
    """What the worker needs from ``inference.models.pipeline.Pipeline``."""

    def generator_names(self) -> list[str]: ...
    def warmup(self) -> None: ...
    def run_batch(self, requests: Sequence[Any]) -> list[CommentResult | CommentBotError]: ...


def load_pipeline(factory_path: str, settings: Settings) -> BatchPipeline:
    """Call the factory named by ``"package.module:Class.method"`` with the settings."""
    factory: Callable[[Settings], BatchPipeline] = pkgutil.resolve_name(factory_path)
    return factory(settings)


def run_jobs(pipeline: BatchPipeline, batch: list[Job], request_type: Callable[..., Any]) -> list[JobOutcome]:
    requests = [
        request_type(
            image=job.image,
            generator=job.generator,
            sample=job.sample,
            keywords=job.keywords,
            deadline=job.deadline,
        )
        for job in batch
    ]
    started = time.perf_counter()
    try:
        answers = pipeline.run_batch(requests)
        if len(answers) != len(requests):
            raise RuntimeError(f"run_batch returned {len(answers)} answers for {len(requests)} requests")
    except Exception:
        if len(batch) == 1:
            logger.exception("job %d failed", batch[0].job_id)
            answers = [InferenceFailedError("pipeline raised; see the worker log")]
        else:
            logger.exception("batch of %d failed; retrying its jobs one by one", len(batch))
            return [outcome for job in batch for outcome in run_jobs(pipeline, [job], request_type)]
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    return [outcome(job, answer, len(batch), elapsed_ms) for job, answer in zip(batch, answers, strict=True)]


def outcome(job: Job, answer: object, batch_size: int, elapsed_ms: float) -> JobOutcome:
    if isinstance(answer, CommentResult):
        return JobOutcome(job.job_id, result=answer, batch_size=batch_size, worker_ms=elapsed_ms)
    if isinstance(answer, CommentBotError):
        return JobOutcome(job.job_id, error=answer, batch_size=batch_size, worker_ms=elapsed_ms)
    logger.error("job %d: pipeline returned %r instead of a result or a CommentBotError", job.job_id, answer)
    error = InferenceFailedError(f"unexpected pipeline answer {type(answer).__name__}")
    return JobOutcome(job.job_id, error=error, batch_size=batch_size, worker_ms=elapsed_ms)


def request_type(pipeline: BatchPipeline) -> Callable[..., Any]:
    """``PipelineRequest``, unless the pipeline names its own request type (test fakes do, to stay
    torch-free: importing ``inference.models.pipeline`` costs seconds per worker start)."""
    own = getattr(pipeline, "request_type", None)
    if own is not None:
        return own
    from inference.models.pipeline import PipelineRequest

    return PipelineRequest


def device_name(pipeline: BatchPipeline, settings: Settings) -> str:
    device = getattr(pipeline, "device", None)
    if device is not None:
        return str(device)
    if "torch" in sys.modules:
        from inference.models.runtime import resolve_device

        return resolve_device(settings.device)
    return settings.device
