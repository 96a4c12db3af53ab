"""Per-chat settings (the chosen generator): the table the bot created before it used migrations.

A file from that time already has the table (with its rows) but no ``alembic_version``; it is adopted
as is, so upgrading keeps every chat's choice.

Revision ID: 0001
Revises:
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("chat_settings"):
        return
    op.create_table(
        "chat_settings",
        sa.Column("chat_key", sa.String(128), nullable=False),
        sa.Column("generator", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("chat_key", name="pk_chat_settings"),
    )


def downgrade() -> None:
    op.drop_table("chat_settings")
