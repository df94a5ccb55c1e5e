"""Linking bookings to the reactivation message that preceded them, so that a campaign's result is measured.

A booking counts for a contact when the same client made it (same client_id, or the same phone once both are
normalized) after the contact and within the company's attribution_days, and it is not cancelled. Two kinds of
contact are attributed the same way (a dry run's rows are neither):
- a sent message (status 'sent'), from its `message_sent_at`;
- a hold-out row (status 'holdout', the control group), from the moment the message would have been sent: its
  `created_at` (when the run decided to send nothing to this client at this step), or its `send_after` when that
  is later (a row claimed outside the send window would have waited for it). A treated client who books before
  the send is not messaged and not counted, so a control client who books in that gap is not counted either.

When a client had several contacts before a booking, the latest one gets it (the one that triggered it); a contact
gets at most one booking (the first), and a booking is linked to at most one contact. Everything is idempotent: a
linked contact or booking is never linked again.

Phones: `client_reactivation_history.phone` is E.164; `bookings.client_phone` comes from the booking system in any
format. The SQL strips separators and reads the Russian/Kazakh national forms (8XXXXXXXXXX, 9XXXXXXXXX) and the
00 international prefix; other countries match when the booking system wrote the number internationally.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Integer, String, Subquery, and_, case, func, literal, select, union, update
from sqlalchemy.orm import QueryableAttribute, Session

from reactivation.core.instants import aware_utc
from reactivation.core.phones import mask_phone, normalize_phone
from reactivation.core.vocabulary import PendingHandover, Status
from reactivation.handover.pending import hand_over_owed
from reactivation.storage import history
from reactivation.storage.bookings import not_cancelled
from reactivation.storage.companies import load_company
from reactivation.storage.db import is_postgres
from reactivation.storage.history import latest_sent_message, not_dry_run
from reactivation.storage.models import Booking, ReactivationHistory

if TYPE_CHECKING:
    from reactivation.runtime import Runtime

log = logging.getLogger(__name__)

# Bookings are looked for this far behind the attribution window, so that an hourly run that missed a few weeks
# (or a sync that delivered bookings late) still links them, while each run reads a bounded slice of the tables.
CATCH_UP_DAYS = 60
_SEPARATORS = (" ", "-", "(", ")", ".", "+", "\u00a0", "/")


def contact_time() -> ColumnElement[datetime]:
    """When a contact happened: the send time of a sent message, the would-be send time of a hold-out row."""
    h = ReactivationHistory
    would_send = case((h.send_after > h.created_at, h.send_after), else_=h.created_at)
    return case((h.status == Status.HOLDOUT, would_send), else_=h.message_sent_at)


def e164_sql(column: QueryableAttribute[str | None] | ColumnElement[str | None], *, country: str) -> ColumnElement[str]:
    """SQL for a phone written any way, as E.164 (see the module docstring for which forms are understood)."""
    digits: ColumnElement[str] = func.trim(column, type_=String)
    for separator in _SEPARATORS:
        digits = func.replace(digits, separator, "", type_=String)
    length = func.length(digits, type_=Integer)
    first = func.substr(digits, 1, 1, type_=String)
    national = country.upper() in {"RU", "KZ"}
    whens: list[tuple[ColumnElement[bool], ColumnElement[str]]] = [
        (func.substr(digits, 1, 2, type_=String) == "00", literal("+", String) + func.substr(digits, 3, type_=String))
    ]
    if national:
        whens += [
            (and_(length == 11, first == "8"), literal("+7", String) + func.substr(digits, 2, type_=String)),
            (and_(length == 10, first == "9"), literal("+7", String) + digits),
        ]
    return case(*whens, else_=literal("+", String) + digits)


def _after_within(
    session: Session, later: ColumnElement[datetime], earlier: ColumnElement[datetime], days: int
) -> ColumnElement[bool]:
    """`later` is after `earlier` by at most `days` days, on PostgreSQL and SQLite."""
    if is_postgres(session):
        return and_(later > earlier, later <= earlier + timedelta(days=days))
    # SQLite keeps timestamps as text; julianday() compares them as instants whatever their precision.
    return and_(
        func.julianday(later) > func.julianday(earlier), func.julianday(later) - func.julianday(earlier) <= days
    )


def attribute_bookings(session: Session, *, company_id: int, now: datetime) -> int:
    """Link every attributable booking to its contact (see the module docstring); returns how many were linked."""
    company = load_company(session, company_id=company_id)
    days = company.settings.attribution_days
    now = aware_utc(now)
    horizon = now - timedelta(days=days + CATCH_UP_DAYS)
    contacts = _contacts(company_id, now=now, horizon=horizon)
    bookings = _candidate_bookings(company_id, country=company.country, now=now, horizon=horizon)
    winners = _winners(session, contacts, bookings, days=days)
    h = ReactivationHistory
    # RETURNING rather than rowcount: SQLite reports no row count for an UPDATE that starts with WITH.
    linked_ids = session.execute(
        update(h)
        .where(h.id == winners.c.history_id, h.company_id == company_id, h.booking_created.is_(False))
        .values(
            booking_created=True,
            booking_id=winners.c.booking_id,
            booking_created_at=winners.c.booked_at,
            flow_stopped_reason=func.coalesce(h.flow_stopped_reason, "booking"),
            updated_at=now,
        )
        .returning(h.id)
        .execution_options(synchronize_session=False)
    ).all()
    linked = len(linked_ids)
    log.info("bookings attributed", extra={"company_id": company_id, "linked": linked, "window_days": days})
    return linked


# Subqueries, not CTEs: each is read twice (by client id and by phone), and PostgreSQL would materialize a CTE
# read twice and then plan its joins blind, as nested loops over thousands of rows.
def _contacts(company_id: int, *, now: datetime, horizon: datetime) -> Subquery:
    """The company's real contacts (sent or held out) of the attribution horizon, with the moment each happened."""
    h = ReactivationHistory
    at = contact_time()
    return (
        select(h.id, h.client_id, h.phone, h.booking_created, at.label("at"))
        .where(
            h.company_id == company_id,
            h.status.in_([Status.SENT, Status.HOLDOUT]),
            not_dry_run(),
            at.is_not(None),
            at <= now,
            at >= horizon,
        )
        .subquery("contacts")
    )


