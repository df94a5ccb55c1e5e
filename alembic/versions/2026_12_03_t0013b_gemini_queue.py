"""gemini queue: history rows waiting for a Gemini batch

A row's generate step puts it here; the batching task leases up to GEMINI_BATCH_SIZE rows across companies, asks
Gemini once, writes each row's message and removes it. A lease (`lease_until`, `lease_token`) keeps two batches off
one row and gives a dead worker's rows back once it has passed.

Revision ID: t0013b
Revises: t0013
Create Date: 2026-12-05 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0013b"
down_revision: str | None = "t0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "gemini_queue"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("history_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["history_id"],
            ["client_reactivation_history.id"],
            name=op.f("fk_gemini_queue_history_id_client_reactivation_history"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("history_id", name=op.f("pk_gemini_queue")),
    )
    op.create_index("ix_gemini_queue_company_queued", TABLE, ["company_id", "queued_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gemini_queue_company_queued", table_name=TABLE)
    op.drop_table(TABLE)
