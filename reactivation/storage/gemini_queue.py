"""The queue of history rows waiting for a Gemini batch (table gemini_queue).

A row is put in once (`INSERT … ON CONFLICT DO NOTHING`: its generate step running twice adds nothing), leased by one
batch at a time and removed by the batch that wrote it. Leasing is one conditional UPDATE over rows picked with
`FOR UPDATE SKIP LOCKED`, so concurrent batches take disjoint rows and never wait on each other; a lease whose holder
died passes, and the row is picked again.

Fairness across companies: each company's rows line up by the time they were queued and the batch takes the first
row of every company, then the second of every company, and so on (round-robin), the companies the caller ranks
first (those served least recently) first, so that the round goes on from one batch to the next. This queue is the
one table read across companies on purpose: a batch serves every salon at once. Every write that follows is back on
one company's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, delete, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware
from reactivation.storage.db import is_postgres
from reactivation.storage.models import GeminiQueued


@dataclass(frozen=True)
class Leased:
    """A row a batch holds: who it is, how often it was given back before."""

    company_id: int
    history_id: int
    attempts: int


@dataclass(frozen=True)
class Backlog:
    """What waits: rows free to lease now, and the oldest of them."""

    free: int
    oldest: datetime | None


def _free(now: datetime) -> ColumnElement[bool]:
    q = GeminiQueued
    return or_(q.lease_until.is_(None), q.lease_until <= now)


def enqueue(session: Session, *, company_id: int, history_id: int, now: datetime) -> bool:
    """Put a row in the queue; False when it is there already."""
    dialect = postgresql if is_postgres(session) else sqlite
    statement = (
        dialect.insert(GeminiQueued)
        .values(company_id=company_id, history_id=history_id, queued_at=now, attempts=0)
        .on_conflict_do_nothing(index_elements=["history_id"])
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def enqueue_many(session: Session, *, company_id: int, history_ids: Sequence[int], now: datetime) -> None:
    """Put several rows of one company in the queue in one statement (those there already stay as they are)."""
    if not history_ids:
        return
    dialect = postgresql if is_postgres(session) else sqlite
    values = [
        {"company_id": company_id, "history_id": history_id, "queued_at": now, "attempts": 0}
        for history_id in history_ids
    ]
    session.execute(dialect.insert(GeminiQueued).values(values).on_conflict_do_nothing(index_elements=["history_id"]))


def backlog(session: Session, *, now: datetime) -> Backlog:
    """How much is free to lease now and how long its oldest row has waited (one aggregate over the queue)."""
    q = GeminiQueued
    free = _free(now)
    count, oldest = session.execute(select(func.count(), func.min(q.queued_at)).where(free)).one()
    return Backlog(free=int(count or 0), oldest=as_aware(oldest) if oldest is not None else None)


def waiting_companies(session: Session, *, now: datetime) -> list[int]:
    """The companies with rows free to lease now."""
    q = GeminiQueued
    return list(session.scalars(select(q.company_id).where(_free(now)).distinct().order_by(q.company_id)))


def lease(
    session: Session,
    *,
    now: datetime,
    until: datetime,
    token: str,
    limit: int,
    turns: Mapping[int, int] | None = None,
) -> list[Leased]:
    """Lease up to `limit` free rows, round-robin across companies; the rows this batch now holds, by company.

    `turns` ranks the companies within a round (lower first; by default all alike, the oldest row first): the caller
    puts the companies served least recently first, so that the rounds go on across batches, however small."""
    q = GeminiQueued
    free = _free(now)
    turn = func.row_number().over(partition_by=q.company_id, order_by=(q.queued_at, q.history_id)).label("turn")
    rank = case(dict(turns), value=q.company_id, else_=0) if turns else literal(0)
    ranked = select(q.history_id, q.queued_at, turn, rank.label("rank")).where(free).subquery()
    fairest = (
        select(ranked.c.history_id)
        .order_by(ranked.c.turn, ranked.c.rank, ranked.c.queued_at, ranked.c.history_id)
        .limit(limit)
        .scalar_subquery()
    )
    candidates = select(q.history_id).where(q.history_id.in_(fairest), free)
    if is_postgres(session):
        candidates = candidates.with_for_update(skip_locked=True)
    rows = session.execute(
        update(q)
        .where(q.history_id.in_(candidates.scalar_subquery()), free)
        .values(lease_until=until, lease_token=token)
        .returning(q.company_id, q.history_id, q.attempts, q.queued_at)
        .execution_options(synchronize_session=False)
    ).all()
    # Grouped by salon for the prompt, each salon's rows in the order they were queued.
    rows = sorted(rows, key=lambda row: (row[0], as_aware(row[3]), row[1]))
    return [Leased(company_id, history_id, attempts) for company_id, history_id, attempts, _ in rows]


def finish(session: Session, *, token: str, rows: Sequence[tuple[int, int]]) -> set[int]:
    """Remove these (company_id, history_id) rows that this batch still holds; the history ids it removed."""
    if not rows:
        return set()
    q = GeminiQueued
    removed = session.execute(
        delete(q)
        .where(tuple_(q.company_id, q.history_id).in_(list(rows)), q.lease_token == token)
        .returning(q.history_id)
        .execution_options(synchronize_session=False)
    ).scalars()
    return set(removed)


def give_back(session: Session, *, token: str, rows: Sequence[tuple[int, int]], attempt: bool = True) -> None:
    """Let these rows wait for a later batch: lease cleared, and, with `attempt` (a quota blocked their request), one
    more attempt counted; without (no slot came for them, nobody asked), they wait as before."""
    if not rows:
        return
    q = GeminiQueued
    values: dict[str, object] = {"lease_until": None, "lease_token": None}
    if attempt:
        values["attempts"] = q.attempts + 1
    session.execute(
        update(q)
        .where(tuple_(q.company_id, q.history_id).in_(list(rows)), q.lease_token == token)
        .values(values)
        .execution_options(synchronize_session=False)
    )


def any_waiting(session: Session, *, company_id: int) -> bool:
    """Whether any of a company's rows is in the queue (an index probe, however long the backlog)."""
    q = GeminiQueued
    return session.execute(select(q.history_id).where(q.company_id == company_id).limit(1)).first() is not None


def queued(company_id: int, history_id: Any) -> ColumnElement[bool]:
    """A clause: the history row `history_id` (a column of the enclosing query) is in the queue."""
    q = GeminiQueued
    return select(q.history_id).where(q.company_id == company_id, q.history_id == history_id).exists()


def waiting(session: Session, *, company_id: int) -> int:
    """How many of a company's rows are in the queue (leased or not)."""
    q = GeminiQueued
    return int(session.scalar(select(func.count()).where(q.company_id == company_id)) or 0)
