"""phone keys

`clients.phone_key` and `bookings.client_phone_key`: stored generated columns holding the E.164 form of the phone
the booking system wrote in whatever format, so that the due selection joins clients to opt-outs, history and
bookings by phone in one set-based query. On PostgreSQL they call an immutable PL/pgSQL function; SQLite computes
the same expression inline (it cannot call application functions from a generated column). The expression is
the one in reactivation.generated.py, now reactivation/storage/computed_columns.py (a test checks that both agree). Plus the index the "booked since" probe uses.

Revision ID: t0003
Revises: 0002
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Whitespace phone fields contain (space, tab, line breaks, no-break, figure, thin, narrow no-break, ideographic)
# and punctuation.
REMOVED = " \t\n\r\u00a0\u2007\u2009\u202f\u3000" + "+().-"
PG_REMOVED = "".join(f"\\{ord(ch):04X}" for ch in REMOVED)

POSTGRES_FUNCTION_SQL = f"""CREATE OR REPLACE FUNCTION reactivation_phone_key(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  d text := translate(raw, U&'{PG_REMOVED}', '');
BEGIN
  IF d IS NULL OR d = '' THEN
    RETURN NULL;
  END IF;
  IF strpos(raw, '+') > 0 THEN
    IF length(d) = 12 AND substr(d, 1, 2) = '78' THEN
      RETURN '+7' || substr(d, 3);
    END IF;
    RETURN '+' || d;
  END IF;
  IF length(d) = 11 AND substr(d, 1, 1) IN ('7', '8') THEN
    RETURN '+7' || substr(d, 2);
  END IF;
  IF length(d) = 10 THEN
    RETURN '+7' || d;
  END IF;
  IF length(d) > 11 AND substr(d, 1, 3) = '810' THEN
    RETURN '+' || substr(d, 4);
  END IF;
  RETURN '+' || d;
END
$$"""


def sqlite_expression(column: str) -> str:
    digits = column
    for ch in REMOVED:
        # char(code point): the DDL stays on one line per column, which SQLite's reflection needs.
        digits = f"replace({digits}, char({ord(ch)}), '')"
    d = digits
    return (
        "CASE"
        f" WHEN {column} IS NULL OR {d} = '' THEN NULL"
        f" WHEN instr({column}, '+') > 0 THEN"
        f" (CASE WHEN length({d}) = 12 AND substr({d}, 1, 2) = '78' THEN '+7' || substr({d}, 3) ELSE '+' || {d} END)"
        f" WHEN length({d}) = 11 AND substr({d}, 1, 1) IN ('7', '8') THEN '+7' || substr({d}, 2)"
        f" WHEN length({d}) = 10 THEN '+7' || {d}"
        f" WHEN length({d}) > 11 AND substr({d}, 1, 3) = '810' THEN '+' || substr({d}, 4)"
        f" ELSE '+' || {d} END"
    )


def expression(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"reactivation_phone_key({column})"
    return sqlite_expression(column)


def last_service_id_expression(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return (
            f"CASE WHEN jsonb_typeof({column} -> 0 -> 'id') = 'number'"
            f" AND ({column} -> 0 ->> 'id') ~ '^[0-9]{{1,18}}$'"
            f" THEN CAST({column} -> 0 ->> 'id' AS BIGINT) END"
        )
    path = "'$[0].id'"
    return (
        f"CASE WHEN json_valid({column}) THEN"
        f" CASE WHEN json_type({column}, {path}) = 'integer'"
        f" AND json_extract({column}, {path}) BETWEEN 0 AND 999999999999999999"
        f" THEN json_extract({column}, {path}) END END"
    )


def _columns(dialect: str) -> dict[str, list[sa.Column]]:  # type: ignore[type-arg]
    def generated(name: str, type_: sa.types.TypeEngine, sql: str) -> sa.Column:  # type: ignore[type-arg]
        return sa.Column(name, type_, sa.Computed(sql, persisted=True), nullable=True)

    return {
        "clients": [
            generated("phone_key", sa.Text(), expression("phone", dialect)),
            generated("last_service_id", sa.BigInteger(), last_service_id_expression("last_services", dialect)),
        ],
        "bookings": [generated("client_phone_key", sa.Text(), expression("client_phone", dialect))],
    }


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(POSTGRES_FUNCTION_SQL)
    for table, columns in _columns(dialect).items():
        if dialect == "sqlite":
            # SQLite cannot ADD a stored generated column: the batch copies the table, once.
            with op.batch_alter_table(table, recreate="always") as batch:
                for column in columns:
                    batch.add_column(column)
        else:
            for column in columns:
                op.add_column(table, column)
    op.create_index(
        "ix_bookings_company_phone_key_datetime",
        "bookings",
        ["company_id", "client_phone_key", "datetime"],
        unique=False,
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_index("ix_bookings_company_phone_key_datetime", table_name="bookings")
    for table, columns in _columns(dialect).items():
        if dialect == "sqlite":
            with op.batch_alter_table(table, recreate="always") as batch:
                for column in columns:
                    batch.drop_column(column.name)
        else:
            for column in columns:
                op.drop_column(table, column.name)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS reactivation_phone_key(text)")
