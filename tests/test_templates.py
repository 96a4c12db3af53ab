"""Honest comments for photos where no face shows an emotion."""

from __future__ import annotations

import random

import pytest

from inference.models.generators import comment_problem
from inference.text.templates import OBJECT_EMOJI, claims_mood, fill, honest_comment, template_comment

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


def test_mood_lexicon_catches_what_the_generators_say() -> None:
    assert claims_mood("슬퍼 보이는 표정이네요... 😢 힘내세요!")
    assert claims_mood("화가 난 것 같아요 😤")
    assert claims_mood("깜짝 놀란 모습이네요")
    assert claims_mood("무서운 일이 있었나요?")
    assert not claims_mood("사진 정말 멋져요! ✨ 놀라운 풍경이에요")


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
