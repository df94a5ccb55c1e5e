"""a hand-over Redis has not taken yet is written on the history row

PostgreSQL is the truth and Redis a copy that can be late: a reply or a booking records its facts first, and with
them what the AI admin's Redis keys still owe (today: removing the row's pendingAction). The column stays set
until Redis has taken it; the sweep and the client's next reply repeat it. A partial index keeps the sweep's
look-up to the few rows that owe something.

Revision ID: t0012c
Revises: t0012b
Create Date: 2026-12-04 09:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0012c"
down_revision: str | None = "t0012b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "client_reactivation_history"
INDEX = "ix_history_handover_pending"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("handover_pending", sa.Text(), nullable=True))
    owed = sa.text("handover_pending IS NOT NULL")
    op.create_index(INDEX, TABLE, ["company_id"], unique=False, postgresql_where=owed, sqlite_where=owed)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("handover_pending")
