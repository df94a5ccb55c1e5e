"""The averages job: salon medians and personal rhythms, on PostgreSQL and SQLite alike, full and incremental."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import Session

from reactivation.core.instants import local_midnight
from reactivation.storage.models import (
    AppointmentCache,
    AveragesState,
    ClientPersonalizedInterval,
    ServiceIntervalCount,
    ServiceReactivationInterval,
)
from reactivation.timing.averages.postgres import (
    PERSONAL_WINDOW_DAYS,
    SERVICE_WINDOW_DAYS,
    _pg_share_bounds,
    calculate_averages,
    compute_averages,
    consistency_score,
    percentile_cont,
    personal_stats,
    service_ids_of,
    service_stats,
    service_stats_from_counts,
    shares_between,
)
from reactivation.tools.bulk import load_salon
from reactivation.tools.synthetic import generate_salon
from tests.factories import every, make_client, make_company, make_service, make_visits

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


# --- pure statistics ---------------------------------------------------------------------------------------------


def test_median_not_mean_the_outlier_does_not_move_it() -> None:
    stats = service_stats([24, 24, 24, 100])
    assert stats is not None
    assert stats.median_days == 24 and stats.avg_days == 43 and stats.max_days == 100
    assert stats.sample_size == 4 and not stats.is_active


def test_percentile_cont_interpolates_like_postgres() -> None:
    assert percentile_cont([20, 22, 30], 0.5) == 22
    assert percentile_cont([20, 22, 30, 40], 0.5) == 26
    assert percentile_cont([20, 22, 30, 40], 0.25) == 21.5
    with pytest.raises(ValueError):
        percentile_cont([], 0.5)


def test_consistency_score_formula() -> None:
    assert consistency_score([21, 21, 21]) == Decimal("1.00")
    # Q1 = 20.5, median 21, Q3 = 21.5: 1 - 1 / 42
    assert consistency_score([20, 21, 22]) == Decimal("0.98")
    # one vacation gap among four visits: Q1 24, Q3 43 → 1 - 19 / 48
    assert consistency_score([24, 24, 24, 100]) == Decimal("0.60")
    # ... and among five it no longer matters
    assert consistency_score([24, 24, 24, 24, 100]) == Decimal("1.00")
    # wildly irregular: clamped at zero
    assert consistency_score([5, 20, 300]) == Decimal("0.00")
    assert consistency_score([5, 100, 300]) == Decimal("0.26")


def test_service_stats_from_counts_equal_the_stats_of_the_values() -> None:
    rng = random.Random(5)
    for size in (1, 2, 3, 10, 101, 1000):
        values = [rng.choice([7, 21, 21, 24, 28, 30, 45, 90, 365]) + rng.randint(0, 3) for _ in range(size)]
        assert service_stats_from_counts(Counter(values)) == service_stats(values)
    assert service_stats_from_counts({21: 0}) is None and service_stats([]) is None


def test_personal_stats_need_three_intervals() -> None:
    assert personal_stats([21, 22]) is None
    stats = personal_stats([22, 21, 20])
    assert stats is not None and (stats.interval_days, stats.intervals, stats.visit_count) == (21, 3, 4)


def test_service_ids_are_read_defensively() -> None:
    assert service_ids_of([1, "2", 3.5, True, None, "x", -4, "٣", 10**19]) == [1, 2]
    assert service_ids_of({"id": 1}) == [] and service_ids_of(None) == [] and service_ids_of("[1]") == []


def test_compute_drops_gaps_outside_one_to_365_days_and_counts_a_day_once() -> None:
    day = TODAY - timedelta(days=300)
    visits = [(1, 9, day), (1, 9, day), (1, 9, day + timedelta(days=20)), (1, 9, day + timedelta(days=40))]
    services, personal = compute_averages(visits, today=TODAY)
    assert personal == {}  # two intervals only
    assert services == {}  # both older than 6 months
    services, _ = compute_averages(visits, today=day + timedelta(days=60))
    assert services[9].sample_size == 2 and services[9].median_days == 20


# --- the job on a database ------------------------------------------------------------------------------------------


def _salon(session: Session, company_id: int | None = None) -> dict[str, Any]:
    """A service with twelve regular clients every 21 days, one client with an outlier, one with too few visits."""
    company = make_company(session, company_id)
    manicure = make_service(session, company.id, "Маникюр с покрытием гель-лак")
    pedicure = make_service(session, company.id, "Педикюр")
    regulars = []
    for i in range(12):
        client = make_client(session, company.id, last_visit=TODAY - timedelta(days=2 + i), services=[manicure])
        make_visits(session, client, manicure, every(TODAY - timedelta(days=2 + i + 63), 21, 4))
        regulars.append(client)
    outlier = make_client(session, company.id, last_visit=TODAY - timedelta(days=5), services=[pedicure])
    start = TODAY - timedelta(days=5 + 172)
    make_visits(session, outlier, pedicure, every(start, 24, 4))
    make_visits(session, outlier, pedicure, [TODAY - timedelta(days=5)])
    newcomer = make_client(session, company.id, last_visit=TODAY - timedelta(days=10), services=[pedicure])
    make_visits(session, newcomer, pedicure, [TODAY - timedelta(days=40), TODAY - timedelta(days=10)])
    # Visits that do not count: not attended, and older than a year.
    make_visits(session, newcomer, pedicure, [TODAY - timedelta(days=25)], attendance=0)
    make_visits(session, newcomer, pedicure, every(TODAY - timedelta(days=500), 20, 3))
    return {
        "company": company,
        "manicure": manicure,
        "pedicure": pedicure,
        "regulars": regulars,
        "outlier": outlier,
        "newcomer": newcomer,
    }


def _services(session: Session, company_id: int) -> dict[int, tuple[Any, ...]]:
    s = ServiceReactivationInterval
    rows = session.execute(
        select(
            s.service_id,
            s.service_name,
            s.median_interval_days,
            s.avg_interval_days,
            s.min_interval_days,
            s.max_interval_days,
            s.stddev_days,
            s.sample_size,
            s.is_active,
        ).where(s.company_id == company_id)
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def _personal(session: Session, company_id: int) -> dict[tuple[int, int], tuple[Any, ...]]:
    p = ClientPersonalizedInterval
    rows = session.execute(
        select(p.client_id, p.service_id, p.personal_interval_days, p.visit_count, p.consistency_score).where(
            p.company_id == company_id
        )
    )
    return {(row[0], row[1]): (row[2], row[3], Decimal(row[4])) for row in rows}


@pytest.fixture(params=["postgres", "sqlite"])
def session(request: pytest.FixtureRequest) -> Session:
    return request.getfixturevalue("db" if request.param == "postgres" else "sqlite_db")  # type: ignore[no-any-return]


def test_salon_median_and_personal_rhythms(session: Session) -> None:
    salon = _salon(session)
    company_id = salon["company"].id

    result = calculate_averages(session, company_id=company_id, now=NOW)

    services = _services(session, company_id)
    manicure = services[salon["manicure"].yclients_id]
    # 12 clients × 3 intervals of 21 days
    assert manicure == ("Маникюр с покрытием гель-лак", 21, 21, 21, 21, Decimal("0.00"), 36, True)
    pedicure = services[salon["pedicure"].yclients_id]
    # outlier 24, 24, 24, 100 (the 100 within 6 months) and the newcomer's 30: too few, inactive
    assert pedicure[1] == 24 and pedicure[6:] == (5, False)
    personal = _personal(session, company_id)
    regular = salon["regulars"][0]
    assert personal[(regular.id, salon["manicure"].yclients_id)] == (21, 4, Decimal("1.00"))
    assert personal[(salon["outlier"].id, salon["pedicure"].yclients_id)] == (24, 5, Decimal("0.60"))
    assert (salon["newcomer"].id, salon["pedicure"].yclients_id) not in personal
    assert (result.mode, result.services_active, result.services_inactive) == ("full", 1, 1)
    assert result.personal_rows == 13 and result.personal_written == 13


def test_rerun_changes_nothing_and_writes_nothing(session: Session) -> None:
    salon = _salon(session)
    company_id = salon["company"].id
    calculate_averages(session, company_id=company_id, now=NOW)
    before = (_services(session, company_id), _personal(session, company_id))

    again = calculate_averages(session, company_id=company_id, now=NOW, full=True)

    assert (_services(session, company_id), _personal(session, company_id)) == before
    assert again.personal_written == 0 and again.personal_deleted == 0


def test_rows_that_no_longer_qualify_are_retired(session: Session) -> None:
    salon = _salon(session)
    company_id = salon["company"].id
    calculate_averages(session, company_id=company_id, now=NOW)
    # Given a year later, when every visit has left the windows
    later = NOW + timedelta(days=PERSONAL_WINDOW_DAYS + 80)

    result = calculate_averages(session, company_id=company_id, now=later)

    services = _services(session, company_id)
    assert all(row[-1] is False and row[-2] == 0 for row in services.values())
    assert _personal(session, company_id) == {}
    assert result.personal_deleted == 13 and result.services_active == 0


def test_two_companies_with_identical_data_never_mix(session: Session) -> None:
    first = _salon(session)
    second = _salon(session)
    # The second salon's manicure clients come every 30 days instead.
    for client in second["regulars"]:
        session.query(AppointmentCache).filter(AppointmentCache.client_id == client.id).delete()
        make_visits(session, client, second["manicure"], every(TODAY - timedelta(days=95), 30, 4))

    calculate_averages(session, company_id=first["company"].id, now=NOW)
    calculate_averages(session, company_id=second["company"].id, now=NOW)

    assert _services(session, first["company"].id)[first["manicure"].yclients_id][1] == 21
    assert _services(session, second["company"].id)[second["manicure"].yclients_id][1] == 30
    assert {c for c, _ in _personal(session, first["company"].id)}.isdisjoint(
        {c for c, _ in _personal(session, second["company"].id)}
    )


def test_unknown_company_and_naive_time_are_refused(session: Session) -> None:
    from reactivation.storage.companies import UnknownCompany

    with pytest.raises(UnknownCompany):
        calculate_averages(session, company_id=404, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        calculate_averages(session, company_id=404, now=datetime(2026, 11, 23))


def test_hostile_service_lists_are_skipped_not_fatal(session: Session) -> None:
    salon = _salon(session)
    client = salon["regulars"][0]
    for raw in ({"id": 1}, "not a list", [None, "x", 1.5, True], []):
        session.add(
            AppointmentCache(
                company_id=client.company_id,
                client_id=client.id,
                service_ids=raw,
                appointment_datetime=NOW - timedelta(days=3),
                attendance=1,
            )
        )
    session.flush()
    calculate_averages(session, company_id=salon["company"].id, now=NOW)
    assert _services(session, salon["company"].id)[salon["manicure"].yclients_id][1] == 21


def _seeded(session: Session, company_id: int) -> None:
    plan = generate_salon(company_id=company_id, clients=250, seed=3, today=TODAY)
    load_salon(session, plan)
    session.flush()


def test_postgres_and_sqlite_give_the_same_numbers(db: Session, sqlite_db: Session) -> None:
    # Given the same synthetic salon in both databases
    _seeded(db, 41)
    _seeded(sqlite_db, 41)
    # When the job runs on each
    calculate_averages(db, company_id=41, now=NOW)
    calculate_averages(sqlite_db, company_id=41, now=NOW)
    # Then every row agrees, and there is something to agree on
    pg_services, lite_services = _services(db, 41), _services(sqlite_db, 41)
    assert pg_services == lite_services and sum(1 for row in pg_services.values() if row[-1]) >= 5
    pg_personal, lite_personal = _personal(db, 41), _personal(sqlite_db, 41)
    assert pg_personal == lite_personal and len(pg_personal) >= 50


def _attended_pairs(session: Session, company_id: int, *, limit: int) -> list[Any]:
    """Up to `limit` distinct (client, service list) pairs of the salon's attended visits."""
    return list(
        session.execute(
            select(AppointmentCache.client_id, AppointmentCache.service_ids)
            .where(AppointmentCache.company_id == company_id, AppointmentCache.attendance == 1)
            .distinct()
            .limit(limit)
        ).all()
    )


