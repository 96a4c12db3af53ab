"""Everything the bot keeps, behind SQLAlchemy 2 async: per-chat settings and every comment with
its versions and votes (never the photo).

The default is a SQLite file (``STATE_DB``, driver aiosqlite); ``DATABASE_URL`` names any other
database SQLAlchemy has an async driver for (``postgresql+asyncpg://…``) with the same code: queries
are SQLAlchemy Core, no SQLite-only SQL. ``open()`` upgrades the schema with the Alembic migrations
in ``bot/migrations`` (in place: an existing file keeps its rows).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.schema import chat_settings, comment_versions, comments, votes
from inference.settings import Settings
from inference.text.keywords import format_keywords, parse_keywords

logger = logging.getLogger(__name__)

MIGRATIONS = "bot:migrations"
MIGRATION_LOCK_KEY = 0x6D75706C  # "mupl": PostgreSQL advisory lock held while migrating
# Alembic's migration context is one module-level proxy: two stores of one process (tests, tools)
# must not migrate at the same time. One lock per event loop (a lock is bound to its loop).
_MIGRATING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


class StoreClosedError(RuntimeError):
    """The store was used before ``open()`` or after ``close()`` (a programming error)."""


def store_url(settings: Settings) -> str:
    """``DATABASE_URL`` when set, else the SQLite file ``STATE_DB``."""
    return settings.database_url or sqlite_url(settings.state_db)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{Path(path)}"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewComment:
    """A comment about to be sent (its id goes into the buttons, so it is stored first)."""

    platform: str
    chat_key: str
    chat_id: int
    photo_message_id: int
    photo_ref: str
    photo_sha256: str
    generator: str
    keywords: Sequence[str]
    detections: dict[str, Any]
    text: str


@dataclass(frozen=True, slots=True)
class CommentRecord:
    id: int
    platform: str
    chat_key: str
    chat_id: int
    photo_message_id: int
    reply_message_id: int | None
    photo_ref: str
    generator: str
    keywords: list[str]
    detections: dict[str, Any]
    version: int  # the version the message shows (the latest)
    text: str


@dataclass(frozen=True, slots=True)
class Tally:
    likes: int = 0
    dislikes: int = 0


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One line of /stats: comments of a generator (or keyword set) and what users did with them."""

    key: str
    comments: int
    likes: int
    dislikes: int
    regenerated: int  # comments that got at least one 🔄

    @property
    def like_rate(self) -> float | None:
        votes_cast = self.likes + self.dislikes
        return self.likes / votes_cast if votes_cast else None

    @property
    def regenerate_rate(self) -> float:
        return self.regenerated / self.comments if self.comments else 0.0


@dataclass(frozen=True, slots=True)
class ExportedPair:
    keywords: str
    comment: str
    generator: str
    net_votes: int


