"""Emoji runs in generated comments are cut to what people write (``inference.text.tidy``)."""

from __future__ import annotations

import pytest

from inference.models.generators import CommentGenerator
from inference.text.slots import SlottedKeywords
from inference.text.tidy import cap_emoji_runs


@pytest.mark.parametrize(
    ("text", "tidy"),
    [
        ("힘내세요! 🌧️✨✨✨", "힘내세요! 🌧️✨"),
        ("오토바이도 잘 어울리세요! 😧✨✨😨😨😨✨😨✨✨✨👻👻", "오토바이도 잘 어울리세요! 😧✨"),
        ("좋아요! 😊 😊 😊 감사해요", "좋아요! 😊 감사해요"),
        ("신나요! 🚴\u200d♂️🚴\u200d♂️🚴\u200d♂️", "신나요! 🚴\u200d♂️"),  # a ZWJ sequence is one emoji
        ("👍🏽👍🏽👍🏽 좋아요", "👍🏽 좋아요"),  # so is a skin tone
        ("나무가 멋져요! 🌳🚲", "나무가 멋져요! 🌳🚲"),  # two different emojis: as people write
        ("💄 예뻐요! 💄 멋져요! 💄", "💄 예뻐요! 💄 멋져요! 💄"),  # words between: separate runs
        ("이모지 없는 댓글", "이모지 없는 댓글"),
    ],
)
def test_emoji_runs_keep_their_first_two_distinct_emojis(text: str, tidy: str) -> None:
    assert cap_emoji_runs(text) == tidy


def test_the_chosen_comment_is_tidied() -> None:
    """The generators' pick (both the bot's sampled comments and the deterministic ones) cuts the runs."""
    options = ["정말 행복해 보이시네요! 😊✨✨✨✨😊😊"]
    chosen = CommentGenerator._pick(options, SlottedKeywords("기쁨", {}), "first")
    assert chosen == "정말 행복해 보이시네요! 😊✨"
