"""Win-back steps: k × interval + grace, the highest due step, once per step per lapse, never past the horizon."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactivation.core.vocabulary import Step
from reactivation.timing.steps import due_date, highest_due_step, next_step


@pytest.mark.parametrize(
    ("step", "interval", "grace"),
    [(Step.GENTLE, 24, 3), (Step.OFFER, 24, 3), (Step.WIN_BACK, 24, 3), (Step.GENTLE, 30, 0), (Step.WIN_BACK, 7, 5)],
)
def test_step_is_due_exactly_at_k_intervals_plus_grace_and_not_a_day_before(
    step: Step, interval: int, grace: int
) -> None:
    day = int(step) * interval + grace
    assert next_step(days_inactive=day, interval_days=interval, grace_days=grace) == step
    before = next_step(days_inactive=day - 1, interval_days=interval, grace_days=grace)
    assert before == (Step(step - 1) if step > Step.GENTLE else None)


def test_universal_thirty_days_reproduce_the_seeds_campaigns() -> None:
    # Given the universal 30 days and no grace, the steps fall on the seed's 30/60/90 thresholds
    found = {d: next_step(days_inactive=d, interval_days=30, grace_days=0) for d in (29, 30, 59, 60, 89, 90, 200)}
    assert found == {
        29: None,
        30: Step.GENTLE,
        59: Step.GENTLE,
        60: Step.OFFER,
        89: Step.OFFER,
        90: Step.WIN_BACK,
        200: Step.WIN_BACK,
    }
    assert [s.campaign for s in Step] == ["dormant_30", "dormant_60", "dormant_90"]


def test_found_late_the_client_gets_the_highest_due_step_only() -> None:
    # Found 80 days after a 24-day service: win_back is due (75), so win_back, not gentle first
    assert next_step(days_inactive=80, interval_days=24, grace_days=3) == Step.WIN_BACK
    # and after it nothing more in this lapse, however long it lasts
    assert next_step(days_inactive=300, interval_days=24, grace_days=3, already_sent_steps=[3]) is None


def test_each_step_at_most_once_per_lapse() -> None:
    assert next_step(days_inactive=30, interval_days=24, grace_days=3, already_sent_steps=[1]) is None
    assert next_step(days_inactive=51, interval_days=24, grace_days=3, already_sent_steps=[1]) == Step.OFFER
    assert next_step(days_inactive=60, interval_days=24, grace_days=3, already_sent_steps=[1, 2]) is None
    assert next_step(days_inactive=75, interval_days=24, grace_days=3, already_sent_steps=[1, 2]) == Step.WIN_BACK


def test_an_earlier_step_never_follows_a_later_one() -> None:
    # Given offer was sent while the interval was shorter, and the interval has since grown
    assert next_step(days_inactive=40, interval_days=30, grace_days=3, already_sent_steps=[2]) is None


def test_nothing_beyond_the_horizon() -> None:
    assert next_step(days_inactive=365, interval_days=24, grace_days=3, max_inactive_days=365) == Step.WIN_BACK
    assert next_step(days_inactive=366, interval_days=24, grace_days=3, max_inactive_days=365) is None


def test_nonsense_gives_no_step() -> None:
    assert highest_due_step(days_inactive=100, interval_days=0, grace_days=3) is None
    assert highest_due_step(days_inactive=-1, interval_days=24, grace_days=3) is None
    assert highest_due_step(days_inactive=100, interval_days=24, grace_days=-1) is None


def test_due_date_is_last_visit_plus_k_intervals_plus_grace() -> None:
    assert due_date(date(2026, 10, 1), Step.OFFER, interval_days=21, grace_days=3) == date(2026, 11, 15)


@given(
    st.integers(min_value=0, max_value=500),
    st.integers(min_value=1, max_value=365),
    st.integers(min_value=0, max_value=60),
    st.sets(st.integers(min_value=1, max_value=3)),
)
def test_the_step_given_is_due_and_new(days: int, interval: int, grace: int, sent: set[int]) -> None:
    step = next_step(days_inactive=days, interval_days=interval, grace_days=grace, already_sent_steps=sent)
    if step is not None:
        assert days >= int(step) * interval + grace
        assert step > max(sent, default=0)
        assert step == Step.WIN_BACK or days < (int(step) + 1) * interval + grace