class Store:
    """Async access to the bot's database; one engine (connection pool) per process."""

    def __init__(self, url_or_path: str | Path) -> None:
        self.url = sqlite_url(url_or_path) if isinstance(url_or_path, Path) else url_or_path
        self._engine: AsyncEngine | None = None

    # --- life cycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and upgrade the schema to the newest migration; safe on an existing database."""
        if self._engine is not None:
            return
        engine = _create_engine(self.url)
        try:
            migrating = _MIGRATING.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with migrating, engine.begin() as connection:
                await connection.run_sync(_upgrade_schema)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        logger.info("store opened at %s", engine.url.render_as_string(hide_password=True))

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    def _begin(self) -> Any:
        if self._engine is None:
            raise StoreClosedError("Store is not open")
        return self._engine.begin()

    # --- per-chat settings --------------------------------------------------------------------
    async def get_generator(self, chat_key: str) -> str | None:
        query = sa.select(chat_settings.c.generator).where(chat_settings.c.chat_key == chat_key)
        async with self._begin() as connection:
            value: str | None = (await connection.execute(query)).scalar_one_or_none()
        return value

    async def set_generator(self, chat_key: str, name: str) -> None:
        async with self._begin() as connection:
            changed = await connection.execute(
                chat_settings.update()
                .where(chat_settings.c.chat_key == chat_key)
                .values(generator=name, updated_at=now())
            )
            if changed.rowcount == 0:
                await connection.execute(
                    chat_settings.insert().values(chat_key=chat_key, generator=name, updated_at=now())
                )

    # --- comments -----------------------------------------------------------------------------
    async def add_comment(self, new: NewComment) -> int:
        """Store a comment (version 1); returns its id."""
        created = now()
        async with self._begin() as connection:
            result = await connection.execute(
                comments.insert().values(
                    platform=new.platform,
                    chat_key=new.chat_key,
                    chat_id=new.chat_id,
                    photo_message_id=new.photo_message_id,
                    photo_ref=new.photo_ref,
                    photo_sha256=new.photo_sha256,
                    generator=new.generator,
                    keywords=format_keywords(new.keywords),
                    detections=new.detections,
                    created_at=created,
                )
            )
            comment_id = int(result.inserted_primary_key[0])
            await connection.execute(
                comment_versions.insert().values(
                    comment_id=comment_id, version=1, text=new.text, created_at=created
                )
            )
        return comment_id

    async def set_reply_message(self, comment_id: int, message_id: int) -> None:
        async with self._begin() as connection:
            await connection.execute(
                comments.update().where(comments.c.id == comment_id).values(reply_message_id=message_id)
            )

    async def comment(self, comment_id: int) -> CommentRecord | None:
        latest = (
            sa.select(sa.func.max(comment_versions.c.version))
            .where(comment_versions.c.comment_id == comment_id)
            .scalar_subquery()
        )
        query = (
            sa.select(comments, comment_versions.c.version, comment_versions.c.text)
            .join(comment_versions, comment_versions.c.comment_id == comments.c.id)
            .where(comments.c.id == comment_id, comment_versions.c.version == latest)
        )
        async with self._begin() as connection:
            row = (await connection.execute(query)).mappings().first()
        if row is None:
            return None
        return CommentRecord(
            id=row["id"],
            platform=row["platform"],
            chat_key=row["chat_key"],
            chat_id=row["chat_id"],
            photo_message_id=row["photo_message_id"],
            reply_message_id=row["reply_message_id"],
            photo_ref=row["photo_ref"],
            generator=row["generator"],
            keywords=parse_keywords(row["keywords"]),
            detections=dict(row["detections"]),
            version=row["version"],
            text=row["text"],
        )

    async def add_version(self, comment_id: int, text: str, *, max_versions: int) -> int | None:
        """Store a 🔄 text as the next version; ``None`` when the comment already has ``max_versions``."""
        async with self._begin() as connection:
            current = await _latest_version(connection, comment_id)
            if current >= max_versions:
                return None
            try:
                await connection.execute(
                    comment_versions.insert().values(
                        comment_id=comment_id, version=current + 1, text=text, created_at=now()
                    )
                )
            except IntegrityError:  # another replica added the same version first
                return None
        return current + 1

    async def regenerations_since(self, chat_key: str, since: datetime) -> int:
        """🔄 texts made for this chat since ``since`` (the per-chat limit)."""
        query = (
            sa.select(sa.func.count())
            .select_from(comment_versions.join(comments, comments.c.id == comment_versions.c.comment_id))
            .where(
                comments.c.chat_key == chat_key,
                comment_versions.c.version > 1,
                comment_versions.c.created_at >= since,
            )
        )
        async with self._begin() as connection:
            return int((await connection.execute(query)).scalar_one())

    # --- votes --------------------------------------------------------------------------------
    async def vote(self, comment_id: int, version: int, voter: str, value: int) -> tuple[Tally, int]:
        """Press 👍 (+1) or 👎 (-1): a first press votes, the same again withdraws, the other one
        changes the vote. Returns the new tally and the voter's vote now (0: none)."""
        if value not in (1, -1):
            raise ValueError(f"vote must be +1 or -1, not {value}")
        key = (votes.c.comment_id == comment_id) & (votes.c.version == version) & (votes.c.voter == voter)
        async with self._begin() as connection:
            previous = (await connection.execute(sa.select(votes.c.value).where(key))).scalar_one_or_none()
            if previous == value:
                await connection.execute(votes.delete().where(key))
                mine = 0
            elif previous is not None:
                await connection.execute(votes.update().where(key).values(value=value, created_at=now()))
                mine = value
            else:
                await connection.execute(
                    votes.insert().values(
                        comment_id=comment_id, version=version, voter=voter, value=value, created_at=now()
                    )
                )
                mine = value
            tally = await _tally(connection, comment_id, version)
        return tally, mine

    async def tally(self, comment_id: int, version: int) -> Tally:
        async with self._begin() as connection:
            return await _tally(connection, comment_id, version)

    # --- deletion -----------------------------------------------------------------------------
    async def forget_chat(self, chat_key: str) -> int:
        """Delete every comment of a chat with its versions and votes; returns how many comments."""
        return await self._delete_comments(comments.c.chat_key == chat_key)

    async def purge_before(self, cutoff: datetime) -> int:
        """Retention: delete comments created before ``cutoff``; returns how many."""
        return await self._delete_comments(comments.c.created_at < cutoff)

    async def _delete_comments(self, condition: sa.ColumnElement[bool]) -> int:
        doomed = sa.select(comments.c.id).where(condition)
        async with self._begin() as connection:
            await connection.execute(votes.delete().where(votes.c.comment_id.in_(doomed)))
            await connection.execute(
                comment_versions.delete().where(comment_versions.c.comment_id.in_(doomed))
            )
            result = await connection.execute(comments.delete().where(condition))
        return int(result.rowcount)

    # --- reports ------------------------------------------------------------------------------
    async def feedback_by(self, column: str, limit: int = 10) -> list[FeedbackRow]:
        """Comments, 👍, 👎 and comments with a 🔄 by ``generator`` or ``keywords``, most comments first."""
        group = comments.c[column]
        counts = sa.select(group, sa.func.count()).group_by(group)
        vote_sums = (
            sa.select(
                group,
                sa.func.sum(sa.case((votes.c.value > 0, 1), else_=0)),
                sa.func.sum(sa.case((votes.c.value < 0, 1), else_=0)),
            )
            .select_from(votes.join(comments, comments.c.id == votes.c.comment_id))
            .group_by(group)
        )
        regenerated = (
            sa.select(group, sa.func.count(sa.distinct(comment_versions.c.comment_id)))
            .select_from(comment_versions.join(comments, comments.c.id == comment_versions.c.comment_id))
            .where(comment_versions.c.version > 1)
            .group_by(group)
        )
        async with self._begin() as connection:
            totals = {key: int(n) for key, n in await connection.execute(counts)}
            voted = {
                key: (int(up or 0), int(down or 0)) for key, up, down in await connection.execute(vote_sums)
            }
            again = {key: int(n) for key, n in await connection.execute(regenerated)}
        rows = [FeedbackRow(key, n, *voted.get(key, (0, 0)), again.get(key, 0)) for key, n in totals.items()]
        return sorted(rows, key=lambda row: (-row.comments, row.key))[:limit]

    async def liked_pairs(self) -> list[ExportedPair]:
        """Versions with more 👍 than 👎: keyword → comment pairs users liked."""
        net = sa.func.sum(votes.c.value)
        query = (
            sa.select(comments.c.keywords, comment_versions.c.text, comments.c.generator, net)
            .select_from(
                votes.join(
                    comment_versions,
                    (comment_versions.c.comment_id == votes.c.comment_id)
                    & (comment_versions.c.version == votes.c.version),
                ).join(comments, comments.c.id == votes.c.comment_id)
            )
            .group_by(votes.c.comment_id, votes.c.version, comments.c.keywords, comment_versions.c.text)
            .group_by(comments.c.generator)
            .having(net > 0)
            .order_by(votes.c.comment_id, votes.c.version)
        )
        async with self._begin() as connection:
            rows = await connection.execute(query)
            return [ExportedPair(k, text, g, int(n)) for k, text, g, n in rows]

    async def replaced_pairs(self) -> list[ExportedPair]:
        """Versions a user replaced with 🔄 (every version but a comment's latest): negatives."""
        later = comment_versions.alias("later")
        replaced = sa.exists().where(
            (later.c.comment_id == comment_versions.c.comment_id)
            & (later.c.version > comment_versions.c.version)
        )
        net = (
            sa.select(sa.func.coalesce(sa.func.sum(votes.c.value), 0))
            .where(
                (votes.c.comment_id == comment_versions.c.comment_id)
                & (votes.c.version == comment_versions.c.version)
            )
            .scalar_subquery()
        )
        query = (
            sa.select(comments.c.keywords, comment_versions.c.text, comments.c.generator, net)
            .select_from(comment_versions.join(comments, comments.c.id == comment_versions.c.comment_id))
            .where(replaced)
            .order_by(comment_versions.c.comment_id, comment_versions.c.version)
        )
        async with self._begin() as connection:
            rows = await connection.execute(query)
            return [ExportedPair(k, text, g, int(n)) for k, text, g, n in rows]


