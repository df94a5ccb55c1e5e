"""clients by value

The due selection reads a company's most valuable clients first (the daily limit keeps the top ones): an index on
(company_id, total_spent) turns that into an index range instead of a sort of every client.

Revision ID: t0006
Revises: t0005
Create Date: 2026-11-24 10:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "t0006"
down_revision: str | None = "t0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_clients_company_spent", "clients", ["company_id", "total_spent"])


def downgrade() -> None:
    op.drop_index("ix_clients_company_spent", table_name="clients")
