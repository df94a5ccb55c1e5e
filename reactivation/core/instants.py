"""Instants as the tables keep them: UTC, which SQLite stores as naive text and gives back naive."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The instant (UTC) a local day begins in `tz`."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def as_aware(moment: datetime) -> datetime:
    """A timestamp read back from the database, aware: a naive one (SQLite) was stored as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def naive_utc(moment: datetime) -> datetime:
    """An aware instant as SQLite keeps it (naive UTC), so that comparisons are between instants."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def aware_utc(moment: datetime) -> datetime:
    """An aware instant in UTC; a naive one is refused, since nothing says which zone it was read in."""
    if moment.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    return moment.astimezone(UTC)
