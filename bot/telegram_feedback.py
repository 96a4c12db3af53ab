"""Telegram side of the feedback buttons: the inline keyboard under every comment and the answers to
its callback queries (👍 👎 🔄 🔍). Rules and Korean texts live in ``bot.feedback``.

Presses are answered from the stored comment, so the buttons of messages sent before a restart keep
working. Edits use the chat and message id rather than the ``Message`` object: Telegram sends an
"inaccessible" message for old comments, which can still be edited.
"""

from __future__ import annotations

import logging

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.error import BadRequest, TelegramError

from bot.core import ChatRef, PhotoService
from bot.delivery import deliver_reply
from bot.feedback import ACTIONS, LOOK_BUSY, LOOK_CAPTION, LOOK_STARTED, Buttons, Outcome, parse_button
from bot.store import CommentRecord
from inference.results import CommentResult
from inference.serving.records import ReplyAddress

logger = logging.getLogger(__name__)

_NOT_MODIFIED = "message is not modified"  # the same counts again (a double tap): nothing to do


def keyboard(buttons: Buttons) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(buttons.label(action), callback_data=buttons.data(action))
                for action in ACTIONS
            ]
        ]
    )


async def reply_with_comment(
    message: Message,
    service: PhotoService,
    chat: ChatRef,
    reply: CommentResult,
    image: bytes,
    file_id: str,
    window_s: float,
) -> None:
    """Reply to a photo with its comment and the buttons (the comment is stored first); transient
    failures are retried within ``window_s`` when the reply surely did not land."""
    buttons = await service.feedback.record(
        platform="telegram",
        chat_key=chat.key,
        chat_id=message.chat_id,
        photo_message_id=message.message_id,
        photo_ref=file_id,
        image=image,
        result=reply,
    )
    markup = keyboard(buttons) if buttons is not None else None
    sent = await deliver_reply(message, reply.comment, window_s, markup)
    if sent is not None and buttons is not None:
        await service.feedback.sent(buttons, sent.message_id)


async def answer_press(
    query: CallbackQuery, bot: Bot, service: PhotoService, chat: ChatRef, voter: int
) -> None:
    """One callback query: always answered (Telegram shows a spinner until then)."""
    parsed = parse_button(query.data)
    message = query.message
    if parsed is None or message is None:
        logger.info("callback query with unknown data %r in %s", query.data, chat.key)
        await query.answer()
        return
    comment_id, action = parsed
    found = await service.feedback.find(comment_id, chat.key, message.message_id)
    if isinstance(found, Outcome):
        await query.answer(found.notice, show_alert=found.alert)
        return
    feedback = service.feedback
    if action in ("up", "down"):
        outcome = await feedback.vote(found, f"telegram:{voter}", 1 if action == "up" else -1)
    elif action == "again":
        outcome = await feedback.regenerate(found)
    else:
        await _look(query, bot, service, found, message.message_id)
        return
    # The message first, then the answer: when the spinner stops, the new counts or text are there.
    await _show(bot, message.chat.id, message.message_id, outcome)
    await query.answer(outcome.notice, show_alert=outcome.alert)


async def _show(bot: Bot, chat_id: int, message_id: int, outcome: Outcome) -> None:
    """Put the outcome on the comment message: new text and/or new counts."""
    if outcome.buttons is None:
        return
    try:
        if outcome.text is not None:
            await bot.edit_message_text(
                outcome.text, chat_id=chat_id, message_id=message_id, reply_markup=keyboard(outcome.buttons)
            )
        else:
            await bot.edit_message_reply_markup(chat_id, message_id, reply_markup=keyboard(outcome.buttons))
    except BadRequest as exc:
        if _NOT_MODIFIED not in str(exc).lower():
            logger.warning("could not update comment message %s in chat %s: %s", message_id, chat_id, exc)


async def _look(
    query: CallbackQuery, bot: Bot, service: PhotoService, record: CommentRecord, message_id: int
) -> None:
    """🔍: fetch the photo again by its file_id, draw the boxes, send it as a reply to the comment."""
    feedback = service.feedback
    with feedback.claim(record, "look") as mine:
        if not mine:
            await query.answer(LOOK_BUSY)
            return
        await query.answer(LOOK_STARTED)
        photo = await _fetch(bot, record, service.settings.telegram_max_download_bytes)
        drawn = await feedback.annotated_photo(record, photo)
    reply_to = ReplyParameters(message_id=message_id, allow_sending_without_reply=True)
    try:
        if isinstance(drawn, bytes):
            await bot.send_photo(record.chat_id, drawn, caption=LOOK_CAPTION, reply_parameters=reply_to)
        else:
            await bot.send_message(record.chat_id, drawn, reply_parameters=reply_to)
    except TelegramError as exc:  # the query is answered already: nobody else to tell
        logger.warning("could not send the 🔍 reply of comment %d: %s", record.id, exc)


async def _fetch(bot: Bot, record: CommentRecord, limit: int) -> bytes | None:
    try:
        telegram_file = await bot.get_file(record.photo_ref)
        if telegram_file.file_size is not None and telegram_file.file_size > limit:
            return None
        return bytes(await telegram_file.download_as_bytearray())
    except TelegramError as exc:
        logger.info("🔍 of comment %d: photo %s not available: %s", record.id, record.photo_ref, exc)
        return None


class TelegramLateSender:
    """Replies to photos whose result came after a restart (``bot.late_replies``): the same comment
    with buttons as ``reply_with_comment``, addressed by chat and message id."""

    def __init__(self, bot: Bot, service: PhotoService) -> None:
        self._bot = bot
        self._service = service

    async def send_comment(self, address: ReplyAddress, result: CommentResult) -> None:
        feedback = self._service.feedback
        buttons = await feedback.record_late("telegram", address, result)
        markup = keyboard(buttons) if buttons is not None else None
        sent = await self._send(address, result.comment, markup)
        if sent is not None and buttons is not None:
            await feedback.sent(buttons, sent.message_id)

    async def send_text(self, address: ReplyAddress, text: str) -> None:
        await self._send(address, text, None)

    async def _send(
        self, address: ReplyAddress, text: str, markup: InlineKeyboardMarkup | None
    ) -> Message | None:
        reply_to = ReplyParameters(message_id=address.message_id, allow_sending_without_reply=True)
        try:
            return await self._bot.send_message(
                address.chat_id, text, reply_parameters=reply_to, reply_markup=markup
            )
        except TelegramError as exc:
            logger.warning("could not send the late reply in chat %s: %s", address.chat_id, exc)
            return None