def _candidate_bookings(company_id: int, *, country: str, now: datetime, horizon: datetime) -> Subquery:
    """The company's live bookings of the horizon that no contact has yet, with the phone as E.164."""
    h, b = ReactivationHistory, Booking
    # NOT IN over a small list becomes a hashed lookup; history has no index on booking_id.
    linked_bookings = select(h.booking_id).where(h.company_id == company_id, h.booking_id.is_not(None))
    return (
        select(b.id, b.client_id, e164_sql(b.client_phone, country=country).label("phone"), b.created_at)
        .where(
            b.company_id == company_id,
            not_cancelled(),
            b.created_at <= now,
            b.created_at > horizon,
            b.id.not_in(linked_bookings),
        )
        .subquery("candidate_bookings")
    )


def _winners(session: Session, contacts: Subquery, bookings: Subquery, *, days: int) -> Subquery:
    """Which contact wins which booking: (history_id, booking_id, booked_at), one per contact and per booking."""
    window = _after_within(session, bookings.c.created_at, contacts.c.at, days)
    pair_columns = (
        contacts.c.id.label("history_id"),
        contacts.c.at.label("contact_at"),
        contacts.c.booking_created.label("taken"),
        bookings.c.id.label("booking_id"),
        bookings.c.created_at.label("booked_at"),
    )
    by_client = select(*pair_columns).join_from(contacts, bookings, bookings.c.client_id == contacts.c.client_id)
    by_phone = select(*pair_columns).join_from(contacts, bookings, bookings.c.phone == contacts.c.phone)
    pairs = union(by_client.where(window), by_phone.where(window)).subquery("pairs")
    # The latest contact before each booking wins it ...
    latest = select(
        pairs,
        func.row_number()
        .over(partition_by=pairs.c.booking_id, order_by=(pairs.c.contact_at.desc(), pairs.c.history_id.desc()))
        .label("rank"),
    ).subquery("latest")
    # ... unless that contact already has a booking; a contact keeps the first of the bookings it won.
    first = (
        select(
            latest.c.history_id,
            latest.c.booking_id,
            latest.c.booked_at,
            func.row_number()
            .over(partition_by=latest.c.history_id, order_by=(latest.c.booked_at, latest.c.booking_id))
            .label("rank"),
        )
        .where(latest.c.rank == 1, latest.c.taken.is_(False))
        .subquery("first")
    )
    return select(first.c.history_id, first.c.booking_id, first.c.booked_at).where(first.c.rank == 1).subquery()


