"""``python -m bot`` as users run it, with the feedback buttons: a real subprocess on an existing
pre-migration SQLite file, the fake Bot API injecting a 429 on the callback answer."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot import benchmark as bot_benchmark
from bot import feedback as fb
from tests.fakes.telegram_buttons import ButtonsTelegramServer
from tests.test_store import make_legacy_file
from tests.test_telegram_app import _clean_env

TOKEN = "987654321:AAH-feedback-SECRET-token_abcdefghij"
USER = 4444


def test_feedback_modules_never_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys, bot.feedback, bot.telegram_feedback, bot.cogs.feedback, bot.store, bot.benchmark\n"
        "import inference.drawing, training.export_feedback\n"
        "heavy = [m for m in ('torch', 'ultralytics', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(240)
async def test_python_m_bot_upgrades_the_store_and_serves_the_buttons(
    tmp_path: Path, tiny_weights_dir: Path
) -> None:
    database = tmp_path / "state.sqlite3"
    make_legacy_file(database)  # has chat settings, but no comment tables and no alembic_version
    with contextlib.closing(sqlite3.connect(database)) as conn, conn:
        conn.execute(
            "INSERT INTO chat_settings (chat_key, generator) VALUES (?, 'gpt2')", (f"telegram:{USER}",)
        )
    server = ButtonsTelegramServer(TOKEN)
    await server.start()
    env = _clean_env(
        tmp_path,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=server.base_url,
        TELEGRAM_FILE_BASE_URL=server.base_file_url,
        WEIGHTS_DIR=str(tiny_weights_dir),
        DEVICE="cpu",
        TORCH_THREADS="1",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await server.wait_for(lambda: server.calls_of("setMyCommands"), within_s=200)
        buffer = io.BytesIO()
        Image.new("RGB", (160, 120), (90, 160, 220)).save(buffer, "JPEG")
        photo_id = await server.push_message(
            chat_id=USER, user_id=USER, photo=[(buffer.getvalue(), 160, 120)]
        )
        await server.wait_for_reply(photo_id, within_s=60)
        comment = server.reply_ids[photo_id]
        [row] = server.reply_markup_of(comment)
        up, again, look = (row[0]["callback_data"], row[2]["callback_data"], row[3]["callback_data"])
        server.rate_limit_next["answerCallbackQuery"] = 1  # Telegram says "retry after 1 s" once
        voted = await server.push_callback_query(chat_id=USER, user_id=USER, message_id=comment, data=up)
        [vote_answer] = await server.wait_for(lambda: server.answers_to(voted)[1:], within_s=30)
        regenerated = await server.push_callback_query(
            chat_id=USER, user_id=USER, message_id=comment, data=again
        )
        [again_answer] = await server.wait_for(lambda: server.answers_to(regenerated), within_s=60)
        await server.push_callback_query(chat_id=USER, user_id=USER, message_id=comment, data=look)
        await server.wait_for(lambda: server.photos_sent, within_s=30)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await server.close()
    log = output.decode("utf-8", "replace")
    assert process.returncode == 0, log[-3000:]
    assert server.rate_limited == ["answerCallbackQuery"]  # the 429 was retried, not lost
    assert vote_answer["text"] == fb.VOTED_UP and again_answer["text"] == fb.REGENERATED
    assert server.reply_markup_of(comment)[0][0]["text"] == "👍"  # the new text starts at 0 votes
    with contextlib.closing(sqlite3.connect(database)) as conn:
        generator, keywords = conn.execute("SELECT generator, keywords FROM comments").fetchone()
        versions = conn.execute("SELECT count(*) FROM comment_versions").fetchone()[0]
        votes = conn.execute("SELECT voter, value FROM votes").fetchall()
        kept = conn.execute("SELECT generator FROM chat_settings WHERE chat_key='telegram:-100'").fetchone()
    assert generator == "gpt2" and keywords  # the chat's choice from before the upgrade was used
    assert versions == 2 and votes == [(f"telegram:{USER}", 1)] and kept == ("gpt2",)
    assert TOKEN not in log


def test_benchmark_measures_every_target_on_tiny_weights(
    tiny_weights_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bot_benchmark.main(["--weights-dir", str(tiny_weights_dir), "--runs", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    timed = (
        "vote_ack_ms",
        "regenerate_ack_ms",
        "regenerate_job_ms",
        "photo_comment_ms",
        "photo_generate_stage_ms",
    )
    for key in timed:
        assert 0 < report[key]["p50"] <= report[key]["max"], key
    assert report["look_draw_ms"]["crowded_10_boxes"]["p50"] > 0
