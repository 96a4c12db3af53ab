"""The research project's scores against values computed by hand on toy examples."""

from __future__ import annotations

import math

import pytest

from training.metrics import (
    bleu_scores,
    has_emoji,
    is_garbled,
    keyword_coverage,
    meteor,
    rouge_f_scores,
    score_predictions,
)


def test_bleu_is_character_level_corpus_bleu() -> None:
    # Pair 1 "abcde"→"abcdf": 4/5 unigrams, 3/4 bigrams, 2/3 trigrams, 1/2 4-grams match;
    # pair 2 "xyz"→"xyz": 3/3, 2/2, 1/1, and no 4-gram, which nltk counts as 0/1 (its
    # denominator is max(1, count)). Corpus BLEU pools the counts before dividing.
    scores = bleu_scores(["abcde", "xyz"], ["abcdf", "xyz"])
    p1, p2, p3, p4 = 7 / 8, 5 / 6, 3 / 4, 1 / 3
    assert scores["bleu1"] == pytest.approx(p1)
    assert scores["bleu2"] == pytest.approx(math.sqrt(p1 * p2))
    assert scores["bleu3"] == pytest.approx((p1 * p2 * p3) ** (1 / 3))
    assert scores["bleu4"] == pytest.approx((p1 * p2 * p3 * p4) ** (1 / 4))


def test_bleu_brevity_penalty_and_hangul_characters() -> None:
    # "안경 멋져" (5 chars) against "안경이 멋져" (6 chars): 5/5 unigram matches, bigrams
    # 안경, "경 ", " 멋", 멋져 → 3/4 ("경 " is not in the reference), brevity penalty exp(1 - 6/5).
    scores = bleu_scores(["안경이 멋져"], ["안경 멋져"])
    penalty = math.exp(1 - 6 / 5)
    assert scores["bleu1"] == pytest.approx(penalty * 1.0)
    assert scores["bleu2"] == pytest.approx(penalty * math.sqrt(1.0 * 3 / 4))


def test_bleu_without_smoothing_is_zero_when_no_4gram_matches() -> None:
    # nltk returns exp(log(tiny)) rather than exactly 0 for a zero precision.
    assert bleu_scores(["abcd"], ["abce"])["bleu4"] == pytest.approx(0.0, abs=1e-50)
    assert bleu_scores(["좋아요 😊"], ["좋아요 😊"])["bleu4"] == pytest.approx(1.0)


def test_meteor_exact_match_has_only_the_fragmentation_penalty() -> None:
    # 3 matches in 1 chunk: penalty 0.5 * (1/3)^3; precision = recall = 1.
    assert meteor(["a b c"], ["a b c"]) == pytest.approx(1 - 0.5 / 27)


def test_meteor_korean_partial_match() -> None:
    # Hypothesis "안경이 멋져요" vs reference "안경이 정말 멋져요": 2 matches, P=1, R=2/3,
    # Fmean = P*R / (0.9*P + 0.1*R); 2 chunks for 2 matches → penalty 0.5 * 1^3.
    precision, recall = 1.0, 2 / 3
    fmean = precision * recall / (0.9 * precision + 0.1 * recall)
    assert meteor(["안경이 정말 멋져요"], ["안경이 멋져요"]) == pytest.approx(fmean * 0.5)


def test_rouge_f_scores_words() -> None:
    # reference "a b c d", prediction "a b e": unigram overlap 2 (P 2/3, R 2/4) → F 4/7;
    # bigram overlap 1 ("a b"; P 1/2, R 1/3) → F 2/5; LCS "a b" → F 4/7.
    scores = rouge_f_scores(["a b c d"], ["a b e"])
    assert scores["rouge1_f"] == pytest.approx(4 / 7, abs=1e-6)
    assert scores["rouge2_f"] == pytest.approx(2 / 5, abs=1e-6)
    assert scores["rougeL_f"] == pytest.approx(4 / 7, abs=1e-6)


def test_rouge_counts_an_empty_prediction_as_zero() -> None:
    scores = rouge_f_scores(["a b", "a b"], ["a b", ""])
    assert scores["rouge1_f"] == pytest.approx(0.5, abs=1e-6)


def test_emoji_detection() -> None:
    assert has_emoji("멋져요 😊")
    assert has_emoji("사랑해요 ❤")
    assert has_emoji("반짝 ✨")
    assert not has_emoji("멋져요!! ^^")


def test_keyword_coverage_counts_only_inputs_with_object_keywords() -> None:
    keywords = ["기쁨, 안경", "슬픔", "공포, 자전거 바퀴, 나무", "분노, 차"]
    predictions = ["안경이 멋져요 😊", "힘내세요", "자전거바퀴와 나무 🌳", "화났어요"]
    coverage, counted = keyword_coverage(keywords, predictions)
    assert counted == 3  # "슬픔" has no object keyword
    assert coverage == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("prediction", "garbled"),
    [
        ("안경이 멋져요 😊", False),
        ("", True),
        ("   ", True),
        ("안경\ufffd 멋져요", True),
        ("!!! 😊", True),
        ("기쁨, 안경", True),
        ("키워드: 기쁨, 안경\n댓글: 좋아요", True),
    ],
)
def test_garbled(prediction: str, garbled: bool) -> None:
    assert is_garbled(prediction, "기쁨, 안경", "키워드: 기쁨, 안경\n댓글:") is garbled


def test_score_predictions_combines_everything() -> None:
    keywords = ["기쁨, 안경", "슬픔"]
    references = ["안경이 멋져요 😊", "힘내세요 😢"]
    predictions = ["안경이 멋져요 😊", "힘내세요 😢"]
    scores = score_predictions(keywords, references, predictions, keywords)
    assert scores["bleu4"] == pytest.approx(1.0)
    assert scores["rougeL_f"] == pytest.approx(1.0, abs=1e-6)
    assert scores["emoji_share"] == 1.0
    assert scores["keyword_coverage"] == 1.0
    assert scores["distinct_share"] == 1.0
    assert scores["garbled"] == 0.0
