"""``RedisStreamsTransport``: the bot side of a queue shared by many bots and workers (``QUEUE_URL``).

* ``submit`` admits and enqueues in one Lua script: the queue limit (``MAX_PENDING``) and the per-chat
  limit hold across every bot replica (sorted sets scored by the job's deadline, so a dead bot's
  entries expire by themselves), then ``XADD`` to the request stream with the reply address.
* Workers (``python -m inference.worker --queue …``, ``inference.serving.redis_worker``) read the
  stream in a consumer group and write each outcome to this bot's own result stream.
* A reader task takes outcomes from that stream (first the ones left unacknowledged by a previous
  run of this instance), claims the reply (``SET NX``: first reply wins), resolves the waiting
  ``submit`` - or, for a job accepted before a restart, hands it to the late-result handler, which
  replies through the platform - then acknowledges and deletes the entry.
* While Redis is unreachable, ``submit`` fails at once with ``QueueUnavailableError`` (a Korean
  "try again later") and the reader keeps retrying; nothing needs a restart when Redis is back.

Torch-free: this module runs in the bot's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from inference.errors import (
    ChatLimitError,
    CommentBotError,
    QueueFullError,
    QueueUnavailableError,
    ShuttingDownError,
    WorkerStartError,
)
from inference.results import CommentResult
from inference.serving.jobs import Job, JobOutcome, LateResultHandler, TransportCounters, WorkerInfo
from inference.serving.records import ReplyAddress, WorkerStatus
from inference.serving.wire import (
    BOT_GROUP,
    WORKER_GROUP,
    QueueKeys,
    WireOutcome,
    job_fields,
    parse_heartbeat,
    parse_outcome,
)
from inference.settings import Settings

logger = logging.getLogger(__name__)


READ_BLOCK_MS = 1000
READ_COUNT = 100
REPLY_CLAIM_TTL_S = 24 * 3600
ADMISSION_GRACE_S = 5.0  # a job counts against the limits until its result arrives or this after its deadline
MAX_BACKOFF_S = 5.0
SETTLED_MEMORY = 100_000  # job keys (32 characters each): a few MB at most
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = READ_BLOCK_MS / 1000 + 5.0

# KEYS: inflight, chat, requests. ARGV: now, expires, job key, max pending, per-chat limit, fields...
ADMIT_AND_ENQUEUE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], math.ceil(tonumber(ARGV[2]) * 1000))
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 6))
return 0
"""
_ADMITTED, _QUEUE_FULL, _CHAT_LIMIT = 0, 1, 2


