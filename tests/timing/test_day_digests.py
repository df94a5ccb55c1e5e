"""Day digests: which recent days of appointments changed since the averages job last read them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from reactivation.storage.models import AppointmentCache
from reactivation.timing.day_digests import (
    DayDigest,
    current_digests,
    first_changed_day,
    row_digest,
    store_digests,
    stored_digests,
)
from tests.factories import make_client, make_company

TZ = ZoneInfo("Asia/Yekaterinburg")
DAY = date(2026, 11, 20)


def test_the_first_changed_day_is_the_earliest_difference_on_or_after_since() -> None:
    same = {DAY: DayDigest(3, 7), DAY + timedelta(days=1): DayDigest(1, 5)}
    assert first_changed_day(same, dict(same), since=DAY) is None
    # a row changed (same count, other digest), a day emptied, a day newly booked
    assert first_changed_day(same, {**same, DAY + timedelta(days=1): DayDigest(1, 6)}, since=DAY) == DAY + timedelta(
        days=1
    )
    assert first_changed_day(same, {DAY + timedelta(days=1): DayDigest(1, 5)}, since=DAY) == DAY
    assert first_changed_day(same, {**same, DAY + timedelta(days=5): DayDigest(1, 1)}, since=DAY) == DAY + timedelta(
        days=5
    )
    # a difference before the compared range is not looked at
    assert first_changed_day({DAY - timedelta(days=1): DayDigest(1, 1), **same}, same, since=DAY) is None


def test_a_row_digest_changes_with_every_field() -> None:
    moment = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    base = row_digest(1, 10, 1, moment, [5])
    assert base == row_digest(1, 10, 1, moment.replace(tzinfo=None), [5])
    others = {
        row_digest(2, 10, 1, moment, [5]),
        row_digest(1, 11, 1, moment, [5]),
        row_digest(1, 10, 0, moment, [5]),
        row_digest(1, 10, 1, moment + timedelta(minutes=1), [5]),
        row_digest(1, 10, 1, moment, [5, 6]),
    }
    assert base not in others and len(others) == 5
    assert -(2**63) <= base < 2**63


@pytest.fixture(params=["postgres", "sqlite"])
def session(request: pytest.FixtureRequest) -> Session:
    return request.getfixturevalue("db" if request.param == "postgres" else "sqlite_db")  # type: ignore[no-any-return]


def _visit(session: Session, company_id: int, client_id: int, local: datetime, attendance: int) -> AppointmentCache:
    row = AppointmentCache(
        company_id=company_id,
        client_id=client_id,
        service_ids=[5],
        appointment_datetime=local.replace(tzinfo=TZ).astimezone(UTC),
        attendance=attendance,
    )
    session.add(row)
    session.flush()
    return row


def test_digests_see_marked_attendance_and_deleted_rows_on_their_local_day(session: Session) -> None:
    # Given two salons, the first with a visit early in the morning (still the day before in UTC)
    for company_id in (61, 62):
        make_company(session, company_id, timezone=TZ.key)
    client = make_client(session, 61, last_visit=None)
    other = make_client(session, 62, last_visit=None)
    marked = _visit(session, 61, client.id, datetime(2026, 11, 20, 2, 30), attendance=0)
    gone = _visit(session, 61, client.id, datetime(2026, 11, 21, 10, 0), attendance=1)
    _visit(session, 61, client.id, datetime(2026, 11, 22, 10, 0), attendance=1)
    _visit(session, 62, other.id, datetime(2026, 11, 20, 12, 0), attendance=1)
    before = current_digests(session, company_id=61, since=DAY, tz=TZ)
    assert [(day, digest.rows) for day, digest in sorted(before.items())] == [
        (date(2026, 11, 20), 1),
        (date(2026, 11, 21), 1),
        (date(2026, 11, 22), 1),
    ]
    store_digests(session, company_id=61, digests=before, since=DAY + timedelta(days=1))
    assert sorted(stored_digests(session, company_id=61)) == [date(2026, 11, 21), date(2026, 11, 22)]
    assert stored_digests(session, company_id=62) == {}

    # When the first visit's attendance is marked and the second one is deleted
    marked.attendance = 1
    session.execute(delete(AppointmentCache).where(AppointmentCache.id == gone.id))
    session.flush()
    after = current_digests(session, company_id=61, since=DAY, tz=TZ)

    # Then exactly those two days differ, and the first of them is where the changes begin
    assert {day for day in before if before[day] != after.get(day)} == {date(2026, 11, 20), date(2026, 11, 21)}
    assert first_changed_day(before, after, since=DAY) == DAY
    assert after[date(2026, 11, 22)] == before[date(2026, 11, 22)]
    # and the other salon's rows never entered the digests
    rows = session.scalars(select(AppointmentCache.id).where(AppointmentCache.company_id == 61)).all()
    assert sum(digest.rows for digest in after.values()) == len(rows)
