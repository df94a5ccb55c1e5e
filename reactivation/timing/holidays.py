"""Public holidays by country, from the `holidays` library: which day is one, and its name.

For Russia the calendar includes the official days off moved by government decree (e.g. 2 May 2025), which people
spend like the holidays around them. Pure and cheap to import: the send window and the reply rules ("после
праздников") both read it.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import holidays


class UnknownCountry(ValueError):
    """The country code has no holiday calendar in the `holidays` library."""

    def __init__(self, country: str) -> None:
        super().__init__(f"unknown country code {country!r}: no public-holiday calendar (expected e.g. 'RU', 'KZ')")
        self.country = country


def holiday_name(day: date, country: str) -> str | None:
    """The name of the public holiday of `country` on `day`, or None; UnknownCountry for a bad code."""
    code = (country or "").strip().upper()
    check_country(code)
    return holidays_of(code, day.year).get(day)


@lru_cache(maxsize=64)
def check_country(country: str) -> None:
    """Refuse (UnknownCountry) a code the holidays library has no calendar for."""
    if not country:
        raise UnknownCountry(country)
    try:
        holidays.country_holidays(country, years=2000)
    except NotImplementedError:
        raise UnknownCountry(country) from None


@lru_cache(maxsize=256)
def holidays_of(country: str, year: int) -> dict[date, str]:
    """One country's public holidays for one year (built once; the library's objects grow as they are read)."""
    return dict(holidays.country_holidays(country, years=year))
