"""Queries on client_reactivation_history: claiming rows, moving their status forward, reading one row.

Idempotency lives in the database: a claim is `INSERT … ON CONFLICT DO NOTHING` on the unique key
(company, client, lapse, step), and every status change is a conditional `UPDATE … WHERE status = …`
whose row count says who won. Every write stamps its instants with the caller's `now` (the run's clock), never
the database's: the sweep and attribution compare them with that same clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reactivation.core.instants import aware_utc
from reactivation.core.vocabulary import Status
from reactivation.storage.db import is_postgres
from reactivation.storage.models import ReactivationHistory

IN_FLIGHT = (Status.CLAIMED, Status.INTERVAL_SELECTED, Status.GENERATED, Status.SENDING, Status.DELIVERED)
FINAL = (Status.SENT, Status.SKIPPED, Status.FAILED, Status.UNKNOWN, Status.HOLDOUT)

# Long texts are cut before they are stored: a hostile or broken input never bloats a row.
MAX_STORED_TEXT = 2000
# A service title longer than this is not a title; the row keeps its head (and the message is written from it).
MAX_SERVICE_NAME = 300


def not_dry_run() -> ColumnElement[bool]:
    """A row that may stand for a contact: not a dry run's.

    A dry run is a sandbox: its rows are never a contact, so every query that means "contacts" (results, the
    bookings and replies linked to a message, the minimum gap between messages, the steps of a lapse, the
    hand-overs) takes this clause, and only this one."""
    return ReactivationHistory.dry_run.is_(False)


def claim(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert history rows, skipping any whose (company, client, lapse, step, snooze_repeat) exists; the new ids."""
    if not rows:
        return []
    if any(row.get("created_at") is None or row.get("updated_at") is None for row in rows):
        # The run's clock, not the database's: the sweep and attribution compare these with the run's `now`.
        raise ValueError("claimed rows must carry created_at and updated_at from the run's clock")
    dialect = postgresql if is_postgres(session) else sqlite
    statement = (
        dialect.insert(ReactivationHistory)
        .values(list(rows))
        .on_conflict_do_nothing(
            index_elements=["company_id", "client_id", "last_visit_date", "step", "snooze_repeat"],
            index_where=text("NOT dry_run"),
        )
        .returning(ReactivationHistory.id)
    )
    return list(session.execute(statement).scalars())


def get(session: Session, *, company_id: int, history_id: int, lock: bool = False) -> ReactivationHistory | None:
    statement = select(ReactivationHistory).where(
        ReactivationHistory.id == history_id, ReactivationHistory.company_id == company_id
    )
    if lock and is_postgres(session):
        statement = statement.with_for_update()
    return session.execute(statement).scalar_one_or_none()


def transition(
    session: Session,
    *,
    company_id: int,
    history_id: int,
    from_status: Status | Iterable[Status],
    to_status: Status,
    now: datetime,
    **values: Any,
) -> bool:
    """Move a row from one of `from_status` to `to_status` at `now`; False when another worker moved it first."""
    allowed = [from_status] if isinstance(from_status, Status) else list(from_status)
    result = session.execute(
        update(ReactivationHistory)
        .where(
            ReactivationHistory.id == history_id,
            ReactivationHistory.company_id == company_id,
            ReactivationHistory.status.in_([s.value for s in allowed]),
        )
        .values(status=to_status.value, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def set_fields(session: Session, *, company_id: int, history_id: int, now: datetime, **values: Any) -> None:
    """Update fields at `now` without touching the status (context results, responses, bookings)."""
    session.execute(
        update(ReactivationHistory)
        .where(ReactivationHistory.id == history_id, ReactivationHistory.company_id == company_id)
        .values(updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )


def latest_sent_message(
    session: Session, *, company_id: int, phone_e164: str, now: datetime, days: int, lock: bool = False
) -> ReactivationHistory | None:
    """The client's latest message really sent (not in a dry run) within the last `days` days (by E.164 phone), or None.

    What the reply handler falls back to when Redis lost the pendingAction, and what a booking the admin reports is
    linked to.
    """
    now = aware_utc(now)
    h = ReactivationHistory
    statement = (
        select(h)
        .where(
            h.company_id == company_id,
            h.phone == phone_e164,
            h.status == Status.SENT,
            not_dry_run(),
            h.message_sent_at <= now,
            h.message_sent_at >= now - timedelta(days=days),
        )
        .order_by(h.message_sent_at.desc(), h.id.desc())
        .limit(1)
    )
    if lock and is_postgres(session):
        statement = statement.with_for_update()
    return session.execute(statement).scalar_one_or_none()


def cut(text: str | None, limit: int = MAX_STORED_TEXT) -> str | None:
    """Text as it may be stored: at most `limit` characters, with a visible mark when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def counts_by_status(
    session: Session, *, company_id: int, run_id: int | None = None, since: datetime | None = None
) -> list[tuple[str, str | None, int]]:
    """(status, reason, count) for a company, optionally one run's rows or rows created since a moment."""
    reason = func.coalesce(ReactivationHistory.skip_reason, ReactivationHistory.error)
    statement = select(ReactivationHistory.status, reason, func.count()).where(
        ReactivationHistory.company_id == company_id
    )
    if run_id is not None:
        statement = statement.where(ReactivationHistory.campaign_run_id == run_id)
    if since is not None:
        statement = statement.where(ReactivationHistory.created_at >= since)
    statement = statement.group_by(ReactivationHistory.status, reason).order_by(ReactivationHistory.status)
    return [(status, why, count) for status, why, count in session.execute(statement).all()]
