"""due dates kept ahead of time: one row per client with the lapse's interval and the next step's day

`reactivation_due_dates` holds, per client, the interval the waterfall chose for the current lapse (source,
confidence, evidence) and `next_due_on`, the day the next step's interval count is reached. The daily selection
reads the clients due from the index on (company_id, next_due_on).

Triggers on `clients` keep a row for every client and mark it stale (next_due_on = 0001-01-01, which every
selection reads) when the lapse, the last service or the value changes, so that a client whose kept row no longer
fits is recomputed at selection, never contacted on stale data. This migration backfills a stale row for every
existing client; the averages job and the nightly pass compute them.

SQLite: a later migration that copies `clients` (Alembic's batch mode) drops its triggers and must create them
again (`create_triggers` below).

Revision ID: t0015a
Revises: t0013b
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "t0015a"
down_revision: str | None = "t0013b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "reactivation_due_dates"
STALE = "0001-01-01"

_PG_FUNCTIONS = (
    f"""
CREATE FUNCTION reactivation_due_dates_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {TABLE} (company_id, client_id, next_due_on)
    SELECT n.company_id, n.id, DATE '{STALE}' FROM inserted_clients n
    ON CONFLICT (company_id, client_id) DO UPDATE SET next_due_on = EXCLUDED.next_due_on;
    RETURN NULL;
END $$
""",
    f"""
CREATE FUNCTION reactivation_due_dates_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {TABLE} (company_id, client_id, next_due_on)
    SELECT n.company_id, n.id, DATE '{STALE}'
    FROM updated_old o JOIN updated_new n ON n.id = o.id
    WHERE o.last_visit_date IS DISTINCT FROM n.last_visit_date
       OR o.last_service_id IS DISTINCT FROM n.last_service_id
       OR o.total_spent IS DISTINCT FROM n.total_spent
       OR o.company_id IS DISTINCT FROM n.company_id
    ON CONFLICT (company_id, client_id) DO UPDATE SET next_due_on = EXCLUDED.next_due_on;
    RETURN NULL;
END $$
""",
)

_PG_TRIGGERS = (
    "CREATE TRIGGER trg_clients_due_dates_inserted AFTER INSERT ON clients REFERENCING NEW TABLE AS "
    "inserted_clients FOR EACH STATEMENT EXECUTE FUNCTION reactivation_due_dates_inserted()",
    "CREATE TRIGGER trg_clients_due_dates_updated AFTER UPDATE ON clients REFERENCING OLD TABLE AS updated_old "
    "NEW TABLE AS updated_new FOR EACH STATEMENT EXECUTE FUNCTION reactivation_due_dates_updated()",
)

_SQLITE_MARK = (
    f"INSERT INTO {TABLE} (company_id, client_id, next_due_on, previous_step) "
    f"VALUES (NEW.company_id, NEW.id, '{STALE}', 0) "
    "ON CONFLICT (company_id, client_id) DO UPDATE SET next_due_on = excluded.next_due_on;"
)

_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER trg_clients_due_dates_inserted AFTER INSERT ON clients BEGIN {_SQLITE_MARK} END",
    "CREATE TRIGGER trg_clients_due_dates_updated AFTER UPDATE ON clients WHEN "
    "OLD.last_visit_date IS NOT NEW.last_visit_date OR OLD.last_services IS NOT NEW.last_services "
    "OR OLD.total_spent IS NOT NEW.total_spent OR OLD.company_id IS NOT NEW.company_id "
    f"BEGIN {_SQLITE_MARK} END",
)


def create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*_PG_FUNCTIONS, *_PG_TRIGGERS):
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def drop_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in ("trg_clients_due_dates_inserted", "trg_clients_due_dates_updated"):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON clients" if postgres else f"DROP TRIGGER IF EXISTS {name}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS reactivation_due_dates_inserted()")
        op.execute("DROP FUNCTION IF EXISTS reactivation_due_dates_updated()")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("company_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("client_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last_visit_date", sa.Date(), nullable=True),
        sa.Column("last_service_id", sa.BigInteger(), nullable=True),
        sa.Column("total_spent", sa.Numeric(12, 2), nullable=True),
        sa.Column("interval_days", sa.Integer(), nullable=True),
        sa.Column("interval_source", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("evidence", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True),
        sa.Column("previous_step", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("next_due_on", sa.Date(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("company_id", "client_id", name=op.f("pk_reactivation_due_dates")),
    )
    op.create_index("ix_due_dates_company_next_due", TABLE, ["company_id", "next_due_on"], unique=False)
    op.create_index("ix_due_dates_company_value", TABLE, ["company_id", "total_spent"], unique=False)
    # The selection probes each candidate's opt-out by client id (the primary key covers the phone only).
    op.create_index("ix_opt_outs_company_client", "reactivation_opt_outs", ["company_id", "client_id"], unique=False)
    # Every existing client gets a stale row: the first averages run or nightly pass computes it, and until then
    # the selection recomputes it (the reference path).
    op.execute(
        f"INSERT INTO {TABLE} (company_id, client_id, next_due_on, previous_step) "
        f"SELECT company_id, id, '{STALE}', 0 FROM clients"
    )
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    op.drop_index("ix_opt_outs_company_client", table_name="reactivation_opt_outs")
    op.drop_index("ix_due_dates_company_value", table_name=TABLE)
    op.drop_index("ix_due_dates_company_next_due", table_name=TABLE)
    op.drop_table(TABLE)
