"""``python -m bot`` as users run it: a real subprocess, configured only through the environment."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from inference.settings import REPO_ROOT
from tests.fakes.telegram_server import FakeTelegramServer

TOKEN = "987654321:AAH-subprocess-SECRET-token_abcdefghij"
USER = 3333


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The parent's environment minus any bot settings, plus ``extra``; cwd will be ``tmp_path`` so
    no developer ``.env`` is read."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "DISCORD_", "ALLOWED_", "ADMIN_", "STATE_DB", "WEIGHTS_DIR"))
    }
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["STATE_DB"] = str(tmp_path / "state.sqlite3")
    env.update(extra)
    return env


def test_bot_process_modules_never_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys, bot.app, bot.core, bot.store, bot.messages, bot.telegram_app, bot.discord_app\n"
        "heavy = [m for m in ('torch', 'ultralytics', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_without_any_token_it_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in done.stderr and "토큰" in done.stderr


def test_invalid_settings_exit_2_naming_the_variable(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_MODE="webhook")
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "TELEGRAM_WEBHOOK_URL" in done.stderr and "Traceback" not in done.stderr
    assert TOKEN not in done.stderr


@pytest.mark.timeout(180)
async def test_python_m_bot_answers_a_photo_and_stops_cleanly_on_sigterm(
    tmp_path: Path, tiny_weights_dir: Path
) -> None:
    server = FakeTelegramServer(TOKEN)
    await server.start()
    env = _clean_env(
        tmp_path,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=server.base_url,
        TELEGRAM_FILE_BASE_URL=server.base_file_url,
        WEIGHTS_DIR=str(tiny_weights_dir),
        DEVICE="cpu",
        TORCH_THREADS="1",
        LOG_LEVEL="DEBUG",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await server.wait_for(lambda: server.calls_of("setMyCommands"), within_s=150)
        buffer = io.BytesIO()
        Image.new("RGB", (120, 90), (90, 160, 220)).save(buffer, "JPEG")
        message_id = await server.push_message(
            chat_id=USER, user_id=USER, photo=[(buffer.getvalue(), 120, 90)]
        )
        reply = await server.wait_for_reply(message_id, within_s=60)
        # a photo in flight when SIGTERM arrives is still answered before the process exits
        in_flight = await server.push_message(
            chat_id=USER, user_id=USER, photo=[(buffer.getvalue(), 120, 90)]
        )
        await server.wait_for(lambda: len(server.calls_of("download")) == 2)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await server.close()
    log = output.decode("utf-8", "replace")
    assert process.returncode == 0, log[-3000:]
    assert reply["text"].strip() and "shut down cleanly" in log
    assert server.replies_to(in_flight), log[-3000:]
    assert TOKEN not in log  # DEBUG logging, yet httpx request URLs never show the token
    assert (tmp_path / "state.sqlite3").is_file()