def test_incremental_run_equals_a_full_run(session: Session) -> None:
    # Given a salon whose averages were computed a week ago
    _seeded(session, 42)
    week_ago = NOW - timedelta(days=7)
    calculate_averages(session, company_id=42, now=week_ago, full=True)
    # and a week of new visits since, one of them an old visit the sync only now recorded,
    # and one visit whose attendance was marked a few days late
    clients = _attended_pairs(session, 42, limit=60)
    for i, (client_id, service_ids) in enumerate(clients):
        when = NOW - timedelta(days=i % 7, hours=3) if i else NOW - timedelta(days=200)
        session.add(
            AppointmentCache(
                company_id=42, client_id=client_id, service_ids=service_ids, appointment_datetime=when, attendance=1
            )
        )
    late = session.scalars(
        select(AppointmentCache).where(
            AppointmentCache.company_id == 42,
            AppointmentCache.attendance == 0,
            AppointmentCache.appointment_datetime >= week_ago - timedelta(days=10),
            AppointmentCache.appointment_datetime < week_ago,
        )
    ).first()
    if late is not None:
        late.attendance = 1
    session.flush()

    incremental = calculate_averages(session, company_id=42, now=NOW)
    after_incremental = (_services(session, 42), _personal(session, 42), _counts(session, 42))
    full = calculate_averages(session, company_id=42, now=NOW, full=True)

    assert incremental.mode == "incremental" and full.mode == "full"
    assert incremental.clients_recomputed is not None and 0 < incremental.clients_recomputed < 250
    assert (_services(session, 42), _personal(session, 42), _counts(session, 42)) == after_incremental
    assert full.personal_written == 0 and full.personal_deleted == 0


