"""The sweep: rows stuck in an in-flight status are moved on, resumed or closed.

- `sending` for longer than SENDING_TIMEOUT: the gateway call's outcome was never recorded (a worker died
  mid-call). The row becomes `unknown` and is never sent again: for marketing messages a lost message beats
  a doubled one.
- `claimed`, `interval_selected`, `generated`, `delivered` untouched for STALE_AFTER: the chain was lost
  (a broker outage, a worker killed before it acknowledged); it is resumed from the row's step.
- `generated` waiting for the send window (`send_after`): resumed once the window has opened.
- `sent` without a hand-over: the hand-over is retried, also one that failed (Redis was down longer than the
  task's retries) for HANDOVER_RETRY_FOR after the send; not once the lapse's flow stopped (a no, a booking).
- a reply or a booking recorded while Redis was down (`handover_pending`): the sweep task repeats what Redis still
  owes (reactivation.handover.pending) after this sweep.
- anything still in flight EXPIRE_AFTER after its claim: `skipped` (expired); a stale message is worse than none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import ChainStep, SkipReason, Status
from reactivation.storage.history import not_dry_run
from reactivation.storage.models import ReactivationHistory

log = logging.getLogger(__name__)

SENDING_TIMEOUT = timedelta(minutes=10)
STALE_AFTER = timedelta(minutes=30)
HANDOVER_GRACE = timedelta(minutes=10)
# How long after the send a failed hand-over is still tried again: a pendingAction a day late is still useful.
HANDOVER_RETRY_FOR = timedelta(days=1)
EXPIRE_AFTER = timedelta(days=3)

# Where a resumed chain starts, by the row's status.
RESUME_FROM = {
    Status.CLAIMED: ChainStep.SELECT_INTERVAL,
    Status.INTERVAL_SELECTED: ChainStep.GENERATE_MESSAGE,
    Status.GENERATED: ChainStep.SEND_MESSAGE,
    Status.DELIVERED: ChainStep.PERSIST_HISTORY,
}


@dataclass
class SweepResult:
    unknown: int = 0
    expired: int = 0
    # (company_id, history_id, first step of the chain to run)
    resume: list[tuple[int, int, ChainStep]] = field(default_factory=list)
    handover: list[tuple[int, int]] = field(default_factory=list)


def sweep_company(session: Session, *, company_id: int, now: datetime) -> SweepResult:
    """Close, expire and collect the stuck rows of one company."""
    result = SweepResult()
    history = ReactivationHistory
    mine = history.company_id == company_id

    unknown = session.execute(
        update(history)
        .where(mine, history.status == Status.SENDING, history.sending_started_at < now - SENDING_TIMEOUT)
        .values(
            status=Status.UNKNOWN.value,
            error="no gateway answer was recorded; not sent again automatically",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    result.unknown = unknown.rowcount  # type: ignore[attr-defined]

    resumable = [s.value for s in RESUME_FROM]
    # A `delivered` row's message has left: it is resumed until it is recorded `sent`, never expired.
    unsent = [s.value for s in RESUME_FROM if s is not Status.DELIVERED]
    expired = session.execute(
        update(history)
        .where(mine, history.status.in_(unsent), history.created_at < now - EXPIRE_AFTER)
        .values(status=Status.SKIPPED.value, skip_reason=SkipReason.EXPIRED.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    result.expired = expired.rowcount  # type: ignore[attr-defined]

    window_open = and_(history.status == Status.GENERATED, history.send_after.is_not(None), history.send_after <= now)
    stale = and_(history.status.in_(resumable), history.updated_at < now - STALE_AFTER, history.send_after.is_(None))
    rows = session.execute(
        select(history.id, history.status).where(mine, or_(window_open, stale)).order_by(history.id)
    ).all()
    for history_id, status in rows:
        result.resume.append((company_id, history_id, RESUME_FROM[Status(status)]))
    if rows:
        # The window opened: clear the wait so the resumed send is not taken for a waiting one again.
        session.execute(
            update(history)
            .where(mine, history.id.in_([h for h, _ in rows]))
            .values(send_after=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )

    handover = session.execute(
        select(history.id).where(
            mine,
            history.status == Status.SENT,
            not_dry_run(),
            history.context_saved_at.is_(None),
            # A lapse whose flow stopped (a no, an opt-out, a booking) wants no pendingAction any more.
            history.flow_stopped_reason.is_(None),
            history.message_sent_at < now - HANDOVER_GRACE,
            or_(history.context_error.is_(None), history.message_sent_at >= now - HANDOVER_RETRY_FOR),
        )
    ).scalars()
    result.handover = [(company_id, history_id) for history_id in handover]
    if result.unknown or result.expired or result.resume or result.handover:
        log.warning(
            "sweep found stuck rows",
            extra={
                "company_id": company_id,
                "unknown": result.unknown,
                "expired": result.expired,
                "resumed": len(result.resume),
                "handover": len(result.handover),
            },
        )
    return result
