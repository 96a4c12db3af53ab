"""Telegram adapter: python-telegram-bot 22 handlers that translate updates into ``PhotoService`` calls.

Structure follows the PTB examples: ``build_application`` wires handlers with ``Application.builder()``,
resources travel in ``application.bot_data`` (no module globals), one error handler, and
``post_init``/``post_shutdown`` open and close what the application owns. ``telegram_running`` is the
manual start/stop sequence used when Telegram shares the event loop with Discord (``bot.app``).

Albums: Telegram delivers every photo of an album (same ``media_group_id``) as its own message, and each
gets its own comment as a reply — simple, consistent with single photos, and every photo is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from telegram import Bot, BotCommand, ChatMember, Document, Message, PhotoSize, ReactionTypeEmoji, Update
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    Defaults,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import messages
from bot.core import ChatRef, PhotoService, PlatformStartupError, is_busy
from bot.delivery import check_length, deliver_reply, retrying, telegram_download_transient
from bot.feedback import BUTTON_PATTERN, FORGET_ADMIN_ONLY, photo_sha256
from bot.pacing import BusyNotices, ChatPacer
from bot.telegram_feedback import TelegramLateSender, answer_press, reply_with_comment
from inference.errors import CommentBotError
from inference.results import CommentResult
from inference.serving.records import ReplyAddress
from inference.settings import Settings

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "heic", "heif", "bmp", "tif", "tiff")
TYPING_INTERVAL_S = 4.0  # Telegram shows "typing" for ~5 s per chat action
BUSY_REACTION = "🙏"  # refused photos after the burst's one "busy" text (a reaction costs no message)
COMMANDS = (
    BotCommand("start", "봇 소개와 사용법"),
    BotCommand("help", "도움말과 명령어 목록"),
    BotCommand("model", "댓글 모델 보기/바꾸기 (/model 이름)"),
    BotCommand("stats", "처리 통계 (관리자 전용)"),
    BotCommand("forget", "이 채팅의 댓글 기록 지우기"),
)
_GROUP_TYPES = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})
_ADMIN_STATUSES = frozenset({ChatMember.ADMINISTRATOR, ChatMember.OWNER})
INVALID_TOKEN_HELP = (
    "Telegram rejected TELEGRAM_BOT_TOKEN. Copy the token again from @BotFather (/mybots → your bot → "
    "API Token) into .env and start the bot again."
)
_FILE_TOO_BIG_HINT = "file is too big"  # Bot API's getFile error for files over its download limit

IMAGE_FILTER = filters.PHOTO | filters.Document.IMAGE
for _extension in IMAGE_EXTENSIONS:
    IMAGE_FILTER = IMAGE_FILTER | filters.Document.FileExtension(_extension)


class ErrorPageLogFilter(logging.Filter):
    """PTB logs a proxy's HTML error page (a 502 from Telegram's front) as a JSON-parsing traceback
    before raising the ``NetworkError`` that ``bot.delivery`` retries: keep one warning line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Can not load invalid JSON data"):
            record.msg, record.args = "Bot API answered with a non-JSON error page (retried where safe)", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_ERROR_PAGE_FILTER = ErrorPageLogFilter()
PTB_REQUEST_LOGGER = "telegram.request.BaseRequest"


@dataclass(frozen=True, slots=True)
class BotResources:
    """What handlers need, stored in ``application.bot_data["resources"]``."""

    service: PhotoService
    settings: Settings
    owns_service: bool  # True: post_init/post_shutdown open and close the store and the client
    typing: TypingIndicator
    busy_notices: BusyNotices


