"""The real pipeline behind the queue: tiny random weights, a spawned worker, real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.client import InferenceClient
from inference.errors import ImageError, UnknownGeneratorError
from inference.settings import Settings

pytestmark = pytest.mark.timeout(300)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Runs as a fresh bot-like process: start a client, get a comment, report what got imported.
BOT_PROCESS_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from inference.client import InferenceClient
from inference.settings import Settings

async def main():
    settings = Settings(_env_file=None, weights_dir=Path(sys.argv[1]), device="cpu", torch_threads=2)
    async with InferenceClient(settings) as client:
        result = await client.comment(Path(sys.argv[2]).read_bytes(), chat_key="telegram:1")
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "ultralytics", "transformers"})
    print(json.dumps({"comment": result.comment, "generator": result.generator, "heavy": heavy}))

asyncio.run(main())
"""


@pytest.fixture
def photos(bus_jpg: Path, zidane_jpg: Path) -> list[bytes]:
    return [bus_jpg.read_bytes(), zidane_jpg.read_bytes()]


async def test_real_pipeline_through_the_worker(tiny_settings: Settings, photos: list[bytes]) -> None:
    async with InferenceClient(tiny_settings) as client:
        assert client.worker is not None and client.worker.device == "cpu"
        assert client.generator_names() == ["gpt2", "t5"]
        results = [
            await client.comment(photos[0], chat_key="telegram:1"),
            await client.comment(photos[1], chat_key="telegram:1", generator="gpt2"),
        ]
        with pytest.raises(ImageError) as bad_image:
            await client.comment(b"GIF89a not really", chat_key="telegram:1")
        with pytest.raises(UnknownGeneratorError):
            await client.comment(photos[0], chat_key="telegram:1", generator="kogpt")
        stats = client.stats()
    assert [r.generator for r in results] == ["t5", "gpt2"]
    assert all(r.comment.strip() for r in results)
    assert results[0].image_size == (810, 1080) and results[1].image_size == (1280, 720)
    assert "total" in results[0].timings_ms
    assert bad_image.value.user_message  # Korean reply text survives the process boundary
    assert stats.jobs_done == 2 and stats.jobs_failed == 2


def test_bot_process_never_imports_model_libraries(tiny_weights_dir: Path, bus_jpg: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", BOT_PROCESS_SCRIPT, str(tiny_weights_dir), str(bus_jpg)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["comment"].strip() and report["generator"] == "t5"
    assert report["heavy"] == []
