"""companies marked as demo data

`reactivation demo` and `reactivation seed-demo` write synthetic salons, and rebuild them on request by deleting
the company's rows first. A company they wrote is marked `is_demo`; a company the booking-system sync wrote is
not, and neither command ever replaces it (they refuse with an error instead). Every existing company is taken as
real data.

Revision ID: t0012
Revises: t0011
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0012"
down_revision: str | None = "t0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("companies", sa.Column("is_demo", sa.Boolean(), server_default=sa.text("false"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("companies") as batch:
        batch.drop_column("is_demo")
