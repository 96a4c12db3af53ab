"""Every Korean sentence the bots send, written once for Telegram and Discord.

Replies for inference failures are not here: they come from ``CommentBotError.user_message``
(``inference/errors.py``) so the worker and the bots can never disagree about them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

BOT_NAME = "무플방지 봇"

GENERIC_ERROR = "앗, 뭔가 잘못됐어요 😢 잠시 후 다시 시도해 주세요. 문제가 계속되면 관리자에게 알려 주세요 🙏"
UNSUPPORTED_FILE = "사진 파일만 댓글을 달 수 있어요 🖼️ JPG, PNG, WebP, GIF, HEIC 사진을 보내 주세요."
NOT_ALLOWED = "이 채팅에서는 봇을 쓸 수 없어요 🙅 관리자에게 문의해 주세요."
ADMIN_ONLY = "이 명령은 봇 관리자만 쓸 수 있어요 🔒"
GROUP_ADMIN_ONLY = "그룹에서는 채팅 관리자만 모델을 바꿀 수 있어요 🔒"
GUILD_MANAGER_ONLY = "서버에서는 '서버 관리' 권한이나 봇 관리 역할이 있는 멤버만 모델을 바꿀 수 있어요 🔒"
NO_GENERATORS = "지금 쓸 수 있는 댓글 모델이 없어요 😢 관리자에게 알려 주세요."
UNKNOWN_COMMAND = "모르는 명령이에요 🤔 /help 로 쓸 수 있는 명령을 확인해 주세요."
DOWNLOAD_FAILED = "사진을 내려받지 못했어요 😢 다시 보내 주세요."


def file_too_big(limit_bytes: int, platform: str = "telegram") -> str:
    """Reply for a file over the platform's download limit (Telegram's cloud Bot API: 20 MB)."""
    limit_mb = limit_bytes / (1024 * 1024)
    limit_text = f"{limit_mb:.0f}MB" if limit_mb >= 1 else f"{limit_bytes // 1024}KB"
    where = "텔레그램 봇은" if platform == "telegram" else "봇은"
    return f"파일이 너무 커요 😵 {where} {limit_text}까지만 받을 수 있어요. 사진을 줄여서 다시 보내 주세요."


def help_text(platform: str, prefix: str = "/") -> str:
    """What the bot does and its commands; ``prefix`` is ``/`` or Discord's text-command prefix."""
    group_hint = (
        "그룹에서는 봇을 관리자로 만들거나 프라이버시 모드를 꺼야 사진을 볼 수 있어요."
        if platform == "telegram"
        else "봇이 읽을 수 있는 채널에 사진을 올리면 돼요."
    )
    return (
        f"안녕하세요! 저는 {BOT_NAME}예요 📸✨\n"
        "사진을 보내 주시면 표정과 분위기를 보고 따뜻한 댓글을 달아 드려요 💬\n"
        "사진은 그냥 보내도 되고, 파일로 보내도 돼요 (JPG, PNG, WebP, GIF, HEIC).\n"
        f"{group_hint}\n\n"
        "명령어\n"
        f"{prefix}help - 이 도움말 보기\n"
        f"{prefix}model - 댓글 모델 목록 보기\n"
        f"{prefix}model 이름 - 이 채팅의 댓글 모델 바꾸기\n"
        f"{prefix}stats - 처리 통계 보기 (관리자 전용)\n"
        f"{prefix}forget - 이 채팅의 댓글 기록 지우기 (그룹에서는 관리자)\n\n"
        "댓글 아래 버튼: 👍 👎 평가, 🔄 새 댓글 받기, 🔍 제가 사진에서 본 것 보기"
    )


def models_list(
    names: Sequence[str], current: str, descriptions: Mapping[str, str] | None = None, prefix: str = "/"
) -> str:
    """The generator list with the chat's current one marked."""
    if not names:
        return NO_GENERATORS
    lines = ["댓글 모델 목록이에요 🤖"]
    for name in names:
        mark = "✅" if name == current else "▫️"
        description = (descriptions or {}).get(name, "")
        lines.append(f"{mark} {name}" + (f" - {description}" if description else ""))
    lines.append(f"바꾸려면: {prefix}model 이름")
    return "\n".join(lines)


def model_switched(name: str) -> str:
    return f"이 채팅의 댓글 모델을 '{name}'(으)로 바꿨어요 ✅"


def unknown_model(name: str, names: Sequence[str]) -> str:
    listed = ", ".join(names) or "(없음)"
    return f"'{name}' 모델은 없어요 🤔 쓸 수 있는 모델: {listed}"


def stats_text(
    *,
    jobs_done: int,
    jobs_rejected: int,
    jobs_failed: int,
    latency_p50_ms: float | None,
    latency_p95_ms: float | None,
    queue_depth: int,
    in_flight: int,
    worker_restarts: int,
) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}ms"

    return (
        "📊 처리 통계\n"
        f"완료: {jobs_done}건\n"
        f"거절: {jobs_rejected}건\n"
        f"실패: {jobs_failed}건\n"
        f"지연 p50: {ms(latency_p50_ms)} / p95: {ms(latency_p95_ms)}\n"
        f"대기열: {queue_depth}건 (처리 중 {in_flight}건)\n"
        f"워커 재시작: {worker_restarts}회"
    )


def workers_text(workers: Sequence[WorkerLike]) -> str:
    """The workers serving this bot: device, load and memory (from heartbeats on a shared queue)."""
    if not workers:
        return "워커: 없음 ⚠️"
    lines = [f"워커 {len(workers)}대"]
    for worker in workers:
        memory = f", GPU {worker.device_memory_mb:.0f}MB" if worker.device_memory_mb else ""
        lines.append(
            f"• {worker.name} ({worker.device}) 처리 중 {worker.busy}건, 완료 {worker.jobs_done}건, "
            f"메모리 {worker.rss_mb:.0f}MB{memory}"
        )
    return "\n".join(lines)


class WorkerLike(Protocol):
    """The fields of ``inference.serving.records.WorkerStatus`` that /stats shows."""

    @property
    def name(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def busy(self) -> int: ...
    @property
    def jobs_done(self) -> int: ...
    @property
    def rss_mb(self) -> float: ...
    @property
    def device_memory_mb(self) -> float: ...
