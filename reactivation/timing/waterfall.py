"""The interval waterfall: how many days after their last visit a client is expected back. Pure; never fails.

Four levels, the first that applies wins:

1. `personal`: the client's own median interval for the service, when `client_personalized_intervals` holds at
   least MIN_PERSONAL_INTERVALS intervals between attended visits of the last 12 months and their consistency
   score (see `averages.stats.consistency_score`) is at least MIN_CONSISTENCY. Confidence 0.9 × consistency.
2. `service_average`: the salon's median interval for the service over the last 6 months, when it rests on at
   least MIN_SERVICE_SAMPLE intervals and the averages job marked it active. Confidence 0.85.
3. `industry_standard`: the category the service title matches (`industry.match_industry`). The row's confidence.
4. `universal`: 30 days, confidence 0.6.

Bad input at any level (a missing, zero, negative, absurd or non-numeric value) makes that level not apply; it
never raises. Each result carries evidence for the history row and the AI admin: what the interval rests on, and
why the levels above it did not apply.

The due selection (audience/selection.py) evaluates the same rules in SQL to filter and order clients; it uses the
constants below, and a test checks both agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from reactivation.timing.industry import IndustryMatch


class Source(StrEnum):
    PERSONAL = "personal"
    SERVICE_AVERAGE = "service_average"
    INDUSTRY_STANDARD = "industry_standard"
    UNIVERSAL = "universal"


# An interval outside these bounds is not a rhythm (the averages job drops such gaps too).
MIN_INTERVAL_DAYS = 1
MAX_INTERVAL_DAYS = 365

MIN_PERSONAL_INTERVALS = 3
# Below this the client's own intervals spread too widely for their median to predict the next one.
# Checked with `reactivation backtest` on the demo salon: from 0.5 to 0.9 the waterfall's share within ±5 days moves
# by two points, while the personal level's own share rises from 72 % to 85 %; lower admits irregular clients whose
# median misses, higher hands more clients to the salon median.
MIN_CONSISTENCY = 0.75
PERSONAL_CONFIDENCE = 0.9

MIN_SERVICE_SAMPLE = 10
SERVICE_CONFIDENCE = 0.85

UNIVERSAL_DAYS = 30
UNIVERSAL_CONFIDENCE = 0.6


@dataclass(frozen=True)
class PersonalRhythm:
    """A row of client_personalized_intervals: the median of `intervals` gaps and how consistent they are."""

    interval_days: Any
    intervals: Any
    consistency: Any


@dataclass(frozen=True)
class ServiceAverage:
    """A row of service_reactivation_intervals."""

    median_days: Any
    sample_size: Any
    is_active: Any = True


@dataclass(frozen=True)
class Interval:
    """The waterfall's answer: the expected interval, where it comes from, how sure, and on what evidence."""

    interval_days: int
    source: Source
    confidence: float
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "interval_days": self.interval_days,
            "source": str(self.source),
            "confidence": self.confidence,
            "evidence": dict(self.evidence),
        }


def choose_interval(
    *,
    personal: PersonalRhythm | None = None,
    service: ServiceAverage | None = None,
    industry: IndustryMatch | None = None,
    service_id: int | None = None,
    service_name: str | None = None,
) -> Interval:
    """Walk the four levels and return the first that applies; the universal 30 days when none does."""
    about: dict[str, Any] = {}
    if service_id is not None:
        about["service_id"] = service_id
    if isinstance(service_name, str) and service_name:
        about["service_name"] = service_name[:200]
    passed_over: dict[str, str] = {}

    reason = personal_problem(personal)
    if reason is None and personal is not None:
        consistency = _number(personal.consistency)
        assert consistency is not None
        days = _whole(personal.interval_days)
        assert days is not None
        return Interval(
            interval_days=days,
            source=Source.PERSONAL,
            confidence=round(PERSONAL_CONFIDENCE * consistency, 2),
            evidence={
                **about,
                "median_days": days,
                "intervals": _whole(personal.intervals),
                "consistency": round(consistency, 2),
            },
        )
    passed_over[Source.PERSONAL] = reason or "no data"

    reason = service_problem(service)
    if reason is None and service is not None:
        days = _whole(service.median_days)
        assert days is not None
        return Interval(
            interval_days=days,
            source=Source.SERVICE_AVERAGE,
            confidence=SERVICE_CONFIDENCE,
            evidence={
                **about,
                "median_days": days,
                "sample_size": _whole(service.sample_size),
                "passed_over": passed_over,
            },
        )
    passed_over[Source.SERVICE_AVERAGE] = reason or "no data"

    reason = industry_problem(industry)
    if reason is None and industry is not None:
        return Interval(
            interval_days=industry.interval_days,
            source=Source.INDUSTRY_STANDARD,
            confidence=round(industry.confidence, 2),
            evidence={
                **about,
                "category": industry.standard.category_key,
                "category_name": industry.standard.category_name,
                "matched_keywords": list(industry.matched_keywords),
                "passed_over": passed_over,
            },
        )
    passed_over[Source.INDUSTRY_STANDARD] = reason or "no keyword of the title matches"

    return Interval(
        interval_days=UNIVERSAL_DAYS,
        source=Source.UNIVERSAL,
        confidence=UNIVERSAL_CONFIDENCE,
        evidence={**about, "passed_over": passed_over},
    )


def personal_problem(personal: PersonalRhythm | None) -> str | None:
    """Why the personal level does not apply (None when it does)."""
    if personal is None:
        return "no data"
    intervals = _whole(personal.intervals)
    if intervals is None or intervals < MIN_PERSONAL_INTERVALS:
        return f"{intervals or 0} intervals ({MIN_PERSONAL_INTERVALS} needed)"
    days = _whole(personal.interval_days)
    if days is None or not MIN_INTERVAL_DAYS <= days <= MAX_INTERVAL_DAYS:
        return f"median {personal.interval_days!r} days is not a rhythm"
    consistency = _number(personal.consistency)
    if consistency is None or not 0 <= consistency <= 1:
        return "no consistency score"
    if consistency < MIN_CONSISTENCY:
        return f"consistency {consistency:.2f} below {MIN_CONSISTENCY}"
    return None


def service_problem(service: ServiceAverage | None) -> str | None:
    """Why the salon's median does not apply (None when it does)."""
    if service is None:
        return "no data"
    sample = _whole(service.sample_size)
    if sample is None or sample < MIN_SERVICE_SAMPLE:
        return f"{sample or 0} intervals ({MIN_SERVICE_SAMPLE} needed)"
    if service.is_active is not True:
        return "marked inactive"
    days = _whole(service.median_days)
    if days is None or not MIN_INTERVAL_DAYS <= days <= MAX_INTERVAL_DAYS:
        return f"median {service.median_days!r} days is not a rhythm"
    return None


def industry_problem(industry: IndustryMatch | None) -> str | None:
    """Why the industry level does not apply (None when it does)."""
    if industry is None:
        return "no keyword of the title matches"
    if not MIN_INTERVAL_DAYS <= industry.interval_days <= MAX_INTERVAL_DAYS:
        return f"category interval {industry.interval_days} days is not a rhythm"
    return None


def _whole(value: object) -> int | None:
    """An integer from an int, an integral float or Decimal; None for anything else (bool, NaN, text...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    if isinstance(value, float | Decimal):
        number = float(value)
        if math.isfinite(number) and number == int(number):
            return int(number)
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    if isinstance(value, int | float | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    return None
