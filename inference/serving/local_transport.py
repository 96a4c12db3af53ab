"""The default transport: ``LocalProcessTransport`` runs and supervises one worker process
(``local_worker.worker_main``; multiprocessing, *spawn* context so the child starts clean: no
inherited CUDA state or event loop):

* jobs go to the worker over a ``multiprocessing.Queue`` (its feeder thread pickles the image bytes,
  so ``submit`` never blocks the event loop);
* messages come back over a one-way ``Pipe``; a reader thread waits on the pipe *and* the process
  sentinel and hands each message to the event loop with ``call_soon_threadsafe``;
* if the worker dies, the jobs it held fail with ``WorkerCrashedError`` and a new worker is started
  (with a back-off when it keeps dying).

Torch-free: this module runs in the bot's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from inference.errors import (
    CommentBotError,
    ShuttingDownError,
    WorkerCrashedError,
    WorkerStartError,
)
from inference.serving.jobs import Job, JobOutcome, TransportCounters, WorkerInfo, WorkerMessage
from inference.serving.local_worker import worker_main  # torch-free; the pipeline is imported in the child
from inference.settings import Settings

logger = logging.getLogger(__name__)

MAX_RESTART_DELAY_S = 30.0


@dataclass(eq=False)
class _Pending:
    future: asyncio.Future[JobOutcome]
    incarnation: int
    started: bool = False


@dataclass(eq=False)
class _WorkerHandle:
    incarnation: int
    process: BaseProcess
    jobs: Any  # multiprocessing.Queue[Job | None]; the context's Queue type is not generic at runtime
    results: Connection
    ready: asyncio.Future[WorkerInfo]
    reader: threading.Thread | None = None
    child_end: Connection | None = None  # the worker's end of the pipe, closed here once it started
    launching: asyncio.Future[None] | None = None  # Process.start running in a thread
    info: WorkerInfo | None = None
    completed_batches: int = 0


@dataclass
class _Supervisor:
    restarts: int = 0
    consecutive_failures: int = 0
    task: asyncio.Task[None] | None = None
    batch_size_counts: Counter[int] = field(default_factory=Counter)


class LocalProcessTransport:
    """One supervised worker process on this machine (the default transport)."""

    def __init__(
        self, settings: Settings, pipeline_factory: str | None = None, *, name: str = "worker"
    ) -> None:
        self._settings = _worker_settings(settings)
        self._pipeline_factory = pipeline_factory or settings.pipeline_factory
        self._name = name
        self._context = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: _WorkerHandle | None = None
        self._pending: dict[int, _Pending] = {}
        self._supervisor = _Supervisor()
        self._closing = False
        self._supervising = False  # restarts only once a first worker came up: a broken set-up fails fast
        self._incarnations = 0

    # -- public API ---------------------------------------------------------------------------
    @property
    def worker_pid(self) -> int | None:
        """PID of the current worker process (for RSS sampling); None before start."""
        return self._worker.process.pid if self._worker is not None else None

    @property
    def info(self) -> WorkerInfo | None:
        return self._worker.info if self._worker is not None else None

    async def start(self) -> WorkerInfo:
        if self._worker is not None:
            raise RuntimeError("transport already started")
        self._loop = asyncio.get_running_loop()
        handle = await self._spawn()
        info = await self._wait_ready(handle)
        self._supervising = True
        return info

    async def submit(self, job: Job) -> JobOutcome:
        handle = self._worker
        if self._closing or handle is None:
            raise ShuttingDownError("transport is closed")
        future: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        self._pending[job.job_id] = _Pending(future, handle.incarnation)
        try:
            handle.jobs.put(job)  # non-blocking: the queue's feeder thread does the pickling and I/O
            return await future
        finally:
            self._pending.pop(job.job_id, None)

    async def close(self, timeout_s: float = 10.0) -> None:
        if self._closing:
            return
        self._closing = True
        if self._supervisor.task is not None:
            self._supervisor.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor.task
        handle = self._worker
        if handle is not None:
            with contextlib.suppress(ValueError, OSError):
                handle.jobs.put(None)  # after every queued job: the worker drains them, then exits
            if handle.launching is not None:  # a restart cancelled mid-launch: let the start finish
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(handle.launching), 10.0)
            if handle.process.pid is not None:  # None: a restart was cancelled before it launched
                await _stop_process(handle.process, timeout_s)
            await asyncio.to_thread(_join_thread, handle.reader, 5.0)
            _release(handle)
        self._fail_pending(lambda _: True, ShuttingDownError("worker stopped during shutdown"))

    def counters(self) -> TransportCounters:
        running = sum(1 for p in self._pending.values() if p.started)
        return TransportCounters(
            waiting=len(self._pending) - running,
            running=running,
            restarts=self._supervisor.restarts,
            batch_size_counts=dict(sorted(self._supervisor.batch_size_counts.items())),
        )

    # -- worker life cycle ----------------------------------------------------------------------
    async def _spawn(self) -> _WorkerHandle:
        return await self._launch(self._new_handle())

    def _new_handle(self) -> _WorkerHandle:
        """A handle with fresh queues, current at once, so jobs submitted while the process is still
        starting queue up for it instead of landing on a dead worker's queue."""
        assert self._loop is not None
        self._incarnations += 1
        results_in, results_out = self._context.Pipe(duplex=False)
        jobs = self._context.Queue()
        process = self._context.Process(
            target=worker_main,
            args=(self._settings, self._pipeline_factory, jobs, results_out),
            name=f"{self._name}-{self._incarnations}",
            daemon=True,  # never outlives the bot, even when the bot is killed without cleanup
        )
        handle = _WorkerHandle(self._incarnations, process, jobs, results_in, self._loop.create_future())
        handle.child_end = results_out
        self._worker = handle
        return handle

    async def _launch(self, handle: _WorkerHandle) -> _WorkerHandle:
        process = handle.process
        # Process.start pickles the settings and forks/execs the interpreter: keep it off the loop.
        # Shielded and kept on the handle: close() may cancel us mid-start and must then wait for it.
        handle.launching = asyncio.ensure_future(asyncio.to_thread(process.start))
        await asyncio.shield(handle.launching)
        if handle.child_end is not None:
            handle.child_end.close()  # the child holds its own copy; ours would hide its exit (no EOF)
            handle.child_end = None
        handle.reader = threading.Thread(
            target=self._read_messages, args=(handle,), name=f"{process.name}-reader", daemon=True
        )
        handle.reader.start()
        logger.info("started %s (pid %s)", process.name, process.pid)
        return handle

    async def _wait_ready(self, handle: _WorkerHandle) -> WorkerInfo:
        timeout_s = self._settings.worker_start_timeout_s
        try:
            info = await asyncio.wait_for(asyncio.shield(handle.ready), timeout_s)
        except TimeoutError:
            logger.error("worker pid %s not ready after %.0f s; killing it", handle.process.pid, timeout_s)
            handle.process.kill()
            raise WorkerStartError(f"worker not ready after {timeout_s:.0f} s") from None
        logger.info(
            "worker pid %s ready on %s in %.1f s, generators: %s",
            info.pid,
            info.device,
            info.load_s,
            ", ".join(info.generator_names) or "(none)",
        )
        return info

    def _read_messages(self, handle: _WorkerHandle) -> None:
        """Reader thread: forward every message, then report the process's exit."""
        conn, sentinel = handle.results, handle.process.sentinel
        try:
            while True:
                ready = wait([conn, sentinel])
                if conn in ready:
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):
                        break  # the child closed its end: it is exiting
                    self._call_in_loop(self._on_message, handle, message)
                elif sentinel in ready:
                    while conn.poll():  # messages written just before exiting
                        self._call_in_loop(self._on_message, handle, conn.recv())
                    break
        except (EOFError, OSError):
            pass
        handle.process.join()
        self._call_in_loop(self._on_exit, handle)

    def _call_in_loop(self, callback: Any, *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop already closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_message(self, handle: _WorkerHandle, message: WorkerMessage) -> None:
        kind, payload = message
        if kind == "ready":
            handle.info = payload
            if not handle.ready.done():
                handle.ready.set_result(payload)
        elif kind == "fatal":
            logger.error("worker pid %s failed to start: %s", handle.process.pid, payload)
            if not handle.ready.done():
                handle.ready.set_exception(WorkerStartError(str(payload)))
                handle.ready.exception()  # mark retrieved: a timed-out start no longer waits
        elif kind == "started":
            self._supervisor.batch_size_counts[len(payload)] += 1
            for job_id in payload:
                if (pending := self._pending.get(job_id)) is not None:
                    pending.started = True
        elif kind == "done":
            handle.completed_batches += 1
            self._supervisor.consecutive_failures = 0
            for outcome in payload:
                pending = self._pending.get(outcome.job_id)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(outcome)

    def _on_exit(self, handle: _WorkerHandle) -> None:
        code = handle.process.exitcode
        if not handle.ready.done():
            handle.ready.set_exception(WorkerStartError(f"worker exited with code {code} while loading"))
            handle.ready.exception()  # mark retrieved: nobody may be waiting during a restart
        if handle is not self._worker or self._closing or not self._supervising:
            return
        held = sum(1 for p in self._pending.values() if p.incarnation == handle.incarnation)
        logger.error("worker pid %s died (exit code %s); failing %d job(s)", handle.process.pid, code, held)
        self._fail_pending(
            lambda p: p.incarnation == handle.incarnation,
            WorkerCrashedError(f"worker exited with code {code}"),
        )
        _release(handle)
        self._supervisor.restarts += 1
        self._supervisor.consecutive_failures += 1
        # The successor's queue is current at once: jobs submitted from now on wait for it.
        successor = self._new_handle()
        self._supervisor.task = asyncio.get_running_loop().create_task(self._restart(successor))

    async def _restart(self, handle: _WorkerHandle) -> None:
        failures = self._supervisor.consecutive_failures
        delay = 0.0 if failures <= 1 else min(MAX_RESTART_DELAY_S, 2.0 ** (failures - 2))
        if delay:
            logger.warning("worker keeps dying (%d times in a row); restarting in %.0f s", failures, delay)
            await asyncio.sleep(delay)
        try:
            await self._launch(handle)
        except Exception:  # e.g. out of file descriptors: count it as a death and try again later
            logger.exception("could not start a new worker process")
            self._on_exit(handle)
            return
        with contextlib.suppress(WorkerStartError):  # its exit (or the kill) schedules the next try
            await self._wait_ready(handle)

    def _fail_pending(self, which: Any, error: CommentBotError) -> None:
        for pending in list(self._pending.values()):
            if which(pending) and not pending.future.done():
                pending.future.set_exception(error)


def _worker_settings(settings: Settings) -> Settings:
    """The worker needs no bot tokens; don't send secrets to a process that never uses them."""
    return settings.model_copy(
        update={"telegram_bot_token": None, "discord_bot_token": None, "telegram_webhook_secret": None}
    )


async def _stop_process(process: BaseProcess, timeout_s: float) -> None:
    """Bounded stop: wait for a clean exit, then SIGTERM, then SIGKILL."""
    await asyncio.to_thread(process.join, timeout_s)
    if process.exitcode is None:
        logger.warning("worker pid %s still running after %.1f s; terminating", process.pid, timeout_s)
        process.terminate()
        await asyncio.to_thread(process.join, 3.0)
    if process.exitcode is None:
        logger.warning("worker pid %s ignored SIGTERM; killing", process.pid)
        process.kill()
        await asyncio.to_thread(process.join, 3.0)


def _join_thread(thread: threading.Thread | None, timeout_s: float) -> None:
    if thread is not None:
        thread.join(timeout_s)


def _release(handle: _WorkerHandle) -> None:
    """Drop the dead worker's queue without waiting for its feeder thread to flush."""
    handle.jobs.cancel_join_thread()
    handle.jobs.close()
    with contextlib.suppress(OSError):
        handle.results.close()
        if handle.child_end is not None:
            handle.child_end.close()
