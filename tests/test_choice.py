"""Choosing one comment among candidates (emoji first, consensus), and the bootstrap spread of the scores."""

from __future__ import annotations

import numpy as np
import pytest

from inference.text.choice import char_f, choose, consensus_pick, lcs_f, likeness
from training.metrics import bleu_scores, rouge_f_scores
from training.spread import Scored, bleu4_from_sums, intervals, paired_differences, resample_weights

REFERENCES = [
    "정말 행복해 보이시네요! 😊 안경이 잘 어울려요!",
    "무서운 분위기가 느껴지네요! 😨 재킷도 멋져요.",
    "자전거와 함께한 하루, 즐거워 보여요! 🚴",
    "강아지가 정말 귀엽네요! 🐶 행복한 시간 보내세요.",
    "슬퍼 보이는 표정이네요... 😢 힘내세요!",
    "나무 아래에서 웃는 모습이 아름다워요! 🌳",
]
PREDICTIONS = [
    "정말 행복해 보이네요! 😊 안경이 멋져요!",
    "무서운 느낌이네요! 😨 재킷이 멋져요.",
    "자전거 타는 모습이 즐거워 보여요! 🚴",
    "강아지가 귀여워요! 🐶",
    "힘내세요! 😢",
    "나무가 멋진 사진이에요! 🌳 웃는 모습이 좋아요.",
]


def test_the_candidate_most_like_the_others_wins() -> None:
    candidates = ["안경이 멋져요! 😊", "정말 행복해 보여요! 안경이 멋져요! 😊", "정말 행복해 보여요! 😊"]
    assert consensus_pick(candidates) == candidates[1]  # shares with both others


def test_one_or_two_candidates_keep_the_best_ranked_and_none_is_an_error() -> None:
    assert consensus_pick(["하나 😊"]) == "하나 😊"
    assert consensus_pick(["첫째 😊", "둘째 😊"]) == "첫째 😊"  # symmetric likeness: a tie, the first wins
    with pytest.raises(ValueError):
        consensus_pick([])


def test_a_candidate_with_an_emoji_comes_first() -> None:
    assert choose(["좋아요", "좋아요 😊", "멋져요 😊"]) == "좋아요 😊"
    assert choose(["좋아요", "정말 좋아요"], pick="consensus") == "좋아요"  # none has one: all count
    candidates = ["좋아요", "정말 좋아요 😊", "정말 좋네요 😊", "좋네요 😊"]
    assert choose(candidates, pick="consensus") == "정말 좋네요 😊"  # shares most with the other two


def test_likeness_is_symmetric_and_bounded() -> None:
    a, b = "정말 행복해 보여요 😊", "행복해 보여요 정말"
    assert likeness(a, b) == pytest.approx(likeness(b, a))
    assert likeness(a, a) == pytest.approx(2.0)
    assert char_f(a, "") == 0.0 and lcs_f([], ["x"]) == 0.0
    assert 0.0 < likeness(a, b) < 2.0


def test_bootstrap_reproduces_the_metrics_on_the_whole_sample() -> None:
    scored = Scored.of(REFERENCES, PREDICTIONS)
    weights = resample_weights(len(REFERENCES), 200, seed=1)
    found = intervals(scored, weights)
    assert found["bleu4"].value == pytest.approx(bleu_scores(REFERENCES, PREDICTIONS)["bleu4"], abs=1e-12)
    assert found["rougeL_f"].value == pytest.approx(rouge_f_scores(REFERENCES, PREDICTIONS)["rougeL_f"])
    for interval in found.values():
        assert interval.low <= interval.value <= interval.high
        assert interval.high - interval.low > 0  # six pairs: a wide interval, not a point


@pytest.mark.parametrize(
    ("references", "predictions"),
    [
        (["가나다라마바", "사아자"], ["가나다 라", "사자"]),  # no 4-gram match: nltk's smallest float
        (["가나다라"], ["하하"]),  # no match at all: 0
        (["가나다라마"], ["가나다라마"]),
        (["가나다라마바사"], ["가나"]),  # too short: brevity penalty
    ],
)
def test_bootstrap_bleu_follows_nltk_in_the_corner_cases(
    references: list[str], predictions: list[str]
) -> None:
    scored = Scored.of(references, predictions)
    expected = bleu_scores(references, predictions)["bleu4"]
    assert float(bleu4_from_sums(scored.bleu.sum(axis=0))) == pytest.approx(expected, rel=1e-9, abs=0.0)


def test_resamples_draw_every_item_as_often_as_the_sample_size() -> None:
    weights = resample_weights(10, 50, seed=0)
    assert weights.shape == (50, 10)
    assert np.all(weights.sum(axis=1) == 10)


def test_paired_differences() -> None:
    weights = resample_weights(len(REFERENCES), 200, seed=2)
    same = paired_differences(Scored.of(REFERENCES, PREDICTIONS), Scored.of(REFERENCES, PREDICTIONS), weights)
    assert same["bleu4"]["value"] == 0.0 and same["bleu4"]["share_better"] == 0.0
    better = paired_differences(
        Scored.of(REFERENCES, REFERENCES), Scored.of(REFERENCES, PREDICTIONS), weights
    )
    assert better["rougeL_f"]["value"] > 0 and better["rougeL_f"]["share_better"] == 1.0
    assert better["bleu4"]["low"] > 0
