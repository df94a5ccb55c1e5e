"""service interval counts

The salon medians' raw material, kept between runs of the averages job: per service, how many intervals of each
length ended on each day. An incremental run recounts only the recent days instead of every visit of the salon
window. Existing averages states are removed so that each company's next run is a full one, which fills the
counts.

Revision ID: t0007
Revises: t0006
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0007"
down_revision: str | None = "t0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_interval_counts",
        sa.Column("company_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("service_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ended_on", sa.Date(), nullable=False),
        sa.Column("interval_days", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("intervals", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "company_id", "service_id", "ended_on", "interval_days", name=op.f("pk_service_interval_counts")
        ),
    )
    op.execute("DELETE FROM reactivation_averages_state")


def downgrade() -> None:
    op.drop_table("service_interval_counts")
