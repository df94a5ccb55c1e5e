"""When each win-back step falls due: k × interval + grace days after the last visit (the steps themselves are
reactivation.core.vocabulary.Step)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from reactivation.core.vocabulary import Step


def due_after_days(step: Step, *, interval_days: int, grace_days: int) -> int:
    """Days after the last visit at which `step` falls due: k × interval + grace."""
    return int(step) * interval_days + grace_days


def highest_due_step(*, days_inactive: int, interval_days: int, grace_days: int) -> Step | None:
    """The highest step whose day has come (days_inactive ≥ k × interval + grace), or None."""
    if interval_days < 1 or days_inactive < 0 or grace_days < 0:
        return None
    k = (days_inactive - grace_days) // interval_days
    if k < 1:
        return None
    return Step(min(k, len(Step)))


def next_step(
    *,
    days_inactive: int,
    interval_days: int,
    grace_days: int,
    already_sent_steps: Iterable[int] = (),
    max_inactive_days: int = 365,
) -> Step | None:
    """The step to send today in this lapse, or None.

    The highest due step, provided no message of this lapse (the rows already claimed for its last visit date,
    whatever became of them) has that step or a later one: found 80 days after a 24-day service, a client gets
    win_back, once, and never gentle or offer afterwards. Nothing once inactive longer than max_inactive_days.
    """
    if days_inactive > max_inactive_days:
        return None
    step = highest_due_step(days_inactive=days_inactive, interval_days=interval_days, grace_days=grace_days)
    if step is None:
        return None
    if step <= max((int(s) for s in already_sent_steps), default=0):
        return None
    return step


def due_date(last_visit: date, step: Step, *, interval_days: int, grace_days: int) -> date:
    """The date `step` fell (or falls) due for a lapse that began at `last_visit`."""
    return last_visit + timedelta(days=due_after_days(step, interval_days=interval_days, grace_days=grace_days))
