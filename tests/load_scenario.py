"""Load-and-fault scenarios against the real ``python -m bot`` process and the local fake Bot API.

    python -m tests.load_scenario                       # 200 photos from 20 chats in 2 s, real models
    python -m tests.load_scenario --faults              # ... with one transient fault per request
    python -m tests.load_scenario --pipeline real-2x    # ... on models slowed 2x after warm-up
    python -m tests.load_scenario --scenario one-chat   # one chat sends 30 photos
    python -m tests.load_scenario --scenario light      # one chat floods, another sends one photo

The fake Bot API enforces Telegram's per-chat flood limits (1 message/s in a private chat, 20/min in a
group) and, with ``--faults``, fails the first attempt of every reply (502), getFile (dropped
connection) and download (truncated file). The bot runs as a subprocess exactly as users start it
(settings from the environment), with its log in a file. Afterwards every photo is classified by what
its sender saw: a comment, a "busy" text, a busy reaction, another error text, or nothing; and the
log is searched for tracebacks. Prints a JSON report (``--json``) or a short table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from bot import messages
from inference.errors import CommentBotError
from inference.settings import REPO_ROOT
from tests.fakes.faults import FaultPlan, FloodLimits
from tests.fakes.slow_pipeline import CONFIG_FILE
from tests.fakes.telegram_server import FakeTelegramServer

TOKEN = "123456789:AAE-load-scenario-TOKEN_0123456789"
PIPELINES = {
    "real": "inference.models.pipeline:Pipeline.from_settings",
    "real-2x": "tests.fakes.slow_pipeline:real_twice_as_slow",
    "fake-slow": "tests.fakes.slow_pipeline:SlowFakePipeline.from_settings",
}
BUSY_WINDOW_S = 10.0


def _error_texts() -> set[str]:
    def subclasses(cls: type[CommentBotError]) -> list[type[CommentBotError]]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in subclasses(child))]

    texts = {cls.user_message for cls in subclasses(CommentBotError)}
    texts |= {messages.GENERIC_ERROR, messages.DOWNLOAD_FAILED, messages.UNSUPPORTED_FILE}
    return texts


@dataclass
class Report:
    scenario: str
    pipeline: str
    faults: bool
    photos: int
    chats: int
    seconds_to_send: float
    commented: int = 0
    busy_texts: int = 0
    busy_reactions: int = 0
    timeouts: int = 0
    other_errors: int = 0
    without_reply: int = 0
    duplicates: int = 0
    chats_with_a_comment: int = 0
    max_busy_texts_per_chat_per_10s: int = 0
    accepted: int = 0  # not refused for load: got a comment or an error after processing
    timeout_share_of_accepted: float = 0.0
    comment_latency_p50_s: float | None = None
    comment_latency_p95_s: float | None = None
    light_chat_latency_s: float | None = None
    flood_429s: int = 0
    injected_faults: dict[str, int] = field(default_factory=dict)
    tracebacks_in_log: int = 0
    error_lines_in_log: int = 0
    sample_replies: list[str] = field(default_factory=list)  # what users saw, a few of each kind
    bot_exit_code: int | None = None
    load_average_before: float = 0.0


def photo_bytes(index: int) -> bytes:
    """A small varied JPEG (a face-like oval on a coloured ground), different for every photo."""
    rng = random.Random(index)
    ground = (rng.randrange(40, 220), rng.randrange(40, 220), rng.randrange(40, 220))
    image = Image.new("RGB", (480, 360), ground)
    draw = ImageDraw.Draw(image)
    x, y = rng.randrange(60, 300), rng.randrange(40, 180)
    draw.ellipse((x, y, x + 120, y + 150), fill=(230, 190, 160))
    draw.ellipse((x + 30, y + 50, x + 45, y + 65), fill=(40, 30, 30))
    draw.ellipse((x + 75, y + 50, x + 90, y + 65), fill=(40, 30, 30))
    draw.arc((x + 30, y + 80, x + 90, y + 120), 0, 180, fill=(150, 40, 40), width=4)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def bot_environment(server: FakeTelegramServer, work: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.isupper() and not k.startswith(("TELEGRAM_", "DISCORD_"))}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": server.base_url,
            "TELEGRAM_FILE_BASE_URL": server.base_file_url,
            "STATE_DB": str(work / "state.sqlite3"),
            "LOG_LEVEL": "INFO",
            "DEVICE": "cpu",
            "PIPELINE_FACTORY": PIPELINES[args.pipeline],
            "JOB_TIMEOUT_S": str(args.job_timeout_s),
            "TORCH_THREADS": str(args.torch_threads),
        }
    )
    if args.pipeline == "fake-slow":
        (work / CONFIG_FILE).write_text(json.dumps({"photo_ms": args.fake_photo_ms, "slowdown": 2.0}))
        env["WEIGHTS_DIR"] = str(work)
    return env


async def start_bot(env: dict[str, str], work: Path, server: FakeTelegramServer, timeout_s: float) -> Any:
    log = (work / "bot.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=work, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    ready = lambda: server.calls_of("setMyCommands") or process.returncode is not None  # noqa: E731
    await server.wait_for(ready, within_s=timeout_s)
    if process.returncode is not None:
        raise RuntimeError(f"python -m bot exited with {process.returncode}; see {work / 'bot.log'}")
    await server.wait_for(lambda: server.calls_of("getUpdates") or True, within_s=5)
    return process


async def stop_bot(process: Any) -> int:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        return int(await asyncio.wait_for(process.wait(), 60))
    except TimeoutError:
        process.kill()
        return int(await process.wait())


def chat_ids(count: int) -> list[int]:
    """Half private chats, half groups (their limits differ: 1/s vs 20/min)."""
    return [1000 + i if i % 2 == 0 else -100_000 - i for i in range(count)]


async def push(server: FakeTelegramServer, chat: int, index: int) -> int:
    return await server.push_message(
        chat_id=chat,
        user_id=abs(chat) % 1_000_000 + 1,
        chat_type="private" if chat > 0 else "supergroup",
        photo=[(photo_bytes(index), 480, 360)],
    )


async def send_load(
    server: FakeTelegramServer, plan: list[int], seconds: float
) -> list[tuple[int, int, float]]:
    """Push one photo per entry of ``plan`` (a chat id), evenly over ``seconds``."""
    sent: list[tuple[int, int, float]] = []
    started = time.monotonic()
    for index, chat in enumerate(plan):
        delay = started + seconds * index / max(1, len(plan)) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append((chat, await push(server, chat, index), time.monotonic()))
    return sent


def all_answered(server: FakeTelegramServer, message_ids: list[int]) -> bool:
    """Every photo got a reply or a reaction (one set, not scans: this runs after every API call)."""
    answered = server.answered_message_ids()
    return all(m in answered for m in message_ids)


def classify(server: FakeTelegramServer, sent: list[tuple[int, int, float]], report: Report) -> None:
    errors = _error_texts()
    busy = _busy_texts()
    reacted = {int(r["message_id"]) for r in server.reactions}
    latencies: list[float] = []
    busy_at: dict[int, list[float]] = {}
    commented_chats: set[int] = set()
    for chat, message_id, pushed_at in sent:
        replies = server.delivered_replies_to(message_id)
        report.duplicates += max(0, len(replies) - 1)
        if not replies:
            if message_id in reacted:
                report.busy_reactions += 1
            else:
                report.without_reply += 1
            continue
        text = str(replies[0].get("text"))
        if text not in report.sample_replies and len(report.sample_replies) < 6:
            report.sample_replies.append(text)
        if text in busy:
            report.busy_texts += 1
            busy_at.setdefault(chat, []).append(float(replies[0]["_delivered_at"]))
        elif text == _timeout_text():
            report.timeouts += 1
        elif text in errors:
            report.other_errors += 1
        else:
            report.commented += 1
            commented_chats.add(chat)
            latencies.append(float(replies[0]["_delivered_at"]) - pushed_at)
    report.chats_with_a_comment = len(commented_chats)
    report.accepted = report.commented + report.timeouts + report.other_errors
    report.timeout_share_of_accepted = round(report.timeouts / report.accepted, 4) if report.accepted else 0.0
    report.max_busy_texts_per_chat_per_10s = max(
        (
            sum(1 for t in times if start <= t < start + BUSY_WINDOW_S)
            for times in busy_at.values()
            for start in times
        ),
        default=0,
    )
    if latencies:
        latencies.sort()
        report.comment_latency_p50_s = round(statistics.median(latencies), 2)
        report.comment_latency_p95_s = round(latencies[int(0.95 * (len(latencies) - 1))], 2)


def _busy_texts() -> set[str]:
    from inference.errors import ChatLimitError, QueueFullError

    return {ChatLimitError.user_message, QueueFullError.user_message}


def _timeout_text() -> str:
    from inference.errors import JobTimeoutError

    return JobTimeoutError.user_message


def scenario_plan(args: argparse.Namespace) -> tuple[list[int], int | None]:
    """Chat ids in sending order, and the light chat (sent after the flood started) if any."""
    if args.scenario == "one-chat":
        return [chat_ids(1)[0] if not args.group else -100_000_001] * args.photos_per_chat, None
    if args.scenario == "light":
        return [-100_000_003] * args.photos_per_chat, 1001
    chats = chat_ids(args.chats)
    return [chat for _ in range(args.photos_per_chat) for chat in chats], None


async def run(args: argparse.Namespace) -> Report:
    plan, light_chat = scenario_plan(args)
    server = FakeTelegramServer(TOKEN)
    faults = {"sendMessage": "502", "getFile": "drop", "download": "truncate"} if args.faults else {}
    flood = FloodLimits()
    server.faults = FaultPlan(first_attempt=dict(faults), flood=flood)  # type: ignore[arg-type]
    await server.start()
    report = Report(args.scenario, args.pipeline, args.faults, len(plan) + bool(light_chat), 0, args.seconds)
    report.load_average_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="mupl-load-") as tmp:
        work = Path(tmp)
        process = await start_bot(bot_environment(server, work, args), work, server, args.start_timeout_s)
        try:
            load = asyncio.create_task(send_load(server, plan, args.seconds))
            light: tuple[int, int, float] | None = None
            if light_chat is not None:
                await asyncio.sleep(args.seconds + 0.5)
                light = (light_chat, await push(server, light_chat, 10_000), time.monotonic())
            sent = await load
            if light is not None:
                sent.append(light)
            report.chats = len({chat for chat, _, _ in sent})
            ids = [m for _, m, _ in sent]
            everything = lambda: all_answered(server, ids)  # noqa: E731
            with contextlib.suppress(TimeoutError):
                await server.wait_for(everything, within_s=args.job_timeout_s + 90)
            await asyncio.sleep(3.0)  # late duplicates would show up now
        finally:
            report.bot_exit_code = await stop_bot(process)
            await server.close()
        log_text = _read_log(work / "bot.log", args.keep_log)
        classify(server, sent, report)
        if light is not None:
            replies = server.delivered_replies_to(light[1])
            if replies:
                report.light_chat_latency_s = round(float(replies[0]["_delivered_at"]) - light[2], 2)
    report.flood_429s = sum(flood.refused.values())
    report.injected_faults = dict(Counter(server.faults.injected))
    report.tracebacks_in_log = log_text.count("Traceback")
    report.error_lines_in_log = sum(1 for line in log_text.splitlines() if " ERROR " in line)
    return report


def _read_log(path: Path, keep_as: str | None) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if keep_as:
        Path(keep_as).write_text(text, encoding="utf-8")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.load_scenario", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scenario", choices=("many-chats", "one-chat", "light"), default="many-chats")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default="real")
    parser.add_argument(
        "--faults", action="store_true", help="one transient fault per reply/getFile/download"
    )
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument(
        "--photos-per-chat", type=int, default=None, help="default: 10 (many-chats), 30 otherwise"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="spread the photos over this long")
    parser.add_argument("--group", action="store_true", help="one-chat: a group instead of a private chat")
    parser.add_argument("--job-timeout-s", type=float, default=30.0)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--fake-photo-ms", type=float, default=100.0)
    parser.add_argument("--start-timeout-s", type=float, default=300.0)
    parser.add_argument("--keep-log", help="copy the bot's log here")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.photos_per_chat is None:
        args.photos_per_chat = 10 if args.scenario == "many-chats" else 30
    report = asyncio.run(run(args))
    data = asdict(report)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        for key, value in data.items():
            print(f"{key:34} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
