"""Every comment with its versions (🔄) and votes (👍/👎), for feedback, /stats and training exports.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("chat_key", sa.String(128), nullable=False),
        sa.Column("chat_id", sa.BigInteger, nullable=False),
        sa.Column("photo_message_id", sa.BigInteger, nullable=False),
        sa.Column("reply_message_id", sa.BigInteger, nullable=True),
        sa.Column("photo_ref", sa.String(512), nullable=False),
        sa.Column("photo_sha256", sa.String(64), nullable=False),
        sa.Column("generator", sa.String(64), nullable=False),
        sa.Column("keywords", sa.String(512), nullable=False),
        sa.Column("detections", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_comments"),
    )
    op.create_index("ix_comments_chat_key", "comments", ["chat_key"])
    op.create_index("ix_comments_created_at", "comments", ["created_at"])
    op.create_table(
        "comment_versions",
        sa.Column("comment_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["comment_id"], ["comments.id"], name="fk_comment_versions_comment_id_comments"
        ),
        sa.PrimaryKeyConstraint("comment_id", "version", name="pk_comment_versions"),
    )
    op.create_table(
        "votes",
        sa.Column("comment_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("voter", sa.String(64), nullable=False),
        sa.Column("value", sa.SmallInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"], name="fk_votes_comment_id_comments"),
        sa.PrimaryKeyConstraint("comment_id", "version", "voter", name="pk_votes"),
    )


def downgrade() -> None:
    op.drop_table("votes")
    op.drop_table("comment_versions")
    op.drop_index("ix_comments_created_at", "comments")
    op.drop_index("ix_comments_chat_key", "comments")
    op.drop_table("comments")
