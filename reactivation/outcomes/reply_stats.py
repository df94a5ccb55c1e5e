"""What the replies said: counts by label and reason, the snoozed lapses and how many came back, and the unhappy
replies the owner should read (masked phone, local date, text).

Replies are those to messages sent in the period (as the funnel counts them); snoozes are those made in it. A
snoozed client *came back* when their lapse ended in a booking linked to one of its messages, or they visited
since (their last visit moved past the lapse).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware
from reactivation.core.phones import mask_phone
from reactivation.core.vocabulary import Status
from reactivation.storage.history import not_dry_run
from reactivation.storage.holds import HoldKind
from reactivation.storage.models import Client, ReactivationHistory, ReplyHold

# The unhappy replies listed for the owner; the count says when there are more.
UNHAPPY_LISTED = 100
_UNHAPPY = "unhappy"


def _in_period(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    conditions = [column.is_not(None)]
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def replies_by_reason(
    session: Session, *, company_id: int, start: datetime | None, end: datetime | None
) -> dict[str, dict[str, int]]:
    """{label: {reason: replies}} for the replies to messages sent in the period ("none" when a reply has none)."""
    h = ReactivationHistory
    rows = session.execute(
        select(h.response_type, h.response_reason, func.count())
        .where(h.company_id == company_id, h.status == Status.SENT, not_dry_run(), h.response_received.is_(True))
        .where(*_in_period(h.message_sent_at, start, end))
        .group_by(h.response_type, h.response_reason)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for label, reason, count in rows:
        counts.setdefault(label or "none", {})[reason or "none"] = int(count)
    return {label: dict(sorted(by_reason.items())) for label, by_reason in sorted(counts.items())}


def snoozes(session: Session, *, company_id: int, start: datetime | None, end: datetime | None) -> dict[str, int]:
    """Lapses snoozed in the period, how many got their step again, and how many clients came back."""
    r = ReplyHold
    h = ReactivationHistory
    booked = (
        select(h.id)
        .where(
            h.company_id == company_id,
            h.client_id == r.client_id,
            h.last_visit_date == r.last_visit_date,
            not_dry_run(),
            h.booking_created.is_(True),
        )
        .exists()
    )
    visited = (
        select(Client.id)
        .where(Client.company_id == company_id, Client.id == r.client_id, Client.last_visit_date > r.last_visit_date)
        .exists()
    )
    snoozed, repeated, came_back = session.execute(
        select(
            func.count(),
            func.count(r.repeat_history_id),
            func.count().filter(or_(booked, visited)),
        ).where(r.company_id == company_id, r.kind == HoldKind.SNOOZED.value, *_in_period(r.created_at, start, end))
    ).one()
    return {"snoozed": int(snoozed), "due_again": int(repeated), "came_back": int(came_back)}


def unhappy_replies(
    session: Session, *, company_id: int, tz: ZoneInfo, start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    """The unhappy replies to messages sent in the period, latest first: masked phone, local date, text."""
    h = ReactivationHistory
    where = and_(
        h.company_id == company_id,
        h.status == Status.SENT,
        not_dry_run(),
        h.response_reason == _UNHAPPY,
        *_in_period(h.message_sent_at, start, end),
    )
    total = session.scalar(select(func.count()).where(where)) or 0
    rows = session.execute(
        select(h.phone, h.response_at, h.response_text)
        .where(where)
        .order_by(h.response_at.desc(), h.id.desc())
        .limit(UNHAPPY_LISTED)
    ).all()
    listed = [
        {
            "phone": mask_phone(phone),
            "date": as_aware(answered).astimezone(tz).date().isoformat() if answered is not None else None,
            "text": text or "",
        }
        for phone, answered, text in rows
    ]
    return {"count": int(total), "replies": listed}
