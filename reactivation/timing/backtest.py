"""Replaying a salon's history: how well each level of the waterfall would have predicted a client's return.

For every client and service with at least two attended visits (local days, as the averages job counts them),
the *case* is the last interval between them: the client came on `previous_visit` and came back `actual_days`
later. It is predicted as of `previous_visit`, from what the averages job would have known that day and
nothing later:

* personal: the client's own intervals for the service that ended by then, within PERSONAL_WINDOW_DAYS;
* service_average: the salon's intervals for the service with both visits within SERVICE_WINDOW_DAYS before then
  (other clients' and the client's own earlier ones, as the job computes them);
* industry_standard: the service title's category; universal: 30 days.

Each level is asked alone (it may have no answer: its coverage), then the full waterfall, then the seed's
3-level variant (service_average → industry_standard → universal, no personal level), all through
`waterfall.choose_interval`, so the rules (minimum samples, consistency) are the production ones. A prediction
is good when it is within TOLERANCE_DAYS of the actual interval, the seed plan's accuracy measure.

Pure except `load_history`, which reads the company's attended visits in one query.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reactivation.storage.companies import load_company
from reactivation.storage.models import Service
from reactivation.timing.averages.stats import (
    PERSONAL_WINDOW_DAYS,
    SERVICE_WINDOW_DAYS,
    interval_series,
    percentile_cont,
    personal_stats,
    service_stats,
)
from reactivation.timing.averages.visits import load_visit_days
from reactivation.timing.industry import IndustryMatch, IndustryStandard, load_standards, match_industry
from reactivation.timing.waterfall import Interval, PersonalRhythm, ServiceAverage, Source, choose_interval

# The seed plan's timing goal: "messages sent within ±5 days of the optimal interval".
TOLERANCE_DAYS = 5


class Method(StrEnum):
    """A way to predict: one level of the waterfall alone, the whole waterfall, or the seed's three levels."""

    PERSONAL = "personal"
    SERVICE_AVERAGE = "service_average"
    INDUSTRY_STANDARD = "industry_standard"
    UNIVERSAL = "universal"
    WATERFALL = "waterfall"
    SEED_3_LEVEL = "seed_3_level"


LEVELS = (Method.PERSONAL, Method.SERVICE_AVERAGE, Method.INDUSTRY_STANDARD, Method.UNIVERSAL)
# The methods whose answers come from several levels, reported also by the level that answered.
COMBINED = (Method.WATERFALL, Method.SEED_3_LEVEL)


@dataclass(frozen=True)
class History:
    """What a backtest reads: attended visits as (client, service, local day), service titles, industry rows."""

    visits: Sequence[tuple[int, int, date]]
    titles: Mapping[int, str]
    standards: Sequence[IndustryStandard]


@dataclass(frozen=True)
class Case:
    """One replayed return: the last interval of a client and service, and what each method predicted for it."""

    client_id: int
    service_id: int
    previous_visit: date  # the prediction is made as of this day
    last_visit: date
    predictions: Mapping[Method, Interval | None]  # None: that level alone had no answer

    @property
    def actual_days(self) -> int:
        return (self.last_visit - self.previous_visit).days


@dataclass(frozen=True)
class Score:
    """How one method did: how often it could answer and how close its answers were."""

    name: str
    cases: int
    answered: int
    median_abs_error_days: float | None
    share_within_tolerance: float | None

    @property
    def coverage(self) -> float | None:
        return self.answered / self.cases if self.cases else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cases": self.cases,
            "answered": self.answered,
            "coverage": _rounded(self.coverage),
            "median_abs_error_days": self.median_abs_error_days,
            "share_within_tolerance": _rounded(self.share_within_tolerance),
        }


