"""The averages job: salon medians and personal rhythms, on PostgreSQL and SQLite alike, full and incremental."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from reactivation.core.instants import local_midnight
from reactivation.storage.models import AppointmentCache, AveragesState
from reactivation.timing.averages.job import calculate_averages
from reactivation.timing.averages.stats import PERSONAL_WINDOW_DAYS
from tests.factories import every, make_client, make_company, make_service, make_visits
from tests.timing.averages.tables import NOW, TODAY, interval_counts, personal_rows, seeded_salon, service_rows


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


@pytest.fixture(params=["postgres", "sqlite"])
def session(request: pytest.FixtureRequest) -> Session:
    return request.getfixturevalue("db" if request.param == "postgres" else "sqlite_db")  # type: ignore[no-any-return]


def test_salon_median_and_personal_rhythms(session: Session) -> None:
    salon = _salon(session)
    company_id = salon["company"].id

    result = calculate_averages(session, company_id=company_id, now=NOW)

    services = service_rows(session, company_id)
    manicure = services[salon["manicure"].yclients_id]
    # 12 clients × 3 intervals of 21 days
    assert manicure == ("Маникюр с покрытием гель-лак", 21, 21, 21, 21, Decimal("0.00"), 36, True)
    pedicure = services[salon["pedicure"].yclients_id]
    # outlier 24, 24, 24, 100 (the 100 within 6 months) and the newcomer's 30: too few, inactive
    assert pedicure[1] == 24 and pedicure[6:] == (5, False)
    personal = personal_rows(session, company_id)
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
    before = (service_rows(session, company_id), personal_rows(session, company_id))

    again = calculate_averages(session, company_id=company_id, now=NOW, full=True)

    assert (service_rows(session, company_id), personal_rows(session, company_id)) == before
    assert again.personal_written == 0 and again.personal_deleted == 0


def test_rows_that_no_longer_qualify_are_retired(session: Session) -> None:
    salon = _salon(session)
    company_id = salon["company"].id
    calculate_averages(session, company_id=company_id, now=NOW)
    # Given a year later, when every visit has left the windows
    later = NOW + timedelta(days=PERSONAL_WINDOW_DAYS + 80)

    result = calculate_averages(session, company_id=company_id, now=later)

    services = service_rows(session, company_id)
    assert all(row[-1] is False and row[-2] == 0 for row in services.values())
    assert personal_rows(session, company_id) == {}
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

    assert service_rows(session, first["company"].id)[first["manicure"].yclients_id][1] == 21
    assert service_rows(session, second["company"].id)[second["manicure"].yclients_id][1] == 30
    assert {c for c, _ in personal_rows(session, first["company"].id)}.isdisjoint(
        {c for c, _ in personal_rows(session, second["company"].id)}
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
    assert service_rows(session, salon["company"].id)[salon["manicure"].yclients_id][1] == 21


def test_postgres_and_sqlite_give_the_same_numbers(db: Session, sqlite_db: Session) -> None:
    # Given the same synthetic salon in both databases
    seeded_salon(db, 41)
    seeded_salon(sqlite_db, 41)
    # When the job runs on each
    calculate_averages(db, company_id=41, now=NOW)
    calculate_averages(sqlite_db, company_id=41, now=NOW)
    # Then every row agrees, and there is something to agree on
    pg_services, lite_services = service_rows(db, 41), service_rows(sqlite_db, 41)
    assert pg_services == lite_services and sum(1 for row in pg_services.values() if row[-1]) >= 5
    pg_personal, lite_personal = personal_rows(db, 41), personal_rows(sqlite_db, 41)
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
    seeded_salon(session, 42)
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
    after_incremental = (service_rows(session, 42), personal_rows(session, 42), interval_counts(session, 42))
    full = calculate_averages(session, company_id=42, now=NOW, full=True)

    assert incremental.mode == "incremental" and full.mode == "full"
    assert incremental.clients_recomputed is not None and 0 < incremental.clients_recomputed < 250
    assert (service_rows(session, 42), personal_rows(session, 42), interval_counts(session, 42)) == after_incremental
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
    seeded_salon(session, 51)
    yesterday = NOW - timedelta(days=1)
    calculate_averages(session, company_id=51, now=yesterday, full=True)
    # When the job runs again today
    result = calculate_averages(session, company_id=51, now=NOW)
    after_incremental = (service_rows(session, 51), personal_rows(session, 51), interval_counts(session, 51))
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
    assert (service_rows(session, 51), personal_rows(session, 51), interval_counts(session, 51)) == after_incremental
    assert full.personal_written == 0 and full.personal_deleted == 0


def _local_midnight(moment: datetime, tz: ZoneInfo, *, days_before: int = 0) -> datetime:
    """When the local day of `moment` (less `days_before` days) began."""
    return local_midnight(moment.astimezone(tz).date() - timedelta(days=days_before), tz)


def test_new_visits_recompute_only_the_clients_seen_from_the_first_new_day(session: Session) -> None:
    # Given a salon computed a week ago, with visits in the two weeks before that
    seeded_salon(session, 52)
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
    after_incremental = (service_rows(session, 52), personal_rows(session, 52), interval_counts(session, 52))
    full = calculate_averages(session, company_id=52, now=NOW, full=True)

    # Then only the clients with rows from the first day the last run did not see on were recomputed (the day
    # after that run, as the new visits came later), and those whose oldest visit left the 12-month window during
    # the week: far fewer than were seen in the last weeks
    moscow = ZoneInfo("Europe/Moscow")
    from_first_day = _clients_with_rows(
        session, 52, since=_local_midnight(week_ago, moscow, days_before=-1), until=NOW + timedelta(days=1)
    )
    leaving = _clients_with_rows(
        session,
        52,
        since=_local_midnight(week_ago, moscow, days_before=PERSONAL_WINDOW_DAYS),
        until=_local_midnight(NOW, moscow, days_before=PERSONAL_WINDOW_DAYS),
    )
    assert incremental.clients_recomputed is not None
    assert len({client_id for client_id, _ in rows}) <= incremental.clients_recomputed <= len(from_first_day | leaving)
    assert incremental.clients_recomputed < len(recent)
    # and the numbers are those of a full run
    assert (service_rows(session, 52), personal_rows(session, 52), interval_counts(session, 52)) == after_incremental
    assert full.personal_written == 0 and full.personal_deleted == 0


def test_a_recent_visit_deleted_after_the_last_run_leaves_the_salon_medians(session: Session) -> None:
    # Given a salon computed yesterday
    seeded_salon(session, 44)
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
    after_incremental = (service_rows(session, 44), interval_counts(session, 44))
    calculate_averages(session, company_id=44, now=NOW, full=True)
    assert incremental.mode == "incremental" and len(gone) >= 3
    assert (service_rows(session, 44), interval_counts(session, 44)) == after_incremental


def test_workers_below_one_are_refused(db: Session) -> None:
    seeded_salon(db, 46)
    with pytest.raises(ValueError, match="workers"):
        calculate_averages(db, company_id=46, now=NOW, workers=0)


def test_state_decides_between_full_and_incremental(session: Session) -> None:
    seeded_salon(session, 43)
    assert calculate_averages(session, company_id=43, now=NOW).mode == "full"
    assert calculate_averages(session, company_id=43, now=NOW + timedelta(days=7)).mode == "incremental"
    # going back in time, or a month after the last full run, recomputes everything
    assert calculate_averages(session, company_id=43, now=NOW + timedelta(days=1)).mode == "full"
    assert calculate_averages(session, company_id=43, now=NOW + timedelta(days=30)).mode == "full"
    state = session.get(AveragesState, 43)
    assert state is not None and state.mode == "full"


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
    assert personal_rows(session, company.id)[(client.id, haircut.yclients_id)] == (20, 5, Decimal("1.00"))
    assert service_rows(session, company.id)[haircut.yclients_id][1:6] == (20, 20, 20, 20, Decimal("0.00"))
    assert _session_time_zone(session) == zone_before


def _session_time_zone(session: Session) -> str | None:
    if session.get_bind().dialect.name != "postgresql":
        return None
    return str(session.execute(text("SELECT current_setting('TimeZone')")).scalar_one())


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [
        # n = 4: every quartile falls between two ranks (Q1 17.5, median 25, Q3 35): consistency 1 − 17.5/50
        ([30, 10, 50, 20], (25, 5, Decimal("0.65"))),
        # n = 5: the median is a rank of its own, the quartiles are ranks 2 and 4 (Q1 20, Q3 40)
        ([40, 20, 30, 10, 90], (30, 6, Decimal("0.67"))),
        # n = 3 with ties: Q1 halfway between 20 and 21, Q3 21: consistency 1 − 0.5/42, to two decimals
        ([21, 21, 20], (21, 4, Decimal("0.99"))),
    ],
)
def test_personal_quartiles_interpolate_between_ranks_as_percentile_cont(
    session: Session, gaps: list[int], expected: tuple[int, int, Decimal]
) -> None:
    # Given a client whose visits to one service lie these intervals apart (in this order)
    company = make_company(session)
    service = make_service(session, company.id, "Педикюр")
    days = [TODAY - timedelta(days=sum(gaps[i:]) + 1) for i in range(len(gaps))] + [TODAY - timedelta(days=1)]
    client = make_client(session, company.id, last_visit=days[-1], services=[service])
    make_visits(session, client, service, days)
    # When the job runs
    calculate_averages(session, company_id=company.id, now=NOW)
    # Then the personal median and consistency are percentile_cont's quartiles of the sorted intervals
    assert personal_rows(session, company.id)[(client.id, service.yclients_id)] == expected
