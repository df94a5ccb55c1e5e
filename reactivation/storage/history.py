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

from sqlalchemy import ColumnElement, case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reactivation.core.instants import aware_utc
from reactivation.core.vocabulary import Status, Step
from reactivation.storage import due_dates
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


def step_taken() -> ColumnElement[int]:
    """The step a row stands for in its lapse: a lapse whose flow stopped (a negative reply, an opt-out, a booking)
    counts as if its last step were taken. Its max over a lapse's real rows is the step taken so far."""
    h = ReactivationHistory
    return case((h.flow_stopped_reason.is_not(None), int(Step.WIN_BACK)), else_=h.step)


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
    ids = list(session.execute(statement).scalars())
    # The steps taken move the clients' kept due dates to their next step (a row claimed before is a no-op).
    due_dates.advance(session, rows)
    return ids


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


def template_reasons(session: Session, *, company_id: int, run_id: int) -> dict[str, int]:
    """Why one run's messages came from templates instead of Gemini: rows by `generator_fallback_reason`."""
    h = ReactivationHistory
    reason = func.coalesce(h.generator_fallback_reason, "")
    statement = (
        select(reason, func.count())
        .where(h.company_id == company_id, h.campaign_run_id == run_id, h.generator == "template")
        .group_by(reason)
    )
    return {why or "unknown": count for why, count in session.execute(statement).all()}


# --- what the provider reported after accepting a message ----------------------------------------------------------

# A provider's report is about a message that left: the row is `delivered` (accepted, being recorded) or `sent`.
CONTACTED = (Status.DELIVERED, Status.SENT)


def rows_for_provider_message(session: Session, *, provider: str, message_id: str) -> list[tuple[int, int]]:
    """(company_id, history_id) of the rows whose message the provider knows by this id, newest first.

    The one lookup not filtered by company: a delivery webhook names only the provider's message id. Every write
    that follows is filtered by the company found here."""
    h = ReactivationHistory
    statement = (
        select(h.company_id, h.id)
        .where(h.provider_message_id == message_id, h.provider == provider)
        .order_by(h.id.desc())
        .limit(5)
    )
    return [(company_id, history_id) for company_id, history_id in session.execute(statement).all()]


def record_delivery_time(
    session: Session,
    *,
    company_id: int,
    history_id: int,
    message_id: str,
    column: str,
    at: datetime,
    now: datetime,
) -> bool:
    """Set `delivered_at` or `read_at` once, while the row's message is that one and still counts as sent; a read
    also sets delivered_at (Meta skips "delivered" when the client reads at once). False: nothing to change (a
    replay, a late report, a row that failed)."""
    if column not in ("delivered_at", "read_at"):
        raise ValueError(f"not a delivery time: {column}")
    h = ReactivationHistory
    values: dict[str, Any] = {column: at}
    if column == "read_at":
        values["delivered_at"] = func.coalesce(h.delivered_at, at)
    return _update_reported(
        session, (company_id, history_id, message_id), [getattr(h, column).is_(None)], now=now, **values
    )


def record_delivery_failure(
    session: Session,
    *,
    company_id: int,
    history_id: int,
    message_id: str,
    to_status: Status,
    now: datetime,
    **values: Any,
) -> bool:
    """Take a row whose message failed out of the contacted states, once: only while that message is the row's,
    counts as sent, and was never reported delivered or read (a late failure does not undo a delivery)."""
    h = ReactivationHistory
    never_arrived = [h.delivered_at.is_(None), h.read_at.is_(None)]
    return _update_reported(
        session, (company_id, history_id, message_id), never_arrived, now=now, status=to_status.value, **values
    )


def _update_reported(
    session: Session, ids: tuple[int, int, str], conditions: list[Any], *, now: datetime, **values: Any
) -> bool:
    """Write what a provider reported about message `ids` = (company, row, provider's id), while that message is
    the row's and counts as sent, and `conditions` hold; False when another report (or a replay) was first."""
    company_id, history_id, message_id = ids
    h = ReactivationHistory
    result = session.execute(
        update(h)
        .where(
            h.company_id == company_id,
            h.id == history_id,
            h.provider_message_id == message_id,
            h.status.in_([s.value for s in CONTACTED]),
            *conditions,
        )
        .values(updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_lost_answer(
    session: Session,
    *,
    company_id: int,
    history_id: int,
    provider: str,
    resend: int,
    now: datetime,
    **values: Any,
) -> bool:
    """Move a row whose send's answer was lost (`sending` or `unknown`, no message id) of this provider and round
    to `delivered` (accepted), once; False when it is not such a row."""
    h = ReactivationHistory
    result = session.execute(
        update(h)
        .where(
            h.company_id == company_id,
            h.id == history_id,
            h.provider == provider,
            h.resend_count == resend,
            h.provider_message_id.is_(None),
            h.status.in_([Status.SENDING.value, Status.UNKNOWN.value]),
        )
        .values(status=Status.DELIVERED.value, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def phone_reported_with_code(session: Session, *, company_id: int, phone: str, code: str) -> bool:
    """Whether a message of this company to this E.164 phone ended with the provider's `code` (e.g. 131026)."""
    h = ReactivationHistory
    found = session.execute(
        select(h.id).where(h.company_id == company_id, h.phone == phone, h.delivery_error_code == code).limit(1)
    ).first()
    return found is not None