# --- application ---------------------------------------------------------------------------------
def build_application(
    settings: Settings,
    service: PhotoService,
    *,
    owns_service: bool = True,
    typing_interval_s: float = TYPING_INTERVAL_S,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The configured PTB ``Application``; ``settings.telegram_bot_token`` must be set."""
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    request_logger = logging.getLogger(PTB_REQUEST_LOGGER)
    if _ERROR_PAGE_FILTER not in request_logger.filters:
        request_logger.addFilter(_ERROR_PAGE_FILTER)
    application = (
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_file_base_url)
        .rate_limiter(ChatPacer())  # paces messages per chat; bot.delivery retries 429s and faults
        # the photo may be deleted while its comment is made: still deliver the comment
        .defaults(Defaults(allow_sending_without_reply=True))
        .concurrent_updates(True)  # photos are processed concurrently; the inference queue batches them
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    application.bot_data["resources"] = BotResources(
        service,
        settings,
        owns_service,
        TypingIndicator(typing_interval_s),
        BusyNotices(settings.busy_notice_interval_s),
    )

    new_only = ~filters.UpdateType.EDITED  # editing a caption must not earn a second comment
    application.add_handler(TypeHandler(Update, gate), group=-1)
    application.add_handler(CommandHandler(["start", "help"], help_command, filters=new_only))
    application.add_handler(CommandHandler("model", model_command, filters=new_only))
    application.add_handler(CommandHandler("stats", stats_command, filters=new_only))
    application.add_handler(CommandHandler("forget", forget_command, filters=new_only))
    application.add_handler(CallbackQueryHandler(feedback_button, pattern=f"^{BUTTON_PATTERN}$"))
    application.add_handler(MessageHandler(IMAGE_FILTER & new_only, photo_message))
    application.add_handler(MessageHandler(filters.Document.ALL & new_only, unsupported_file))
    application.add_handler(MessageHandler(filters.COMMAND & new_only, unknown_command))
    application.add_error_handler(error_handler)
    return application


async def post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Open the resources this application owns and register the command menu."""
    resources = _resources(application.bot_data)
    if resources.owns_service:
        await resources.service.store.open()
        await resources.service.client.start()
    await application.bot.set_my_commands(list(COMMANDS))
    resources.service.late_replies.register(
        "telegram", TelegramLateSender(application.bot, resources.service)
    )
    logger.info("telegram bot @%s ready", application.bot.username)


async def post_shutdown(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Close what ``post_init`` opened: in-flight jobs finish or fail, then the store closes."""
    resources = _resources(application.bot_data)
    if resources.owns_service:
        await resources.service.client.close()
        await resources.service.store.close()


@contextlib.asynccontextmanager
async def telegram_running(
    application: Application[Any, Any, Any, Any, Any, Any], *, poll_timeout_s: float = 10.0
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Run the application inside an already running event loop (next to Discord), polling or
    webhook per settings. PTB calls neither ``post_init`` nor ``post_shutdown`` in this mode, so
    they are called here, in the same places ``run_polling`` would call them."""
    resources = _resources(application.bot_data)
    settings = resources.settings
    updater = application.updater
    if updater is None:
        raise RuntimeError("application was built without an updater")
    await application.initialize()
    try:
        await post_init(application)
        await application.start()
        if settings.telegram_mode == "webhook":
            await updater.start_webhook(**webhook_arguments(settings))
        else:
            await updater.start_polling(timeout=int(poll_timeout_s), drop_pending_updates=False)
        yield application
    finally:
        # Stop taking updates first, then let handlers in flight finish, then close resources.
        if updater.running:
            await updater.stop()
        if application.running:
            await application.stop()
        await application.shutdown()
        await post_shutdown(application)


async def run_telegram(settings: Settings, service: PhotoService, stop: asyncio.Event) -> None:
    """Entry point for ``bot.app``: run until ``stop`` is set. The caller owns the service."""
    application = build_application(settings, service, owns_service=False)
    try:
        async with telegram_running(application):
            await stop.wait()
    except InvalidToken:
        logger.error(INVALID_TOKEN_HELP)
        raise PlatformStartupError(INVALID_TOKEN_HELP) from None
    logger.info("telegram bot stopped")


def webhook_arguments(settings: Settings) -> dict[str, Any]:
    """``Updater.start_webhook`` arguments; the URL path comes from the public URL, never the token."""
    url = settings.telegram_webhook_url or ""
    secret = settings.telegram_webhook_secret
    return {
        "listen": settings.telegram_webhook_listen,
        "port": settings.telegram_webhook_port,
        "url_path": urlparse(url).path.lstrip("/"),
        "webhook_url": url,
        "secret_token": secret.get_secret_value() if secret else None,
    }


# --- handlers ------------------------------------------------------------------------------------
async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Drop updates from chats outside the allow-list before any other handler sees them."""
    chat = update.effective_chat
    if chat is None:
        return
    service = _resources(context.bot_data).service
    if not service.is_allowed(chat_ref(update)):
        logger.info("ignoring update from chat %s (not in ALLOWED_CHAT_IDS)", chat.id)
        raise ApplicationHandlerStop


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start and /help: what the bot does and its commands."""
    message = update.effective_message
    if message is None:
        return
    await message.reply_text(_resources(context.bot_data).service.help_text("telegram"), do_quote=True)


async def model_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/model lists the generators; /model NAME switches this chat's (group admins only in groups)."""
    message = update.effective_message
    if message is None:
        return
    service = _resources(context.bot_data).service
    chat = chat_ref(update)
    if not context.args:
        await message.reply_text(await service.models_text(chat), do_quote=True)
        return
    if chat.is_group and not await _may_change_group_settings(update, context):
        await message.reply_text(messages.GROUP_ADMIN_ONLY, do_quote=True)
        return
    await message.reply_text(await service.switch_model(chat, " ".join(context.args)), do_quote=True)


async def stats_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stats: queue counters and latency, for ADMIN_USER_IDS only."""
    message = update.effective_message
    if message is None:
        return
    service = _resources(context.bot_data).service
    user = update.effective_user
    if not service.is_admin(user.id if user else None):
        await message.reply_text(messages.ADMIN_ONLY, do_quote=True)
        return
    await message.reply_text(await service.stats_report(), do_quote=True)


async def forget_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/forget: delete this chat's comment records (group admins only in groups)."""
    message = update.effective_message
    if message is None:
        return
    chat = chat_ref(update)
    if chat.is_group and not await _may_change_group_settings(update, context):
        await message.reply_text(FORGET_ADMIN_ONLY, do_quote=True)
        return
    await message.reply_text(
        await _resources(context.bot_data).service.feedback.forget(chat.key), do_quote=True
    )


async def feedback_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """👍 👎 🔄 🔍 under a comment (see ``bot.telegram_feedback``)."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None or update.effective_chat is None:
        return
    service = _resources(context.bot_data).service
    await answer_press(query, context.bot, service, chat_ref(update), user.id)


async def photo_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or an image file: download it, show "typing" while the queue works, reply the comment."""
    message = update.effective_message
    if message is None or not _is_addressed_to_bot(message, context):
        return
    resources = _resources(context.bot_data)
    attachment = _largest_image(message)
    if attachment is None:
        return
    limit = resources.settings.telegram_max_download_bytes
    if attachment.file_size is not None and attachment.file_size > limit:
        logger.info(
            "file of %d bytes in chat %s is over the download limit", attachment.file_size, message.chat_id
        )
        await deliver_reply(message, messages.file_too_big(limit), resources.settings.delivery_window_s)
        return
    chat = chat_ref(update)
    async with resources.typing.typing(context.bot, message.chat_id):
        image = await _download(attachment, limit, resources.settings.download_window_s)
        outcome = (
            image
            if isinstance(image, str)
            else await resources.service.photo_outcome(
                chat, image, _reply_address(message, chat, attachment, image)
            )
        )
    window_s = resources.settings.delivery_window_s
    if isinstance(outcome, CommentResult) and isinstance(image, bytes):
        await reply_with_comment(
            message, resources.service, chat, outcome, image, attachment.file_id, window_s
        )
        return
    if not isinstance(outcome, CommentBotError):  # the download failed: its Korean explanation
        await deliver_reply(message, str(outcome), window_s)
        return
    busy = is_busy(outcome)
    if busy and not resources.busy_notices.text_allowed(chat.key):
        await _react(message, BUSY_REACTION)
        return
    await deliver_reply(message, outcome.user_message, window_s)
    if busy:
        resources.busy_notices.text_sent(chat.key)


async def _react(message: Message, emoji: str) -> None:
    """Best effort: a reaction is a courtesy, its failure costs nothing."""
    try:
        await message.set_reaction(ReactionTypeEmoji(emoji))
    except TelegramError as exc:
        logger.info("could not react to message %s in chat %s: %s", message.message_id, message.chat_id, exc)


def _reply_address(
    message: Message, chat: ChatRef, attachment: PhotoSize | Document, image: bytes
) -> ReplyAddress:
    """Where the comment goes: it travels with the job, so a restarted bot still replies."""
    return ReplyAddress(
        platform="telegram",
        chat_id=message.chat_id,
        message_id=message.message_id,
        chat_key=chat.key,
        photo_ref=attachment.file_id,
        photo_sha256=photo_sha256(image),
    )


async def unsupported_file(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A non-image document: explain which files work (in groups only when addressed to the bot)."""
    message = update.effective_message
    if message is None or not _is_addressed_to_bot(message, context, explicit_in_groups=True):
        return
    document = message.document
    logger.info(
        "unsupported file %s (%s) in chat %s",
        document.file_name if document else "?",
        document.mime_type if document else "?",
        message.chat_id,
    )
    await message.reply_text(messages.UNSUPPORTED_FILE, do_quote=True)


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Any other /command: point to /help (in groups only for commands addressed to this bot)."""
    message = update.effective_message
    if message is None or message.text is None:
        return
    command = message.text.split()[0].lower()
    username = (context.bot.username or "").lower()
    if message.chat.type in _GROUP_TYPES and not command.endswith(f"@{username}"):
        return  # in a group, /cmd or /cmd@otherbot may be meant for another bot
    await message.reply_text(messages.UNKNOWN_COMMAND, do_quote=True)


async def error_handler(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The one error handler: log the traceback and give the user a generic apology when possible."""
    logger.error("unhandled error while processing an update", exc_info=context.error)
    if isinstance(update, Update) and update.callback_query is not None:
        with contextlib.suppress(TelegramError):  # a button press: the spinner must stop, no new message
            await update.callback_query.answer(messages.GENERIC_ERROR, show_alert=True)
    elif isinstance(update, Update) and update.effective_message is not None:
        with contextlib.suppress(TelegramError):
            await update.effective_message.reply_text(messages.GENERIC_ERROR, do_quote=True)


# --- helpers -------------------------------------------------------------------------------------
def chat_ref(update: Update) -> ChatRef:
    chat = update.effective_chat
    user = update.effective_user
    if chat is None:
        raise ValueError("update without a chat")
    return ChatRef(
        platform="telegram",
        chat_id=chat.id,
        user_id=user.id if user else None,
        is_group=chat.type in _GROUP_TYPES,
    )


class TypingIndicator:
    """Shows "typing" in a chat while at least one photo of that chat is being processed.

    One loop per chat, shared by concurrent photos (reference-counted), sends the action at once and
    then every ``interval_s``; it stops when the last photo's block ends, so a chat never gets more
    than one action per interval however many photos it sent.
    """

    def __init__(self, interval_s: float = TYPING_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._loops: dict[int, tuple[asyncio.Task[None], int]] = {}

    @contextlib.asynccontextmanager
    async def typing(self, bot: Bot, chat_id: int) -> AsyncIterator[None]:
        task, users = self._loops.get(chat_id, (None, 0))
        if task is None:
            task = asyncio.create_task(self._loop(bot, chat_id), name=f"typing-{chat_id}")
        self._loops[chat_id] = (task, users + 1)
        try:
            yield
        finally:
            task, users = self._loops[chat_id]
            if users > 1:
                self._loops[chat_id] = (task, users - 1)
            else:
                del self._loops[chat_id]
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self, bot: Bot, chat_id: int) -> None:
        while True:
            try:
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            except TelegramError as exc:  # cosmetic: never let it fail the photo
                logger.debug("chat action failed in chat %s: %s", chat_id, exc)
            await asyncio.sleep(self.interval_s)


def _largest_image(message: Message) -> PhotoSize | Document | None:
    if message.photo:
        return max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
    return message.document


async def _download(attachment: PhotoSize | Document, limit: int, window_s: float) -> bytes | str:
    """The file's bytes, or the Korean reply explaining why it could not be fetched. getFile and the
    download are retried on transient failures, and a file shorter than announced counts as one."""

    async def fetch() -> bytes | str:
        telegram_file = await attachment.get_file()
        if telegram_file.file_size is not None and telegram_file.file_size > limit:
            return messages.file_too_big(limit)
        data = bytes(await telegram_file.download_as_bytearray())
        return check_length(data, telegram_file.file_size or attachment.file_size, attachment.file_id)

    try:
        return await retrying(
            fetch,
            transient=telegram_download_transient,
            what=f"download of {attachment.file_id}",
            window_s=window_s,
        )
    except BadRequest as exc:
        if _FILE_TOO_BIG_HINT in str(exc).lower():
            logger.info("Bot API refused a file over its download limit: %s", exc)
            return messages.file_too_big(limit)
        logger.warning("could not fetch file %s: %s", attachment.file_id, exc)
        return messages.DOWNLOAD_FAILED
    except Exception as exc:  # TelegramError or ShortDownloadError once the retries are spent
        logger.warning("could not download file %s: %s: %s", attachment.file_id, type(exc).__name__, exc)
        return messages.DOWNLOAD_FAILED


def _is_addressed_to_bot(
    message: Message, context: ContextTypes.DEFAULT_TYPE, *, explicit_in_groups: bool = False
) -> bool:
    """Private chats: always. Groups: always with TELEGRAM_GROUP_TRIGGER=all (photos), else only when
    the caption mentions @bot or the message replies to one of the bot's messages."""
    if message.chat.type not in _GROUP_TYPES:
        return True
    settings = _resources(context.bot_data).settings
    if settings.telegram_group_trigger == "all" and not explicit_in_groups:
        return True
    bot = context.bot
    caption = (message.caption or message.text or "").lower()
    if bot.username and f"@{bot.username.lower()}" in caption:
        return True
    replied = message.reply_to_message
    return bool(replied and replied.from_user and replied.from_user.id == bot.id)


async def _may_change_group_settings(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    user = update.effective_user
    chat = update.effective_chat
    service = _resources(context.bot_data).service
    if user is None or chat is None:
        return False
    if service.is_admin(user.id):
        return True
    try:
        member = await context.bot.get_chat_member(chat.id, user.id)
    except TelegramError as exc:
        logger.warning("getChatMember failed in chat %s: %s", chat.id, exc)
        return False
    return member.status in _ADMIN_STATUSES


def _resources(bot_data: dict[Any, Any]) -> BotResources:
    resources = bot_data["resources"]
    assert isinstance(resources, BotResources)
    return resources
