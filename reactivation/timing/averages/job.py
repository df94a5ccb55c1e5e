"""The averages job: recompute a company's salon medians and its clients' own rhythms (the waterfall's levels 1
and 2, read by the due selection), full or incremental, on PostgreSQL or SQLite.

What it writes (the numbers themselves: stats.py):

* `service_reactivation_intervals`: per service, the statistics of its intervals in the salon window. A service
  with fewer than 10 intervals is written with is_active = false, so is one that no longer has any.
* `client_personalized_intervals`: per client and service with at least 3 intervals in the personal window, the
  median and a consistency score; rows that no longer qualify are removed.

Incremental runs read only the clients whose data may have changed since the last run recorded in
`reactivation_averages_state`. Which days changed comes from day digests (reactivation/timing/day_digests.py):
each run keeps a digest of every local day's appointment rows from LATE_DAYS before it on, and the next run
compares. The first day that differs (a visit added, moved, deleted or its attendance marked), or the first day
after the last run's window if earlier, is where the changes begin; the clients recomputed are those with
appointment rows from that day on, those with rows added since (id above the highest seen, whatever their date)
and those whose visits left the 12-month window. Their personal rows are rewritten, and the salon counts are
recounted from that first day (or the date of the earliest added row if older): an interval that ends before it
lies between two visits that did not change, so its count stands; counts that left the 6-month window are
dropped. A full run happens when there is no state, when the last full run is FULL_EVERY_DAYS old, when time
went backwards, or when asked (`full=True`); it also heals what the incremental rule cannot see (rows deleted or
edited long after the fact, before the digests' days).

Every run ends with ANALYZE of the tables it wrote (PostgreSQL, WRITTEN_TABLES): the due selection that follows a
first run must be planned on the million intervals now there, not on the empty tables autovacuum last saw.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware
from reactivation.storage.companies import CompanyConfig, load_company
from reactivation.storage.db import analyze_tables, is_postgres
from reactivation.storage.models import (
    AppointmentCache,
    AveragesDayDigest,
    AveragesState,
    ClientPersonalizedInterval,
    Service,
    ServiceIntervalCount,
    ServiceReactivationInterval,
)
from reactivation.timing.averages.plan import (
    AveragesPlan,
    Changes,
    Computed,
    first_changed,
    is_incremental,
    late_from,
    window,
)
from reactivation.timing.averages.postgres import run_postgres
from reactivation.timing.averages.sqlite import run_sqlite
from reactivation.timing.averages.stats import ServiceStats
from reactivation.timing.day_digests import DayDigest, current_digests, first_changed_day, store_digests, stored_digests
from reactivation.timing.due_dates import refresh as refresh_due_dates

log = logging.getLogger(__name__)

# What a run writes, analyzed at its end: the due selection reads the intervals right after a first run, and
# statistics of the tables as autovacuum last saw them (empty, say) would plan it for one row instead of millions.
WRITTEN_TABLES = tuple(
    model.__tablename__
    for model in (
        ClientPersonalizedInterval,
        ServiceReactivationInterval,
        ServiceIntervalCount,
        AveragesDayDigest,
        AveragesState,
    )
)


@dataclass(frozen=True)
class AveragesResult:
    company_id: int
    mode: str  # 'full' | 'incremental'
    today: date
    services_active: int
    services_inactive: int
    personal_rows: int
    personal_written: int
    personal_deleted: int
    clients_recomputed: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "mode": self.mode,
            "today": self.today.isoformat(),
            "services_active": self.services_active,
            "services_inactive": self.services_inactive,
            "personal_rows": self.personal_rows,
            "personal_written": self.personal_written,
            "personal_deleted": self.personal_deleted,
            "clients_recomputed": self.clients_recomputed,
        }


@dataclass(frozen=True)
class _Mark:
    """What this run leaves for the next one to start from, taken before any visit is read, so that a change
    made during the run shows in the next run's comparison."""

    max_appointment_id: int
    # The digests of the days from `keep_from` on (kept for the next run) and, in an incremental run, from the
    # last run's first digest day on (compared with what it kept).
    digests: dict[date, DayDigest]
    keep_from: date


def calculate_averages(
    session: Session, *, company_id: int, now: datetime, full: bool | None = None, workers: int = 1
) -> AveragesResult:
    """Recompute the company's service medians and personal rhythms as of `now` (the caller commits).

    `full=None` decides by itself (incremental when a recent full run exists), True forces a full run,
    False asks for an incremental one when possible.

    `workers` > 1 splits a PostgreSQL company's clients into that many shares, each read and written on its own
    connection at the same time and committed on its own: they see only committed visits, so a caller with
    uncommitted appointment rows passes 1 (then everything happens in `session`).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    # Stored as UTC: SQLite keeps the wall time of whatever zone it is given and gives it back naive.
    now = now.astimezone(UTC)
    company = load_company(session, company_id=company_id)
    state = _locked_state(session, company_id=company_id)
    last_run = state if is_incremental(state, now=now, full=full) else None
    mark = _mark(session, company=company, now=now, last_run=last_run)
    plan = AveragesPlan(
        company_id=company_id,
        now=now,
        tz=company.tz,
        window=window(now, company.tz),
        changes=_changes(session, last_run=last_run, mark=mark, tz=company.tz) if last_run is not None else None,
        workers=workers,
    )
    computed = run_postgres(session, plan) if is_postgres(session) else run_sqlite(session, plan)
    active = _write_services(session, company_id=company_id, services=computed.services, now=now)
    store_digests(session, company_id=company_id, digests=mark.digests, since=mark.keep_from)
    _record_state(session, state, plan=plan, mark=mark, computed=computed)
    analyze_tables(session, WRITTEN_TABLES)
    # The kept due dates of the clients whose interval (or lapse) no longer fits what was just written.
    refresh_due_dates(session, company_id=company_id, now=now)
    result = _result(session, plan=plan, computed=computed, active=active)
    log.info("averages calculated", extra=result.as_dict())
    return result


def _locked_state(session: Session, *, company_id: int) -> AveragesState | None:
    """The company's last run, locked until the caller commits."""
    postgres = is_postgres(session)
    if postgres:
        # One job per company at a time; a second waits instead of interleaving its upserts.
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('reactivation.averages:' || :c, 0))"),
            {"c": str(company_id)},
        )
    return session.get(AveragesState, company_id, with_for_update=postgres)


