"""Lapses held by a reply: snoozed until a date (not_now) or left alone while the phone stays (moved_away).

One row per client and lapse (reactivation_reply_holds). The reply handler writes them, the due selection reads
them (a snoozed lapse is skipped until its date, then its step is due once more; a moved client is skipped with
its reason), the claim ends a snooze when it claims the repeated step, and stats counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reactivation.storage.db import is_postgres
from reactivation.storage.models import ReactivationHistory, ReplyHold


class HoldKind(StrEnum):
    """What holds a lapse; the database checks the column against these."""

    SNOOZED = "snoozed"
    MOVED = "moved"


@dataclass(frozen=True)
class Lapse:
    """A client's absence, identified by its last visit."""

    company_id: int
    client_id: int
    last_visit_date: date


def get(session: Session, lapse: Lapse) -> ReplyHold | None:
    """The hold on this lapse, if any."""
    return session.execute(
        select(ReplyHold).where(
            ReplyHold.company_id == lapse.company_id,
            ReplyHold.client_id == lapse.client_id,
            ReplyHold.last_visit_date == lapse.last_visit_date,
        )
    ).scalar_one_or_none()


def snooze(session: Session, lapse: Lapse, *, step: int, until: date, history_id: int, now: datetime) -> bool:
    """Snooze the lapse until `until`; False when it already has a hold (a lapse is snoozed once)."""
    dialect = postgresql if is_postgres(session) else sqlite
    statement = (
        dialect.insert(ReplyHold)
        .values(
            company_id=lapse.company_id,
            client_id=lapse.client_id,
            last_visit_date=lapse.last_visit_date,
            kind=HoldKind.SNOOZED.value,
            step=step,
            until=until,
            history_id=history_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["company_id", "client_id", "last_visit_date"])
        .returning(ReplyHold.client_id)
    )
    return session.execute(statement).first() is not None


def hold_moved(session: Session, lapse: Lapse, *, step: int, phone: str | None, history_id: int, now: datetime) -> None:
    """Hold the lapse while the client keeps `phone` (a snooze on it becomes a move)."""
    dialect = postgresql if is_postgres(session) else sqlite
    values = {
        "kind": HoldKind.MOVED.value,
        "step": step,
        "until": None,
        "phone": phone,
        "history_id": history_id,
        "created_at": now,
        "ended_at": None,
    }
    insert = dialect.insert(ReplyHold).values(
        company_id=lapse.company_id, client_id=lapse.client_id, last_visit_date=lapse.last_visit_date, **values
    )
    session.execute(
        insert.on_conflict_do_update(index_elements=["company_id", "client_id", "last_visit_date"], set_=values)
    )


def end(session: Session, lapse: Lapse, *, now: datetime) -> None:
    """End a snooze that has not ended (its lapse stopped: a refusal, an opt-out, a booking)."""
    session.execute(
        update(ReplyHold)
        .where(
            ReplyHold.company_id == lapse.company_id,
            ReplyHold.client_id == lapse.client_id,
            ReplyHold.last_visit_date == lapse.last_visit_date,
            ReplyHold.kind == HoldKind.SNOOZED.value,
            ReplyHold.ended_at.is_(None),
        )
        .values(ended_at=now)
    )


def mark_repeated(session: Session, *, company_id: int, history_ids: list[int], now: datetime) -> int:
    """End the snoozes whose repeated step these newly claimed rows are; how many ended."""
    if not history_ids:
        return 0
    repeats = session.execute(
        select(ReactivationHistory.id, ReactivationHistory.client_id, ReactivationHistory.last_visit_date).where(
            ReactivationHistory.company_id == company_id,
            ReactivationHistory.id.in_(history_ids),
            ReactivationHistory.snooze_repeat.is_(True),
        )
    ).all()
    for history_id, client_id, lapse in repeats:
        session.execute(
            update(ReplyHold)
            .where(
                ReplyHold.company_id == company_id,
                ReplyHold.client_id == client_id,
                ReplyHold.last_visit_date == lapse,
                ReplyHold.kind == HoldKind.SNOOZED.value,
                ReplyHold.ended_at.is_(None),
            )
            .values(ended_at=now, repeat_history_id=history_id)
        )
    return len(repeats)
