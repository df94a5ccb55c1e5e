"""The averages job on PostgreSQL: the salon counts kept between runs, and the shares computed on their own
connections at once."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import Session

from reactivation.storage.models import (
    AppointmentCache,
    AveragesState,
    ClientPersonalizedInterval,
    ServiceIntervalCount,
    ServiceReactivationInterval,
)
from reactivation.timing.averages.job import WRITTEN_TABLES, calculate_averages
from reactivation.timing.averages.postgres import share_bounds, shares_between
from reactivation.timing.averages.stats import SERVICE_WINDOW_DAYS, service_stats_from_counts
from tests.timing.averages.tables import NOW, TODAY, interval_counts, personal_rows, seeded_salon, service_rows


def test_the_salon_counts_hold_exactly_the_salon_window(db: Session) -> None:
    seeded_salon(db, 45)
    calculate_averages(db, company_id=45, now=NOW)
    counts = interval_counts(db, 45)
    start = TODAY - timedelta(days=SERVICE_WINDOW_DAYS)
    assert counts and all(ended - timedelta(days=days) >= start and ended <= TODAY for _, ended, days in counts)
    by_service: dict[int, Counter[int]] = {}
    for (service_id, _, days), intervals in counts.items():
        by_service.setdefault(service_id, Counter())[days] += intervals
    # and the stored salon medians are their statistics
    for service_id, row in service_rows(db, 45).items():
        stats = service_stats_from_counts(by_service.get(service_id, Counter()))
        assert stats is not None and row[1:7] == (
            stats.median_days,
            stats.avg_days,
            stats.min_days,
            stats.max_days,
            stats.stddev_days,
            stats.sample_size,
        )


def test_shares_on_their_own_connections_give_the_one_connection_numbers(committed_engine: Engine) -> None:
    # Given two salons, committed (each share reads on its own connection), both computed on one connection
    with Session(committed_engine) as session:
        seeded_salon(session, 47)
        seeded_salon(session, 48)
        session.commit()
    _run(committed_engine, 48, workers=1, now=NOW)
    other_salon = _derived(committed_engine, 48)
    _run(committed_engine, 47, workers=1, now=NOW)
    one_connection = _derived(committed_engine, 47)

    # When the first salon's tables are emptied and computed again in three shares at once
    _forget(committed_engine, 47)
    result = _run(committed_engine, 47, workers=3, now=NOW)

    # Then the numbers are the same, and the other salon's rows were left alone
    assert result.mode == "full" and result.personal_written == len(one_connection[1]) >= 50
    assert _derived(committed_engine, 47) == one_connection
    assert _derived(committed_engine, 48) == other_salon

    # and a week later, after new visits, an incremental run in shares equals a full run on one connection
    with Session(committed_engine) as session:
        _replay_last_week(session, 47)
        session.commit()
    week = NOW + timedelta(days=7)
    incremental = _run(committed_engine, 47, workers=3, now=week)
    after_incremental = _derived(committed_engine, 47)
    full = _run(committed_engine, 47, workers=1, now=week, full=True)
    assert incremental.mode == "incremental" and incremental.clients_recomputed
    assert _derived(committed_engine, 47) == after_incremental
    assert full.personal_written == 0 and full.personal_deleted == 0


def test_the_job_analyzes_the_tables_it_wrote(committed_engine: Engine) -> None:
    # Given a salon whose interval tables PostgreSQL has not analyzed since they were emptied, with autovacuum
    # off for them (as the server may have it, or simply before its next round)
    with Session(committed_engine) as session:
        seeded_salon(session, 51)
        session.commit()
    with committed_engine.begin() as connection:
        for table in WRITTEN_TABLES:
            connection.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    try:
        before = _analyzed(committed_engine)
        # When the averages job runs its first run, in shares on their own connections, and commits
        result = _run(committed_engine, 51, workers=2, now=NOW)
        after = _analyzed(committed_engine)
    finally:
        with committed_engine.begin() as connection:
            for table in WRITTEN_TABLES:
                connection.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))
    # Then every table it wrote was analyzed once more, and the planner's row counts are the tables' own
    assert result.personal_rows >= 50
    for table in WRITTEN_TABLES:
        analyses, reltuples, rows = after[table]
        assert analyses == before[table][0] + 1, table
        assert reltuples == rows > 0, table


def _analyzed(engine: Engine) -> dict[str, tuple[int, float, int]]:
    """Per table the job writes: how many times it was analyzed, the planner's row count, and its real one."""
    found = {}
    with engine.connect() as connection:
        for table in WRITTEN_TABLES:
            analyses, reltuples = connection.execute(
                text(
                    "SELECT s.analyze_count + s.autoanalyze_count, c.reltuples FROM pg_stat_user_tables s "
                    "JOIN pg_class c ON c.oid = s.relid WHERE s.relname = :t"
                ),
                {"t": table},
            ).one()
            rows = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            found[table] = (int(analyses), float(reltuples), int(rows))
    return found