def link_booking(session: Session, *, company_id: int, phone_e164: str, booking_id: int, now: datetime) -> int | None:
    """Link a booking the AI admin just made to the client's latest message sent within the attribution window.

    Returns the history row's id, or None when no message qualifies or the latest one already has another booking.
    Calling it again with the same booking returns the same row; a booking already linked elsewhere stays there.
    The booking's time is `now` (the moment it was reported); the bookings table may not have it yet.
    """
    company = load_company(session, company_id=company_id)
    phone = normalize_phone(phone_e164, region=company.country)
    now = aware_utc(now)
    h = ReactivationHistory
    existing = session.scalar(select(h.id).where(h.company_id == company_id, h.booking_id == booking_id).limit(1))
    if existing is not None:
        return int(existing)
    row = latest_sent_message(
        session, company_id=company_id, phone_e164=phone, now=now, days=company.settings.attribution_days, lock=True
    )
    if row is None:
        log.info("no message to link the booking to", extra={"company_id": company_id, "phone": mask_phone(phone)})
        return None
    claimed = session.execute(
        update(h)
        .where(h.id == row.id, h.company_id == company_id, h.booking_created.is_(False))
        .values(
            booking_created=True,
            booking_id=booking_id,
            booking_created_at=now,
            flow_stopped_reason=func.coalesce(h.flow_stopped_reason, "booking"),
            updated_at=now,
        )
        .returning(h.id)
        .execution_options(synchronize_session=False)
    ).all()
    if not claimed:
        log.info(
            "latest message already has a booking",
            extra={"company_id": company_id, "history_id": row.id, "booking_id": booking_id},
        )
        return None
    log.info("booking linked", extra={"company_id": company_id, "history_id": row.id, "booking_id": booking_id})
    return int(row.id)


def mark_booking_created(rt: Runtime, *, company_id: int, phone: str, booking_id: int, now: datetime) -> dict[str, Any]:
    """The AI admin's call after a booking: link it to the client's latest message within the attribution window
    and clear the pendingAction.

    The link is recorded in PostgreSQL first, in one transaction with what Redis then owes (the pendingAction to
    remove); when Redis cannot be reached the link stands, `handover_pending` says so, and the sweep or the client's
    next reply or booking removes the pendingAction later."""
    if isinstance(booking_id, bool) or not isinstance(booking_id, int) or booking_id <= 0:
        raise ValueError(f"booking id must be a positive integer, got {booking_id!r}")
    with rt.session() as session:
        company = load_company(session, company_id=company_id)
        e164 = normalize_phone(phone, region=company.country)
        history_id = link_booking(session, company_id=company_id, phone_e164=e164, booking_id=booking_id, now=now)
        if history_id is not None:
            history.set_fields(
                session, company_id=company_id, history_id=history_id, now=now, handover_pending=PendingHandover.CLEAR
            )
    handovers = hand_over_owed(rt, company_id=company_id, now=now, phone=e164)
    return {
        "linked": history_id is not None,
        "history_id": history_id,
        "pending_action_cleared": history_id in handovers.removed,
        "handover_pending": history_id in handovers.pending,
    }
