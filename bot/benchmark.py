"""Benchmark the feedback buttons the way the bot runs them (the numbers in README.md).

    python -m bot.benchmark                 # shipped weights in weights/, 1 torch thread
    python -m bot.benchmark --json --runs 60

* 👍/👎: press → answered, through the Telegram adapter (``telegram_feedback.answer_press``) with a
  real SQLite store, until ``answerCallbackQuery`` goes out — the counts were edited just before.
  The Bot API is an in-process stub, so this is the bot's own time; each Bot API call adds one
  network round trip to Telegram in production (two per vote: the edit, then the answer).
* 🔄: press → answered, the same way, with the real inference worker (keywords-only job, sampled),
  next to the keywords-only job alone, a whole photo, and the photo's generation stage.
* 🔍: decode + draw + JPEG-encode of ultralytics' ``zidane.jpg`` (1280×720) with the boxes the
  pipeline found, plus a crowded 10-box case; downloading and uploading the photo are network time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from telegram import Bot, CallbackQuery
from telegram.request import BaseRequest, RequestData

from bot.core import ChatRef, PhotoService
from bot.feedback import Buttons, button_data
from bot.store import Store
from bot.telegram_feedback import answer_press
from inference.drawing import detections_of, draw_detections
from inference.results import CommentResult
from inference.serving.benchmark import default_photos
from inference.serving.client import InferenceClient
from inference.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)

TOKEN = "1:benchmark"
CHAT_ID = 4242
BOT_USER = {"id": 1, "is_bot": True, "first_name": "무플방지", "username": "mupl_benchmark_bot"}
CROWDED = {
    "image_size": [1280, 720],
    "faces": [
        {
            "label": "happy",
            "keyword": "기쁨",
            "confidence": 0.9,
            "box": [100 + 220 * i, 80, 260 + 220 * i, 300],
        }
        for i in range(5)
    ],
    "objects": [
        {
            "label": "Tree",
            "keyword": "나무",
            "confidence": 0.6,
            "box": [40 + 250 * i, 320, 230 + 250 * i, 700],
        }
        for i in range(5)
    ],
}


class StubBotApi(BaseRequest):
    """Answers Bot API calls in-process and notes when ``answerCallbackQuery`` was sent."""

    def __init__(self) -> None:
        self.answered_at: list[float] = []
        self._ids = itertools.count(1000)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        api_method = url.rsplit("/", 1)[-1]
        result: Any = True
        if api_method == "getMe":
            result = BOT_USER
        elif api_method == "answerCallbackQuery":
            self.answered_at.append(time.perf_counter())
        elif api_method.startswith("edit") or api_method.startswith("send"):
            result = {"message_id": next(self._ids), "date": 0, "chat": {"id": CHAT_ID, "type": "private"}}
        return 200, json.dumps({"ok": True, "result": result}).encode()


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1), "max": round(ordered[-1], 1)}


async def press_ms(
    bot: Bot, api: StubBotApi, service: PhotoService, buttons: Buttons, action: str, user: int
) -> float:
    """One press through the Telegram adapter: ms from the update to ``answerCallbackQuery``."""
    data = {
        "id": f"q{time.perf_counter_ns()}",
        "from": {"id": user, "is_bot": False, "first_name": "user"},
        "chat_instance": "ci",
        "data": button_data(buttons.comment_id, action),  # type: ignore[arg-type]
        "message": {"message_id": 1, "date": 0, "chat": {"id": CHAT_ID, "type": "private"}},
    }
    query = CallbackQuery.de_json(data, bot)
    chat = ChatRef("telegram", CHAT_ID, user, is_group=False)
    started = time.perf_counter()
    await answer_press(query, bot, service, chat, user)
    return (api.answered_at[-1] - started) * 1000.0


async def record(service: PhotoService, result: CommentResult, photo: bytes) -> Buttons:
    buttons = await service.feedback.record(
        platform="telegram",
        chat_key=f"telegram:{CHAT_ID}",
        chat_id=CHAT_ID,
        photo_message_id=1,
        photo_ref="file",
        image=photo,
        result=result,
    )
    assert buttons is not None
    await service.feedback.sent(buttons, 1)
    return buttons


async def measure(settings: Settings, runs: int) -> dict[str, Any]:
    photos = default_photos()
    async with running(settings) as (service, bot, api):
        client = service.client
        photo_ms, generate_ms, comments = [], [], []
        for photo in photos:
            for _ in range(max(1, runs // len(photos))):
                started = time.perf_counter()
                result = await client.comment(photo.data, chat_key=f"telegram:{CHAT_ID}")
                photo_ms.append((time.perf_counter() - started) * 1000)
                generate_ms.append(result.timings_ms["generate"])
            comments.append((await record(service, result, photo.data), photo, result))
        votes = [
            await press_ms(
                bot, api, service, comments[i % len(comments)][0], "up" if i % 3 else "down", i % 7
            )
            for i in range(runs)
        ]
        keyword_jobs = []
        for i in range(runs):
            result = comments[i % len(comments)][2]
            started = time.perf_counter()
            await client.comment(b"", chat_key="bench", generator=result.generator, keywords=result.keywords)
            keyword_jobs.append((time.perf_counter() - started) * 1000)
        again = []
        for i in range(runs):  # one 🔄 on a fresh comment each time: never near the per-comment limit
            _, photo, result = comments[i % len(comments)]
            fresh = await record(service, result, photo.data)
            again.append(await press_ms(bot, api, service, fresh, "again", 1))
    zidane = next((p for p in photos if p.name == "zidane.jpg"), photos[0])
    found = next(r for _, p, r in comments if p is zidane)
    draw = {
        "pipeline_boxes": percentiles([_draw_ms(zidane.data, detections_of(found)) for _ in range(runs)]),
        "crowded_10_boxes": percentiles([_draw_ms(zidane.data, CROWDED) for _ in range(runs)]),
        "photo": f"{zidane.name} ({len(found.faces)} faces, {len(found.objects)} objects found)",
    }
    return {
        "settings": {"torch_threads": settings.torch_threads, "device": settings.device, "runs": runs},
        "vote_ack_ms": percentiles(votes),
        "regenerate_ack_ms": percentiles(again),
        "regenerate_job_ms": percentiles(keyword_jobs),
        "photo_comment_ms": percentiles(photo_ms),
        "photo_generate_stage_ms": percentiles(generate_ms),
        "look_draw_ms": draw,
    }


def _draw_ms(photo: bytes, detections: dict[str, Any]) -> float:
    started = time.perf_counter()
    draw_detections(photo, detections)
    return (time.perf_counter() - started) * 1000


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[PhotoService, Bot, StubBotApi]]:
    store = Store(settings.state_db)
    client = InferenceClient(settings)
    api = StubBotApi()
    bot = Bot(TOKEN, request=api, get_updates_request=StubBotApi())
    await store.open()
    try:
        await client.start()
        await bot.initialize()
        yield PhotoService(client, store, settings), bot, api
    finally:
        await client.close()
        await store.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights-dir", type=Path, help="default: the settings' WEIGHTS_DIR (weights/)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the worker")
    parser.add_argument("--runs", type=int, default=40, help="presses (and photos) per measurement")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="mupl-bench-") as folder:
        overrides: dict[str, Any] = {
            "state_db": Path(folder) / "state.sqlite3",
            "database_url": None,
            "torch_threads": args.threads,
            "regenerate_per_comment": 20,
            "regenerate_per_chat_per_hour": 10_000,
        }
        if args.weights_dir is not None:
            overrides["weights_dir"] = args.weights_dir
        try:
            settings = load_settings(**overrides)
        except SettingsError as exc:
            print(exc, file=sys.stderr)
            return 2
        report = asyncio.run(measure(settings, args.runs))
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
