"""The time a not_now reply names, and the date it means relative to the reply's local date (injected, never today)."""

from __future__ import annotations

from datetime import date

import pytest

from reactivation.replies.classify import explain_reply
from reactivation.replies.labels import NamedTime
from reactivation.replies.times import after_next_holidays, until
from reactivation.timing.holidays import UnknownCountry

T = NamedTime


@pytest.mark.parametrize(
    ("when", "on", "expected"),
    [
        # a month is its next first day on or after the reply's date
        (T.JAN, date(2026, 11, 23), date(2027, 1, 1)),
        (T.JAN, date(2027, 1, 1), date(2027, 1, 1)),
        (T.JAN, date(2027, 1, 15), date(2028, 1, 1)),
        (T.MAR, date(2026, 2, 28), date(2026, 3, 1)),
        (T.SEP, date(2026, 6, 10), date(2026, 9, 1)),
        (T.DEC, date(2026, 12, 31), date(2027, 12, 1)),
        # a season is the first day of its first month: summer 1 June, autumn 1 September, winter 1 December,
        # spring 1 March
        (T.SUMMER, date(2026, 11, 23), date(2027, 6, 1)),
        (T.SUMMER, date(2026, 4, 30), date(2026, 6, 1)),
        (T.AUTUMN, date(2026, 7, 1), date(2026, 9, 1)),
        (T.WINTER, date(2026, 11, 23), date(2026, 12, 1)),
        (T.SPRING, date(2026, 11, 23), date(2027, 3, 1)),
        # next month: its first day, across a year's end
        (T.NEXT_MONTH, date(2026, 11, 23), date(2026, 12, 1)),
        (T.NEXT_MONTH, date(2026, 12, 31), date(2027, 1, 1)),
        (T.NEXT_MONTH, date(2027, 1, 31), date(2027, 2, 1)),
        # next week: the next Monday (a reply on a Monday means the one after)
        (T.NEXT_WEEK, date(2026, 11, 23), date(2026, 11, 30)),
        (T.NEXT_WEEK, date(2026, 11, 29), date(2026, 11, 30)),
        (T.NEXT_WEEK, date(2026, 12, 30), date(2027, 1, 4)),
    ],
)
def test_until_for_each_named_time(when: NamedTime, on: date, expected: date) -> None:
    assert until(when, on=on, country="RU") == expected


@pytest.mark.parametrize(
    ("on", "country", "expected"),
    [
        # Russia's New Year holidays, 1–8 January 2027, and the weekend that follows them
        (date(2026, 12, 20), "RU", date(2027, 1, 11)),
        # asked during the holidays: after the ones under way
        (date(2027, 1, 3), "RU", date(2027, 1, 11)),
        # in the spring the next holidays are 1 May (a Saturday in 2027) and the days off joined to it
        (date(2027, 4, 20), "RU", date(2027, 5, 4)),
        # Defender of the Fatherland Day (a Tuesday in 2027) with the Monday before it off
        (date(2027, 2, 15), "RU", date(2027, 2, 24)),
        # another country, another calendar: Kazakhstan's Nauryz, 21–24 March 2027
        (date(2027, 3, 17), "KZ", date(2027, 3, 25)),
    ],
)
def test_after_holidays_is_the_first_day_after_the_next_run_of_holidays(on: date, country: str, expected: date) -> None:
    assert after_next_holidays(on, country=country) == expected
    assert until(T.AFTER_HOLIDAYS, on=on, country=country) == expected


def test_a_country_without_a_calendar_is_a_clear_error() -> None:
    with pytest.raises(UnknownCountry, match="XX"):
        until(T.AFTER_HOLIDAYS, on=date(2026, 12, 20), country="XX")


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("Не сейчас, может в январе", T.JAN),
        ("Давайте после праздников", T.AFTER_HOLIDAYS),
        ("После майских", T.AFTER_HOLIDAYS),
        ("Может летом", T.SUMMER),
        ("Осенью напишу", T.AUTUMN),
        ("Зимой может", T.WINTER),
        ("Отложим до весны", T.SPRING),
        ("В этом месяце никак", T.NEXT_MONTH),
        ("Никак не получится в этом месяце", T.NEXT_MONTH),
        ("В следующем месяце напишите", T.NEXT_MONTH),
        ("В этом месяце не получится, в следующем давайте", T.NEXT_MONTH),
        ("До конца месяца никак", T.NEXT_MONTH),
        ("На этой неделе никак", T.NEXT_WEEK),
        ("Напишите через неделю", T.NEXT_WEEK),
        ("До сентября я на даче", T.SEP),
        ("Я бы пришла, но у меня сессия до конца января", T.FEB),
        ("В декабре никак, всё расписано", T.JAN),
        ("Я бы с радостью, но уезжаю на всё лето", T.AUTUMN),
        ("После Нового года, сейчас не до этого", T.JAN),
        ("Может ближе к новому году", T.DEC),
        ("Mozhet v yanvare", T.JAN),
        ("Не сейчас", None),
        ("Через пару недель напишу", None),
        ("Завтра никак", None),
    ],
)
def test_the_time_a_not_now_names(text: str, when: NamedTime | None) -> None:
    # given a reply that puts the visit off
    classification = explain_reply(text)
    # then it is a not_now that names the time, or none
    assert (classification.label.value, classification.reason) == ("negative", "not_now")
    assert classification.when == when
