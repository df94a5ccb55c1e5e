"""Hand-overs Redis still owes: PostgreSQL is the truth, Redis a copy that can be late.

A reply or a booking records its facts in PostgreSQL first and, in the same transaction, what the AI admin's keys
must still learn (`handover_pending` on the history row: today, that the row's pendingAction must go). Once that is
committed, `hand_over_owed` tells Redis. When Redis is unreachable the facts stay recorded, the row keeps what it
owes, and the hand-over is repeated later: by the sweep (every company, every 15 minutes) or by the client's next
reply or booking (that phone). Each hand-over is idempotent (removing a pendingAction that is gone changes nothing),
so repeating one after a crash between Redis and the database is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import redis
from sqlalchemy import select, update

from reactivation.core.vocabulary import PendingHandover
from reactivation.handover.admin_handover import clear_pending_action
from reactivation.storage.models import ReactivationHistory

if TYPE_CHECKING:
    from reactivation.runtime import Runtime

log = logging.getLogger(__name__)

# One pass takes at most this many rows of a company; the next sweep takes the rest.
MAX_PER_PASS = 1000


@dataclass
class Handovers:
    """What one pass over the owed hand-overs did, by history row id."""

    done: list[int] = field(default_factory=list)  # Redis took them
    removed: list[int] = field(default_factory=list)  # of those, rows whose pendingAction was there and was removed
    pending: list[int] = field(default_factory=list)  # still owed: Redis was unreachable


def hand_over_owed(rt: Runtime, *, company_id: int, now: datetime, phone: str | None = None) -> Handovers:
    """Tell Redis what the company's history rows (of one E.164 phone, if given) still owe it, and mark the rows
    done; a Redis that cannot be reached leaves them owed (logged once as a warning), never raises."""
    h = ReactivationHistory
    statement = select(h.id, h.phone).where(h.company_id == company_id, h.handover_pending == PendingHandover.CLEAR)
    if phone is not None:
        statement = statement.where(h.phone == phone)
    with rt.session() as session:
        owed = session.execute(statement.order_by(h.id).limit(MAX_PER_PASS)).all()
    result = Handovers()
    for position, (history_id, row_phone) in enumerate(owed):
        try:
            # A row anonymized since (no phone) names no dialog: nothing is left to remove.
            if row_phone and clear_pending_action(
                rt.redis,
                prefix=rt.settings.redis_key_prefix,
                company_id=company_id,
                phone=row_phone,
                history_id=history_id,
            ):
                result.removed.append(history_id)
        except redis.RedisError as exc:
            result.pending = [pending_id for pending_id, _ in owed[position:]]
            log.warning(
                "Redis unreachable: the hand-over to the AI admin is pending; the sweep or the next reply repeats it",
                extra={"company_id": company_id, "pending": len(result.pending), "error": type(exc).__name__},
            )
            break
        result.done.append(history_id)
    if result.done:
        with rt.session() as session:
            session.execute(
                update(h)
                .where(h.company_id == company_id, h.id.in_(result.done), h.handover_pending == PendingHandover.CLEAR)
                .values(handover_pending=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    return result
