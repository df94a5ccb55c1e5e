"""The averages job on SQLite (the embedded default, small data): the visits read into Python, the numbers from
stats.py's `compute_averages`, and only the personal rows whose values changed written back.

Tests check that it and the PostgreSQL backend give the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from reactivation.core.instants import local_midnight, naive_utc
from reactivation.storage.models import AppointmentCache, ClientPersonalizedInterval
from reactivation.timing.averages.plan import AveragesPlan, Computed
from reactivation.timing.averages.stats import PersonalStats, compute_averages
from reactivation.timing.averages.visits import load_visit_days

_BATCH = 2_000


def run_sqlite(session: Session, plan: AveragesPlan) -> Computed:
    """Every visit of the windows read once; the personal rows of the touched clients (all, in a full run)
    rewritten where they changed, those no longer backed by data removed."""
    touched = _touched_clients(session, plan)
    start, end = naive_utc(plan.window.personal_start), naive_utc(plan.window.end)
    everyone = load_visit_days(session, company_id=plan.company_id, start=start, end=end, tz=plan.tz)
    services, personal = compute_averages(everyone, today=plan.window.today)
    if touched is not None:
        # A client's rhythm comes from their own visits only: those of the others stand as they were written.
        personal = {key: stats for key, stats in personal.items() if key[0] in touched}
    existing = _existing(session, company_id=plan.company_id, touched=touched)
    changed = [
        key
        for key, stats in personal.items()
        if existing.get(key) != (stats.interval_days, stats.visit_count, stats.consistency)
    ]
    _upsert(session, plan, {key: personal[key] for key in changed})
    stale = [key for key in existing if key not in personal]
    _remove(session, company_id=plan.company_id, keys=stale)
    return Computed(
        services=services,
        personal_written=len(changed),
        personal_deleted=len(stale),
        clients_recomputed=len(touched) if touched is not None else None,
    )


def _touched_clients(session: Session, plan: AveragesPlan) -> set[int] | None:
    """The clients an incremental run recomputes (None in a full run): see job.py."""
    if plan.changes is None:
        return None
    a = AppointmentCache
    changed_since = naive_utc(local_midnight(plan.changes.first_changed, plan.tz))
    old_start = naive_utc(plan.changes.old_personal_start)
    rows = session.execute(
        select(a.client_id).where(
            a.company_id == plan.company_id,
            (a.id > plan.changes.max_appointment_id)
            | ((a.appointment_datetime >= changed_since) & (a.appointment_datetime < naive_utc(plan.window.end)))
            | (
                (a.attendance == 1)
                & (a.appointment_datetime >= old_start)
                & (a.appointment_datetime < naive_utc(plan.window.personal_start))
            ),
        )
    ).scalars()
    return set(rows)


def _existing(
    session: Session, *, company_id: int, touched: set[int] | None
) -> dict[tuple[int, int], tuple[int, int, Decimal | None]]:
    """The stored personal rows in scope, (client, service) → (interval, visits, consistency)."""
    cpi = ClientPersonalizedInterval
    scope = cpi.company_id == company_id
    if touched is not None:
        scope = scope & cpi.client_id.in_(list(touched))
    return {
        (c, s): (days, visits, consistency)
        for c, s, days, visits, consistency in session.execute(
            select(
                cpi.client_id, cpi.service_id, cpi.personal_interval_days, cpi.visit_count, cpi.consistency_score
            ).where(scope)
        ).all()
    }


def _upsert(session: Session, plan: AveragesPlan, rows: Mapping[tuple[int, int], PersonalStats]) -> None:
    cpi = ClientPersonalizedInterval
    values = [
        {
            "company_id": plan.company_id,
            "client_id": c,
            "service_id": s,
            "personal_interval_days": stats.interval_days,
            "visit_count": stats.visit_count,
            "consistency_score": stats.consistency,
            "last_calculated": plan.now,
        }
        for (c, s), stats in rows.items()
    ]
    for batch_start in range(0, len(values), _BATCH):
        statement = sqlite_insert(cpi).values(values[batch_start : batch_start + _BATCH])
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[cpi.company_id, cpi.client_id, cpi.service_id],
                set_={
                    "personal_interval_days": statement.excluded.personal_interval_days,
                    "visit_count": statement.excluded.visit_count,
                    "consistency_score": statement.excluded.consistency_score,
                    "last_calculated": statement.excluded.last_calculated,
                },
            )
        )


def _remove(session: Session, *, company_id: int, keys: list[tuple[int, int]]) -> None:
    cpi = ClientPersonalizedInterval
    for batch_start in range(0, len(keys), _BATCH):
        batch = keys[batch_start : batch_start + _BATCH]
        session.execute(
            delete(cpi).where(cpi.company_id == company_id, tuple_(cpi.client_id, cpi.service_id).in_(batch))
        )