def _clients_with_rows(session: Session, company_id: int, *, since: datetime, until: datetime) -> set[int]:
    return set(
        session.scalars(
            select(AppointmentCache.client_id).where(
                AppointmentCache.company_id == company_id,
                AppointmentCache.appointment_datetime >= since,
                AppointmentCache.appointment_datetime < until,
            )
        ).all()
    )


def test_an_incremental_run_over_unchanged_visits_recomputes_only_the_clients_leaving_or_entering_the_window(
    session: Session,
) -> None:
    # Given a salon computed yesterday, and nothing changed since
    _seeded(session, 51)
    yesterday = NOW - timedelta(days=1)
    calculate_averages(session, company_id=51, now=yesterday, full=True)
    # When the job runs again today
    result = calculate_averages(session, company_id=51, now=NOW)
    after_incremental = (_services(session, 51), _personal(session, 51), _counts(session, 51))
    full = calculate_averages(session, company_id=51, now=NOW, full=True)
    # Then it recomputes only the clients whose oldest visit left the 12-month window overnight, and those with
    # visits today (they enter the window)
    moscow = ZoneInfo("Europe/Moscow")
    leaving = _clients_with_rows(
        session,
        51,
        since=_local_midnight(yesterday, moscow, days_before=PERSONAL_WINDOW_DAYS),
        until=_local_midnight(NOW, moscow, days_before=PERSONAL_WINDOW_DAYS),
    )
    entering = _clients_with_rows(session, 51, since=_local_midnight(NOW, moscow), until=NOW + timedelta(days=1))
    assert result.mode == "incremental" and result.clients_recomputed is not None
    assert result.clients_recomputed <= len(leaving | entering) < 250 // 4
    # and its numbers are those of a full run (the salon window moved on a day, so the medians may have too)
    assert (_services(session, 51), _personal(session, 51), _counts(session, 51)) == after_incremental
    assert full.personal_written == 0 and full.personal_deleted == 0


