"""How jobs, outcomes and heartbeats look in Redis: key names and plain-data codecs (JSON + raw bytes).

Nothing is pickled: whoever can write to Redis must not be able to run code in a bot or a worker.
Every key shares one hash tag (``{name}``) so the scripts also run on a Redis Cluster.

Keys, for ``QUEUE_NAME=mupl``:

* ``{mupl}:requests`` - the job stream, read by the consumer group ``workers``;
* ``{mupl}:results:<instance>`` - one result stream per bot instance, group ``bot``;
* ``{mupl}:dead`` - jobs tried ``QUEUE_MAX_TRIES`` times (metadata only: photos are never kept);
* ``{mupl}:inflight`` and ``{mupl}:chat:<chat key>`` - admitted jobs scored by their deadline, so the
  queue and per-chat limits hold across bot replicas and heal themselves when a bot dies;
* ``{mupl}:answered:<job>`` / ``{mupl}:replied:<job>`` - first result wins / first reply wins;
* ``{mupl}:workers`` - heartbeats, one JSON value per worker.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from inference.errors import CommentBotError, error_from_wire
from inference.results import CommentResult, DetectedObject, Face
from inference.serving.jobs import Job, JobOutcome
from inference.serving.records import ReplyAddress, WorkerStatus

WORKER_GROUP = "workers"
BOT_GROUP = "bot"
Fields = dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class QueueKeys:
    name: str

    @property
    def _tag(self) -> str:
        return "{" + self.name + "}"

    @property
    def requests(self) -> str:
        return f"{self._tag}:requests"

    @property
    def dead(self) -> str:
        return f"{self._tag}:dead"

    @property
    def inflight(self) -> str:
        return f"{self._tag}:inflight"

    @property
    def workers(self) -> str:
        return f"{self._tag}:workers"

    def results(self, instance: str) -> str:
        return f"{self._tag}:results:{instance}"

    def chat(self, chat_key: str) -> str:
        return f"{self._tag}:chat:{chat_key}"

    def answered(self, job_key: str) -> str:
        return f"{self._tag}:answered:{job_key}"

    def replied(self, job_key: str) -> str:
        return f"{self._tag}:replied:{job_key}"


@dataclass(frozen=True, slots=True)
class WireJob:
    """A job as a worker reads it from the stream."""

    entry_id: bytes
    key: str
    job: Job
    results_stream: str
    submitted_at: float  # wall clock at the bot


# --- jobs ----------------------------------------------------------------------------------------
def job_fields(key: str, job: Job, results_stream: str) -> dict[str, bytes | str]:
    return {
        "key": key,
        "image": job.image,
        "meta": json.dumps(
            {
                "generator": job.generator,
                "sample": job.sample,
                "deadline": job.deadline,
                "keywords": list(job.keywords) if job.keywords is not None else None,
                "chat": job.chat_key,
                "reply": job.reply_to.to_dict() if job.reply_to is not None else None,
                "results": results_stream,
                "submitted": time.time(),
            },
            ensure_ascii=False,
        ),
    }


def parse_job(entry_id: bytes, fields: Fields, job_id: int) -> WireJob:
    """``job_id`` is local to the worker (the pipeline's batch bookkeeping); ``key`` is global."""
    meta = json.loads(fields[b"meta"])
    keywords = meta.get("keywords")
    reply = meta.get("reply")
    job = Job(
        job_id=job_id,
        image=fields.get(b"image", b""),
        generator=meta.get("generator"),
        sample=bool(meta.get("sample", True)),
        deadline=float(meta["deadline"]),
        keywords=tuple(keywords) if keywords is not None else None,
        chat_key=str(meta.get("chat", "")),
        reply_to=ReplyAddress.from_dict(reply) if reply else None,
    )
    submitted = float(meta.get("submitted", time.time()))
    return WireJob(entry_id, fields[b"key"].decode(), job, str(meta["results"]), submitted)


def job_metadata(fields: Fields) -> dict[str, Any]:
    """A job without its photo, for the dead-letter stream and logs."""
    meta: dict[str, Any] = json.loads(fields.get(b"meta", b"{}"))
    meta["key"] = fields.get(b"key", b"?").decode(errors="replace")
    meta["image_bytes"] = len(fields.get(b"image", b""))
    return meta


# --- outcomes ------------------------------------------------------------------------------------
def outcome_fields(
    key: str, outcome: JobOutcome, reply: ReplyAddress | None, chat_key: str
) -> dict[str, str]:
    payload: dict[str, Any] = {"batch_size": outcome.batch_size, "worker_ms": outcome.worker_ms}
    if outcome.result is not None:
        payload["result"] = asdict(outcome.result)
    if outcome.error is not None:
        payload["error"] = error_to_dict(outcome.error)
    return {
        "key": key,
        "outcome": json.dumps(payload, ensure_ascii=False),
        "reply": json.dumps(reply.to_dict() if reply is not None else None),
        "chat": chat_key,
    }


@dataclass(slots=True)
class WireOutcome:
    entry_id: bytes
    key: str
    outcome: JobOutcome
    reply: ReplyAddress | None
    chat_key: str
    resolved: bool = False  # handed to a ``submit`` waiting in this process


def parse_outcome(entry_id: bytes, fields: Fields, job_id: int = 0) -> WireOutcome:
    payload = json.loads(fields[b"outcome"])
    result = result_from_dict(payload["result"]) if payload.get("result") else None
    error = error_from_dict(payload["error"]) if payload.get("error") else None
    reply = json.loads(fields.get(b"reply", b"null"))
    return WireOutcome(
        entry_id=entry_id,
        key=fields[b"key"].decode(),
        outcome=JobOutcome(
            job_id,
            result=result,
            error=error,
            batch_size=int(payload.get("batch_size", 0)),
            worker_ms=float(payload.get("worker_ms", 0.0)),
        ),
        reply=ReplyAddress.from_dict(reply) if reply else None,
        chat_key=fields.get(b"chat", b"").decode(),
    )


def error_to_dict(error: CommentBotError) -> dict[str, str]:
    return {"code": error.code, "detail": str(error), "user_message": error.user_message}


def error_from_dict(data: dict[str, str]) -> CommentBotError:
    return error_from_wire(data.get("code", "error"), data.get("detail", ""), data.get("user_message", ""))


def result_from_dict(data: dict[str, Any]) -> CommentResult:
    faces = [Face(f["label"], f["keyword"], f["confidence"], _box(f["box"])) for f in data["faces"]]
    objects = [
        DetectedObject(o["label"], o["keyword"], o["confidence"], _box(o["box"])) for o in data["objects"]
    ]
    width, height = data.get("image_size", (0, 0))
    return CommentResult(
        comment=data["comment"],
        keywords=list(data["keywords"]),
        faces=faces,
        objects=objects,
        generator=data["generator"],
        timings_ms=dict(data.get("timings_ms", {})),
        image_size=(int(width), int(height)),
        fallback=bool(data.get("fallback", False)),
    )


def _box(values: list[float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = values
    return (float(x1), float(y1), float(x2), float(y2))


# --- heartbeats ----------------------------------------------------------------------------------
def heartbeat_value(status: WorkerStatus, seen_at: float) -> str:
    data = asdict(status)
    data["seen_at"] = seen_at
    return json.dumps(data)


def parse_heartbeat(raw: bytes, now: float) -> WorkerStatus:
    data = json.loads(raw)
    seen_at = float(data.pop("seen_at"))
    data["seen_s_ago"] = max(0.0, now - seen_at)
    known = {name: value for name, value in data.items() if name in WorkerStatus.__dataclass_fields__}
    return WorkerStatus(**known)  # fields a newer worker adds are ignored, not fatal
