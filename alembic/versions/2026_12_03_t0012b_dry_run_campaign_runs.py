"""a dry run has a campaign run of its own

The run table's key, one run per company and local date, now covers real runs only (a partial unique index, as
the history's claim key does): a dry run writes a run record too, as many as the operator starts, and never takes
the place of the day's real run.

Downgrade: the old key cannot hold several runs of one day, so the dry runs' records are deleted first (their
history rows keep their rows, without a run).

Revision ID: t0012b
Revises: t0012
Create Date: 2026-12-04 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0012b"
down_revision: str | None = "t0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "campaign_runs"
KEY = "uq_campaign_runs_company_date"
COLUMNS = ["company_id", "run_date"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, recreate="always") as batch:
            batch.drop_constraint(KEY, type_="unique")
    else:
        op.drop_constraint(KEY, TABLE, type_="unique")
    real = sa.text("NOT dry_run")
    op.create_index(KEY, TABLE, COLUMNS, unique=True, postgresql_where=real, sqlite_where=real)


def downgrade() -> None:
    op.execute(
        "UPDATE client_reactivation_history SET campaign_run_id = NULL "
        "WHERE campaign_run_id IN (SELECT id FROM campaign_runs WHERE dry_run)"
    )
    op.execute("DELETE FROM campaign_runs WHERE dry_run")
    op.drop_index(KEY, table_name=TABLE)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, recreate="always") as batch:
            batch.create_unique_constraint(KEY, COLUMNS)
        return
    op.create_unique_constraint(KEY, TABLE, COLUMNS)