async def _latest_version(connection: AsyncConnection, comment_id: int) -> int:
    query = sa.select(sa.func.max(comment_versions.c.version)).where(
        comment_versions.c.comment_id == comment_id
    )
    return int((await connection.execute(query)).scalar_one() or 0)


async def _tally(connection: AsyncConnection, comment_id: int, version: int) -> Tally:
    query = (
        sa.select(votes.c.value, sa.func.count())
        .where(votes.c.comment_id == comment_id, votes.c.version == version)
        .group_by(votes.c.value)
    )
    counts = {int(value): int(n) for value, n in await connection.execute(query)}
    return Tally(likes=counts.get(1, 0), dislikes=counts.get(-1, 0))


# How long a SQLite transaction waits for another one's write lock before "database is locked". Each
# transaction takes milliseconds, but a burst of 200 photos queues many of them (measured: the driver's
# 5 s default failed a few per burst under tests/load_scenario.py).
SQLITE_BUSY_TIMEOUT_S = 60.0


def _create_engine(url: str) -> AsyncEngine:
    is_sqlite = sa.make_url(url).get_backend_name() == "sqlite"
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S} if is_sqlite else {})
    if is_sqlite:
        _prepare_sqlite(engine)
    return engine


def _prepare_sqlite(engine: AsyncEngine) -> None:
    """Create the file's folder, and make every transaction take SQLite's write lock up front.

    Without ``BEGIN IMMEDIATE`` a transaction that reads and then writes (a vote) can fail with
    "database is locked" at once when another one writes meanwhile, instead of waiting its turn; it
    also makes the migrations' DDL transactional (the driver's own BEGIN would skip DDL).
    """
    database = engine.url.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        if database and database != ":memory:":
            # WAL: readers never wait for the writer, and a write waits only for the other writers.
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade_schema(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together: one migrates, the others wait here and then find the newest
        # revision (the lock ends with the transaction). SQLite's BEGIN IMMEDIATE does the same.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
