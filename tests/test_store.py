"""Store: a real SQLite file, persisted across close/reopen."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from bot.schema import metadata
from bot.store import MIGRATIONS, NewComment, Store, StoreClosedError, Tally
from tests.servers import fresh_database


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


# --- migrations --------------------------------------------------------------------------------
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_settings (
    chat_key   TEXT PRIMARY KEY,
    generator  TEXT,
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
)
"""  # what bot/store.py created before the store had migrations


def make_legacy_file(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(LEGACY_SCHEMA)
        conn.execute("INSERT INTO chat_settings (chat_key, generator) VALUES ('telegram:-100', 'gpt2')")
        conn.execute("INSERT INTO chat_settings (chat_key, generator) VALUES ('discord:dm:7', 't5')")


async def test_upgrades_a_pre_migration_file_in_place_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    make_legacy_file(path)
    store = Store(path)
    await store.open()
    try:
        assert await store.get_generator("telegram:-100") == "gpt2"
        assert await store.get_generator("discord:dm:7") == "t5"
        await store.set_generator("telegram:-100", "t5")  # old rows are writable through the new code
        comment_id = await store.add_comment(new_comment())
        assert (await store.comment(comment_id)) is not None
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        generator = conn.execute(
            "SELECT generator FROM chat_settings WHERE chat_key='telegram:-100'"
        ).fetchone()
    assert {"chat_settings", "comments", "comment_versions", "votes", "alembic_version"} <= tables
    assert version == [(head_revision(),)] and generator == ("t5",)
    reopened = Store(path)  # opening an up-to-date file again changes nothing
    await reopened.open()
    try:
        assert await reopened.get_generator("discord:dm:7") == "t5"
    finally:
        await reopened.close()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def test_migrated_schema_matches_the_tables_the_code_uses(tmp_path: Path) -> None:
    """Alembic's autogenerate finds nothing to add: bot/schema.py and the migrations agree."""
    store = Store(tmp_path / "state.sqlite3")
    await store.open()
    await store.close()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert diff == []


# --- comments, votes, versions -------------------------------------------------------------------
def new_comment(chat_key: str = "telegram:1", text: str = "좋아요 😊") -> NewComment:
    return NewComment(
        platform="telegram",
        chat_key=chat_key,
        chat_id=1,
        photo_message_id=10,
        photo_ref="file-1",
        photo_sha256="a" * 64,
        generator="t5",
        keywords=["기쁨", "안경"],
        detections={"faces": [], "objects": [], "image_size": [4, 3]},
        text=text,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same tests on the default SQLite file and on a real PostgreSQL (asyncpg)."""
    if request.param == "postgresql":
        opened = Store(await fresh_database(request.getfixturevalue("postgres_url")))
    else:
        opened = Store(tmp_path / "state.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


# --- PostgreSQL: what several bot replicas share ------------------------------------------------
async def test_migrations_run_on_postgresql_and_match_the_schema(postgres_url: str) -> None:
    url = await fresh_database(postgres_url)
    store = Store(url)
    await store.open()
    await store.close()
    await store.open()  # a second start finds the newest revision and changes nothing
    await store.close()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
            revision = (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    finally:
        await engine.dispose()
    assert diff == []
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    assert revision == ScriptDirectory.from_config(config).get_current_head()


async def test_two_store_instances_share_per_chat_settings_through_postgresql(postgres_url: str) -> None:
    url = await fresh_database(postgres_url)
    first, second = Store(url), Store(url)
    await asyncio.gather(first.open(), second.open())  # two replicas starting at once: one migrates
    try:
        await first.set_generator("telegram:-100", "gpt2")
        assert await second.get_generator("telegram:-100") == "gpt2"
        await second.set_generator("telegram:-100", "t5")
        assert await first.get_generator("telegram:-100") == "t5"
        comment_id = await first.add_comment(new_comment())
        await second.vote(comment_id, 1, "telegram:9", 1)
        assert await first.tally(comment_id, 1) == Tally(likes=1, dislikes=0)
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_concurrent_votes_of_many_users_all_count(store: Store) -> None:
    comment_id = await store.add_comment(new_comment())
    await asyncio.gather(*(store.vote(comment_id, 1, f"telegram:{i}", 1 if i % 3 else -1) for i in range(30)))
    assert await store.tally(comment_id, 1) == Tally(likes=20, dislikes=10)


async def test_versions_are_capped_and_votes_are_per_version(store: Store) -> None:
    comment_id = await store.add_comment(new_comment())
    await store.vote(comment_id, 1, "telegram:5", 1)
    assert await store.add_version(comment_id, "두 번째", max_versions=2) == 2
    assert await store.add_version(comment_id, "세 번째", max_versions=2) is None
    record = await store.comment(comment_id)
    assert record is not None and (record.version, record.text) == (2, "두 번째")
    assert await store.tally(comment_id, 2) == Tally() and await store.tally(comment_id, 1) == Tally(1, 0)
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert await store.regenerations_since("telegram:1", since) == 1
    assert await store.regenerations_since("telegram:2", since) == 0


async def test_forget_and_retention_delete_comments_with_versions_and_votes(store: Store) -> None:
    kept = await store.add_comment(new_comment("telegram:2"))
    doomed = await store.add_comment(new_comment("telegram:1"))
    await store.vote(doomed, 1, "telegram:5", 1)
    await store.add_version(doomed, "다시", max_versions=4)
    assert await store.forget_chat("telegram:1") == 1
    assert await store.comment(doomed) is None and await store.comment(kept) is not None
    assert await store.liked_pairs() == [] and await store.replaced_pairs() == []
    assert await store.purge_before(datetime.now(UTC) - timedelta(days=1)) == 0
    assert await store.purge_before(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert await store.comment(kept) is None
