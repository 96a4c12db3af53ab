"""The shipped generators in ``weights/generators/``: size, metadata, and real comments through the
worker's own loader (deterministic and sampled decoding both pass the bot's post-check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.models.generators import CommentGenerator, comment_problem
from inference.models.registry import discover_generators
from inference.settings import DEFAULT_WEIGHTS_DIR
from inference.text.slots import leftover_slots
from training.data import split_keywords
from training.metrics import has_emoji, mentions_all_objects

GENERATORS_DIR = DEFAULT_WEIGHTS_DIR / "generators"
SHIPPED = ("t5", "gpt2")
MAX_FOLDER_BYTES = 40 * 1024 * 1024
KEYWORDS = [
    "기쁨, 안경",
    "슬픔, 나무",
    "공포",
    "분노, 재킷",
    "기쁨, 자전거",
    "슬픔, 책",
    "기쁨, 꽃",
    "공포, 차",
]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_generator_folder(name: str) -> None:
    folder = GENERATORS_DIR / name
    assert folder_bytes(folder) < MAX_FOLDER_BYTES
    entry = discover_generators(GENERATORS_DIR)[name]
    training = entry.meta.training
    # Trained here from nothing: the folder's first run (``stages`` lists every run when there were several).
    first_run = training.get("stages", [training])[0]
    assert first_run["base"] == "scratch" and training["params"] > 1_000_000
    assert len(training["data_sha256"]) == 64 and training["train_seconds"] > 0
    metrics = training["metrics"]  # written by evaluate_generator --update-metadata
    assert metrics["garbled"] == 0 and metrics["count"] >= 500
    assert (folder / "report" / "loss_curve.png").is_file()
    summary = json.loads((folder / "report" / "training_metrics.json").read_text(encoding="utf-8"))
    assert summary["best_epoch"] == training["best_epoch"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_generator_writes_korean_comments(name: str) -> None:
    entry = discover_generators(GENERATORS_DIR)[name]
    generator = CommentGenerator.load(entry, "cpu")
    for sample in (False, True):
        comments = generator.generate(KEYWORDS, sample=sample)
        prompts = generator.prompts(KEYWORDS)
        for keywords, prompt, comment in zip(KEYWORDS, prompts, comments, strict=True):
            assert comment_problem(comment, split_keywords(keywords), prompt) is None, (keywords, comment)
        assert sum(map(has_emoji, comments)) >= len(comments) - 1
    deterministic = generator.generate(KEYWORDS, sample=False)
    mentioned = sum(mentions_all_objects(k, c) for k, c in zip(KEYWORDS, deterministic, strict=True))
    assert mentioned >= len(KEYWORDS) // 2, deterministic


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_generator_names_objects_it_never_saw(name: str) -> None:
    """Held-out names (in no training pair) come back in the comment through the object slots."""
    entry = discover_generators(GENERATORS_DIR)[name]
    assert entry.meta.object_slots
    holdout = entry.meta.training["holdout_object_names"]
    emotions = ["기쁨", "슬픔", "분노", "공포"]
    keywords = [f"{emotions[i % 4]}, {holdout[i]}" for i in range(8)]
    keywords += [f"기쁨, {holdout[8]}, {holdout[9]}", f"슬픔, {holdout[10]}, {holdout[11]}"]
    generator = CommentGenerator.load(entry, "cpu")
    for sample in (False, True):
        comments = generator.generate(keywords, sample=sample)
        assert not any(leftover_slots(c) for c in comments), comments
        mentioned = sum(mentions_all_objects(k, c) for k, c in zip(keywords, comments, strict=True))
        assert mentioned >= len(keywords) - (1 if not sample else 3), comments
