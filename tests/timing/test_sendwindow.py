"""The send window: local wall-clock hours in the salon's zone, public holidays of its country, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from reactivation.storage.companies import CompanyConfig
from reactivation.storage.company_settings import CompanyConfigError, CompanySettings
from reactivation.timing.holidays import UnknownCountry, holiday_name
from reactivation.timing.sendwindow import Closed, SendWindow, closed_reason, is_send_allowed, next_send_time

MOSCOW = ZoneInfo("Europe/Moscow")
VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")
KALININGRAD = ZoneInfo("Europe/Kaliningrad")
YEKATERINBURG = ZoneInfo("Asia/Yekaterinburg")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def window(
    tz: ZoneInfo = MOSCOW, start: str = "09:00", end: str = "20:00", country: str = "RU", skip_holidays: bool = True
) -> SendWindow:
    return SendWindow(
        tz=tz,
        start=time.fromisoformat(start),
        end=time.fromisoformat(end),
        country=country,
        skip_holidays=skip_holidays,
    )


def at(tz: tzinfo, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


# --- the daily window -------------------------------------------------------------------------------------------


def test_inside_the_window_sends_now() -> None:
    # given a Moscow salon open 09:00-20:00 on an ordinary Tuesday
    w = window()
    now = at(MOSCOW, "2025-04-15 09:00")
    # when / then: the opening minute itself is inside, and the next send time is now
    assert is_send_allowed(now, w)
    assert next_send_time(now, w) == now
    assert is_send_allowed(at(MOSCOW, "2025-04-15 19:59:59"), w)


def test_before_the_window_waits_for_the_opening_the_same_day() -> None:
    w = window()
    now = at(MOSCOW, "2025-04-15 08:59:30")
    assert closed_reason(now, w) is Closed.BEFORE_WINDOW
    assert next_send_time(now, w) == at(MOSCOW, "2025-04-15 09:00")


def test_the_closing_minute_is_outside_and_waits_for_tomorrow() -> None:
    w = window()
    now = at(MOSCOW, "2025-04-15 20:00")
    assert closed_reason(now, w) is Closed.AFTER_WINDOW
    assert next_send_time(now, w) == at(MOSCOW, "2025-04-16 09:00")


def test_weekends_are_ordinary_days() -> None:
    # salons work at weekends; only holidays are skipped
    w = window()
    assert is_send_allowed(at(MOSCOW, "2025-04-19 12:00"), w)  # Saturday
    assert is_send_allowed(at(MOSCOW, "2025-04-20 12:00"), w)  # Sunday
    assert next_send_time(at(MOSCOW, "2025-04-18 21:00"), w) == at(MOSCOW, "2025-04-19 09:00")


def test_the_result_is_in_utc_whatever_zone_now_is_given_in() -> None:
    w = window(VLADIVOSTOK)
    result = next_send_time(at(MOSCOW, "2025-04-15 15:00"), w)  # 22:00 in Vladivostok
    assert result.tzinfo is UTC
    assert result == at(VLADIVOSTOK, "2025-04-16 09:00")
    assert result.astimezone(VLADIVOSTOK).isoformat() == "2025-04-16T09:00:00+10:00"


# --- time zones ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "utc_now", "allowed", "expected_next"),
    [
        # Vladivostok is UTC+10: 00:30 UTC is 10:30 there, 10:30 UTC is 20:30 (closed until 09:00 = 23:00 UTC)
        (VLADIVOSTOK, "2025-04-15 00:30", True, "2025-04-15 00:30"),
        (VLADIVOSTOK, "2025-04-15 10:30", False, "2025-04-15 23:00"),
        # Kaliningrad is UTC+2: 06:30 UTC is 08:30 there
        (KALININGRAD, "2025-04-15 06:30", False, "2025-04-15 07:00"),
        (KALININGRAD, "2025-04-15 17:59", True, "2025-04-15 17:59"),
        # Yekaterinburg is UTC+5: 15:00 UTC is 20:00 there
        (YEKATERINBURG, "2025-04-15 15:00", False, "2025-04-16 04:00"),
        (YEKATERINBURG, "2025-04-15 04:00", True, "2025-04-15 04:00"),
    ],
)
def test_the_window_is_the_salons_local_wall_clock(
    tz: ZoneInfo, utc_now: str, allowed: bool, expected_next: str
) -> None:
    w = window(tz)
    now = at(UTC, utc_now)
    assert is_send_allowed(now, w) is allowed
    assert next_send_time(now, w) == at(UTC, expected_next)


def test_a_holiday_is_judged_by_the_salons_local_date() -> None:
    # given 20:00 UTC on 7 March 2025: already 8 March (a holiday) in Yekaterinburg, still 7 March in Kaliningrad
    now = at(UTC, "2025-03-07 20:00")
    # then Yekaterinburg is closed for the holiday and opens on 9 March
    assert closed_reason(now, window(YEKATERINBURG)) is Closed.HOLIDAY
    assert next_send_time(now, window(YEKATERINBURG)) == at(YEKATERINBURG, "2025-03-09 09:00")
    # and Kaliningrad (22:00 on 7 March) is closed for the evening and skips 8 March too
    assert closed_reason(now, window(KALININGRAD)) is Closed.AFTER_WINDOW
    assert next_send_time(now, window(KALININGRAD)) == at(KALININGRAD, "2025-03-09 09:00")


# --- holidays -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        *(f"2025-01-0{n}" for n in range(1, 9)),
        "2025-02-23",
        "2025-03-08",
        "2025-05-01",
        "2025-05-09",
        "2025-06-12",
        "2025-11-04",
        "2026-01-01",
        "2026-03-08",
        "2026-11-04",
    ],
)
def test_russian_public_holidays_are_skipped(day: str) -> None:
    w = window(MOSCOW)
    noon = at(MOSCOW, f"{day} 12:00")
    assert holiday_name(date.fromisoformat(day), "RU") is not None
    assert closed_reason(noon, w) is Closed.HOLIDAY
    later = next_send_time(noon, w).astimezone(MOSCOW)
    assert later.date() > noon.date()
    assert later.time() == time(9, 0)
    assert holiday_name(later.date(), "RU") is None


def test_the_new_year_holidays_wait_until_the_ninth_of_january() -> None:
    # given the evening of 31 December 2024 (itself a day off that year)
    now = at(MOSCOW, "2024-12-31 15:00")
    # then nothing goes out until 9 January 09:00
    assert next_send_time(now, window(MOSCOW)) == at(MOSCOW, "2025-01-09 09:00")


def test_holidays_are_sent_on_when_the_salon_turns_skipping_off() -> None:
    w = window(MOSCOW, skip_holidays=False)
    assert is_send_allowed(at(MOSCOW, "2025-03-08 12:00"), w)
    assert next_send_time(at(MOSCOW, "2025-03-07 21:00"), w) == at(MOSCOW, "2025-03-08 09:00")


def test_ordinary_days_are_not_holidays() -> None:
    for day in ("2025-01-09", "2025-02-24", "2025-03-10", "2025-06-11", "2025-11-05"):
        assert holiday_name(date.fromisoformat(day), "RU") is None


@pytest.mark.parametrize(
    ("tz", "country", "holiday", "ordinary"),
    [
        (ZoneInfo("Asia/Almaty"), "KZ", "2025-03-21", "2025-03-27"),  # Nauryz
        (NEW_YORK, "US", "2025-07-04", "2025-07-08"),
        (BERLIN, "de", "2025-10-03", "2025-10-07"),  # lower-case codes are accepted
    ],
)
def test_other_countries_use_their_own_calendar(tz: ZoneInfo, country: str, holiday: str, ordinary: str) -> None:
    w = window(tz, country=country)
    assert closed_reason(at(tz, f"{holiday} 12:00"), w) is Closed.HOLIDAY
    assert is_send_allowed(at(tz, f"{ordinary} 12:00"), w)
    # and Russia's Defender of the Fatherland Day means nothing there
    assert holiday_name(date(2025, 2, 23), country) is None


def test_an_unknown_country_is_a_clear_error() -> None:
    with pytest.raises(UnknownCountry, match="'XX'"):
        window(country="XX")
    with pytest.raises(UnknownCountry):
        holiday_name(date(2025, 1, 1), "")
    # without holiday skipping the country is not needed, so a salon is not blocked by it
    assert is_send_allowed(at(MOSCOW, "2025-01-01 12:00"), window(country="XX", skip_holidays=False))


def test_a_company_with_an_unknown_country_names_the_company() -> None:
    company = CompanyConfig(id=962302, name="Салон", tz=MOSCOW, country="XX", enabled=True, settings=CompanySettings())
    with pytest.raises(CompanyConfigError, match="company 962302: unknown country code 'XX'"):
        SendWindow.for_company(company)


def test_a_company_window_comes_from_its_settings() -> None:
    company = CompanyConfig(
        id=1,
        name="Барбершоп",
        tz=VLADIVOSTOK,
        country="RU",
        enabled=True,
        settings=CompanySettings(send_window_start=time(11, 0), send_window_end=time(19, 30), skip_holidays=False),
    )
    w = SendWindow.for_company(company)
    assert (w.tz, w.start, w.end, w.country, w.skip_holidays) == (VLADIVOSTOK, time(11), time(19, 30), "RU", False)
    assert next_send_time(at(VLADIVOSTOK, "2025-03-08 19:30"), w) == at(VLADIVOSTOK, "2025-03-09 11:00")


# --- the edges of the day -----------------------------------------------------------------------------------------


def test_a_window_ending_at_23_59_runs_to_midnight() -> None:
    w = window(start="10:00", end="23:59")
    assert is_send_allowed(at(MOSCOW, "2025-04-15 23:59:30"), w)
    assert is_send_allowed(at(MOSCOW, "2025-04-15 23:59:59.999999"), w)
    assert closed_reason(at(MOSCOW, "2025-04-16 00:00"), w) is Closed.BEFORE_WINDOW
    assert next_send_time(at(MOSCOW, "2025-04-16 00:00"), w) == at(MOSCOW, "2025-04-16 10:00")


def test_an_all_day_window_opens_at_midnight_after_a_holiday() -> None:
    w = window(start="00:00", end="23:59")
    # 13 June 2025 is itself a day off (moved from 8 March), so the window opens on the 14th
    assert holiday_name(date(2025, 6, 13), "RU") is not None
    assert next_send_time(at(MOSCOW, "2025-06-12 15:00"), w) == at(MOSCOW, "2025-06-14 00:00")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_send_allowed(datetime(2025, 4, 15, 12, 0), window())
    with pytest.raises(ValueError, match="timezone-aware"):
        next_send_time(datetime(2025, 4, 15, 12, 0), window())


def test_a_window_must_be_a_window() -> None:
    with pytest.raises(ValueError, match="must be after"):
        window(start="20:00", end="09:00")
    with pytest.raises(ValueError, match="must be after"):
        window(start="09:00", end="09:00")


# --- daylight saving time -----------------------------------------------------------------------------------------


def test_a_start_time_skipped_by_spring_forward_opens_at_the_transition() -> None:
    # given New York, where 9 March 2025 jumps from 02:00 EST to 03:00 EDT, and a window opening at 02:30
    w = window(NEW_YORK, start="02:30", end="20:00", country="US")
    # when a message is ready at midnight
    result = next_send_time(at(NEW_YORK, "2025-03-09 00:00"), w)
    # then it goes at the transition, 03:00 EDT (07:00 UTC), not an hour late at 03:30
    assert result == datetime(2025, 3, 9, 7, 0, tzinfo=UTC)
    assert result.astimezone(NEW_YORK).isoformat() == "2025-03-09T03:00:00-04:00"
    assert not is_send_allowed(result - timedelta(seconds=1), w)


def test_a_start_time_in_the_repeated_hour_opens_at_its_first_reading() -> None:
    # given New York, where 2 November 2025 repeats 01:00-02:00 (EDT, then EST)
    w = window(NEW_YORK, start="01:30", end="20:00", country="US")
    result = next_send_time(at(NEW_YORK, "2025-11-02 00:00"), w)
    # then the window opens at the first 01:30 (EDT, 05:30 UTC)
    assert result == datetime(2025, 11, 2, 5, 30, tzinfo=UTC)
    # and once open the window stays open: the second 01:15 (EST, 06:15 UTC) does not close it again
    assert is_send_allowed(datetime(2025, 11, 2, 6, 15, tzinfo=UTC), w)
    assert not is_send_allowed(datetime(2025, 11, 2, 5, 29, tzinfo=UTC), w)


def test_an_end_time_in_the_repeated_hour_closes_at_its_first_reading() -> None:
    w = window(NEW_YORK, start="00:30", end="01:30", country="US")
    assert is_send_allowed(datetime(2025, 11, 2, 5, 29, tzinfo=UTC), w)  # 01:29 EDT
    assert closed_reason(datetime(2025, 11, 2, 6, 15, tzinfo=UTC), w) is Closed.AFTER_WINDOW  # 01:15 EST
    assert next_send_time(datetime(2025, 11, 2, 6, 15, tzinfo=UTC), w) == at(NEW_YORK, "2025-11-03 00:30")


def test_the_window_follows_the_wall_clock_across_a_dst_change() -> None:
    # Berlin moves from UTC+1 to UTC+2 on 30 March 2025: 09:00 local is 08:00 UTC the day before, 07:00 UTC after
    w = window(BERLIN, country="DE")
    assert next_send_time(at(UTC, "2025-03-29 05:00"), w) == datetime(2025, 3, 29, 8, 0, tzinfo=UTC)
    assert next_send_time(at(UTC, "2025-03-30 05:00"), w) == datetime(2025, 3, 30, 7, 0, tzinfo=UTC)


# --- frozen time --------------------------------------------------------------------------------------------------


def test_with_the_clock_frozen_on_victory_day() -> None:
    # given the machine's clock frozen at 10:00 Moscow time on 9 May 2025
    with time_machine.travel(datetime(2025, 5, 9, 7, 0, tzinfo=UTC), tick=False):
        now = datetime.now(UTC)
        # then nothing goes out today, and the next window is 10 May 09:00
        assert closed_reason(now, window()) is Closed.HOLIDAY
        assert next_send_time(now, window()) == at(MOSCOW, "2025-05-10 09:00")
        # while a salon in Vladivostok, where it is already 17:00 on 9 May, waits just as long in local terms
        assert next_send_time(now, window(VLADIVOSTOK)) == at(VLADIVOSTOK, "2025-05-10 09:00")


# --- properties ---------------------------------------------------------------------------------------------------

ZONES = [MOSCOW, VLADIVOSTOK, KALININGRAD, YEKATERINBURG, NEW_YORK, BERLIN, ZoneInfo("Australia/Lord_Howe")]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31)),
    tz=st.sampled_from(ZONES),
    start_minutes=st.integers(min_value=0, max_value=22 * 60),
    length_minutes=st.integers(min_value=1, max_value=24 * 60),
    skip_holidays=st.booleans(),
)
def test_next_send_time_is_the_first_allowed_instant(
    moment: datetime, tz: ZoneInfo, start_minutes: int, length_minutes: int, skip_holidays: bool
) -> None:
    end_minutes = min(start_minutes + length_minutes, 23 * 60 + 59)
    w = SendWindow(
        tz=tz,
        start=time(start_minutes // 60, start_minutes % 60),
        end=time(end_minutes // 60, end_minutes % 60),
        country="RU",
        skip_holidays=skip_holidays,
    )
    now = moment.replace(tzinfo=UTC)
    result = next_send_time(now, w)
    # at or after now, allowed, and nothing allowed in the second before it (unless that is before now)
    assert result >= now
    assert is_send_allowed(result, w)
    if result > now:
        assert not is_send_allowed(max(now, result - timedelta(seconds=1)), w)
