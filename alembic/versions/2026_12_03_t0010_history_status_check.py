"""history status checked by the database

A history row's status is one of the statuses the pipeline knows; the database now refuses any other, so that a
typo in a query or a hand-written UPDATE cannot leave a row no step, sweep or report recognizes.

The list is written out here, as it stood when this revision was written: a migration must build the same schema
whenever it runs, whatever the enum (reactivation.core.vocabulary.Status) says by then. A later change to the
statuses comes with its own migration; tests/storage/test_migrations.py holds the enum and the database's CHECK
together.

SQLite cannot add a constraint to a table: the table is copied into a new one that has it (batch mode), with its
indexes, the partial unique key included.

Revision ID: t0010
Revises: t0009
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "t0010"
down_revision: str | None = "t0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "client_reactivation_history"
NAME = "ck_client_reactivation_history_status"
STATUSES = (
    "claimed",
    "interval_selected",
    "generated",
    "sending",
    "delivered",
    "sent",
    "skipped",
    "failed",
    "unknown",
    "holdout",
)
CONDITION = "status IN (" + ", ".join(f"'{status}'" for status in STATUSES) + ")"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, recreate="always") as batch:
            batch.create_check_constraint(op.f(NAME), CONDITION)
        return
    op.create_check_constraint(op.f(NAME), TABLE, CONDITION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, recreate="always") as batch:
            batch.drop_constraint(op.f(NAME), type_="check")
        return
    op.drop_constraint(op.f(NAME), TABLE, type_="check")