def test_shares_cut_the_client_ids_into_ranges_that_cover_every_id_once() -> None:
    shares = shares_between([30, 10, 30])
    assert [(share.low, share.high) for share in shares] == [(None, 10), (10, 30), (30, None)]
    for client_id in (-(10**12), -1, 0, 9, 10, 29, 30, 10**15):
        assert sum(1 for share in shares if _holds(share, client_id)) == 1
    assert [(share.low, share.high) for share in shares_between([])] == [(None, None)]


def _holds(share: Any, client_id: int) -> bool:
    return (share.low is None or client_id >= share.low) and (share.high is None or client_id < share.high)


@pytest.mark.parametrize("workers", [2, 3])
def test_share_bounds_give_each_share_about_as_many_visits(db: Session, workers: int) -> None:
    # Given a salon next to another one
    seeded_salon(db, 49)
    seeded_salon(db, 50)
    # When the job cuts the first one's clients into shares
    shares = shares_between(share_bounds(db, company_id=49, workers=workers))
    # Then each share holds about its part of the salon's visits (and nothing of the other salon's)
    client_ids = db.scalars(select(AppointmentCache.client_id).where(AppointmentCache.company_id == 49)).all()
    per_share = [sum(1 for client_id in client_ids if _holds(share, client_id)) for share in shares]
    assert len(shares) == workers and sum(per_share) == len(client_ids)
    assert all(abs(visits - len(client_ids) / workers) <= 0.1 * len(client_ids) for visits in per_share)


def _run(engine: Engine, company_id: int, *, workers: int, now: datetime, full: bool | None = None) -> Any:
    with Session(engine) as session:
        result = calculate_averages(session, company_id=company_id, now=now, full=full, workers=workers)
        session.commit()
        return result


def _derived(engine: Engine, company_id: int) -> tuple[Any, ...]:
    with Session(engine) as session:
        return (
            service_rows(session, company_id),
            personal_rows(session, company_id),
            interval_counts(session, company_id),
        )


def _forget(engine: Engine, company_id: int) -> None:
    with Session(engine) as session:
        for model in (ServiceReactivationInterval, ClientPersonalizedInterval, ServiceIntervalCount, AveragesState):
            session.execute(delete(model).where(model.company_id == company_id))
        session.commit()


def _replay_last_week(session: Session, company_id: int) -> None:
    """Last week's appointments again, a week later."""
    session.execute(
        text(
            """
            INSERT INTO appointments_cache (company_id, client_id, service_ids, appointment_datetime, attendance)
            SELECT company_id, client_id, service_ids, appointment_datetime + INTERVAL '7 days', attendance
            FROM appointments_cache
            WHERE company_id = :c AND appointment_datetime >= :start AND appointment_datetime < :end
            """
        ),
        {"c": company_id, "start": NOW - timedelta(days=7), "end": NOW},
    )
