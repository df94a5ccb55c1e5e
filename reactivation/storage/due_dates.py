"""The kept due dates (reactivation_due_dates): one row per client with the interval chosen for the current lapse
and the day the next step's interval count is reached, so that the daily selection reads who is due from an index.

Who keeps them:

* the triggers on `clients` (migration t0015a) give every new client a row and mark a row STALE when the
  client's last visit, last service or value changes: the selection recomputes a stale row, never trusts it;
* `timing.due_dates.refresh` computes rows (the averages job after each run, the nightly pass);
* `advance`, called by every claim (`history.claim`): the step taken moves the row to the next step's day.

`next_due_on` leaves out the company's grace days (a setting that may change): a row is due on `today` when
`next_due_on + grace <= today`. The row is a lower bound, never later than the truth: the selection re-checks each
candidate against the history, the holds and every exclusion, so a row behind the history costs a candidate,
never a wrong contact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import BigInteger, ColumnElement, Table, and_, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import Step
from reactivation.storage.db import copy_into, is_postgres
from reactivation.storage.models import Client, DueDate

# A row to recompute (before every real date: every selection reads it); a lapse whose last step is taken.
STALE = date(1, 1, 1)
NEVER = date(9999, 12, 31)
WRITE_CHUNK = 2_000


@dataclass(frozen=True)
class KeptRow:
    """A computed row, as `upsert` writes it."""

    client_id: int
    last_visit_date: date | None
    last_service_id: int | None
    total_spent: Any
    interval_days: int
    interval_source: str
    confidence: float
    evidence: Mapping[str, Any]
    previous_step: int


def next_due_on(last_visit: date | None, *, previous_step: int, interval_days: int) -> date:
    """The day the step after `previous_step` reaches its interval count (grace days not added); NEVER when the
    lapse has no next step (its last step is taken, or there is no last visit)."""
    if last_visit is None or previous_step >= len(Step) or interval_days < 1:
        return NEVER
    try:
        return last_visit + timedelta(days=(previous_step + 1) * interval_days)
    except OverflowError:
        return NEVER


def upsert(session: Session, *, company_id: int, rows: Sequence[KeptRow], now: datetime) -> int:
    """Write computed rows (insert or replace); how many. PostgreSQL: COPY into a temporary table, then one
    INSERT … ON CONFLICT; SQLite: an executemany upsert."""
    if not rows:
        return 0
    values = [_values(company_id, row, now) for row in rows]
    if is_postgres(session):
        _copy_upsert(session, values)
        return len(rows)
    table = cast(Table, DueDate.__table__)
    statement = sqlite.insert(table)
    replaced = {name: statement.excluded[name] for name in _COLUMNS if name not in ("company_id", "client_id")}
    statement = statement.on_conflict_do_update(index_elements=["company_id", "client_id"], set_=replaced)
    for start in range(0, len(values), WRITE_CHUNK):
        session.connection().execute(statement, values[start : start + WRITE_CHUNK])
    return len(rows)


_COLUMNS = (
    "company_id",
    "client_id",
    "last_visit_date",
    "last_service_id",
    "total_spent",
    "interval_days",
    "interval_source",
    "confidence",
    "evidence",
    "previous_step",
    "next_due_on",
    "computed_at",
)


def _copy_upsert(session: Session, values: Sequence[dict[str, Any]]) -> None:
    table = DueDate.__tablename__
    columns = ", ".join(_COLUMNS)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _COLUMNS[2:])
    session.execute(
        text(f"CREATE TEMP TABLE IF NOT EXISTS due_dates_load (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
    )
    copy_into(session, "due_dates_load", _COLUMNS, ([row[name] for name in _COLUMNS] for row in values))
    session.execute(
        text(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM due_dates_load "
            f"ON CONFLICT (company_id, client_id) DO UPDATE SET {updates}"
        )
    )
    session.execute(text("TRUNCATE due_dates_load"))


def _values(company_id: int, row: KeptRow, now: datetime) -> dict[str, Any]:
    return {
        "company_id": company_id,
        "client_id": row.client_id,
        "last_visit_date": row.last_visit_date,
        "last_service_id": row.last_service_id,
        "total_spent": row.total_spent,
        "interval_days": row.interval_days,
        "interval_source": row.interval_source,
        "confidence": row.confidence,
        "evidence": dict(row.evidence),
        "previous_step": row.previous_step,
        "next_due_on": next_due_on(
            row.last_visit_date, previous_step=row.previous_step, interval_days=row.interval_days
        ),
        "computed_at": now,
    }


def advance(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    """A claim took these steps: each real row moves its client's kept row (same lapse, an earlier step) to the
    next step's day, with the interval the claim used. Dry runs are no contact and move nothing."""
    params = []
    for row in rows:
        if row.get("dry_run") or row.get("last_visit_date") is None or not row.get("interval_days"):
            continue
        step = int(row["step"])
        params.append(
            {
                "b_company": row["company_id"],
                "b_client": row["client_id"],
                "b_lapse": row["last_visit_date"],
                "b_step": step,
                "b_days": row["interval_days"],
                "b_source": row.get("interval_source"),
                "b_confidence": row.get("confidence_score"),
                "b_evidence": row.get("interval_evidence") or {},
                "b_next": next_due_on(row["last_visit_date"], previous_step=step, interval_days=row["interval_days"]),
            }
        )
    if not params:
        return
    table = cast(Table, DueDate.__table__)
    statement = (
        update(table)
        .where(
            table.c.company_id == bindparam("b_company"),
            table.c.client_id == bindparam("b_client"),
            table.c.last_visit_date == bindparam("b_lapse"),
            table.c.previous_step < bindparam("b_step"),
            table.c.next_due_on != STALE,
        )
        .values(
            previous_step=bindparam("b_step"),
            interval_days=bindparam("b_days"),
            interval_source=bindparam("b_source"),
            confidence=bindparam("b_confidence"),
            evidence=bindparam("b_evidence", type_=table.c.evidence.type),
            next_due_on=bindparam("b_next"),
        )
    )
    session.connection().execute(statement, params)


