"""The model worker: runs in its own process, owns the models, answers jobs in dynamic batches.

``worker_main`` is the process target of ``local_transport.LocalProcessTransport``. It builds the
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
import queue
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from inference.errors import InferenceFailedError, JobTimeoutError
from inference.serving.batches import BatchPipeline, device_name, load_pipeline, run_jobs
from inference.serving.batches import request_type as batch_request_type
from inference.serving.jobs import Job, JobOutcome, WorkerInfo
from inference.settings import Settings

logger = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0  # how often an idle worker checks that the bot process is still alive


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
            device=device_name(pipeline, settings),
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


def serve(pipeline: BatchPipeline, jobs: Any, results: Connection, policy: BatchPolicy) -> None:
    request_type = batch_request_type(pipeline)
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


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s [worker %(process)d] %(name)s: %(message)s",
    )
