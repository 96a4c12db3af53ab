"""Training pairs without an emotion, cut from the people's comments (``training.faceless``)."""

from __future__ import annotations

from inference.text.templates import reads_feeling
from training.data import Pair
from training.faceless import faceless_pair, faceless_pairs, sentences


def test_sentences_keep_their_emojis_and_spaces() -> None:
    text = "정말 행복해 보이시네요! 😄 안경이 잘 어울려요! 🌳 나무도 좋아요"
    assert sentences(text) == ["정말 행복해 보이시네요! 😄 ", "안경이 잘 어울려요! 🌳 ", "나무도 좋아요"]
    assert "".join(sentences(text)) == text


def test_the_feeling_goes_and_the_things_stay() -> None:
    pair = Pair("기쁨, 안경, 나무", "정말 행복해 보이시네요! 😄 안경이 잘 어울려요! 🌳")
    assert faceless_pair(pair) == Pair("안경, 나무", "안경이 잘 어울려요! 🌳")


def test_pairs_that_leave_nothing_honest_give_nothing() -> None:
    assert faceless_pair(Pair("기쁨", "정말 행복해 보이시네요! 😄")) is None  # no object
    assert faceless_pair(Pair("기쁨, 안경", "웃는 모습이 예뻐요! 😄 안경도 멋져요.")) is None  # no emoji left
    assert (
        faceless_pair(Pair("기쁨, 나무", "미소가 예뻐요! 🌳 정말 좋은 하루네요! 😊")) is None
    )  # no object named
    # A sad, angry or scared comment keeps its mood in the sentences about things.
    assert faceless_pair(Pair("공포, 선반", "무서워요! 😱 선반이 불길해 보여요. 👻")) is None


def test_faceless_pairs_read_no_feeling_and_drop_duplicates() -> None:
    pairs = [
        Pair("기쁨, 재킷", "정말 행복해 보여요! 😊 재킷도 정말 멋져요! 😊"),
        Pair("기쁨, 재킷", "웃음이 가득하네요! 😄 재킷도 정말 멋져요! 😊"),
        Pair("기쁨, 차", "즐거운 나들이인가요? 🚗 차가 반짝반짝 빛나네요! ✨"),
    ]
    made = faceless_pairs(pairs)
    assert made == [Pair("재킷", "재킷도 정말 멋져요! 😊"), Pair("차", "차가 반짝반짝 빛나네요! ✨")]
    assert not any(reads_feeling(p.comment) for p in made)
