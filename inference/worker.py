"""The model worker: runs in its own process, owns the models, answers jobs in dynamic batches.

``worker_main`` is the process target of ``inference.transport.LocalProcessTransport``. It builds the
pipeline from an import path (``"module:Class.factory"``, resolved here in the child so tests can plug
in a fake), warms it up, reports ready, then loops:

1. block for the first job, then gather more until ``max_batch_size`` jobs or ``max_wait_ms`` passed;
2. fail jobs whose deadline already passed (the client gave up on them) instead of running them;
3. ``pipeline.run_batch`` on the rest (it drops jobs that expire between its stages, before
   generation); if the whole batch raises, run the jobs one by one so that one bad job fails alone.

This module imports no torch itself; the pipeline's module does.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import pkgutil
import queue
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

from inference.errors import CommentBotError, InferenceFailedError, JobTimeoutError
from inference.results import CommentResult
from inference.settings import Settings
from inference.transport import Job, JobOutcome, WorkerInfo

logger = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0  # how often an idle worker checks that the bot process is still alive


class BatchPipeline(Protocol):
    """What the worker needs from ``inference.pipeline.Pipeline``."""

    def generator_names(self) -> list[str]: ...
    def warmup(self) -> None: ...
    def run_batch(self, requests: Sequence[Any]) -> list[CommentResult | CommentBotError]: ...


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_size: int
    max_wait_s: float


class _StopRequestedError(Exception):
    """The client asked the worker to exit (or the client process is gone)."""


def worker_main(settings: Settings, pipeline_factory: str, jobs: Any, results: Connection) -> None:
    """Process entry point; returns (exit code 0) when told to stop."""
    # Ctrl-C in a terminal reaches the whole process group; the client decides when the worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _configure_logging(settings.log_level)
    started = time.perf_counter()
    try:
        pipeline = load_pipeline(pipeline_factory, settings)
        warmup_started = time.perf_counter()
        pipeline.warmup()
        # The real warm-up runs one photo per generator; cold, so a conservative first estimate.
        warmup_ms = (time.perf_counter() - warmup_started) * 1000.0
        info = WorkerInfo(
            pid=os.getpid(),
            device=_device_name(pipeline, settings),
            generator_names=list(pipeline.generator_names()),
            load_s=time.perf_counter() - started,
            warmup_ms_per_photo=warmup_ms / max(1, len(pipeline.generator_names())),
        )
    except Exception as exc:
        logger.exception("worker could not load the pipeline %s", pipeline_factory)
        results.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    results.send(("ready", info))
    policy = BatchPolicy(settings.max_batch_size, settings.max_wait_ms / 1000.0)
    try:
        serve(pipeline, jobs, results, policy)
    except (BrokenPipeError, EOFError):
        logger.info("client went away; worker exiting")


def load_pipeline(factory_path: str, settings: Settings) -> BatchPipeline:
    """Call the factory named by ``"package.module:Class.method"`` with the settings."""
    factory: Callable[[Settings], BatchPipeline] = pkgutil.resolve_name(factory_path)
    return factory(settings)


def serve(pipeline: BatchPipeline, jobs: Any, results: Connection, policy: BatchPolicy) -> None:
    request_type = _request_type(pipeline)
    while True:
        batch, stop = next_batch(jobs, policy)
        live = _fail_expired(batch, results)
        if live:
            results.send(("started", [job.job_id for job in live]))
            send_outcomes(results, run_jobs(pipeline, live, request_type))
        if stop:
            return


def next_batch(jobs: Any, policy: BatchPolicy) -> tuple[list[Job], bool]:
    """Up to ``max_size`` jobs: the first one blocks, the rest may take ``max_wait_s`` in total.

    Returns ``(batch, stop)``; ``stop`` means the stop marker came (after the jobs before it).
    """
    try:
        first = _get_first(jobs)
    except _StopRequestedError:
        return [], True
    batch = [first]
    window_ends = time.monotonic() + policy.max_wait_s
    while len(batch) < policy.max_size:
        remaining = window_ends - time.monotonic()
        try:
            job = jobs.get(timeout=remaining) if remaining > 0 else jobs.get_nowait()
        except queue.Empty:
            break
        if job is None:
            return batch, True
        batch.append(job)
    return batch, False


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
    return [_outcome(job, answer, len(batch), elapsed_ms) for job, answer in zip(batch, answers, strict=True)]


def send_outcomes(results: Connection, outcomes: list[JobOutcome]) -> None:
    """Send a batch's outcomes; one that cannot be pickled (an odd error object) must not kill the
    worker: its job fails with ``InferenceFailedError`` instead."""
    try:
        results.send(("done", outcomes))
    except (pickle.PicklingError, TypeError, AttributeError):
        logger.exception("could not send outcomes; sending plain errors instead")
        safe = [_picklable(outcome) for outcome in outcomes]
        results.send(("done", safe))


def _picklable(outcome: JobOutcome) -> JobOutcome:
    try:
        pickle.dumps(outcome)
    except (pickle.PicklingError, TypeError, AttributeError):
        error = InferenceFailedError("result could not be sent to the bot")
        return JobOutcome(
            outcome.job_id, error=error, batch_size=outcome.batch_size, worker_ms=outcome.worker_ms
        )
    return outcome


def _outcome(job: Job, answer: object, batch_size: int, elapsed_ms: float) -> JobOutcome:
    if isinstance(answer, CommentResult):
        return JobOutcome(job.job_id, result=answer, batch_size=batch_size, worker_ms=elapsed_ms)
    if isinstance(answer, CommentBotError):
        return JobOutcome(job.job_id, error=answer, batch_size=batch_size, worker_ms=elapsed_ms)
    logger.error("job %d: pipeline returned %r instead of a result or a CommentBotError", job.job_id, answer)
    error = InferenceFailedError(f"unexpected pipeline answer {type(answer).__name__}")
    return JobOutcome(job.job_id, error=error, batch_size=batch_size, worker_ms=elapsed_ms)


def _fail_expired(batch: list[Job], results: Connection) -> list[Job]:
    now = time.time()
    expired = [job for job in batch if job.deadline <= now]
    if expired:
        logger.warning("skipping %d job(s) whose deadline passed while queued", len(expired))
        outcomes = [
            JobOutcome(job.job_id, error=JobTimeoutError("deadline passed in the queue")) for job in expired
        ]
        send_outcomes(results, outcomes)
    return [job for job in batch if job.deadline > now]


def _get_first(jobs: Any) -> Job:
    """Block for the next job, waking up now and then to notice a vanished client process."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            job = jobs.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                raise _StopRequestedError from None
            continue
        if job is None:
            raise _StopRequestedError
        return job


def _request_type(pipeline: BatchPipeline) -> Callable[..., Any]:
    """``PipelineRequest``, unless the pipeline names its own request type (test fakes do, to stay
    torch-free: importing ``inference.pipeline`` costs seconds per worker start)."""
    own = getattr(pipeline, "request_type", None)
    if own is not None:
        return own
    from inference.pipeline import PipelineRequest

    return PipelineRequest


def _device_name(pipeline: BatchPipeline, settings: Settings) -> str:
    device = getattr(pipeline, "device", None)
    if device is not None:
        return str(device)
    if "torch" in sys.modules:
        from inference.runtime import resolve_device

        return resolve_device(settings.device)
    return settings.device


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s [worker %(process)d] %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m inference.worker --queue redis://…`` (console script ``mupl-worker``): a worker on
    the shared queue; the local worker process needs no command, the bot starts it."""
    from inference.serving.redis_worker import main as redis_worker_main

    return redis_worker_main(argv)


if __name__ == "__main__":
    sys.exit(main())
