"""phone keys without NUL characters on SQLite

SQLite's length() stops at the first NUL character, so t0003's phone-key expression read a phone holding one as
a shorter number than Python's phone_key does ("000000000\\0" became "+000000000\\0", not "+7000000000\\0"). A
phone with a NUL now has no key at all. PostgreSQL text cannot hold a NUL, so its function stays as it is.

SQLite cannot change a generated column's expression: the generated columns of clients and bookings are dropped
and added again (last_service_id unchanged), which copies each table twice and recomputes them.

Revision ID: t0009
Revises: t0008
Create Date: 2026-11-27 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "t0009"
down_revision: str | None = "t0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The phone-key columns and the phone column each is computed from.
KEYS = {"phone_key": "phone", "client_phone_key": "client_phone"}
BOOKINGS_INDEX = "ix_bookings_company_phone_key_datetime"


def _generated_columns(*, without_nul: bool) -> dict[str, list[sa.Column]]:  # type: ignore[type-arg]
    """t0003's generated columns per table, as that migration wrote them, the phone keys guarded if asked."""
    t0003 = context.script.get_revision("t0003").module
    tables: dict[str, list[sa.Column]] = t0003._columns("sqlite")  # type: ignore[type-arg]
    if not without_nul:
        return tables
    return {table: [_without_nul(column) for column in columns] for table, columns in tables.items()}


def _without_nul(column: sa.Column) -> sa.Column:  # type: ignore[type-arg]
    phone = KEYS.get(column.name)
    if phone is None:
        return column
    key = f"CASE WHEN instr({phone}, char(0)) > 0 THEN NULL ELSE {column.computed.sqltext} END"
    return sa.Column(column.name, column.type, sa.Computed(key, persisted=True), nullable=True)


def _rebuild(*, without_nul: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index(BOOKINGS_INDEX, table_name="bookings")
    for table, columns in _generated_columns(without_nul=without_nul).items():
        # Every generated column of the table goes first: the copy would try to insert into one that stayed.
        with op.batch_alter_table(table, recreate="always") as batch:
            for column in columns:
                batch.drop_column(column.name)
        with op.batch_alter_table(table, recreate="always") as batch:
            for column in columns:
                batch.add_column(column)
    op.create_index(BOOKINGS_INDEX, "bookings", ["company_id", "client_phone_key", "datetime"], unique=False)


def upgrade() -> None:
    _rebuild(without_nul=True)


def downgrade() -> None:
    _rebuild(without_nul=False)
