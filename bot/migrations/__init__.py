"""Alembic migrations of the store, shipped inside the package and run by ``Store.open()`` at start-up.

``versions/`` holds one file per schema change; each is a frozen snapshot (no imports from
``bot.schema``) so that an old database always upgrades through the same steps. New revision:
``alembic -c bot/migrations/alembic.ini revision -m "what changes"`` with ``DATABASE_URL`` set.
"""
