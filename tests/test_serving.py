"""The shared queue's pieces that need no server: settings, the wire format, late replies, the CLI."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bot.late_replies import LateReplies
from inference.errors import (
    CommentBotError,
    JobDeadLetteredError,
    NotAnImageError,
    UnknownGeneratorError,
    error_from_wire,
)
from inference.results import CommentResult, DetectedObject, Face
from inference.serving.jobs import Job, JobOutcome
from inference.serving.records import ReplyAddress
from inference.serving.wire import job_fields, outcome_fields, parse_job, parse_outcome
from inference.settings import REPO_ROOT, SettingsError, load_settings

ADDRESS = ReplyAddress("telegram", 42, 1001, "telegram:42", "file-1", "ab" * 32)


def test_queue_url_must_name_redis_and_names_are_checked() -> None:
    with pytest.raises(SettingsError, match="QUEUE_URL"):
        load_settings(_env_file=None, queue_url="http://queue:6379")
    with pytest.raises(SettingsError, match="QUEUE_NAME"):
        load_settings(_env_file=None, queue_name="has space")
    settings = load_settings(_env_file=None, queue_url="", queue_instance="")
    assert settings.queue_url is None and settings.queue_instance is None  # empty means "off"


def test_jobs_and_outcomes_cross_the_wire_as_plain_data() -> None:
    job = Job(7, b"\xff\xd8jpeg", "gpt2", True, 1234.5, ("기쁨",), chat_key="telegram:42", reply_to=ADDRESS)
    fields = {
        k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in job_fields("k1", job, "res").items()
    }
    wire = parse_job(b"1-0", fields, job_id=3)
    assert wire.key == "k1" and wire.results_stream == "res" and wire.job.reply_to == ADDRESS
    assert (wire.job.image, wire.job.generator, wire.job.keywords, wire.job.chat_key) == (
        job.image,
        "gpt2",
        ("기쁨",),
        "telegram:42",
    )
    result = CommentResult(
        "좋아요 😊",
        ["기쁨", "안경"],
        [Face("happy", "기쁨", 0.9, (1.0, 2.0, 3.0, 4.0))],
        [DetectedObject("Glasses", "안경", 0.8, (0.0, 0.0, 5.0, 5.0))],
        "t5",
        {"total": 12.5},
        (640, 480),
    )
    for outcome in (JobOutcome(3, result=result, batch_size=2), JobOutcome(3, error=NotAnImageError("x"))):
        encoded = {k.encode(): v.encode() for k, v in outcome_fields("k1", outcome, ADDRESS, "c").items()}
        back = parse_outcome(b"2-0", encoded).outcome
        assert back.result == outcome.result
        if outcome.error is not None:
            assert (
                type(back.error) is NotAnImageError and back.error.user_message == outcome.error.user_message
            )


def test_errors_come_back_with_their_class_and_korean_sentence() -> None:
    unknown = error_from_wire("unknown_generator", "no such", "'x' 모델은 없어요")
    assert isinstance(unknown, UnknownGeneratorError) and unknown.user_message == "'x' 모델은 없어요"
    dead = error_from_wire("dead_letter", "delivered 4 times", JobDeadLetteredError.user_message)
    assert isinstance(dead, JobDeadLetteredError)
    assert type(error_from_wire("no-such-code", "?", "앗")) is CommentBotError  # never a crash


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, ReplyAddress, str]] = []

    async def send_comment(self, address: ReplyAddress, result: CommentResult) -> None:
        self.sent.append(("comment", address, result.comment))

    async def send_text(self, address: ReplyAddress, text: str) -> None:
        self.sent.append(("text", address, text))


async def test_a_late_result_waits_for_its_platform_then_goes_out_once() -> None:
    replies = LateReplies(wait_s=5.0)
    sender = RecordingSender()
    result = CommentResult("늦었지만 좋아요 😊", [], [], [], "t5")
    early = asyncio.create_task(replies.deliver(ADDRESS, result))  # before Telegram is up
    await asyncio.sleep(0.05)
    assert not early.done()
    replies.register("telegram", sender)
    await early
    await replies.deliver(ADDRESS, JobDeadLetteredError("x"))
    assert sender.sent == [
        ("comment", ADDRESS, "늦었지만 좋아요 😊"),
        ("text", ADDRESS, JobDeadLetteredError.user_message),
    ]
    assert replies.delivered == 2


async def test_a_late_result_for_a_platform_that_never_comes_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    replies = LateReplies(wait_s=0.05)
    with caplog.at_level(logging.ERROR):
        await replies.deliver(ReplyAddress("discord", 1, 2, "discord:1"), NotAnImageError("x"))
    assert "late reply to discord:1 is lost" in caplog.text and replies.delivered == 0


def test_worker_command_needs_a_queue_and_valid_settings(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    missing = subprocess.run(
        [sys.executable, "-m", "inference.worker"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "--queue" in missing.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "inference.worker", "--queue", "http://nope"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "QUEUE_URL" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.timeout(120)
async def test_the_local_worker_is_listed_for_stats_with_its_memory(tmp_path: Path) -> None:
    from tests.test_queue import running_client

    async with running_client(tmp_path) as client:
        [local] = client.workers()
        assert client.worker is not None and local.pid == client.worker.pid
        assert (local.device, local.generators) == ("fake", ["gpt2", "t5"]) and local.rss_mb > 5
        assert client.healthy
    assert not client.healthy