def connect(url: str) -> redis.Redis:
    """One client (connection pool) per process. No retries inside redis-py: a request while Redis is
    down must fail at once with a Korean reply, not hang through back-offs; our loops retry instead."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


async def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) from the start of the stream; fine if it exists."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass(eq=False)
class _Pending:
    future: asyncio.Future[JobOutcome]
    chat_key: str


class RedisStreamsTransport:
    """The shared queue on Redis Streams; see the module docstring."""

    def __init__(self, settings: Settings, *, client: redis.Redis | None = None) -> None:
        if settings.queue_url is None and client is None:
            raise ValueError("RedisStreamsTransport needs QUEUE_URL")
        self._settings = settings
        self._keys = QueueKeys(settings.queue_name)
        self.instance = settings.queue_instance or socket.gethostname()
        self._results = self._keys.results(self.instance)
        self._client = client
        self._pending: dict[str, _Pending] = {}
        # Jobs this process is done with (answered, replied late, or given up): a result read again
        # (a failed acknowledgement, a duplicate) is dropped without a round trip.
        self._settled: OrderedDict[str, None] = OrderedDict()
        self._late_handler: LateResultHandler | None = None
        self._late_tasks: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[WorkerStatus] = []
        self._known_workers: set[str] = set()
        self._vanished = 0
        self._waiting = 0
        self._running = 0
        self._redis_ok = False
        self._last_ok = 0.0
        self._state = "new"  # new → running → closed

    # -- public API ---------------------------------------------------------------------------
    async def start(self) -> WorkerInfo:
        if self._state != "new":
            raise RuntimeError("transport already started")
        if self._client is None:
            assert self._settings.queue_url is not None
            self._client = connect(self._settings.queue_url)
        info = await self._wait_for_a_worker(self._settings.worker_start_timeout_s)
        self._state = "running"
        self._tasks = [
            asyncio.create_task(self._read_results(), name="redis-results"),
            asyncio.create_task(self._monitor(), name="redis-monitor"),
        ]
        return info

    def on_late_result(self, handler: LateResultHandler) -> None:
        """Who answers results of jobs this instance accepted before a restart."""
        self._late_handler = handler

    async def submit(self, job: Job) -> JobOutcome:
        if self._state != "running":
            raise ShuttingDownError(f"transport is {self._state}")
        client = self._redis()
        key = uuid.uuid4().hex
        chat_key = job.chat_key or f"job:{key}"  # no chat: no per-chat limit
        future: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        self._pending[key] = _Pending(future, chat_key)  # before XADD: the result may beat the reply
        enqueued = False
        try:
            verdict = await self._admit_and_enqueue(client, key, chat_key, job)
            enqueued = verdict == _ADMITTED
            if verdict == _QUEUE_FULL:
                raise QueueFullError(f"shared queue holds {self._settings.max_pending} jobs")
            if verdict == _CHAT_LIMIT:
                raise ChatLimitError(
                    f"{chat_key} has {self._settings.per_chat_limit} jobs in the shared queue"
                )
            outcome = await future
            return replace(outcome, job_id=job.job_id)
        finally:
            self._pending.pop(key, None)
            if enqueued and (not future.done() or future.cancelled()):
                self._abandon(key, chat_key)

    async def close(self, timeout_s: float = 10.0) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        waiting = [p.future for p in self._pending.values() if not p.future.done()]
        if waiting:
            logger.info("waiting up to %.0f s for %d job(s) in the shared queue", timeout_s, len(waiting))
            await asyncio.wait(waiting, timeout=timeout_s)
        for key, pending in list(self._pending.items()):
            if not pending.future.done():
                self._abandon(key, pending.chat_key)  # a later result must not be answered twice
                pending.future.set_exception(ShuttingDownError("bot stopped before the result came"))
        # The loops see the state and end after their current call (a read blocks ≤ READ_BLOCK_MS):
        # cancelling redis-py in the middle of a blocking XREADGROUP can leave the task hanging.
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=READ_BLOCK_MS / 1000 + CONNECT_TIMEOUT_S + 1)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._late_tasks:
            await asyncio.wait(self._late_tasks, timeout=timeout_s)
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    def counters(self) -> TransportCounters:
        """Across every bot: jobs not yet read by a worker, and read but not yet answered."""
        return TransportCounters(
            waiting=self._waiting, running=self._running, restarts=self._vanished, batch_size_counts={}
        )

    def workers(self) -> list[WorkerStatus]:
        """Live workers from their latest heartbeats (refreshed in the background)."""
        return list(self._workers)

    @property
    def healthy(self) -> bool:
        """Redis answered within the last few heartbeats."""
        horizon = max(3 * self._settings.queue_heartbeat_s, 5.0)
        return self._redis_ok and time.monotonic() - self._last_ok < horizon

    # -- submitting -----------------------------------------------------------------------------
    def _redis(self) -> redis.Redis:
        if self._client is None:
            raise ShuttingDownError("transport is not started")
        return self._client

    async def _admit_and_enqueue(self, client: redis.Redis, key: str, chat_key: str, job: Job) -> int:
        fields = job_fields(key, job, self._results)
        args: list[Any] = [
            time.time(),
            job.deadline + ADMISSION_GRACE_S,
            key,
            self._settings.max_pending,
            self._settings.per_chat_limit,
        ]
        for name, value in fields.items():
            args += [name, value]
        keys = [self._keys.inflight, self._keys.chat(chat_key), self._keys.requests]
        try:
            return int(await client.eval(ADMIT_AND_ENQUEUE, len(keys), *keys, *args))
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            raise QueueUnavailableError(f"redis: {type(exc).__name__}: {exc}") from None

    def _abandon(self, key: str, chat_key: str) -> None:
        """Nobody waits for this job any more (timeout, cancel, shutdown): its result, if it still
        comes, is dropped, and it no longer counts against the limits."""
        self._settle(key)
        if self._client is not None:
            task = asyncio.get_running_loop().create_task(self._forget(key, chat_key))
            self._late_tasks.add(task)
            task.add_done_callback(self._late_tasks.discard)

    async def _forget(self, key: str, chat_key: str) -> None:
        client = self._redis()
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(self._keys.replied(key), self.instance, nx=True, ex=REPLY_CLAIM_TTL_S)
                pipe.zrem(self._keys.inflight, key)
                pipe.zrem(self._keys.chat(chat_key), key)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the entries expire with the job's deadline anyway
            logger.debug("could not release abandoned job %s: %s", key, exc)

    # -- results --------------------------------------------------------------------------------
    async def _read_results(self) -> None:
        """Read this instance's result stream forever: first what a previous run left unacknowledged
        (id ``0``), then new entries (``>``); reconnect with a back-off while Redis is away."""
        client = self._redis()
        cursor = "0"
        backoff = 0.2
        while self._state == "running":
            try:
                if cursor == "0":
                    await ensure_group(client, self._results, BOT_GROUP)
                response: Any = await client.xreadgroup(
                    BOT_GROUP, self.instance, {self._results: cursor}, count=READ_COUNT, block=READ_BLOCK_MS
                )
                self._mark_ok()
                backoff = 0.2
                entries = response[0][1] if response else []
                if cursor == "0" and not entries:
                    cursor = ">"
                    continue
                if entries:
                    await self._handle_results(client, entries)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning(
                    "result stream %s lost its group (Redis restarted?); recreating", self._results
                )
                cursor = "0"
            except (RedisError, OSError) as exc:
                self._mark_down(exc)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                cursor = "0"
            except Exception:
                logger.exception("result reader failed; retrying")
                await asyncio.sleep(1.0)

    async def _handle_results(self, client: redis.Redis, entries: list[tuple[bytes, Any]]) -> None:
        """Claim each reply (first reply wins), release its admission, acknowledge and delete the entry.

        A result whose ``submit`` is waiting here is handed over first, before the round trip: the
        worker already published it once, this process stopped waiting for nothing else, and the
        claim lands long before the handler has its reply sent (it only matters to a later run)."""
        outcomes: list[WireOutcome | None] = []
        async with client.pipeline(transaction=False) as pipe:
            for entry_id, fields in entries:
                wire = self._parse(entry_id, fields)
                outcomes.append(wire)
                if wire is not None:
                    if wire.key not in self._settled:
                        self._resolve_waiting(wire)
                    pipe.set(self._keys.replied(wire.key), self.instance, nx=True, ex=REPLY_CLAIM_TTL_S)
                    pipe.zrem(self._keys.inflight, wire.key)
                    pipe.zrem(self._keys.chat(wire.chat_key or f"job:{wire.key}"), wire.key)
                pipe.xack(self._results, BOT_GROUP, entry_id)
                pipe.xdel(self._results, entry_id)
            replies = iter(await pipe.execute())
        for wire in outcomes:
            if wire is None:
                next(replies), next(replies)
                continue
            claimed, *_ = (next(replies) for _ in range(5))
            if wire.resolved:
                continue
            if wire.key in self._settled or not claimed:
                logger.info("dropping result of job %s: already answered", wire.key)
                self._settle(wire.key)
                continue
            self._settle(wire.key)
            self._deliver_late(wire)

    def _parse(self, entry_id: bytes, fields: Any) -> WireOutcome | None:
        if not fields:  # deleted before we read it again
            return None
        try:
            return parse_outcome(entry_id, fields)
        except (KeyError, ValueError, TypeError):
            logger.exception("malformed result entry %r; dropping it", entry_id)
            return None

    def _resolve_waiting(self, wire: WireOutcome) -> None:
        pending = self._pending.get(wire.key)
        if pending is not None and not pending.future.done():
            pending.future.set_result(wire.outcome)
            wire.resolved = True
            self._settle(wire.key)

    def _settle(self, key: str) -> None:
        self._settled[key] = None
        while len(self._settled) > SETTLED_MEMORY:
            self._settled.popitem(last=False)

    def _deliver_late(self, wire: WireOutcome) -> None:
        """A result nobody in this process waits for: a job accepted before a restart."""
        answer: CommentResult | CommentBotError | None = wire.outcome.result or wire.outcome.error
        if wire.reply is None or answer is None or self._late_handler is None:
            logger.warning("result of job %s has no waiting photo and no way to reply; dropped", wire.key)
            return
        logger.info("answering job %s accepted before a restart (%s)", wire.key, wire.reply.chat_key)
        task = asyncio.get_running_loop().create_task(self._late(wire.reply, answer))
        self._late_tasks.add(task)
        task.add_done_callback(self._late_tasks.discard)

    async def _late(self, reply: ReplyAddress, answer: CommentResult | CommentBotError) -> None:
        assert self._late_handler is not None
        try:
            await self._late_handler(reply, answer)
        except Exception:
            logger.exception("could not deliver a late result to %s", reply.chat_key)

    # -- monitoring -----------------------------------------------------------------------------
    async def _wait_for_a_worker(self, timeout_s: float) -> WorkerInfo:
        """Return once a worker's heartbeat is in Redis (``WorkerStartError`` after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        last_error = "no worker heartbeat yet"
        while True:
            try:
                await self._refresh()
                if self._workers:
                    return _info_of(self._workers)
            except (RedisError, OSError) as exc:
                last_error = f"redis: {exc}"
            if time.monotonic() >= deadline:
                raise WorkerStartError(
                    f"no worker on the shared queue after {timeout_s:.0f} s ({last_error})"
                )
            await asyncio.sleep(min(0.5, self._settings.queue_heartbeat_s))

    async def _monitor(self) -> None:
        interval = min(2.0, max(0.2, self._settings.queue_heartbeat_s / 2))
        while self._state == "running":
            await asyncio.sleep(interval)
            try:
                await self._refresh()
            except (RedisError, OSError) as exc:
                self._mark_down(exc)

    async def _refresh(self) -> None:
        client = self._redis()
        raw: dict[bytes, bytes] = await client.hgetall(self._keys.workers)  # type: ignore[assignment]
        now = time.time()
        horizon = 3 * self._settings.queue_heartbeat_s
        live: list[WorkerStatus] = []
        stale: list[bytes] = []
        for name, value in raw.items():
            try:
                status = parse_heartbeat(value, now)
            except (ValueError, TypeError, KeyError):
                stale.append(name)
                continue
            if status.seen_s_ago <= horizon:
                live.append(status)
            elif status.seen_s_ago > 20 * horizon:
                stale.append(name)
        if stale:
            await client.hdel(self._keys.workers, *stale)
        names = {w.name for w in live}
        self._vanished += len(self._known_workers - names)
        self._known_workers = names
        self._workers = sorted(live, key=lambda w: w.name)
        self._waiting, self._running = await _group_depth(client, self._keys.requests)
        self._mark_ok()

    def _mark_ok(self) -> None:
        if not self._redis_ok and self._last_ok:
            logger.info("shared queue reachable again")
        self._redis_ok = True
        self._last_ok = time.monotonic()

    def _mark_down(self, exc: BaseException) -> None:
        if self._redis_ok or not self._last_ok:  # one line per outage, not one per retry
            logger.error("shared queue unreachable: %s: %s (retrying)", type(exc).__name__, exc)
            self._last_ok = self._last_ok or 1e-9
        self._redis_ok = False


async def _group_depth(client: redis.Redis, stream: str) -> tuple[int, int]:
    """(entries no worker has read yet, entries read but not acknowledged) of the request stream."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return 0, 0
    for group in groups:
        name = group.get("name")
        if name in (WORKER_GROUP, WORKER_GROUP.encode()):
            lag = group.get("lag")
            return int(lag or 0), int(group.get("pending") or 0)
    return 0, 0


def _info_of(workers: list[WorkerStatus]) -> WorkerInfo:
    first = workers[0]
    names = sorted({name for worker in workers for name in worker.generators})
    return WorkerInfo(pid=first.pid, device=first.device, generator_names=names, load_s=0.0)
