"""``training.reference_agreement``: people's comments for one keyword set scored against each other."""

from __future__ import annotations

import json
from pathlib import Path

from training.data import load_pairs, split_pairs
from training.reference_agreement import agreement, keyword_set, parse_args

COMMENTS = {
    "기쁨": [
        "정말 행복해 보이시네요! 😊",
        "행복해 보이시네요! 😊 좋은 하루!",
        "기분이 좋아 보여요! 😄",
        "웃는 모습이 멋져요! 😊",
    ],
    "슬픔, 안경": [
        "슬퍼 보이네요... 😢 안경이 잘 어울려요!",
        "힘내세요! 😢 안경이 멋져요.",
        "슬픈 표정이네요 😢",
    ],
    "나무": ["나무가 멋진 사진이에요! 🌳"],
}


def write_pairs(path: Path) -> Path:
    rows = [{"keywords": k, "comment": c} for k, comments in COMMENTS.items() for c in comments]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_keyword_order_does_not_make_another_set() -> None:
    assert keyword_set("안경, 슬픔") == keyword_set("슬픔,안경") == "슬픔, 안경"


def test_agreement_scores_another_comment_the_typical_one_and_the_generator(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl")
    split = split_pairs(load_pairs(data), seed=1, validation=1, test=3)
    predictions = tmp_path / "predictions.jsonl"  # a generator that writes the reference itself
    predictions.write_text(
        "".join(
            json.dumps(
                {"keywords": p.keywords, "reference": p.comment, "prediction": p.comment}, ensure_ascii=False
            )
            + "\n"
            for p in split.test
        ),
        encoding="utf-8",
    )
    args = parse_args(
        [
            "--data",
            str(data),
            "--seed",
            "1",
            "--val-size",
            "1",
            "--test-size",
            "3",
            "--predictions",
            str(predictions),
        ]
    )
    table = agreement(args)
    assert table["held_out_pairs"] == 3
    seen = table["another_comment"]["pairs"]
    assert seen == table["typical_comment"]["pairs"] <= 3
    assert table["generator"]["all"] == {
        "pairs": 3,
        "bleu4": 1.0,
        "rougeL_f": 1.0,
        "mean_reference_chars": table["generator"]["all"]["mean_reference_chars"],
        "mean_prediction_chars": table["generator"]["all"]["mean_reference_chars"],
        "mean_keywords": table["generator"]["all"]["mean_keywords"],
    }
    parts = [name for name in ("seen_2_or_more", "seen_once", "unseen") if name in table["generator"]]
    assert sum(table["generator"][name]["pairs"] for name in parts) == 3
