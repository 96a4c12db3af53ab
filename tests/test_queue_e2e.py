"""The real pipeline behind the queue: tiny random weights, a spawned worker, real photos.

The client runs in a fresh bot-like process (a subprocess), so the same run also proves that the
bot's process never imports torch, ultralytics or transformers: those live in the worker only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(300)

REPO_ROOT = Path(__file__).resolve().parents[1]

BOT_PROCESS_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from inference.serving.client import InferenceClient
from inference.errors import CommentBotError
from inference.settings import Settings

async def main():
    weights, bus, zidane = sys.argv[1:4]
    settings = Settings(_env_file=None, weights_dir=Path(weights), device="cpu", torch_threads=2)
    report = {"errors": {}}
    async with InferenceClient(settings) as client:
        report["worker_device"] = client.worker.device
        report["generators"] = client.generator_names()
        photo = Path(bus).read_bytes()
        first = await client.comment(photo, chat_key="telegram:1")
        second = await client.comment(Path(zidane).read_bytes(), chat_key="telegram:1", generator="gpt2")
        report["results"] = [r.to_json_dict() for r in (first, second)]
        for name, image, generator in (("bad", b"GIF89a not really", None), ("unknown", photo, "kogpt")):
            try:
                await client.comment(image, chat_key="telegram:1", generator=generator)
            except CommentBotError as exc:
                report["errors"][name] = [type(exc).__name__, exc.code, exc.user_message]
        report["stats"] = client.stats().to_json_dict()
    heavy = {"torch", "ultralytics", "transformers"}
    report["heavy"] = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
    print(json.dumps(report, ensure_ascii=False))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def bot_process_report(tiny_weights_dir: Path, bus_jpg: Path, zidane_jpg: Path) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-c", BOT_PROCESS_SCRIPT, str(tiny_weights_dir), str(bus_jpg), str(zidane_jpg)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_bot_process_never_imports_model_libraries(bot_process_report: dict[str, Any]) -> None:
    assert bot_process_report["results"], "the run must have produced comments"
    assert bot_process_report["heavy"] == []


def test_real_pipeline_answers_through_the_worker(bot_process_report: dict[str, Any]) -> None:
    report = bot_process_report
    assert report["worker_device"] == "cpu"
    assert report["generators"] == ["gpt2", "t5"]
    first, second = report["results"]
    assert (first["generator"], second["generator"]) == ("t5", "gpt2")
    assert first["comment"].strip() and second["comment"].strip()
    assert first["image_size"] == [810, 1080] and second["image_size"] == [1280, 720]
    assert {"decode", "emotion", "generate", "total"} <= first["timings_ms"].keys()


def test_worker_errors_keep_their_type_and_korean_message(
    bot_process_report: dict[str, Any],
) -> None:
    errors = bot_process_report["errors"]
    bad_type, bad_code, bad_message = errors["bad"]
    assert bad_type in {"NotAnImageError", "TruncatedImageError", "ImageError"} and bad_code
    assert any("\uac00" <= ch <= "\ud7a3" for ch in bad_message)  # Hangul made it across
    assert errors["unknown"][:2] == ["UnknownGeneratorError", "unknown_generator"]
    assert "gpt2, t5" in errors["unknown"][2]
    stats = bot_process_report["stats"]
    assert stats["jobs_done"] == 2 and stats["jobs_failed"] == 2
    assert stats["errors_by_code"]["unknown_generator"] == 1
