"""Feedback under every comment, platform-neutral: 👍/👎 votes, 🔄 another comment, 🔍 the annotated
photo, ``/forget`` and the feedback half of ``/stats``.

Every comment the bot sends is stored first (its id goes into the buttons), so buttons keep working
after a restart and on any replica sharing the database. The adapters (``telegram_feedback``,
``cogs.feedback``) only translate presses and replies; every rule and Korean sentence is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError

from bot.store import CommentRecord, FeedbackRow, NewComment, Store, Tally, now
from inference.drawing import detections_of, draw_detections
from inference.errors import CommentBotError, ImageError
from inference.results import CommentResult
from inference.serving.records import ReplyAddress
from inference.settings import Settings

logger = logging.getLogger(__name__)

Action = Literal["up", "down", "again", "look"]
ACTIONS: tuple[Action, ...] = ("up", "down", "again", "look")
# Telegram callback_data (≤ 64 bytes) and Discord custom_id (≤ 100 chars) share this form.
BUTTON_PATTERN = r"fb:(?P<comment_id>[0-9]{1,18}):(?P<action>up|down|again|look)"
_BUTTON = re.compile(f"^{BUTTON_PATTERN}$")
PURGE_INTERVAL_S = 3600.0
STATS_KEYWORD_SETS = 5

VOTED_UP = "👍 고마워요! 반영했어요"
VOTED_DOWN = "👎 아쉬웠군요, 반영했어요. 🔄 로 새 댓글을 받아 볼 수도 있어요"
VOTE_WITHDRAWN = "투표를 취소했어요"
REGENERATED = "🔄 새 댓글로 바꿨어요"
REGENERATE_BUSY = "새 댓글을 쓰고 있어요, 잠시만요 ⏳"
LOOK_STARTED = "🔍 제가 본 것을 그려서 보내 드릴게요"
LOOK_BUSY = "분석 사진을 만들고 있어요, 잠시만요 ⏳"
LOOK_CAPTION = "🔍 제가 사진에서 본 것들이에요"
PHOTO_GONE = "원본 사진을 다시 가져오지 못했어요 😢 사진이 지워졌을 수 있어요."
RECORD_GONE = "이 댓글의 기록이 없어요 (지워졌거나 보관 기간이 지났어요) 🗂️"
WRONG_CHAT = "이 버튼은 이 채팅의 댓글에서만 쓸 수 있어요 🙅"
STORE_FAILED = "앗, 기록을 저장하지 못했어요 😢 잠시 후 다시 눌러 주세요."
REGENERATE_REDRAWS = 1  # a 🔄 that drew the shown comment again draws once more
FORGET_ADMIN_ONLY = "그룹과 서버에서는 관리자만 댓글 기록을 지울 수 있어요 🔒"


def regenerate_limit_reached(limit: int) -> str:
    return f"이 댓글은 이미 {limit}번 새로 썼어요 🙏 다음 사진에서 또 만나요!"


def chat_regenerate_limit_reached(limit: int) -> str:
    return f"이 채팅은 한 시간에 {limit}번까지 새 댓글을 받을 수 있어요 ⏳ 조금 뒤에 다시 눌러 주세요."


def forgotten(count: int, retention_days: int) -> str:
    return (
        f"이 채팅의 댓글 기록 {count}개를 지웠어요 🧹 (모델 설정은 그대로예요)\n"
        f"기록은 원래도 {retention_days}일이 지나면 자동으로 지워지고, 사진은 저장하지 않아요."
    )


@dataclass(frozen=True, slots=True)
class Buttons:
    """What the buttons under a comment show."""

    comment_id: int
    likes: int = 0
    dislikes: int = 0

    def label(self, action: Action) -> str:
        if action == "up":
            return f"👍 {self.likes}" if self.likes else "👍"
        if action == "down":
            return f"👎 {self.dislikes}" if self.dislikes else "👎"
        return "🔄" if action == "again" else "🔍"

    def data(self, action: Action) -> str:
        return button_data(self.comment_id, action)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to a press: a short notice for the presser, and the new state of the message
    (``text`` only when the comment itself changed, ``buttons`` when the buttons did)."""

    notice: str
    buttons: Buttons | None = None
    text: str | None = None
    alert: bool = False  # show as a dialog (refusals) rather than a toast


def button_data(comment_id: int, action: Action) -> str:
    return f"fb:{comment_id}:{action}"


def parse_button(data: str | None) -> tuple[int, Action] | None:
    match = _BUTTON.match(data or "")
    if match is None:
        return None
    action = match["action"]
    assert action in ACTIONS
    return int(match["comment_id"]), action


