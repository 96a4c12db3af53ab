"""Per-chat settings (the chosen generator) in a local SQLite file, shared by both platforms.

Stdlib ``sqlite3`` runs in a worker thread (``asyncio.to_thread``) so the event loop never blocks on
disk; one connection, serialised by an ``asyncio.Lock``, is plenty for a chat bot's write rate.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_settings (
    chat_key   TEXT PRIMARY KEY,
    generator  TEXT,
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
)
"""


class StoreClosedError(RuntimeError):
    """The store was used before ``open()`` or after ``close()`` (a programming error)."""


class ChatSettingsStore:
    """Async key-value store of per-chat settings, keyed by ``ChatRef.key``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the parent folder and the table; safe to call on an existing file."""
        if self._conn is not None:
            return
        self._conn = await asyncio.to_thread(self._connect)
        logger.info("chat settings store opened at %s", self.path)

    async def close(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        async with self._lock:
            await asyncio.to_thread(conn.close)

    async def get_generator(self, chat_key: str) -> str | None:
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT generator FROM chat_settings WHERE chat_key = ?", (chat_key,)
            ).fetchone()
        )
        return None if row is None else row[0]

    async def set_generator(self, chat_key: str, name: str) -> None:
        await self._run(lambda conn: self._upsert_generator(conn, chat_key, name))

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: to_thread may pick a different pool thread per call; the lock
        # guarantees only one of them touches the connection at a time.
        conn = sqlite3.connect(self.path, check_same_thread=False)
        with conn:
            conn.execute(_SCHEMA)
        return conn

    @staticmethod
    def _upsert_generator(conn: sqlite3.Connection, chat_key: str, name: str) -> None:
        with conn:
            conn.execute(
                "INSERT INTO chat_settings (chat_key, generator) VALUES (?, ?) "
                "ON CONFLICT(chat_key) DO UPDATE SET generator = excluded.generator, "
                "updated_at = datetime('now')",
                (chat_key, name),
            )

    async def _run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        async with self._lock:
            if self._conn is None:
                raise StoreClosedError("ChatSettingsStore is not open")
            return await asyncio.to_thread(query, self._conn)
