"""A guard that fails any statement of a test that lets the database choose an instant.

The product's rows are compared with the run's clock later (the sweep, attribution, retention, the planner), so every
instant it writes comes from the `now` it was given. The database's clock (`now()`, `CURRENT_TIMESTAMP`, a column's
server default) cannot be moved by time-machine or libfaketime and differs from a test's fixed date: a write that
takes it passes today and fails on another day. The guard sees the SQL before it is sent and raises
`DatabaseClockUsed` when an INSERT or UPDATE calls the database's clock, or inserts a row into a table whose instants
are read back without setting them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from reactivation.storage.models import Base

_DATABASE_CLOCK = re.compile(
    r"\b(?:now|clock_timestamp|statement_timestamp|transaction_timestamp)\s*\("
    r"|\b(?:current_timestamp|localtimestamp)\b"
    r"|\b(?:datetime|julianday|strftime)\s*\(\s*'now'",
    re.IGNORECASE,
)
_INSERT = re.compile(r'^\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+"?(\w+)"?\s*\(([^)]*)\)', re.IGNORECASE)
_WRITE = re.compile(r"^\s*(?:WITH\b.*?\)\s*)?(?:INSERT|UPDATE)\b", re.IGNORECASE | re.DOTALL)

# Written by the booking-system sync (the tests' factories stand in for it) or seeded by a migration: nothing compares
# their `created_at` with a run's clock, and the server default is the sync's safety net.
_SYNC_TABLES = frozenset({"companies", "clients", "services", "appointments_cache", "industry_standard_intervals"})


class DatabaseClockUsed(AssertionError):
    """A statement took an instant from the database's clock instead of the run's `now`."""


def _clock_columns() -> dict[str, frozenset[str]]:
    """Per table outside the sync's, the columns whose server default is the database's clock."""
    columns: dict[str, frozenset[str]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name in _SYNC_TABLES:
            continue
        names = frozenset(
            column.name
            for column in table.columns
            if column.server_default is not None
            and _DATABASE_CLOCK.search(str(getattr(column.server_default, "arg", "")))
        )
        if names:
            columns[table.name] = names
    return columns


CLOCK_COLUMNS = _clock_columns()


def check_statement(statement: str) -> None:
    """Raise DatabaseClockUsed when this SQL writes an instant the database's clock chose."""
    if not _WRITE.match(statement):
        return
    if found := _DATABASE_CLOCK.search(statement):
        raise DatabaseClockUsed(f"the database's clock ({found.group(0)!r}) in: {statement[:300]}")
    insert = _INSERT.match(statement)
    if insert is None:
        return
    table = insert.group(1).lower()
    written = {name.strip().strip('"').lower() for name in insert.group(2).split(",")}
    missing = CLOCK_COLUMNS.get(table, frozenset()) - written
    if missing:
        raise DatabaseClockUsed(f"{table} row inserted without {sorted(missing)}: the server default would choose it")


def _before_cursor_execute(
    _conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _executemany: bool
) -> None:
    check_statement(statement)


@contextmanager
def database_clock_forbidden() -> Iterator[None]:
    """Within the block, every engine of this process refuses statements that take the database's clock."""
    event.listen(Engine, "before_cursor_execute", _before_cursor_execute)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", _before_cursor_execute)