def _local_midnight(moment: datetime, tz: ZoneInfo, *, days_before: int = 0) -> datetime:
    """When the local day of `moment` (less `days_before` days) began."""
    return local_midnight(moment.astimezone(tz).date() - timedelta(days=days_before), tz)


def test_new_visits_recompute_only_the_clients_seen_from_the_first_new_day(session: Session) -> None:
    # Given a salon computed a week ago, with visits in the two weeks before that
    _seeded(session, 52)
    week_ago = NOW - timedelta(days=7)
    calculate_averages(session, company_id=52, now=week_ago, full=True)
    recent = _clients_with_rows(session, 52, since=week_ago - timedelta(days=14), until=NOW)
    # and new visits of a few clients in the last two days
    rows = _attended_pairs(session, 52, limit=12)
    first_new = NOW - timedelta(days=2)
    for i, (client_id, service_ids) in enumerate(rows):
        session.add(
            AppointmentCache(
                company_id=52,
                client_id=client_id,
                service_ids=service_ids,
                appointment_datetime=first_new + timedelta(hours=3 * i),
                attendance=1,
            )
        )
    session.flush()

    incremental = calculate_averages(session, company_id=52, now=NOW)
    after_incremental = (_services(session, 52), _personal(session, 52), _counts(session, 52))
    full = calculate_averages(session, company_id=52, now=NOW, full=True)

    # Then only the clients with rows from that day on were recomputed, far fewer than were seen in the last weeks
    moscow = ZoneInfo("Europe/Moscow")
    from_first_day = _clients_with_rows(
        session, 52, since=_local_midnight(first_new, moscow), until=NOW + timedelta(days=1)
    )
    assert incremental.clients_recomputed is not None
    assert len({client_id for client_id, _ in rows}) <= incremental.clients_recomputed <= len(from_first_day) + 5
    assert incremental.clients_recomputed < len(recent)
    # and the numbers are those of a full run
    assert (_services(session, 52), _personal(session, 52), _counts(session, 52)) == after_incremental
    assert full.personal_written == 0 and full.personal_deleted == 0


