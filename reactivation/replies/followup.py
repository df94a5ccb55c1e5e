"""What follows from a reply's reason, for the lapse its message belongs to.

- not_now: the lapse is snoozed until the date the reply named (30 days when it named none), then the same step is
  due again, once; a second not_now in the same lapse (or to the repeated step) stops it;
- moved_away: the lapse is held while the client keeps this phone (not an opt-out: consent is untouched);
- any other refusal (price, went_elsewhere, self_service, unhappy, no_need) and an opt-out stop the lapse;
- positive and neutral replies change nothing (busy: the client answers later; question: the admin answers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from reactivation.replies.labels import Classification, ReplyLabel, ReplyReason
from reactivation.storage import holds
from reactivation.storage.models import ReactivationHistory

log = logging.getLogger(__name__)

# A not_now that names no time is asked again after this many days.
DEFAULT_SNOOZE_DAYS = 30


@dataclass(frozen=True)
class Followup:
    """What a reply did to its lapse."""

    stops: bool  # the flow of the lapse is over
    snoozed_until: date | None = None  # the lapse is due again, at the same step, on this date


def follow(
    session: Session,
    *,
    company_id: int,
    row: ReactivationHistory,
    classification: Classification,
    named: date | None,
    local_day: date,
    now: datetime,
) -> Followup:
    """Act on the reply's reason for the lapse of `row` (the message it answers); return what followed."""
    lapse = holds.Lapse(company_id, row.client_id, row.last_visit_date)
    if classification.label in (ReplyLabel.POSITIVE, ReplyLabel.NEUTRAL):
        return Followup(stops=False)
    if classification.reason is ReplyReason.MOVED_AWAY:
        holds.hold_moved(session, lapse, step=row.step, phone=row.phone, history_id=row.id, now=now)
        return Followup(stops=False)
    if classification.reason is ReplyReason.NOT_NOW and not row.snooze_repeat:
        return _snooze(session, lapse, row=row, named=named, local_day=local_day, now=now)
    holds.end(session, lapse, now=now)
    return Followup(stops=True)


def _snooze(
    session: Session,
    lapse: holds.Lapse,
    *,
    row: ReactivationHistory,
    named: date | None,
    local_day: date,
    now: datetime,
) -> Followup:
    current = holds.get(session, lapse)
    if current is not None and current.history_id == row.id and current.kind == holds.HoldKind.SNOOZED:
        return Followup(stops=False, snoozed_until=current.until)  # the same message answered twice
    wake = named if named is not None else local_day + timedelta(days=DEFAULT_SNOOZE_DAYS)
    if holds.snooze(session, lapse, step=row.step, until=wake, history_id=row.id, now=now):
        return Followup(stops=False, snoozed_until=wake)
    # Snoozed once already in this lapse: a second "not now" ends it.
    holds.end(session, lapse, now=now)
    return Followup(stops=True)
