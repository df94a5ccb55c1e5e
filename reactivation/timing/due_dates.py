"""Computing the kept due dates (reactivation_due_dates, see storage/due_dates.py): which clients' rows no longer
fit, and their rows written again.

`refresh` finds, in one set-based statement, the clients whose kept row is missing, marked stale, or no longer
fits: a different lapse (last visit), last service or value than the client's, or an interval or level other
than the one the waterfall gives today (after the averages job rewrote the salon medians or personal rhythms).
It then rebuilds those clients' rows in chunks: the raw personal and salon rows, the step already taken in the
lapse (the history), the waterfall's Interval with its evidence (cached: many clients share their inputs), and the
next step's day. The averages job calls it after every run, full or incremental; the nightly pass
(`reactivation.refresh_due_dates`, `reactivation due-dates refresh`) calls it for every company.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from time import monotonic
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from reactivation.storage import due_dates
from reactivation.storage.db import analyze_tables, is_postgres
from reactivation.storage.history import not_dry_run, step_taken
from reactivation.storage.models import (
    Client,
    ClientPersonalizedInterval,
    DueDate,
    ReactivationHistory,
    ServiceReactivationInterval,
)
from reactivation.timing.waterfall_sql import (
    ServiceFacts,
    industry_table,
    service_facts,
    usable_personal,
    usable_service,
    waterfall_days,
    waterfall_source,
)

log = logging.getLogger(__name__)

CHUNK = 5_000
ANALYZE_AT = 10_000


@dataclass(frozen=True)
class RefreshResult:
    company_id: int
    recomputed: int
    orphans_removed: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "recomputed": self.recomputed,
            "orphans_removed": self.orphans_removed,
            "seconds": round(self.seconds, 3),
        }


def refresh(session: Session, *, company_id: int, now: datetime, analyze: bool = True) -> RefreshResult:
    """Recompute the company's kept rows that no longer fit (see the module's docstring); the caller commits.

    A bulk rewrite (ANALYZE_AT rows or more) runs ANALYZE on the table (PostgreSQL), so that no plan reads it with
    the statistics of before (the selection's plans do not depend on them, other readers might)."""
    started = monotonic()
    orphans = due_dates.drop_orphans(session, company_id=company_id)
    facts = service_facts(session, company_id=company_id)
    ids = changed_clients(session, company_id=company_id, facts=facts)
    recompute(session, company_id=company_id, client_ids=ids, facts=facts, now=now)
    if analyze and len(ids) >= ANALYZE_AT:
        analyze_tables(session, [DueDate.__tablename__])
    result = RefreshResult(
        company_id=company_id, recomputed=len(ids), orphans_removed=orphans, seconds=monotonic() - started
    )
    log.info("due dates refreshed", extra=result.as_dict())
    return result


def changed_clients(session: Session, *, company_id: int, facts: ServiceFacts) -> list[int]:
    """The clients whose kept row is missing, stale, or differs from the client (lapse, last service, value) or
    from the waterfall's interval and level today: one statement joining the clients to their kept rows."""
    c = Client
    k = DueDate
    industry = industry_table(facts.industry)
    differs = or_(
        k.client_id.is_(None),
        k.next_due_on == due_dates.STALE,
        k.last_visit_date.is_distinct_from(c.last_visit_date),
        k.last_service_id.is_distinct_from(c.last_service_id),
        k.total_spent.is_distinct_from(c.total_spent),
        k.interval_days.is_distinct_from(waterfall_days(industry)),
        k.interval_source.is_distinct_from(waterfall_source(industry)),
    )
    statement = (
        select(c.id)
        .outerjoin(k, and_(k.company_id == company_id, k.client_id == c.id))
        .outerjoin(ClientPersonalizedInterval, usable_personal(company_id))
        .outerjoin(ServiceReactivationInterval, usable_service(company_id))
        .outerjoin(industry, industry.c.service_id == c.last_service_id)
        .where(c.company_id == company_id, differs)
    )
    return list(session.scalars(statement))


def recompute(
    session: Session, *, company_id: int, client_ids: Sequence[int], facts: ServiceFacts, now: datetime
) -> int:
    """Write the kept rows of these clients, computed from what the database holds now; how many."""
    written = 0
    for start in range(0, len(client_ids), CHUNK):
        chunk = list(client_ids[start : start + CHUNK])
        rows = kept_rows(session, company_id=company_id, client_ids=chunk, facts=facts)
        written += due_dates.upsert(session, company_id=company_id, rows=rows, now=now)
    return written


def kept_rows(
    session: Session, *, company_id: int, client_ids: Sequence[int], facts: ServiceFacts
) -> list[due_dates.KeptRow]:
    """The kept rows of a few thousand clients: their raw waterfall rows, the interval and the step taken."""
    c = Client
    p = ClientPersonalizedInterval
    s = ServiceReactivationInterval
    ids = due_dates.among(client_ids, postgres=is_postgres(session))
    statement = (
        select(
            c.id,
            c.last_visit_date,
            c.last_service_id,
            c.last_services,
            c.total_spent,
            p.personal_interval_days,
            p.visit_count,
            p.consistency_score,
            s.median_interval_days,
            s.sample_size,
            s.is_active,
        )
        .outerjoin(p, and_(p.company_id == company_id, p.client_id == c.id, p.service_id == c.last_service_id))
        .outerjoin(s, and_(s.company_id == company_id, s.service_id == c.last_service_id))
        .where(c.company_id == company_id, ids(c.id))
    )
    taken = steps_taken(session, company_id=company_id, client_ids=client_ids)
    rows = []
    for r in session.execute(statement):
        service_id = r.last_service_id if isinstance(r.last_service_id, int) else None
        personal = None
        if r.personal_interval_days is not None:
            personal = (r.personal_interval_days, r.visit_count, r.consistency_score)
        service = (r.median_interval_days, r.sample_size, r.is_active) if r.median_interval_days is not None else None
        interval = facts.interval(
            service_id=service_id, title=facts.title(service_id, r.last_services), personal=personal, service=service
        )
        rows.append(
            due_dates.KeptRow(
                client_id=r.id,
                last_visit_date=r.last_visit_date,
                last_service_id=service_id,
                total_spent=r.total_spent,
                interval_days=interval.interval_days,
                interval_source=str(interval.source),
                confidence=round(float(interval.confidence), 2),
                evidence=interval.evidence,
                previous_step=taken.get((r.id, r.last_visit_date), 0),
            )
        )
    return rows


def steps_taken(session: Session, *, company_id: int, client_ids: Sequence[int]) -> dict[tuple[int, Any], int]:
    """(client, lapse) → the latest step taken in it by real rows (a lapse whose flow stopped counts as the last)."""
    h = ReactivationHistory
    ids = due_dates.among(client_ids, postgres=is_postgres(session))
    statement = (
        select(h.client_id, h.last_visit_date, func.max(step_taken()))
        .where(h.company_id == company_id, ids(h.client_id), not_dry_run())
        .group_by(h.client_id, h.last_visit_date)
    )
    return {(client_id, lapse): int(step) for client_id, lapse, step in session.execute(statement)}
