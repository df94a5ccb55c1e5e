"""When a salon may send: inside its local send window, and not on a public holiday of its country.

Pure functions over aware datetimes. Weekends are ordinary days (salons work them); only public holidays
are skipped, and only when the company's `skip_holidays` is on. The holiday calendar is the `holidays`
library's public one; for Russia it includes the official days off moved by government decree (e.g. 2 May
2025), which people spend like the holidays around them.

On each local date the window is one stretch of real time: from the first moment the salon's wall clock reads
the start time until the first moment it reads the end time. A window ending at 23:59 runs until midnight,
because HH:MM cannot say 24:00. So around DST changes: a start time skipped by a spring-forward jump opens the
window at the jump itself, and an hour repeated by a fall-back counts once, at its first reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from reactivation.storage.companies import CompanyConfig
from reactivation.storage.company_settings import CompanyConfigError
from reactivation.timing.holidays import UnknownCountry, check_country, holidays_of

# Longer than any run of consecutive public holidays in any calendar; bounds the search for the next window.
_MAX_DAYS_AHEAD = 366
# A window ending at this wall-clock time runs to midnight.
_END_OF_DAY = time(23, 59)


class Closed(StrEnum):
    """Why a message may not go out now."""

    BEFORE_WINDOW = "before_window"
    AFTER_WINDOW = "after_window"
    HOLIDAY = "holiday"


@dataclass(frozen=True)
class SendWindow:
    """A salon's sending hours: wall-clock [start, end) in `tz`, holidays of `country` skipped if asked."""

    tz: ZoneInfo
    start: time
    end: time
    country: str = "RU"
    skip_holidays: bool = True

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("send window times are wall-clock times; give them without a tzinfo")
        if self.end <= self.start:
            raise ValueError(f"send window end {self.end:%H:%M} must be after its start {self.start:%H:%M}")
        country = (self.country or "").strip().upper()
        object.__setattr__(self, "country", country)
        if self.skip_holidays:
            check_country(country)

    @classmethod
    def for_company(cls, company: CompanyConfig) -> SendWindow:
        """The company's window; an unknown country raises CompanyConfigError naming the company."""
        try:
            return cls(
                tz=company.tz,
                start=company.settings.send_window_start,
                end=company.settings.send_window_end,
                country=company.country,
                skip_holidays=company.settings.skip_holidays,
            )
        except UnknownCountry as exc:
            raise CompanyConfigError(company.id, str(exc)) from None


def closed_reason(now: datetime, window: SendWindow) -> Closed | None:
    """None when a message may go out at `now`; otherwise why not."""
    local = _local(now, window)
    day = local.date()
    if window.skip_holidays and holidays_of(window.country, day.year).get(day) is not None:
        return Closed.HOLIDAY
    opens, closes = _day_window(day, window)
    instant = local.astimezone(UTC)
    if instant < opens:
        return Closed.BEFORE_WINDOW
    if instant >= closes:
        return Closed.AFTER_WINDOW
    return None


def is_send_allowed(now: datetime, window: SendWindow) -> bool:
    """True when `now` is inside the window on a day that is not a skipped holiday."""
    return closed_reason(now, window) is None


def next_send_time(now: datetime, window: SendWindow) -> datetime:
    """The first allowed instant at or after `now`, as an aware datetime in UTC (`now` itself when allowed).

    UTC, not the salon's zone, because Python compares and subtracts datetimes that share a zone by their wall
    clock: in a repeated or skipped hour that gives wrong answers, and an ambiguous local time never compares
    equal to a datetime in another zone. Convert with `.astimezone(window.tz)` for display.
    """
    now_utc = _local(now, window).astimezone(UTC)
    if closed_reason(now_utc, window) is None:
        return now_utc
    today = now_utc.astimezone(window.tz).date()
    for offset in range(_MAX_DAYS_AHEAD):
        day = today + timedelta(days=offset)
        if window.skip_holidays and holidays_of(window.country, day.year).get(day) is not None:
            continue
        opens, closes = _day_window(day, window)
        candidate = max(opens, now_utc)
        if candidate < closes:
            return candidate
    raise ValueError(f"no sending day within {_MAX_DAYS_AHEAD} days for country {window.country!r}")


def _local(now: datetime, window: SendWindow) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(window.tz)


def _day_window(day: date, window: SendWindow) -> tuple[datetime, datetime]:
    """The window on one local date as UTC instants [opens, closes)."""
    opens = _first_instant(day, window.start, window.tz)
    if window.end == _END_OF_DAY:
        return opens, _first_instant(day + timedelta(days=1), time(0, 0), window.tz)
    return opens, _first_instant(day, window.end, window.tz)


def _first_instant(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The earliest instant (in UTC) at which the wall clock in `tz` reads `day wall` or later."""
    naive = datetime.combine(day, wall)
    earlier = naive.replace(tzinfo=tz, fold=0)
    instant = earlier.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == naive:
        # Exists (fold=0 is the first of a repeated hour's two readings).
        return instant
    # `naive` falls into a spring-forward gap: the first instant past it is the transition. fold=1 reads it with
    # the offset after the change (an instant before the gap), fold=0 with the one before (an instant after it);
    # between them the wall clock only moves forward, so bisect for the first reading at or past `naive`.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = instant
    for _ in range(64):
        if high - low <= timedelta(seconds=1):
            break
        middle = low + (high - low) / 2
        if middle.astimezone(tz).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    # Transitions fall on whole seconds, and the bisection leaves exactly one of them in (low, high].
    return high.replace(microsecond=0)
