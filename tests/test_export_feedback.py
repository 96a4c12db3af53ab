"""``python -m training.export_feedback``: liked pairs and replaced comments out of a real store, and
the export trains a (tiny) generator as it is."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.store import NewComment, Store, sqlite_url
from tests.test_training_generator import (
    TINY_SIZE,
    check_generator_folder,
    data_files,
    fixture_pairs,
    run_training,
)
from training import export_feedback
from training.data import file_sha256, load_pairs

__all__ = ["data_files"]  # the fixture, imported so pytest finds it here too


async def fill_store(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """40 comments: even ones liked (one also disliked once), odd ones disliked; every fifth one
    replaced by a 🔄 whose new text is liked. Returns the expected liked pairs and replaced texts."""
    store = Store(path)
    await store.open()
    liked: list[tuple[str, str]] = []
    replaced: list[str] = []
    try:
        for i, pair in enumerate(fixture_pairs(40)):
            comment_id = await store.add_comment(
                NewComment(
                    "telegram",
                    "telegram:1",
                    1,
                    i,
                    f"file-{i}",
                    "0" * 64,
                    "t5",
                    pair.keyword_list,
                    {},
                    pair.comment,
                )
            )
            await store.vote(comment_id, 1, "telegram:10", 1 if i % 2 == 0 else -1)
            if i % 2 == 0:
                await store.vote(comment_id, 1, "telegram:11", 1)
                await store.vote(comment_id, 1, "telegram:12", -1)
                liked.append((pair.keywords, pair.comment))
            if i % 5 == 0:
                again = f"{pair.comment} 다시 봐도 좋아요 🔄"
                await store.add_version(comment_id, again, max_versions=4)
                await store.vote(comment_id, 2, "telegram:10", 1)
                replaced.append(pair.comment)
                liked.append((pair.keywords, again))
    finally:
        await store.close()
    return liked, replaced


async def test_export_writes_liked_pairs_and_replaced_ones_apart(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite3"
    liked, replaced = await fill_store(database)
    out = tmp_path / "export" / "liked.jsonl"
    assert await export_feedback.export(
        sqlite_url(database), out, tmp_path / "export" / "replaced.jsonl"
    ) == (
        len(liked),
        len(replaced),
    )
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted((r["keywords"], r["comment"]) for r in rows) == sorted(liked)
    assert {r["generator"] for r in rows} == {"t5"} and all(r["net_votes"] > 0 for r in rows)
    negatives = [
        json.loads(line) for line in (tmp_path / "export" / "replaced.jsonl").read_text().splitlines()
    ]
    assert [r["comment"] for r in negatives] == replaced


def test_cli_export_round_trips_into_a_tiny_training_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_files: tuple[Path, Path]
) -> None:
    database = tmp_path / "state.sqlite3"
    liked, _ = asyncio.run(fill_store(database))
    out = tmp_path / "liked.jsonl"
    assert export_feedback.main(["--out", str(out), "--database-url", sqlite_url(database)]) == 0
    assert (tmp_path / "liked.replaced.jsonl").is_file()  # the default place of the negatives
    assert sorted((p.keywords, p.comment) for p in load_pairs(out)) == sorted(liked)

    output = tmp_path / "generators" / "t5"
    _, names = data_files
    run_training(
        monkeypatch,
        (out, names),
        output,
        "--arch",
        "t5",
        "--base",
        "scratch",
        "--vocab-size",
        "400",
        *TINY_SIZE,
    )
    check_generator_folder(output, "seq2seq")
    meta = json.loads((output / "generator.json").read_text(encoding="utf-8"))
    assert meta["training"]["data_sha256"] == file_sha256(out)