def stale_count(session: Session, *, company_id: int, at_most: int) -> int:
    """How many of the company's rows are stale, counted up to `at_most` (an index range)."""
    first = (
        select(DueDate.client_id)
        .where(DueDate.company_id == company_id, DueDate.next_due_on == STALE)
        .limit(at_most)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(first)) or 0)


def any_kept(session: Session, *, company_id: int) -> bool:
    """Whether the company has any kept row (none: a table emptied by hand, the triggers bypassed)."""
    return session.scalar(select(DueDate.client_id).where(DueDate.company_id == company_id).limit(1)) is not None


def stale_ids(session: Session, *, company_id: int) -> list[int]:
    """The company's stale rows' clients."""
    return list(
        session.scalars(select(DueDate.client_id).where(DueDate.company_id == company_id, DueDate.next_due_on == STALE))
    )


def drop_orphans(session: Session, *, company_id: int) -> int:
    """Remove rows whose client is gone (the sync deleted it); how many."""
    gone = ~select(Client.id).where(Client.company_id == company_id, Client.id == DueDate.client_id).exists()
    result = session.execute(
        delete(DueDate).where(and_(DueDate.company_id == company_id, gone)).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def among(ids: Sequence[int], *, postgres: bool) -> Callable[[Any], ColumnElement[bool]]:
    """`column IN ids` for a few thousand client ids: one array parameter on PostgreSQL (the planner sees how many
    and drives the joins from them, whatever the statistics say), a list on SQLite."""
    if postgres:
        parameter = bindparam("among", list(ids), type_=ARRAY(BigInteger()))
        return lambda column: column == func.any(parameter)
    return lambda column: column.in_(list(ids))