def photo_sha256(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


class Commenter(Protocol):
    """The inference client's ``comment``: photos, or with ``keywords`` and no image a 🔄."""

    async def comment(
        self,
        image: bytes,
        *,
        chat_key: str,
        generator: str | None = None,
        keywords: Sequence[str] | None = None,
        reply_to: ReplyAddress | None = None,
    ) -> CommentResult: ...


class FeedbackService:
    """Records comments and answers button presses; ``chat_key``s come from ``core.ChatRef.key``."""

    def __init__(self, client: Commenter, store: Store, settings: Settings) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self._busy: set[tuple[int, Action]] = set()  # 🔄/🔍 in progress here (double presses)
        self._last_purge = float("-inf")

    # --- recording --------------------------------------------------------------------------
    async def record_late(
        self, platform: str, address: ReplyAddress, result: CommentResult
    ) -> Buttons | None:
        """``record`` for a photo answered after a bot restart: only its address and digest remain."""
        return await self.record(
            platform=platform,
            chat_key=address.chat_key,
            chat_id=address.chat_id,
            photo_message_id=address.message_id,
            photo_ref=address.photo_ref,
            image=None,
            image_sha256=address.photo_sha256,
            result=result,
        )

    async def record(
        self,
        *,
        platform: str,
        chat_key: str,
        chat_id: int,
        photo_message_id: int,
        photo_ref: str,
        image: bytes | None,
        result: CommentResult,
        image_sha256: str = "",
    ) -> Buttons | None:
        """Store a comment before it is sent; ``None`` (comment goes out without buttons) when the
        store fails, so a database problem never costs the user the comment. A reply after a restart
        no longer has the photo: it passes the digest that travelled with the job instead."""
        await self._purge_now_and_then()
        new = NewComment(
            platform=platform,
            chat_key=chat_key,
            chat_id=chat_id,
            photo_message_id=photo_message_id,
            photo_ref=photo_ref,
            photo_sha256=photo_sha256(image) if image is not None else image_sha256,
            generator=result.generator,
            keywords=result.keywords,
            detections=detections_of(result),
            text=result.comment,
        )
        try:
            return Buttons(await self.store.add_comment(new))
        except SQLAlchemyError:
            logger.exception("could not store the comment for %s; sending it without buttons", chat_key)
            return None

    async def sent(self, buttons: Buttons, message_id: int) -> None:
        """The comment went out as ``message_id``."""
        try:
            await self.store.set_reply_message(buttons.comment_id, message_id)
        except SQLAlchemyError:
            logger.exception("could not store the message id of comment %d", buttons.comment_id)

    # --- presses ----------------------------------------------------------------------------
    async def find(self, comment_id: int, chat_key: str, message_id: int | None) -> CommentRecord | Outcome:
        """The comment a press is about, or the refusal: unknown/forgotten comment, another chat's
        comment (a forged button), or a message that is not the comment's."""
        try:
            record = await self.store.comment(comment_id)
        except SQLAlchemyError:
            logger.exception("could not load comment %d", comment_id)
            return Outcome(STORE_FAILED, alert=True)
        if record is None:
            logger.info("button for unknown comment %d pressed in %s", comment_id, chat_key)
            return Outcome(RECORD_GONE, alert=True)
        shown_in = record.reply_message_id
        if record.chat_key != chat_key or (None not in (shown_in, message_id) and shown_in != message_id):
            logger.warning(
                "button of comment %d (%s) pressed in %s: refused", comment_id, record.chat_key, chat_key
            )
            return Outcome(WRONG_CHAT, alert=True)
        return record

    async def vote(self, record: CommentRecord, voter: str, value: int) -> Outcome:
        try:
            tally, mine = await self.store.vote(record.id, record.version, voter, value)
        except SQLAlchemyError:
            logger.exception("could not store a vote on comment %d", record.id)
            return Outcome(STORE_FAILED, alert=True)
        notice = VOTE_WITHDRAWN if mine == 0 else VOTED_UP if mine > 0 else VOTED_DOWN
        logger.info("vote %+d by %s on comment %d v%d → %s", value, voter, record.id, record.version, tally)
        return Outcome(notice, buttons=_buttons(record.id, tally))

    async def regenerate(self, record: CommentRecord) -> Outcome:
        """A new sampled comment from the stored keywords and generator (no detection)."""
        refusal = await self._regenerate_refusal(record)
        if refusal is not None:
            return refusal
        with self.claim(record, "again") as mine:
            return await self._regenerate(record) if mine else Outcome(REGENERATE_BUSY)

    @contextlib.contextmanager
    def claim(self, record: CommentRecord, action: Action) -> Iterator[bool]:
        """``True`` inside when this press may run; ``False`` while the same 🔄/🔍 of the same comment is
        still running here (a double tap), so it is not done twice."""
        key = (record.id, action)
        if key in self._busy:
            yield False
            return
        self._busy.add(key)
        try:
            yield True
        finally:
            self._busy.discard(key)

    async def _regenerate_refusal(self, record: CommentRecord) -> Outcome | None:
        per_comment = self.settings.regenerate_per_comment
        if record.version - 1 >= per_comment:
            return Outcome(regenerate_limit_reached(per_comment), alert=True)
        per_chat = self.settings.regenerate_per_chat_per_hour
        try:
            recent = await self.store.regenerations_since(record.chat_key, now() - timedelta(hours=1))
        except SQLAlchemyError:
            logger.exception("could not count regenerations of %s", record.chat_key)
            return Outcome(STORE_FAILED, alert=True)
        if recent >= per_chat:
            logger.info("chat %s reached its 🔄 limit (%d per hour)", record.chat_key, per_chat)
            return Outcome(chat_regenerate_limit_reached(per_chat), alert=True)
        return None

    async def _regenerate(self, record: CommentRecord) -> Outcome:
        started = time.perf_counter()
        try:
            result = await self._new_comment(record)
        except CommentBotError as exc:
            logger.info("🔄 of comment %d failed: %s (%s)", record.id, exc.code, exc)
            return Outcome(exc.user_message, alert=True)
        try:
            version = await self.store.add_version(
                record.id, result.comment, max_versions=1 + self.settings.regenerate_per_comment
            )
        except SQLAlchemyError:
            logger.exception("could not store the new version of comment %d", record.id)
            return Outcome(STORE_FAILED, alert=True)
        if version is None:  # a concurrent 🔄 (maybe on another replica) took the last one
            return Outcome(regenerate_limit_reached(self.settings.regenerate_per_comment), alert=True)
        logger.info(
            "🔄 comment %d → v%d with %s in %.0f ms",
            record.id,
            version,
            record.generator,
            (time.perf_counter() - started) * 1000,
        )
        return Outcome(REGENERATED, buttons=Buttons(record.id), text=result.comment)

    async def _new_comment(self, record: CommentRecord) -> CommentResult:
        """A comment for the record's keywords that differs from the one shown: sampling repeats
        itself now and then (a few percent of draws for the same keywords), and a 🔄 that changes
        nothing looks broken, so a repeat is drawn once more."""
        for attempt in range(1 + REGENERATE_REDRAWS):
            result = await self.client.comment(
                b"", chat_key=record.chat_key, generator=record.generator, keywords=record.keywords
            )
            if result.comment != record.text:
                break
            logger.info("🔄 of comment %d drew the same text (attempt %d)", record.id, attempt + 1)
        return result

    async def annotated_photo(self, record: CommentRecord, photo: bytes | None) -> bytes | str:
        """The photo with the comment's boxes drawn (JPEG), or a Korean reason it could not be made
        (``photo`` is ``None`` when the platform no longer has it). Drawn off the event loop."""
        if photo is None:
            return PHOTO_GONE
        try:
            return await asyncio.to_thread(draw_detections, photo, record.detections)
        except ImageError as exc:
            logger.info("🔍 of comment %d: photo not decodable (%s)", record.id, exc)
            return exc.user_message

    # --- /forget, retention, /stats -----------------------------------------------------------
    async def forget(self, chat_key: str) -> str:
        count = await self.store.forget_chat(chat_key)
        logger.info("forgot %d comment(s) of %s on request", count, chat_key)
        return forgotten(count, self.settings.feedback_retention_days)

    async def purge_expired(self) -> int:
        cutoff = now() - timedelta(days=self.settings.feedback_retention_days)
        count = await self.store.purge_before(cutoff)
        if count:
            logger.info("retention: deleted %d comment(s) older than %s", count, cutoff.date())
        return count

    async def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_INTERVAL_S:
            return
        self._last_purge = time.monotonic()
        try:
            await self.purge_expired()
        except SQLAlchemyError:
            logger.exception("retention purge failed; trying again in an hour")

    async def stats_text(self) -> str:
        """Like-rate and 🔄-rate per generator and per keyword set: users' A/B of the generators."""
        by_generator = await self.store.feedback_by("generator")
        by_keywords = await self.store.feedback_by("keywords", limit=STATS_KEYWORD_SETS)
        if not by_generator:
            return "💬 피드백: 아직 저장된 댓글이 없어요"
        lines = ["💬 피드백 (👍 비율 = 👍/(👍+👎), 🔄 비율 = 새로 쓴 댓글/댓글)", "모델별"]
        lines += [_stats_line(row) for row in by_generator]
        lines.append(f"키워드별 (댓글 많은 {STATS_KEYWORD_SETS}개)")
        lines += [_stats_line(row) for row in by_keywords]
        return "\n".join(lines)


def _buttons(comment_id: int, tally: Tally) -> Buttons:
    return Buttons(comment_id, tally.likes, tally.dislikes)


def _stats_line(row: FeedbackRow) -> str:
    rate = "-" if row.like_rate is None else f"{row.like_rate:.0%}"
    return (
        f"• {row.key or '(없음)'}: 댓글 {row.comments}개, 👍 {row.likes} / 👎 {row.dislikes} ({rate}), "
        f"🔄 {row.regenerate_rate:.0%}"
    )
