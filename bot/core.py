"""The platform-independent heart of the bots: chat identity, access rules and the photo → reply path.

Platform adapters (``telegram_app``, ``discord_app``) only translate between their library and this
core, so Korean replies, per-chat settings and error handling are written once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError

from bot import messages
from bot.feedback import Commenter, FeedbackService
from bot.late_replies import LateReplies
from bot.store import Store
from inference.errors import ChatLimitError, CommentBotError, QueueFullError
from inference.models.registry import discover_generators
from inference.results import CommentResult
from inference.serving.metrics import BotMetrics
from inference.serving.records import ReplyAddress, WorkerStatus
from inference.settings import Settings

logger = logging.getLogger(__name__)

Platform = Literal["telegram", "discord"]


class QueueStatsLike(Protocol):
    """The fields of ``inference.serving.client.QueueStats`` that ``/stats`` shows."""

    @property
    def jobs_done(self) -> int: ...
    @property
    def jobs_rejected(self) -> int: ...
    @property
    def jobs_failed(self) -> int: ...
    @property
    def latency_p50_ms(self) -> float | None: ...
    @property
    def latency_p95_ms(self) -> float | None: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def worker_restarts(self) -> int: ...


class CommentClient(Commenter, Protocol):
    """What the core needs from ``inference.serving.client.InferenceClient`` (structural, so tests and the
    core do not depend on the worker's transport); ``comment`` comes from ``Commenter``."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def generator_names(self) -> list[str]: ...
    def stats(self) -> QueueStatsLike: ...
    def workers(self) -> list[WorkerStatus]: ...


def is_busy(outcome: object) -> bool:
    """A photo refused because of load (queue full, chat limit, expected wait), not because of the photo."""
    return isinstance(outcome, QueueFullError | ChatLimitError)


class PlatformStartupError(RuntimeError):
    """A platform refused to start the bot (bad token, missing intent); ``str()`` says how to fix it.

    A plain exception rather than ``SystemExit``: raised inside an asyncio task, ``SystemExit``
    escapes the event loop and skips the orderly shutdown of the other platform and the worker.
    """


@dataclass(frozen=True, slots=True)
class ChatRef:
    """Where a message came from, in platform-neutral terms."""

    platform: Platform
    chat_id: int  # Telegram chat id; Discord channel id (DM: the user id)
    user_id: int | None
    is_group: bool  # group/supergroup/guild channel vs private chat/DM

    @property
    def key(self) -> str:
        """Stable id for per-chat settings and the per-chat queue limit."""
        if self.platform == "discord" and not self.is_group:
            return f"discord:dm:{self.user_id if self.user_id is not None else self.chat_id}"
        return f"{self.platform}:{self.chat_id}"


class PhotoService:
    """Turns a photo into the reply text and serves the shared commands (/model, /stats, /help)."""

    def __init__(
        self, client: CommentClient, store: Store, settings: Settings, metrics: BotMetrics | None = None
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.feedback = FeedbackService(client, store, settings)
        self.late_replies = LateReplies()
        register = getattr(client, "on_late_result", None)  # shared queue: results after a restart
        if register is not None:
            register(self.late_replies.deliver)

    # --- access ---------------------------------------------------------------------------------
    def is_allowed(self, chat: ChatRef) -> bool:
        """Empty ``allowed_chat_ids`` means every chat; DMs also match on the user id."""
        allowed = self.settings.allowed_chat_ids
        if not allowed:
            return True
        return chat.chat_id in allowed or (chat.user_id is not None and chat.user_id in allowed)

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.settings.admin_user_ids

    # --- photos ---------------------------------------------------------------------------------
    async def comment_for_photo(
        self, chat: ChatRef, image: bytes, reply_to: ReplyAddress | None = None
    ) -> str:
        """The reply for one photo: the comment, or a Korean explanation of what went wrong."""
        result = await self.comment_result(chat, image, reply_to)
        if isinstance(result, CommentResult):
            return result.comment
        return result

    async def comment_result(
        self, chat: ChatRef, image: bytes, reply_to: ReplyAddress | None = None
    ) -> CommentResult | str:
        """Like ``comment_for_photo`` but keeps the full result (keywords, faces) on success."""
        outcome = await self.photo_outcome(chat, image, reply_to)
        return outcome.user_message if isinstance(outcome, CommentBotError) else outcome

    async def photo_outcome(
        self, chat: ChatRef, image: bytes, reply_to: ReplyAddress | None = None
    ) -> CommentResult | CommentBotError:
        """The comment, or the error whose ``user_message`` explains what went wrong (``is_busy`` tells
        refusals for load apart, which the adapters answer with at most one text per burst).

        ``reply_to`` travels with the job on a shared queue: if this bot restarts before the result
        comes, the restarted bot still replies to the photo (``bot.late_replies``)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            generator = await self.current_generator(chat)
            result = await self.client.comment(
                image, chat_key=chat.key, generator=generator, reply_to=reply_to
            )
            outcome = "done"
        except CommentBotError as exc:
            # Expected, user-caused or load-related: a log line with the code, never a traceback.
            logger.info("photo from %s not commented: %s (%s)", chat.key, exc.code, exc)
            return exc
        except Exception:
            logger.exception("unexpected failure while commenting a photo from %s", chat.key)
            return CommentBotError("unexpected failure", messages.GENERIC_ERROR)
        finally:
            if self.metrics is not None:
                self.metrics.latency.labels(outcome).observe(time.perf_counter() - started)
        logger.info(
            "commented photo from %s with %s in %.0f ms (keywords: %s)",
            chat.key,
            result.generator,
            result.timings_ms.get("total", 0.0),
            ", ".join(result.keywords),
        )
        return result

    # --- generators -----------------------------------------------------------------------------
    async def current_generator(self, chat: ChatRef) -> str | None:
        """The chat's stored generator if it still exists, else ``None`` (the default). A store that
        cannot answer costs the chat its choice for this photo, never the comment."""
        try:
            stored = await self.store.get_generator(chat.key)
        except SQLAlchemyError as exc:
            logger.warning("could not read the generator of %s (%s); using the default", chat.key, exc)
            return None
        if stored is None:
            return None
        if stored not in self.client.generator_names():
            logger.warning("chat %s uses generator %r that no longer exists; using default", chat.key, stored)
            return None
        return stored

    async def models_text(self, chat: ChatRef) -> str:
        names = self.client.generator_names()
        current = await self.current_generator(chat) or self.settings.default_generator
        return messages.models_list(names, current, self._descriptions(), self._prefix(chat.platform))

    async def switch_model(self, chat: ChatRef, name: str) -> str:
        """Persist the chat's generator (name matched case-insensitively) and confirm in Korean."""
        names = self.client.generator_names()
        wanted = name.strip().lower()
        match = next((n for n in names if n.lower() == wanted), None)
        if match is None:
            logger.info("chat %s asked for unknown generator %r", chat.key, name)
            return messages.unknown_model(name.strip(), names)
        await self.store.set_generator(chat.key, match)
        logger.info("chat %s switched generator to %s", chat.key, match)
        return messages.model_switched(match)

    def _descriptions(self) -> Mapping[str, str]:
        entries = discover_generators(self.settings.generators_dir)
        return {name: entry.meta.description for name, entry in entries.items()}

    # --- info -----------------------------------------------------------------------------------
    def stats_text(self) -> str:
        stats = self.client.stats()
        return messages.stats_text(
            jobs_done=stats.jobs_done,
            jobs_rejected=stats.jobs_rejected,
            jobs_failed=stats.jobs_failed,
            latency_p50_ms=stats.latency_p50_ms,
            latency_p95_ms=stats.latency_p95_ms,
            queue_depth=stats.queue_depth,
            in_flight=stats.in_flight,
            worker_restarts=stats.worker_restarts,
        )

    async def stats_report(self) -> str:
        """/stats: the queue's counters, the workers, then what users thought of the comments."""
        workers = messages.workers_text(self.client.workers())
        return f"{self.stats_text()}\n{workers}\n\n{await self.feedback.stats_text()}"

    def help_text(self, platform: str) -> str:
        return messages.help_text(platform, self._prefix(platform))

    def _prefix(self, platform: str) -> str:
        return self.settings.discord_prefix if platform == "discord" else "/"
