"""The time a not_now reply names, and the date it means relative to the reply's local date.

`named_time` reads the clauses ("может в январе" → jan, "в этом месяце никак" → next_month, "до конца января" →
feb, "уезжаю на всё лето" → autumn, "после праздников" → after_holidays); `until` turns the name into a date, the
reply's local date (in the company's time zone) and the company's country given: a month or a season is its next
first day on or after that date ("в январе" → the next 1 January, "летом" → the next 1 June), next_month the first
day of the next month, next_week the next Monday, after_holidays the first day after the next run of public
holidays of the country (with the weekend days that join it: the New Year holidays of Russia end on a Sunday or
run into one).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from reactivation.replies.labels import Classification, NamedTime
from reactivation.replies.lexicon import ABLE, MONTHS, SEASONS
from reactivation.replies.normalization import Clause, Token
from reactivation.timing.holidays import UnknownCountry, holiday_name

log = logging.getLogger(__name__)

# The first month of each season; the season after each one, for "на всё лето" (away for the whole summer).
_SEASON_START = {NamedTime.SPRING: 3, NamedTime.SUMMER: 6, NamedTime.AUTUMN: 9, NamedTime.WINTER: 12}
_SEASON_AFTER = {
    NamedTime.SPRING: NamedTime.SUMMER,
    NamedTime.SUMMER: NamedTime.AUTUMN,
    NamedTime.AUTUMN: NamedTime.WINTER,
    NamedTime.WINTER: NamedTime.SPRING,
}
# A public-holiday calendar has a holiday every few months; past a year there is none to wait for.
_HOLIDAY_SEARCH_DAYS = 366
# Words that keep a named time wished for rather than refused ("не сейчас, может в январе").
_WISH = {"может", "можно", "давайте", "давай", "напишите", "тогда"}


# --- The date ----------------------------------------------------------------------------------------------------


def until(when: NamedTime, *, on: date, country: str) -> date:
    """The date `when` means for a reply written on the local date `on`, in `country` (for its holidays)."""
    if when is NamedTime.NEXT_WEEK:
        return on + timedelta(days=7 - on.weekday())
    if when is NamedTime.NEXT_MONTH:
        return _first_of_next_month(on)
    if when is NamedTime.AFTER_HOLIDAYS:
        return after_next_holidays(on, country=country)
    month = _SEASON_START.get(when) or list(NamedTime).index(when) + 1
    first = date(on.year, month, 1)
    return first if first >= on else date(on.year + 1, month, 1)


def _first_of_next_month(on: date) -> date:
    return date(on.year + 1, 1, 1) if on.month == 12 else date(on.year, on.month + 1, 1)


def after_next_holidays(on: date, *, country: str) -> date:
    """The first day after the next run of public holidays (from `on` on), weekend days joined to the run.

    UnknownCountry for a country without a calendar; with no holiday within a year, the first of next month.
    """
    day = on
    for _ in range(_HOLIDAY_SEARCH_DAYS):
        if holiday_name(day, country) is not None:
            break
        day += timedelta(days=1)
    else:
        return _first_of_next_month(on)
    while holiday_name(day, country) is not None or day.weekday() >= 5:
        day += timedelta(days=1)
    return day


# --- The name ----------------------------------------------------------------------------------------------------


def _refused(tokens: list[Token], i: int) -> bool:
    """Whether the time at `i` is refused ("в этом месяце никак", "никак не получится в этом месяце")."""
    if tokens[i].negated:
        return True
    for step in (1, -1):
        j = i + step
        while 0 <= j < len(tokens) and abs(j - i) <= 3:
            t = tokens[j]
            if t.text in _WISH:
                break
            if t.text in {"никак", "нет", "вряд"} or (t.negated and t.has(ABLE)):
                return True
            nxt = tokens[j + 1] if j + 1 < len(tokens) else None
            if nxt is not None and ((t.text == "не" and nxt.text == "до") or (t.text == "без" and nxt.has("шанс"))):
                return True  # "в этом месяце не до этого", "в этом месяце без шансов"
            j += step
    return False


def _month_time(tokens: list[Token], i: int, month: int) -> NamedTime:
    before = [t.text for t in tokens[max(0, i - 2) : i]]
    refused = _refused(tokens, i) and "до" not in before  # "до декабря никак": from December on
    if "после" in before or ("до" in before and "конца" in before) or refused:
        month = month % 12 + 1  # "после января", "до конца января", "в декабре никак": the month after
    return NamedTime.month(month)


def _season_time(tokens: list[Token], i: int, season: NamedTime) -> NamedTime:
    before = [t.text for t in tokens[max(0, i - 2) : i]]
    # "уезжаю на всё лето", "всё лето на даче", "после лета", "летом никак": the season after; "до весны", "летом":
    # that one.
    whole = bool({"все", "всё", "весь"} & set(before[-1:]))
    if ("до" not in before and ("на" in before or whole or _refused(tokens, i))) or "после" in before:
        return _SEASON_AFTER[season]  # "до весны никак": from spring on
    return season


def _unit_time(tokens: list[Token], i: int, unit: str) -> NamedTime | None:
    """A week or a month: "на следующей неделе", "через неделю", "этот месяц никак", "до конца месяца"."""
    before = tokens[max(0, i - 2) : i]
    following = NamedTime.NEXT_WEEK if unit == "неделя" else NamedTime.NEXT_MONTH
    if any(t.has("следующий") for t in before) or (unit == "неделя" and i and tokens[i - 1].text == "через"):
        return following  # "через неделю", not "через две недели"; "через месяц" is the default 30 days
    # "в этом месяце никак", "эта неделя вся занята", "весь этот месяц работаю без выходных"
    whole = any(t.has("весь") for t in tokens[max(0, i - 3) : i + 3]) or any(t.has("занятый") for t in tokens)
    if any(t.has("этот") for t in before) and (_refused(tokens, i) or whole):
        return following
    if any(t.has("конец") for t in before) and "до" in [t.text for t in tokens[max(0, i - 3) : i]]:
        return following  # "до конца месяца", "до конца недели"
    return None


def _holiday_time(tokens: list[Token], i: int) -> NamedTime | None:
    """Holidays: "после праздников" → after_holidays; "после Нового года" → jan, "ближе к Новому году" → dec."""
    t = tokens[i]
    before = [o.text for o in tokens[max(0, i - 3) : i]]
    if t.has({"праздник", "майский", "новогодний", "каникулы"}) and ("после" in before or _refused(tokens, i)):
        return NamedTime.AFTER_HOLIDAYS  # "после праздников", "после майских", "на праздниках никак"
    if t.has("год") and i and tokens[i - 1].has("новый"):
        if {"после", "с", "до"} & set(before) or tokens[i - 1].text in {"новом"}:
            return NamedTime.JAN
        if "к" in before or "перед" in before:
            return NamedTime.DEC
    return None


def _time_at(tokens: list[Token], i: int, unit: str | None) -> NamedTime | None:
    t = tokens[i]
    if t.word is None:
        return None
    month = next((number for lemma, number in MONTHS.items() if t.has(lemma)), None)
    if month is not None:
        return _month_time(tokens, i, month)
    season = next((NamedTime(name) for lemma, name in SEASONS.items() if t.has(lemma)), None)
    if season is not None:
        return _season_time(tokens, i, season)
    if t.has({"неделя", "неделька", "месяц"}):
        return _unit_time(tokens, i, "месяц" if t.has("месяц") else "неделя")
    if t.has("следующий") and unit is not None and (i + 1 == len(tokens) or tokens[i + 1].lemma != unit):
        # "в этом месяце не получится, в следующем давайте": the unit named before.
        return NamedTime.NEXT_WEEK if unit == "неделя" else NamedTime.NEXT_MONTH
    return _holiday_time(tokens, i)


def _wished(tokens: list[Token], i: int) -> bool:
    """A time asked for ("давайте в ноябре", "может осенью"), not one the client is away or busy in."""
    return any(t.text in _WISH for t in tokens[max(0, i - 3) : i + 4])


def named_time(clauses: list[Clause]) -> NamedTime | None:
    """The last time the reply wishes for ("давайте в ноябре, в октябре я в отъезде"), else the last it names."""
    found: NamedTime | None = None
    wished: NamedTime | None = None
    unit: str | None = None
    for clause in clauses:
        tokens = clause.tokens
        for i, t in enumerate(tokens):
            when = _time_at(tokens, i, unit)
            if t.has({"неделя", "неделька", "месяц"}):
                unit = "месяц" if t.has("месяц") else "неделя"
            if when is not None:
                found = when
                wished = when if _wished(tokens, i) else wished
    return wished or found


def named_until(classification: Classification, *, on: date, country: str) -> date | None:
    """The date a not_now reply names, relative to its local date `on`; None when it names none."""
    if classification.when is None:
        return None
    try:
        return until(classification.when, on=on, country=country)
    except UnknownCountry:
        # The company's country has no holiday calendar: "после праздников" falls back to the default snooze.
        log.warning("no holiday calendar for a named time", extra={"country": country})
        return None
