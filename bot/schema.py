"""The store's tables (SQLAlchemy Core), the one description the queries and the migrations share.

Portable types only (no SQLite-only SQL): the default is a SQLite file, and a
``DATABASE_URL=postgresql+asyncpg://…`` must work with the same code and migrations. Photos are
never stored: a comment keeps the photo's SHA-256, a platform reference to fetch it again (Telegram
``file_id``, Discord attachment id) and the detection boxes, nothing else.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    # Stable constraint names, so later migrations can alter them on every backend (SQLite batch mode too).
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

chat_settings = sa.Table(
    "chat_settings",
    metadata,
    sa.Column("chat_key", sa.String(128), primary_key=True),
    sa.Column("generator", sa.String(64), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

comments = sa.Table(
    "comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("chat_key", sa.String(128), nullable=False, index=True),
    sa.Column("chat_id", sa.BigInteger, nullable=False),
    sa.Column("photo_message_id", sa.BigInteger, nullable=False),
    sa.Column("reply_message_id", sa.BigInteger, nullable=True),  # set once the reply is sent
    sa.Column("photo_ref", sa.String(512), nullable=False),  # Telegram file_id / Discord attachment id
    sa.Column("photo_sha256", sa.String(64), nullable=False),
    sa.Column("generator", sa.String(64), nullable=False),
    sa.Column("keywords", sa.String(512), nullable=False),  # "기쁨, 안경": the generator's input
    sa.Column("detections", sa.JSON, nullable=False),  # faces + objects with boxes, image size
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# Version 1 is the first comment; every 🔄 adds one. The message shows the highest version.
comment_versions = sa.Table(
    "comment_versions",
    metadata,
    sa.Column("comment_id", sa.Integer, sa.ForeignKey("comments.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# One vote per user per version: a 🔄 starts the new text at 0/0, the old text keeps its votes.
votes = sa.Table(
    "votes",
    metadata,
    sa.Column("comment_id", sa.Integer, sa.ForeignKey("comments.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("voter", sa.String(64), primary_key=True),  # "telegram:<user id>" / "discord:<user id>"
    sa.Column("value", sa.SmallInteger, nullable=False),  # +1 👍, -1 👎
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
