"""The interval waterfall: each level, the fall-through between them, evidence, and hostile input that never fails."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from reactivation.timing.industry import IndustryMatch, IndustryStandard
from reactivation.timing.waterfall import (
    MIN_CONSISTENCY,
    UNIVERSAL_DAYS,
    PersonalRhythm,
    ServiceAverage,
    Source,
    choose_interval,
)

BEARD = IndustryStandard("beard", "Стрижка бороды", 21, frozenset({"борода", "ус"}), 0.75)
BEARD_MATCH = IndustryMatch(BEARD, ("борода",), 1.0, 0.5)
STEADY = PersonalRhythm(interval_days=24, intervals=5, consistency=Decimal("0.92"))
SALON = ServiceAverage(median_days=26, sample_size=140, is_active=True)


def test_personal_rhythm_comes_first_with_confidence_scaled_by_consistency() -> None:
    result = choose_interval(personal=STEADY, service=SALON, industry=BEARD_MATCH, service_id=7, service_name="Борода")
    assert result.source == Source.PERSONAL == "personal"
    assert result.interval_days == 24
    assert result.confidence == round(0.9 * 0.92, 2)
    assert result.evidence == {
        "service_id": 7,
        "service_name": "Борода",
        "median_days": 24,
        "intervals": 5,
        "consistency": 0.92,
    }


def test_inconsistent_client_falls_to_the_salon_median_and_says_why() -> None:
    erratic = PersonalRhythm(interval_days=40, intervals=6, consistency=Decimal("0.31"))
    result = choose_interval(personal=erratic, service=SALON, industry=BEARD_MATCH)
    assert (result.source, result.interval_days, result.confidence) == (Source.SERVICE_AVERAGE, 26, 0.85)
    assert result.evidence["sample_size"] == 140
    assert result.evidence["passed_over"] == {"personal": f"consistency 0.31 below {MIN_CONSISTENCY}"}


def test_too_few_personal_intervals_fall_through() -> None:
    two = PersonalRhythm(interval_days=24, intervals=2, consistency=1)
    result = choose_interval(personal=two, service=SALON)
    assert result.source == Source.SERVICE_AVERAGE
    assert result.evidence["passed_over"]["personal"] == "2 intervals (3 needed)"


def test_exactly_three_consistent_intervals_are_enough() -> None:
    three = PersonalRhythm(interval_days=24, intervals=3, consistency=MIN_CONSISTENCY)
    assert choose_interval(personal=three, service=SALON).source == Source.PERSONAL


def test_salon_median_needs_ten_intervals_and_an_active_row() -> None:
    nine = ServiceAverage(median_days=26, sample_size=9)
    ten = ServiceAverage(median_days=26, sample_size=10)
    inactive = ServiceAverage(median_days=26, sample_size=50, is_active=False)
    assert choose_interval(service=nine, industry=BEARD_MATCH).source == Source.INDUSTRY_STANDARD
    assert choose_interval(service=ten, industry=BEARD_MATCH).source == Source.SERVICE_AVERAGE
    result = choose_interval(service=inactive, industry=BEARD_MATCH)
    assert result.source == Source.INDUSTRY_STANDARD
    assert result.evidence["passed_over"]["service_average"] == "marked inactive"


def test_industry_level_uses_the_rows_interval_and_confidence() -> None:
    result = choose_interval(industry=BEARD_MATCH, service_name="Стрижка бороды")
    assert (result.source, result.interval_days, result.confidence) == (Source.INDUSTRY_STANDARD, 21, 0.75)
    assert result.evidence["category"] == "beard"
    assert result.evidence["matched_keywords"] == ["борода"]
    assert set(result.evidence["passed_over"]) == {"personal", "service_average"}


def test_nothing_known_gives_the_universal_thirty_days() -> None:
    result = choose_interval(service_name="SPA-программа «Релакс»")
    assert (result.source, result.interval_days, result.confidence) == (Source.UNIVERSAL, UNIVERSAL_DAYS, 0.6)
    assert set(result.evidence["passed_over"]) == {"personal", "service_average", "industry_standard"}


def test_absurd_values_make_a_level_not_apply() -> None:
    for bad in (0, -5, 366, 10**9, None, "24", math.nan, math.inf, True, 24.5, Decimal("NaN")):
        personal = PersonalRhythm(interval_days=bad, intervals=5, consistency=1)
        service = ServiceAverage(median_days=bad, sample_size=50)
        result = choose_interval(personal=personal, service=service)
        assert result.source == Source.UNIVERSAL, bad
    for bad in (None, "x", -0.1, 1.5, math.nan):
        result = choose_interval(personal=PersonalRhythm(24, 5, bad), service=SALON)
        assert result.source == Source.SERVICE_AVERAGE, bad


def test_integral_decimals_and_floats_are_whole_days() -> None:
    personal = PersonalRhythm(interval_days=Decimal(24), intervals=5.0, consistency=0.9)
    assert choose_interval(personal=personal).interval_days == 24


def test_evidence_serializes_as_plain_data() -> None:
    import json

    for result in (
        choose_interval(personal=STEADY),
        choose_interval(service=SALON),
        choose_interval(industry=BEARD_MATCH),
        choose_interval(),
    ):
        assert json.loads(json.dumps(result.as_dict()))["source"] == result.source


values = st.one_of(
    st.none(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.booleans(),
)


@given(
    values,
    values,
    values,
    values,
    values,
    values,
    st.one_of(st.none(), st.integers(), st.text()),
    st.one_of(st.none(), st.text()),
)
def test_never_fails_and_always_answers_a_sane_interval(
    p_days: object,
    p_n: object,
    p_c: object,
    s_days: object,
    s_n: object,
    s_active: object,
    service_id: object,
    name: object,
) -> None:
    result = choose_interval(
        personal=PersonalRhythm(p_days, p_n, p_c),
        service=ServiceAverage(s_days, s_n, s_active),
        service_id=service_id,  # type: ignore[arg-type]
        service_name=name,  # type: ignore[arg-type]
    )
    assert 1 <= result.interval_days <= 365
    assert 0 <= result.confidence <= 1
    assert result.source in set(Source)
