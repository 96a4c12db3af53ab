"""Typed errors that a user can cause, each carrying the Korean sentence the bot replies with.

They are plain picklable exceptions (they cross the bot ↔ worker process boundary) and never
carry secrets. ``code`` is a stable machine-readable name for logs, counters and JSON output.
"""

from __future__ import annotations


class CommentBotError(Exception):
    """Base class: ``user_message`` is shown to the user, ``str(exc)`` goes to the log."""

    code = "error"
    user_message = "앗, 사진을 처리하다가 문제가 생겼어요. 잠시 후 다시 보내 주세요 🙏"

    def __init__(self, detail: str = "", user_message: str | None = None) -> None:
        super().__init__(detail or self.code)
        if user_message is not None:
            self.user_message = user_message

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (str(self), self.user_message))


# --- image intake ------------------------------------------------------------------------------
class ImageError(CommentBotError):
    code = "bad_image"
    user_message = "이 파일은 사진으로 열 수 없어요 😢 JPG나 PNG 사진으로 다시 보내 주세요."


class EmptyImageError(ImageError):
    code = "empty_image"
    user_message = "빈 파일이 왔어요 😅 사진을 다시 보내 주세요."


class NotAnImageError(ImageError):
    code = "not_an_image"
    user_message = "사진 파일이 아닌 것 같아요 🤔 JPG, PNG, WebP, GIF, HEIC 사진을 보내 주세요."


class TruncatedImageError(ImageError):
    code = "truncated_image"
    user_message = "사진 파일이 깨졌거나 중간에 잘린 것 같아요 😢 다시 보내 주실래요?"


class ImageTooLargeError(ImageError):
    code = "image_too_large"
    user_message = "사진 파일이 너무 커요 😵 20MB 이하로 줄여서 보내 주세요."


class TooManyPixelsError(ImageError):
    code = "too_many_pixels"
    user_message = "사진 해상도가 너무 커요 😵 4천만 화소 이하로 줄여서 보내 주세요."


# --- generators --------------------------------------------------------------------------------
class UnknownGeneratorError(CommentBotError):
    code = "unknown_generator"

    def __init__(
        self, name: str, available: list[str] | tuple[str, ...] = (), user_message: str | None = None
    ):
        self.name = name
        self.available = tuple(available)
        names = ", ".join(self.available) or "(없음)"
        super().__init__(
            f"unknown generator {name!r}; available: {names}",
            user_message or f"'{name}' 모델은 없어요 🤔 쓸 수 있는 모델: {names}",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.name, self.available, self.user_message))


# --- queue -------------------------------------------------------------------------------------
class QueueFullError(CommentBotError):
    code = "queue_full"
    user_message = "지금 요청이 많아요 🙏 잠시 후에 다시 보내 주세요!"


class ExpectedWaitError(QueueFullError):
    """Admitting the photo would make it (or photos already waiting) miss the deadline."""

    code = "expected_wait"


class ChatLimitError(CommentBotError):
    code = "chat_limit"
    user_message = "이 채팅에서 처리 중인 사진이 많아요 ⏳ 앞의 댓글이 나온 뒤에 보내 주세요."


class JobTimeoutError(CommentBotError):
    code = "timeout"
    user_message = "댓글을 만드는 데 너무 오래 걸렸어요 ⌛ 잠시 후 다시 보내 주세요."


class WorkerCrashedError(CommentBotError):
    code = "worker_crashed"
    user_message = "앗, 댓글 엔진이 잠깐 멈췄어요 🔧 곧 다시 시작하니 조금 뒤에 보내 주세요."


class ShuttingDownError(CommentBotError):
    code = "shutting_down"
    user_message = "봇이 잠시 점검 중이에요 🔧 조금 뒤에 다시 보내 주세요."


class InferenceFailedError(CommentBotError):
    code = "inference_failed"


class WorkerStartError(CommentBotError):
    """The model worker did not come up (bad weights, out of memory, start timeout)."""

    code = "worker_start"
    user_message = "댓글 엔진을 시작하지 못했어요 🔧 관리자에게 알려 주세요."


# --- shared queue (Redis) ------------------------------------------------------------------------
class QueueUnavailableError(CommentBotError):
    """The shared queue (Redis) cannot be reached; the bot keeps running and retries on its own."""

    code = "queue_unavailable"
    user_message = "지금 댓글 대기열에 연결할 수 없어요 🔧 잠시 후에 다시 보내 주세요!"


class JobDeadLetteredError(CommentBotError):
    """A job was tried ``QUEUE_MAX_TRIES`` times (each time its worker died) and was put aside."""

    code = "dead_letter"
    user_message = "이 사진은 여러 번 시도했지만 댓글을 만들지 못했어요 😢 다른 사진으로 다시 보내 주세요."


def error_from_wire(code: str, detail: str, user_message: str) -> CommentBotError:
    """Rebuild an error that crossed the network as plain data (its ``code``), never by unpickling."""
    cls = _errors_by_code().get(code, CommentBotError)
    error = cls.__new__(cls)
    Exception.__init__(error, detail or code)
    error.user_message = user_message
    return error


def _errors_by_code() -> dict[str, type[CommentBotError]]:
    found: dict[str, type[CommentBotError]] = {}
    pending: list[type[CommentBotError]] = [CommentBotError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found