def test_a_recent_visit_deleted_after_the_last_run_leaves_the_salon_medians(session: Session) -> None:
    # Given a salon computed yesterday
    _seeded(session, 44)
    calculate_averages(session, company_id=44, now=NOW - timedelta(days=1), full=True)
    # when the sync then removes a few days' attended visits (a correction in the booking system)
    gone = session.scalars(
        select(AppointmentCache.id).where(
            AppointmentCache.company_id == 44,
            AppointmentCache.attendance == 1,
            AppointmentCache.appointment_datetime >= NOW - timedelta(days=5),
        )
    ).all()
    session.execute(delete(AppointmentCache).where(AppointmentCache.id.in_(gone)))
    session.flush()
    # Then the incremental run's salon medians are those of a full run: the recent days are recounted
    incremental = calculate_averages(session, company_id=44, now=NOW)
    after_incremental = (_services(session, 44), _counts(session, 44))
    calculate_averages(session, company_id=44, now=NOW, full=True)
    assert incremental.mode == "incremental" and len(gone) >= 3
    assert (_services(session, 44), _counts(session, 44)) == after_incremental


def _counts(session: Session, company_id: int) -> dict[tuple[int, date, int], int]:
    """The salon interval counts kept between runs (PostgreSQL only: SQLite recounts everything each time)."""
    c = ServiceIntervalCount
    rows = session.execute(
        select(c.service_id, c.ended_on, c.interval_days, c.intervals).where(c.company_id == company_id)
    )
    return {(service, ended, days): intervals for service, ended, days, intervals in rows}


