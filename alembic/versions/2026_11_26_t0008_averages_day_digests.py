"""averages day digests

A digest per local day of the appointment rows the averages job last read, so that its next incremental run
recomputes only the clients seen from the first day that changed, instead of everyone seen in the last two weeks.
No existing state is touched: a day without a stored digest counts as changed, which is what the job did before.

Revision ID: t0008
Revises: t0007
Create Date: 2026-11-26 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0008"
down_revision: str | None = "t0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reactivation_averages_day_digests",
        sa.Column("company_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("digest", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("company_id", "day", name=op.f("pk_reactivation_averages_day_digests")),
    )


def downgrade() -> None:
    op.drop_table("reactivation_averages_day_digests")
