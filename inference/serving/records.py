"""Plain data that travels with a job or describes a worker; no behaviour, no imports of the queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ReplyAddress:
    """Where a job's answer goes. It travels with the job, so a restarted bot (or any replica that
    reads this bot's result stream) can still reply to the photo, exactly once."""

    platform: str  # "telegram" | "discord"
    chat_id: int
    message_id: int
    chat_key: str
    photo_ref: str = ""  # Telegram file_id / Discord attachment id (for the feedback record)
    photo_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "chat_key": self.chat_key,
            "photo_ref": self.photo_ref,
            "photo_sha256": self.photo_sha256,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplyAddress:
        return cls(
            platform=str(data["platform"]),
            chat_id=int(data["chat_id"]),
            message_id=int(data["message_id"]),
            chat_key=str(data["chat_key"]),
            photo_ref=str(data.get("photo_ref", "")),
            photo_sha256=str(data.get("photo_sha256", "")),
        )


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker as ``/stats`` and ``/metrics`` show it (from its heartbeat, or the local process)."""

    name: str
    host: str
    pid: int
    device: str
    generators: list[str] = field(default_factory=list)
    busy: int = 0  # jobs in the batch it runs now
    jobs_done: int = 0
    batches: int = 0
    rss_mb: float = 0.0
    device_memory_mb: float = 0.0  # allocated on the accelerator; 0 on CPU
    seen_s_ago: float = 0.0