def test_the_salon_counts_hold_exactly_the_salon_window(db: Session) -> None:
    _seeded(db, 45)
    calculate_averages(db, company_id=45, now=NOW)
    counts = _counts(db, 45)
    start = TODAY - timedelta(days=SERVICE_WINDOW_DAYS)
    assert counts and all(ended - timedelta(days=days) >= start and ended <= TODAY for _, ended, days in counts)
    by_service: dict[int, Counter[int]] = {}
    for (service_id, _, days), intervals in counts.items():
        by_service.setdefault(service_id, Counter())[days] += intervals
    # and the stored salon medians are their statistics
    for service_id, row in _services(db, 45).items():
        stats = service_stats_from_counts(by_service.get(service_id, Counter()))
        assert stats is not None and row[1:7] == (
            stats.median_days,
            stats.avg_days,
            stats.min_days,
            stats.max_days,
            stats.stddev_days,
            stats.sample_size,
        )


def test_workers_below_one_are_refused(db: Session) -> None:
    _seeded(db, 46)
    with pytest.raises(ValueError, match="workers"):
        calculate_averages(db, company_id=46, now=NOW, workers=0)


def test_shares_on_their_own_connections_give_the_one_connection_numbers(committed_engine: Engine) -> None:
    # Given two salons, committed (each share reads on its own connection), both computed on one connection
    with Session(committed_engine) as session:
        _seeded(session, 47)
        _seeded(session, 48)
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
    _seeded(db, 49)
    _seeded(db, 50)
    # When the job cuts the first one's clients into shares
    shares = shares_between(_pg_share_bounds(db, company_id=49, workers=workers))
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
        return _services(session, company_id), _personal(session, company_id), _counts(session, company_id)


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


def test_state_decides_between_full_and_incremental(session: Session) -> None:
    _seeded(session, 43)
    assert calculate_averages(session, company_id=43, now=NOW).mode == "full"
    assert calculate_averages(session, company_id=43, now=NOW + timedelta(days=7)).mode == "incremental"
    # going back in time, or a month after the last full run, recomputes everything
    assert calculate_averages(session, company_id=43, now=NOW + timedelta(days=1)).mode == "full"
    assert calculate_averages(session, company_id=43, now=NOW + timedelta(days=30)).mode == "full"
    state = session.get(AveragesState, 43)
    assert state is not None and state.mode == "full"


def test_windows_are_six_and_twelve_months() -> None:
    assert SERVICE_WINDOW_DAYS == 183 and PERSONAL_WINDOW_DAYS == 365


def test_intervals_are_counted_in_the_companys_local_days(session: Session) -> None:
    # Given a Vladivostok salon (UTC+10) whose client comes every 20 local days, late in the local evening one
    # time and just after local midnight the next: in UTC the gaps are 19 and 21 days
    company = make_company(session, timezone="Asia/Vladivostok")
    haircut = make_service(session, company.id, "Стрижка")
    client = make_client(session, company.id, last_visit=TODAY - timedelta(days=3), services=[haircut])
    first = TODAY - timedelta(days=83)
    for i in range(5):
        local = datetime.combine(first + timedelta(days=20 * i), datetime.min.time()) + timedelta(
            hours=23 if i % 2 else 1
        )
        moment = local.replace(tzinfo=ZoneInfo("Asia/Vladivostok")).astimezone(UTC)
        session.add(
            AppointmentCache(
                company_id=company.id,
                client_id=client.id,
                service_ids=[haircut.yclients_id],
                appointment_datetime=moment,
                attendance=1,
            )
        )
    session.flush()
    zone_before = _session_time_zone(session)

    calculate_averages(session, company_id=company.id, now=NOW)

    # Then the rhythm is 20 days exactly, and the session's own time zone is as it was
    assert _personal(session, company.id)[(client.id, haircut.yclients_id)] == (20, 5, Decimal("1.00"))
    assert _services(session, company.id)[haircut.yclients_id][1:6] == (20, 20, 20, 20, Decimal("0.00"))
    assert _session_time_zone(session) == zone_before


def _session_time_zone(session: Session) -> str | None:
    if session.get_bind().dialect.name != "postgresql":
        return None
    return str(session.execute(text("SELECT current_setting('TimeZone')")).scalar_one())
