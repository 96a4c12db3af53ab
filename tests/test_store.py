"""Store: a real SQLite file, persisted across close/reopen."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.store import Store, StoreClosedError


async def test_open_creates_parent_folder_and_table(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "state.sqlite3"
    store = Store(path)
    await store.open()
    try:
        assert path.is_file()
        assert await store.get_generator("telegram:1") is None
    finally:
        await store.close()
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    assert ("chat_settings",) in tables


async def test_set_get_overwrite_and_persist_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    await store.open()
    await store.set_generator("telegram:-100", "gpt2")
    await store.set_generator("discord:dm:7", "t5")
    await store.set_generator("telegram:-100", "t5")
    assert await store.get_generator("telegram:-100") == "t5"
    await store.close()

    reopened = Store(path)
    await reopened.open()
    try:
        assert await reopened.get_generator("telegram:-100") == "t5"
        assert await reopened.get_generator("discord:dm:7") == "t5"
        assert await reopened.get_generator("discord:dm:8") is None
    finally:
        await reopened.close()


async def test_concurrent_writes_all_land(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    await store.open()
    try:
        await asyncio.gather(*(store.set_generator(f"telegram:{i}", f"g{i}") for i in range(30)))
        values = await asyncio.gather(*(store.get_generator(f"telegram:{i}") for i in range(30)))
        assert values == [f"g{i}" for i in range(30)]
    finally:
        await store.close()


async def test_use_after_close_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    await store.open()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        await store.get_generator("telegram:1")
