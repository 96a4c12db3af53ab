"""Honest comments for photos where no face shows an emotion."""

from __future__ import annotations

import random

import pytest

from inference.models.generators import comment_problem
from inference.text.templates import (
    OBJECT_EMOJI,
    claims_mood,
    fill,
    honest_comment,
    reads_feeling,
    template_comment,
)

OBJECT_SETS = (
    [],
    ["차"],
    ["개"],
    ["고양이", "소파"],
    ["버스", "차", "자전거"],
    ["화분"],
    ["모니터", "의자", "테이블", "병"],
    ["고슴도치"],
)


@pytest.mark.parametrize("has_face", [False, True])
@pytest.mark.parametrize("things", OBJECT_SETS)
def test_honest_comments_claim_no_mood_and_name_the_things(things: list[str], has_face: bool) -> None:
    rng = random.Random(0)
    for _ in range(30):
        text = honest_comment(things, has_face, rng)
        assert not claims_mood(text), text
        assert comment_problem(text, things) is None, text
        for thing in things[:3]:
            assert thing in text, (thing, text)


def test_every_template_variant_is_honest() -> None:
    """All sampled variants over many seeds: the whole bank, not only the first options."""
    texts = {
        honest_comment(things, face, random.Random(seed))
        for things in OBJECT_SETS
        for face in (0, 1)
        for seed in range(200)
    }
    assert len(texts) > 100  # the bot samples: the same photo does not always get the same words
    assert not [text for text in texts if claims_mood(text)]
    assert not [text for text in texts if reads_feeling(text)]


def test_mood_lexicon_catches_what_the_generators_say() -> None:
    assert claims_mood("슬퍼 보이는 표정이네요... 😢 힘내세요!")
    assert claims_mood("화가 난 것 같아요 😤")
    assert claims_mood("깜짝 놀란 모습이네요")
    assert claims_mood("무서운 일이 있었나요?")
    assert not claims_mood("사진 정말 멋져요! ✨ 놀라운 풍경이에요")


def test_feeling_lexicon_reads_the_people_not_the_viewer() -> None:
    """A smile, joy or ease attributed to the photo's people is a feeling read into it; the
    viewer's own joy and a wish are not."""
    for text in (
        "정말 행복해 보이시네요! 😄",
        "웃는 모습이 예뻐요",
        "미소가 아름다워요",
        "기분이 좋아 보이시네요!",
        "편안해 보여요 🌿",
        "즐거운 모습이네요",
        "슬퍼 보여요",
        "의자에 앉아 계신 모습이 정말 기쁘네요!",  # what the generators wrote for object-only prompts
        "어떤 기분인지 궁금해요!",
        "어두운 분위기가 느껴지는 사진이네요!",
    ):
        assert reads_feeling(text), text
    for text in (
        "보는 내내 미소가 지어져요 🐦🥰",
        "기분이 좋아지네요!",
        "행복한 하루 되세요",
        "행복하세요!",
        "의자가 멋져요 🪑",
        "즐거운 시간 보내세요",
    ):
        assert not reads_feeling(text), text


def test_fill_attaches_fitting_particles() -> None:
    assert (
        fill("{0:이} 좋아요, {1:을} 봐요, {0:와} {1:과}", ["차", "버스"])
        == "차가 좋아요, 버스를 봐요, 차와 버스와"
    )
    assert fill("{0:이}", ["고양이"]) == "고양이가"
    assert fill("{0:이}", ["책장"]) == "책장이"


def test_single_object_gets_its_emoji() -> None:
    assert OBJECT_EMOJI["개"] in honest_comment(["개"], has_face=False)


def test_generator_fallback_keeps_emotion_openers() -> None:
    assert claims_mood(template_comment(["슬픔", "차"]))
    assert not claims_mood(template_comment(["차"]))
