"""A run of the averages job as data: when it may be incremental, where its changes begin, the days it reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from reactivation.core.instants import local_midnight
from reactivation.storage.models import AveragesState
from reactivation.timing.averages.plan import FULL_EVERY_DAYS, first_changed, is_incremental, late_from, window
from tests.timing.averages.tables import NOW, TODAY

MOSCOW = ZoneInfo("Europe/Moscow")


def _state(*, calculated: datetime, full: datetime) -> AveragesState:
    return AveragesState(company_id=1, calculated_at=calculated, full_calculated_at=full, max_appointment_id=0)


def test_a_run_is_incremental_only_after_a_recent_full_run_and_never_backwards() -> None:
    week_ago = NOW - timedelta(days=7)
    recent = _state(calculated=week_ago, full=week_ago)
    assert is_incremental(recent, now=NOW, full=None) and is_incremental(recent, now=NOW, full=False)
    # no state, asked for a full run, or time went backwards
    assert not is_incremental(None, now=NOW, full=False)
    assert not is_incremental(recent, now=NOW, full=True)
    assert not is_incremental(recent, now=week_ago - timedelta(seconds=1), full=None)
    # the last full run is FULL_EVERY_DAYS old: a full run, unless an incremental one is asked for
    stale = _state(calculated=week_ago, full=NOW - timedelta(days=FULL_EVERY_DAYS))
    assert not is_incremental(stale, now=NOW, full=None) and is_incremental(stale, now=NOW, full=False)


def test_naive_state_times_are_read_as_utc() -> None:
    # SQLite gives the stored UTC times back naive
    state = _state(calculated=datetime(2026, 11, 16, 9), full=datetime(2026, 11, 16, 9))
    assert is_incremental(state, now=NOW, full=None)
    assert late_from(datetime(2026, 11, 16, 22), MOSCOW) == date(2026, 11, 3)


def test_changes_begin_at_the_first_changed_day_or_the_day_after_the_last_window() -> None:
    last_run = datetime(2026, 11, 16, 9, tzinfo=UTC)
    assert first_changed(last_run, changed=None, tz=MOSCOW) == date(2026, 11, 17)
    assert first_changed(last_run, changed=date(2026, 11, 10), tz=MOSCOW) == date(2026, 11, 10)
    assert first_changed(last_run, changed=date(2026, 11, 20), tz=MOSCOW) == date(2026, 11, 17)


def test_the_windows_are_the_companys_local_days() -> None:
    # 22:00 UTC is already the next day in Moscow (UTC+3)
    late = window(datetime(2026, 11, 22, 22, tzinfo=UTC), MOSCOW)
    assert late.today == TODAY
    assert late.end == local_midnight(TODAY + timedelta(days=1), MOSCOW)
    assert late.personal_start == local_midnight(TODAY - timedelta(days=365), MOSCOW)
    assert late.service_start_day == TODAY - timedelta(days=183)
