"""Alembic environment: runs on the connection ``Store.open()`` hands over (``config.attributes``),
or, from the ``alembic`` command line, on the database the settings name (``DATABASE_URL`` /
``STATE_DB``)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from bot.schema import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode copies the table, which keeps its rows.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_settings() -> None:
    from bot.store import store_url
    from inference.settings import load_settings

    engine = create_async_engine(store_url(load_settings()))
    async with engine.begin() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


shared = context.config.attributes.get("connection")
if shared is not None:
    run_migrations(shared)
else:
    asyncio.run(run_from_settings())
