"""The sweep: rows stuck in an in-flight status are moved on, resumed or closed.

It runs every minute (beat), so that a chain lost with a killed worker resumes within five minutes of the crash:
a row is found at most RESEND_AFTER or STALE_AFTER (3 minutes) after its last write, and the next sweep comes
within a minute of that. Resuming never runs a step twice to effect: every step re-reads the row and moves it
with a conditional UPDATE, so a chain resumed beside one that was only slow changes nothing twice.

- `sending` through a provider that de-duplicates by idempotency key (the gateway) for longer than RESEND_AFTER:
  the provider's answer was never recorded (a worker died mid-call). The row goes back to `generated` and is sent
  again with the same key: the gateway drops the repeat if the first one arrived, so nothing is lost or doubled.
- `sending` through any other provider for longer than SENDING_TIMEOUT: the row becomes `unknown` and is never
  sent again: for marketing messages a lost message beats a doubled one.
- `claimed`, `interval_selected`, `generated`, `delivered` untouched for STALE_AFTER, and not waiting on a
  countdown (`next_attempt_at`, a rate limit or a retry): the chain was lost (a broker outage, a worker killed
  before it acknowledged); it is resumed from the row's step.
- `interval_selected` rows waiting in the Gemini queue (storage/gemini_queue.py) are not lost, whatever their age:
  they are not resumed one by one (a backlog of thousands would become thousands of generate tasks every few
  minutes); the sweep reports that the company has rows waiting (`gemini_waiting`) and its task wakes the batching
  task once, which serves them (a lease of a dead batch passes by itself).
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
from reactivation.delivery.factory import IDEMPOTENT_PROVIDERS
from reactivation.storage import gemini_queue
from reactivation.storage.history import not_dry_run
from reactivation.storage.models import ReactivationHistory

log = logging.getLogger(__name__)

# A send takes at most its task's time limit (WHATSAPP_TIMEOUT_SECONDS + 60 s, 75 s by default): a `sending` row
# older than this lost its worker. Sending it again early is harmless anyway: the gateway drops the repeat.
RESEND_AFTER = timedelta(minutes=3)
# Without idempotency a row is given up only once no live worker can still be waiting for its answer.
SENDING_TIMEOUT = timedelta(minutes=10)
# Longer than any step takes; a row waiting on a countdown says so in next_attempt_at.
STALE_AFTER = timedelta(minutes=3)
HANDOVER_GRACE = timedelta(minutes=3)
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
    # `sending` rows sent again with the same idempotency key (they are in `resume` too)
    resent: int = 0
    # (company_id, history_id, first step of the chain to run)
    resume: list[tuple[int, int, ChainStep]] = field(default_factory=list)
    handover: list[tuple[int, int]] = field(default_factory=list)
    # Rows of the company wait in the Gemini queue: the batching task should run.
    gemini_waiting: bool = False


def sweep_company(session: Session, *, company_id: int, now: datetime) -> SweepResult:
    """Close, expire and collect the stuck rows of one company."""
    result = SweepResult()
    resent = _resend_idempotent(session, company_id=company_id, now=now)
    result.resent = len(resent)
    result.unknown = _give_up_unanswered(session, company_id=company_id, now=now)
    result.expired = _expire_unsent(session, company_id=company_id, now=now)
    result.resume = [(company_id, history_id, ChainStep.SEND_MESSAGE) for history_id in resent]
    result.resume += _resumable(session, company_id=company_id, now=now)
    result.handover = [(company_id, history_id) for history_id in _handovers_owed(session, company_id, now=now)]
    result.gemini_waiting = gemini_queue.any_waiting(session, company_id=company_id)
    if result.unknown or result.expired or result.resume or result.handover:
        log.warning(
            "sweep found stuck rows",
            extra={
                "company_id": company_id,
                "resent": result.resent,
                "unknown": result.unknown,
                "expired": result.expired,
                "resumed": len(result.resume),
                "handover": len(result.handover),
            },
        )
    return result


def _give_up_unanswered(session: Session, *, company_id: int, now: datetime) -> int:
    """`sending` rows of providers without idempotency whose answer never came: `unknown`, never sent again."""
    history = ReactivationHistory
    unknown = session.execute(
        update(history)
        .where(
            history.company_id == company_id,
            history.status == Status.SENDING,
            history.sending_started_at < now - SENDING_TIMEOUT,
            history.provider.not_in(IDEMPOTENT_PROVIDERS),
        )
        .values(
            status=Status.UNKNOWN.value,
            error="no gateway answer was recorded; not sent again automatically",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(unknown.rowcount)  # type: ignore[attr-defined]


def _expire_unsent(session: Session, *, company_id: int, now: datetime) -> int:
    """Rows still unsent EXPIRE_AFTER after their claim: skipped (expired)."""
    history = ReactivationHistory
    # A `delivered` row's message has left: it is resumed until it is recorded `sent`, never expired.
    unsent = [s.value for s in RESUME_FROM if s is not Status.DELIVERED]
    expired = session.execute(
        update(history)
        .where(history.company_id == company_id, history.status.in_(unsent), history.created_at < now - EXPIRE_AFTER)
        .values(status=Status.SKIPPED.value, skip_reason=SkipReason.EXPIRED.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(expired.rowcount)  # type: ignore[attr-defined]


def _resumable(session: Session, *, company_id: int, now: datetime) -> list[tuple[int, int, ChainStep]]:
    """The rows whose chain was lost or whose send window opened, with the step each resumes from."""
    history = ReactivationHistory
    mine = history.company_id == company_id
    window_open = and_(history.status == Status.GENERATED, history.send_after.is_not(None), history.send_after <= now)
    in_gemini_queue = gemini_queue.queued(company_id, history.id)
    stale = and_(
        history.status.in_([s.value for s in RESUME_FROM]),
        history.updated_at < now - STALE_AFTER,
        history.send_after.is_(None),
        or_(history.next_attempt_at.is_(None), history.next_attempt_at < now - STALE_AFTER),
        # A row waiting for a Gemini batch is served by the batching task, not resumed (see gemini_waiting).
        ~and_(history.status == Status.INTERVAL_SELECTED, in_gemini_queue),
    )
    rows = session.execute(
        select(history.id, history.status).where(mine, or_(window_open, stale)).order_by(history.id)
    ).all()
    if rows:
        # The window opened: clear the wait so the resumed send is not taken for a waiting one again.
        session.execute(
            update(history)
            .where(mine, history.id.in_([h for h, _ in rows]))
            .values(send_after=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return [(company_id, history_id, RESUME_FROM[Status(status)]) for history_id, status in rows]


def _handovers_owed(session: Session, company_id: int, *, now: datetime) -> list[int]:
    """Sent rows whose hand-over to the AI admin never succeeded and is still worth trying."""
    history = ReactivationHistory
    return list(
        session.execute(
            select(history.id).where(
                history.company_id == company_id,
                history.status == Status.SENT,
                not_dry_run(),
                history.context_saved_at.is_(None),
                # A lapse whose flow stopped (a no, an opt-out, a booking) wants no pendingAction any more.
                history.flow_stopped_reason.is_(None),
                history.message_sent_at < now - HANDOVER_GRACE,
                or_(history.context_error.is_(None), history.message_sent_at >= now - HANDOVER_RETRY_FOR),
            )
        ).scalars()
    )


def _resend_idempotent(session: Session, *, company_id: int, now: datetime) -> list[int]:
    """Put the company's `sending` rows of idempotent providers whose answer never came back to `generated`, to be
    sent again with the same idempotency key; their ids."""
    history = ReactivationHistory
    stuck = and_(
        history.company_id == company_id,
        history.status == Status.SENDING,
        history.sending_started_at < now - RESEND_AFTER,
        history.provider.in_(IDEMPOTENT_PROVIDERS),
    )
    ids = list(session.execute(select(history.id).where(stuck).order_by(history.id)).scalars())
    if ids:
        session.execute(
            update(history)
            .where(stuck, history.id.in_(ids))
            .values(
                status=Status.GENERATED.value,
                error="no answer was recorded; sent again with the same idempotency key",
                next_attempt_at=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    return ids
