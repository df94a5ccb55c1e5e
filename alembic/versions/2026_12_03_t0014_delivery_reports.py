"""delivery reports on the history row

What the provider reports after accepting a message (delivered, read, failed with a code), the approved template
a Cloud API message used, how often a message was scheduled again after a delivery failure, and until when a
row's task waits on a countdown (the sweep leaves such a row alone). The webhooks find a row by the provider's
message id, hence its index.

Every column is nullable or has a constant default, so existing rows need no rewrite on PostgreSQL. SQLite drops
columns by copying the table (batch mode), with its indexes and its status CHECK.

Revision ID: t0014
Revises: t0012c
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0014"
down_revision: str | None = "t0012c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "client_reactivation_history"
INDEX = "ix_history_provider_message_id"


def _columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("template_name", sa.Text(), nullable=True),
        sa.Column("template_language", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_error_code", sa.Text(), nullable=True),
        sa.Column("resend_count", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    for column in _columns():
        op.add_column(TABLE, column)
    op.create_index(INDEX, TABLE, ["provider_message_id"], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, recreate="always") as batch:
            for column in _columns():
                batch.drop_column(column.name)
        return
    for column in _columns():
        op.drop_column(TABLE, column.name)
