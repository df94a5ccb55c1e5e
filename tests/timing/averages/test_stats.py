"""The averages job's statistics: medians, percentiles, consistency and the 1..365-day interval rule, without a
database."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest

from reactivation.timing.averages.stats import (
    PERSONAL_WINDOW_DAYS,
    SERVICE_WINDOW_DAYS,
    compute_averages,
    consistency_score,
    percentile_cont,
    personal_stats,
    service_stats,
    service_stats_from_counts,
)
from tests.timing.averages.tables import TODAY


def test_median_not_mean_the_outlier_does_not_move_it() -> None:
    stats = service_stats([24, 24, 24, 100])
    assert stats is not None
    assert stats.median_days == 24 and stats.avg_days == 43 and stats.max_days == 100
    assert stats.sample_size == 4 and not stats.is_active


def test_percentile_cont_interpolates_like_postgres() -> None:
    assert percentile_cont([20, 22, 30], 0.5) == 22
    assert percentile_cont([20, 22, 30, 40], 0.5) == 26
    assert percentile_cont([20, 22, 30, 40], 0.25) == 21.5
    with pytest.raises(ValueError):
        percentile_cont([], 0.5)


def test_consistency_score_formula() -> None:
    assert consistency_score([21, 21, 21]) == Decimal("1.00")
    # Q1 = 20.5, median 21, Q3 = 21.5: 1 - 1 / 42
    assert consistency_score([20, 21, 22]) == Decimal("0.98")
    # one vacation gap among four visits: Q1 24, Q3 43 → 1 - 19 / 48
    assert consistency_score([24, 24, 24, 100]) == Decimal("0.60")
    # ... and among five it no longer matters
    assert consistency_score([24, 24, 24, 24, 100]) == Decimal("1.00")
    # wildly irregular: clamped at zero
    assert consistency_score([5, 20, 300]) == Decimal("0.00")
    assert consistency_score([5, 100, 300]) == Decimal("0.26")


def test_service_stats_from_counts_equal_the_stats_of_the_values() -> None:
    rng = random.Random(5)
    for size in (1, 2, 3, 10, 101, 1000):
        values = [rng.choice([7, 21, 21, 24, 28, 30, 45, 90, 365]) + rng.randint(0, 3) for _ in range(size)]
        assert service_stats_from_counts(Counter(values)) == service_stats(values)
    assert service_stats_from_counts({21: 0}) is None and service_stats([]) is None


def test_personal_stats_need_three_intervals() -> None:
    assert personal_stats([21, 22]) is None
    stats = personal_stats([22, 21, 20])
    assert stats is not None and (stats.interval_days, stats.intervals, stats.visit_count) == (21, 3, 4)


def test_compute_drops_gaps_outside_one_to_365_days_and_counts_a_day_once() -> None:
    day = TODAY - timedelta(days=300)
    visits = [(1, 9, day), (1, 9, day), (1, 9, day + timedelta(days=20)), (1, 9, day + timedelta(days=40))]
    services, personal = compute_averages(visits, today=TODAY)
    assert personal == {}  # two intervals only
    assert services == {}  # both older than 6 months
    services, _ = compute_averages(visits, today=day + timedelta(days=60))
    assert services[9].sample_size == 2 and services[9].median_days == 20


def test_windows_are_six_and_twelve_months() -> None:
    assert SERVICE_WINDOW_DAYS == 183 and PERSONAL_WINDOW_DAYS == 365