def _mark(session: Session, *, company: CompanyConfig, now: datetime, last_run: AveragesState | None) -> _Mark:
    """The company's highest appointment id and the digests of its recent days, as they are now."""
    # Ids are global and increasing: the company's highest one marks where its next incremental run starts.
    max_id = (
        session.scalar(
            select(func.coalesce(func.max(AppointmentCache.id), 0)).where(AppointmentCache.company_id == company.id)
        )
        or 0
    )
    keep_from = late_from(now, company.tz)
    last_from = late_from(last_run.calculated_at, company.tz) if last_run is not None else keep_from
    digests = current_digests(session, company_id=company.id, since=min(last_from, keep_from), tz=company.tz)
    return _Mark(max_appointment_id=max_id, digests=digests, keep_from=keep_from)


def _changes(session: Session, *, last_run: AveragesState, mark: _Mark, tz: ZoneInfo) -> Changes:
    """Where an incremental run starts: the last run's highest id and window, and the first day changed since."""
    last = as_aware(last_run.calculated_at)
    stored = stored_digests(session, company_id=last_run.company_id)
    changed = first_changed_day(stored, mark.digests, since=late_from(last, tz))
    return Changes(
        max_appointment_id=last_run.max_appointment_id,
        first_changed=first_changed(last, changed=changed, tz=tz),
        old_personal_start=window(last, tz).personal_start,
    )


def _write_services(
    session: Session, *, company_id: int, services: Mapping[int, ServiceStats], now: datetime
) -> dict[int, bool]:
    """Upsert the salon medians; a service without intervals any more stays, inactive. Returns id → is_active."""
    insert = pg_insert if is_postgres(session) else sqlite_insert
    titles = dict(
        session.execute(select(Service.yclients_id, Service.title).where(Service.company_id == company_id)).all()
    )
    sri = ServiceReactivationInterval
    for service_id, stats in services.items():
        values = {
            "service_name": titles.get(service_id),
            "median_interval_days": stats.median_days,
            "avg_interval_days": stats.avg_days,
            "min_interval_days": stats.min_days,
            "max_interval_days": stats.max_days,
            "stddev_days": stats.stddev_days,
            "sample_size": stats.sample_size,
            "last_calculated": now,
            "is_active": stats.is_active,
        }
        statement = insert(sri).values(company_id=company_id, service_id=service_id, **values)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[sri.company_id, sri.service_id],
                set_={**values, "service_name": func.coalesce(statement.excluded.service_name, sri.service_name)},
            )
        )
    session.execute(
        update(sri)
        .where(sri.company_id == company_id, sri.service_id.not_in(list(services)))
        .values(is_active=False, sample_size=0, last_calculated=now)
    )
    return {
        service_id: active
        for service_id, active in session.execute(
            select(sri.service_id, sri.is_active).where(sri.company_id == company_id)
        ).all()
    }


def _record_state(
    session: Session, state: AveragesState | None, *, plan: AveragesPlan, mark: _Mark, computed: Computed
) -> None:
    """What the next run starts from: this run's reference time, mode and highest appointment id."""
    if state is None:
        state = AveragesState(company_id=plan.company_id)
        session.add(state)
    state.calculated_at = plan.now
    if plan.changes is None:
        state.full_calculated_at = plan.now
    state.max_appointment_id = max(mark.max_appointment_id, state.max_appointment_id or 0)
    state.mode = plan.mode
    state.clients_recomputed = computed.clients_recomputed if computed.clients_recomputed is not None else -1
    session.flush()


def _result(session: Session, *, plan: AveragesPlan, computed: Computed, active: Mapping[int, bool]) -> AveragesResult:
    personal_rows = session.scalar(
        select(func.count())
        .select_from(ClientPersonalizedInterval)
        .where(ClientPersonalizedInterval.company_id == plan.company_id)
    )
    return AveragesResult(
        company_id=plan.company_id,
        mode=plan.mode,
        today=plan.window.today,
        services_active=sum(1 for is_active in active.values() if is_active),
        services_inactive=sum(1 for is_active in active.values() if not is_active),
        personal_rows=personal_rows or 0,
        personal_written=computed.personal_written,
        personal_deleted=computed.personal_deleted,
        clients_recomputed=computed.clients_recomputed,
    )
