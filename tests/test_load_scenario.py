"""The load-and-fault scenario, scaled down: the real ``python -m bot`` process against the fake Bot API
with per-chat flood limits (and one transient fault per request), on a slow fake model (no torch)."""

from __future__ import annotations

import pytest

from tests.load_scenario import Report, build_parser, run

pytestmark = pytest.mark.timeout(240)


async def scenario(*options: str) -> Report:
    common = ["--pipeline", "fake-slow", "--seconds", "1", "--fake-photo-ms", "60", "--job-timeout-s", "10"]
    report = await run(build_parser().parse_args([*common, *options]))
    assert report.without_reply == 0 and report.duplicates == 0, report
    assert report.tracebacks_in_log == 0 and report.error_lines_in_log == 0, report
    assert report.bot_exit_code == 0, report
    return report


async def test_many_chats_with_faults_every_photo_answered_once_without_tracebacks() -> None:
    report = await scenario("--faults", "--chats", "8", "--photos-per-chat", "5")
    assert report.photos == 40 and report.chats == 8
    assert report.chats_with_a_comment == 8, report
    assert report.max_busy_texts_per_chat_per_10s <= 1, report
    assert report.timeouts <= 0.02 * report.accepted, report
    assert report.injected_faults["sendMessage:502"] > 0 and report.injected_faults["download:truncate"] == 40


async def test_one_chat_flood_every_accepted_photo_is_commented() -> None:
    report = await scenario("--scenario", "one-chat", "--photos-per-chat", "30")
    assert report.accepted == report.commented > 0, report  # every photo it was told would be commented
    assert report.busy_texts == 1, report
