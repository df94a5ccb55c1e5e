"""averages state

One row per company recording the averages job's last run: when it ran (the reference time it was given), when
it last recomputed everything, and the highest appointments_cache id it had seen. The next run recomputes the
personal intervals only for clients whose visits changed since (see reactivation/timing/averages/job.py).

Revision ID: t0005
Revises: t0004
Create Date: 2026-11-24 09:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0005"
down_revision: str | None = "t0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reactivation_averages_state",
        sa.Column("company_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("calculated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("full_calculated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_appointment_id", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("clients_recomputed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_reactivation_averages_state")),
    )


def downgrade() -> None:
    op.drop_table("reactivation_averages_state")