@dataclass(frozen=True)
class BacktestReport:
    company_id: int
    cases: int
    clients: int
    methods: Sequence[Score]
    # For the waterfall and the seed's variant: the same scores split by the level that answered.
    by_source: Mapping[Method, Sequence[Score]]

    def score(self, method: Method) -> Score:
        return next(s for s in self.methods if s.name == method)

    def as_dict(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "cases": self.cases,
            "clients": self.clients,
            "tolerance_days": TOLERANCE_DAYS,
            "methods": [s.as_dict() for s in self.methods],
            "by_source": {str(m): [s.as_dict() for s in scores] for m, scores in self.by_source.items()},
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# --- I/O ----------------------------------------------------------------------------------------------------------


def load_history(session: Session, *, company_id: int) -> History:
    """The company's attended visits (all of them, one query), its service titles and the industry rows."""
    company = load_company(session, company_id=company_id)
    visits = load_visit_days(session, company_id=company_id, start=None, end=None, tz=company.tz)
    titles = dict(
        session.execute(select(Service.yclients_id, Service.title).where(Service.company_id == company_id)).all()
    )
    return History(visits=visits, titles=titles, standards=load_standards(session))


# --- Replay -------------------------------------------------------------------------------------------------------


class _SalonMedians:
    """The salon's median per service as the averages job would have computed it on a given day (cached)."""

    def __init__(self, series: Mapping[tuple[int, int], Sequence[tuple[date, date, int]]]) -> None:
        by_service: dict[int, list[tuple[date, date, int]]] = defaultdict(list)
        for (_client, service_id), gaps in series.items():
            by_service[service_id].extend((later, earlier, gap) for earlier, later, gap in gaps)
        self._intervals = {service_id: sorted(gaps) for service_id, gaps in by_service.items()}
        self._ends = {service_id: [later for later, _, _ in gaps] for service_id, gaps in self._intervals.items()}
        self._cache: dict[tuple[int, date], ServiceAverage | None] = {}

    def as_of(self, service_id: int, day: date) -> ServiceAverage | None:
        key = (service_id, day)
        if key not in self._cache:
            self._cache[key] = self._compute(service_id, day)
        return self._cache[key]

    def _compute(self, service_id: int, day: date) -> ServiceAverage | None:
        intervals = self._intervals.get(service_id, [])
        ends = self._ends.get(service_id, [])
        start = day - timedelta(days=SERVICE_WINDOW_DAYS)
        # Both visits inside [start, day]: the later one ends by `day`, the earlier one starts on or after `start`.
        low, high = bisect.bisect_left(ends, start), bisect.bisect_right(ends, day)
        stats = service_stats(gap for _, earlier, gap in intervals[low:high] if earlier >= start)
        if stats is None:
            return None
        return ServiceAverage(stats.median_days, stats.sample_size, stats.is_active)


def personal_as_of(gaps: Iterable[tuple[date, date, int]], day: date) -> PersonalRhythm | None:
    """The client's own rhythm for a service as the averages job would have computed it on `day`."""
    start = day - timedelta(days=PERSONAL_WINDOW_DAYS)
    stats = personal_stats(gap for earlier, later, gap in gaps if earlier >= start and later <= day)
    if stats is None:
        return None
    return PersonalRhythm(stats.interval_days, stats.intervals, stats.consistency)


def replay(history: History) -> list[Case]:
    """Every client and service's last interval, predicted by each method from what was known before it."""
    series = interval_series(history.visits)
    medians = _SalonMedians(series)
    industry: dict[int, IndustryMatch | None] = {}
    cases: list[Case] = []
    for (client_id, service_id), gaps in sorted(series.items()):
        if not gaps:
            continue
        previous_visit, last_visit, _ = gaps[-1]
        if service_id not in industry:
            industry[service_id] = match_industry(history.titles.get(service_id), history.standards)
        personal = personal_as_of(gaps[:-1], previous_visit)
        service = medians.as_of(service_id, previous_visit)
        matched = industry[service_id]
        alone = {
            Method.PERSONAL: choose_interval(personal=personal),
            Method.SERVICE_AVERAGE: choose_interval(service=service),
            Method.INDUSTRY_STANDARD: choose_interval(industry=matched),
            Method.UNIVERSAL: choose_interval(),
        }
        predictions: dict[Method, Interval | None] = {
            # A level alone answers when the waterfall, given only that level, does not fall through to universal.
            level: interval if interval.source == Source(level) else None
            for level, interval in alone.items()
        }
        predictions[Method.WATERFALL] = choose_interval(personal=personal, service=service, industry=matched)
        predictions[Method.SEED_3_LEVEL] = choose_interval(service=service, industry=matched)
        cases.append(Case(client_id, service_id, previous_visit, last_visit, predictions))
    return cases


# --- Scores -------------------------------------------------------------------------------------------------------


def score(name: str, cases: int, errors: Sequence[int]) -> Score:
    """A method's score from the absolute errors of the cases it answered, out of `cases`."""
    if not errors:
        return Score(name, cases, 0, None, None)
    ordered = sorted(errors)
    within = sum(1 for e in ordered if e <= TOLERANCE_DAYS)
    return Score(name, cases, len(ordered), percentile_cont(ordered, 0.5), within / len(ordered))


def report(company_id: int, cases: Sequence[Case]) -> BacktestReport:
    """Scores per method over the replayed cases, and the combined methods split by the level that answered."""
    errors: dict[Method, list[int]] = defaultdict(list)
    split: dict[Method, dict[Source, list[int]]] = {m: defaultdict(list) for m in COMBINED}
    for case in cases:
        for method, interval in case.predictions.items():
            if interval is None:
                continue
            error = abs(interval.interval_days - case.actual_days)
            errors[method].append(error)
            if method in split:
                split[method][interval.source].append(error)
    total = len(cases)
    return BacktestReport(
        company_id=company_id,
        cases=total,
        clients=len({case.client_id for case in cases}),
        methods=[score(str(method), total, errors[method]) for method in Method],
        by_source={m: [score(str(source), total, split[m][source]) for source in Source] for m in COMBINED},
    )


def backtest(history: History, *, company_id: int) -> BacktestReport:
    """Replay the history and score every method."""
    return report(company_id, replay(history))
