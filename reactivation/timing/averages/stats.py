"""The averages job's statistics: intervals between visits, the salon's median, a client's rhythm and its consistency.

Pure functions over plain values. They are the SQLite backend's arithmetic and the reference the PostgreSQL
backend's SQL is tested against (both give the same numbers, to the cent).

* An *interval* is the number of days between two consecutive attended visits of one client for one service
  (local dates in the company's time zone; visits of the same day count once). Only intervals of 1 to 365 days
  count; both visits lie inside the window.
* A service's statistics, over the last SERVICE_WINDOW_DAYS (6 months): the median (percentile_cont(0.5), so
  24, 24, 24, 100 gives 24), mean, min, max, sample standard deviation and the number of intervals. A service
  with fewer than 10 intervals is inactive.
* A client's rhythm for a service, from at least 3 intervals in the last PERSONAL_WINDOW_DAYS (12 months): the
  median and a consistency score.

Consistency score = clamp(1 − (Q3 − Q1) / (2 × median), 0, 1), rounded to 2 decimals, where Q1, median, Q3 are
percentile_cont(0.25 / 0.5 / 0.75) of the client's intervals. (Q3 − Q1) / 2 is the typical distance of an
interval from the middle, so the score is about 1 − (typical relative deviation): 1.0 for a client who comes
exactly every 21 days, ~0.9 for one within ±10 %, 0 when the middle half spreads over twice the median. It
comes from one pass of one ordered-set aggregate and, unlike the standard deviation, one vacation gap among five
visits does not sink it.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from reactivation.timing.waterfall import (
    MAX_INTERVAL_DAYS,
    MIN_INTERVAL_DAYS,
    MIN_PERSONAL_INTERVALS,
    MIN_SERVICE_SAMPLE,
)

SERVICE_WINDOW_DAYS = 183
PERSONAL_WINDOW_DAYS = 365


@dataclass(frozen=True)
class ServiceStats:
    median_days: int
    avg_days: int
    min_days: int
    max_days: int
    stddev_days: Decimal | None
    sample_size: int

    @property
    def is_active(self) -> bool:
        return self.sample_size >= MIN_SERVICE_SAMPLE


@dataclass(frozen=True)
class PersonalStats:
    interval_days: int
    intervals: int
    consistency: Decimal

    @property
    def visit_count(self) -> int:
        return self.intervals + 1


def percentile_cont(sorted_values: Sequence[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont over already sorted values (linear interpolation, same float steps)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    return _interpolated(sorted_values.__getitem__, len(sorted_values), fraction)


def _interpolated(value_at: Callable[[int], float], count: int, fraction: float) -> float:
    position = fraction * (count - 1)
    low = math.floor(position)
    high = math.ceil(position)
    first = float(value_at(low))
    second = float(value_at(high))
    return first + (second - first) * (position - low)


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _to_cents(value: float) -> Decimal:
    # As PostgreSQL turns a float8 into numeric (15 significant digits), then rounds half away from zero.
    return Decimal(format(value, ".15g")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def consistency_score(sorted_intervals: Sequence[int]) -> Decimal:
    """clamp(1 − (Q3 − Q1) / (2 × median), 0, 1) to 2 decimals; see the module docstring."""
    q1 = percentile_cont(sorted_intervals, 0.25)
    q2 = percentile_cont(sorted_intervals, 0.5)
    q3 = percentile_cont(sorted_intervals, 0.75)
    score = 1.0 - (q3 - q1) / (2.0 * q2)
    return _to_cents(min(1.0, max(0.0, score)))


def service_stats(intervals: Iterable[int]) -> ServiceStats | None:
    return service_stats_from_counts(Counter(intervals))


def service_stats_from_counts(counts: Mapping[int, int]) -> ServiceStats | None:
    """The statistics of intervals given as {length in days: how many}; None when there are none."""
    lengths = sorted(days for days, times in counts.items() if times > 0)
    if not lengths:
        return None
    # ends[i]: how many intervals are at most lengths[i] long, to find the k-th shortest.
    ends = list(itertools.accumulate(counts[days] for days in lengths))
    n = ends[-1]
    total = sum(days * counts[days] for days in lengths)
    stddev: Decimal | None = None
    if n > 1:
        # Σ(v − mean)² / (n − 1) in integers, exactly.
        squares = sum(days * days * counts[days] for days in lengths)
        variance = Fraction(n * squares - total * total, n * (n - 1))
        with localcontext() as context:
            context.prec = 40
            root = (Decimal(variance.numerator) / Decimal(variance.denominator)).sqrt()
        stddev = root.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    mean = (Decimal(total) / Decimal(n)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    median = _interpolated(lambda k: lengths[bisect.bisect_right(ends, k)], n, 0.5)
    return ServiceStats(
        median_days=round_half_up(median),
        avg_days=int(mean),
        min_days=lengths[0],
        max_days=lengths[-1],
        stddev_days=stddev,
        sample_size=n,
    )


def personal_stats(intervals: Iterable[int]) -> PersonalStats | None:
    values = sorted(intervals)
    if len(values) < MIN_PERSONAL_INTERVALS:
        return None
    return PersonalStats(
        interval_days=round_half_up(percentile_cont(values, 0.5)),
        intervals=len(values),
        consistency=consistency_score(values),
    )


def compute_averages(
    visits: Iterable[tuple[int, int, date]], *, today: date
) -> tuple[dict[int, ServiceStats], dict[tuple[int, int], PersonalStats]]:
    """The job's numbers from plain (client, service, local visit day) triples; the reference for SQL."""
    personal_start = today - timedelta(days=PERSONAL_WINDOW_DAYS)
    service_start = today - timedelta(days=SERVICE_WINDOW_DAYS)
    in_window = [(c, s, d) for c, s, d in visits if personal_start <= d <= today]
    by_service: dict[int, list[int]] = defaultdict(list)
    personal: dict[tuple[int, int], PersonalStats] = {}
    for (client_id, service_id), gaps in interval_series(in_window).items():
        for earlier, _later, gap in gaps:
            if earlier >= service_start:
                by_service[service_id].append(gap)
        stats = personal_stats(gap for _, _, gap in gaps)
        if stats is not None:
            personal[(client_id, service_id)] = stats
    services = {sid: s for sid, gaps in by_service.items() if (s := service_stats(gaps)) is not None}
    return services, personal


def interval_series(
    visits: Iterable[tuple[int, int, date]],
) -> dict[tuple[int, int], list[tuple[date, date, int]]]:
    """(client, service) → [(earlier visit, later visit, days between)], for 1..365-day intervals, in order."""
    days: dict[tuple[int, int], set[date]] = defaultdict(set)
    for client_id, service_id, day in visits:
        days[(client_id, service_id)].add(day)
    result: dict[tuple[int, int], list[tuple[date, date, int]]] = {}
    for key, visit_days in days.items():
        ordered = sorted(visit_days)
        result[key] = [
            (earlier, later, (later - earlier).days)
            for earlier, later in itertools.pairwise(ordered)
            if MIN_INTERVAL_DAYS <= (later - earlier).days <= MAX_INTERVAL_DAYS
        ]
    return result
