"""What a campaign earned: the funnel of sent messages and, with a hold-out, the uplift over doing nothing.

The funnel counts sent messages (rows with status 'sent'; a dry run's rows are never counted) whose send time falls
in the period: replies and their labels, opt-outs, attributed bookings, the rates, and the median days from message
to booking; in total and by step, interval source, generator and variant. Rates are fractions (0.125 is 12.5 %).

The hold-out comparison is per lapse (a client's absence identified by its last visit), because that is what the
hold-out hash assigns: a lapse is *treated* when it had messages sent in the period and *control* when its rows were
held out. Each group's conversion is the share of its lapses with an attributed booking; the uplift is the difference
treated - control with a 95 % interval by Newcombe's hybrid score method (method 10 of Newcombe 1998, built from the
two Wilson score intervals): unlike the Wald interval it stays inside [-1, 1] and behaves with few bookings and with
0 % or 100 % conversion.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, func, select
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware, local_midnight
from reactivation.core.vocabulary import Status, Step
from reactivation.outcomes import reply_stats
from reactivation.outcomes.attribution import contact_time
from reactivation.storage.companies import load_company
from reactivation.storage.gemini_usage import usage_summary
from reactivation.storage.history import not_dry_run
from reactivation.storage.models import ReactivationHistory

CONFIDENCE = 0.95
BREAKDOWNS = {
    "by_step": "step",
    "by_source": "interval_source",
    "by_generator": "generator",
    "by_variant": "variant",
}


# --- Intervals (pure) -----------------------------------------------------------------------------------------


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def _check_counts(successes: int, trials: int) -> None:
    if trials <= 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")


def wilson_interval(successes: int, trials: int, *, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval for a proportion successes/trials."""
    _check_counts(successes, trials)
    z = _z(confidence)
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    denominator = 1 + z * z / trials
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def difference_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, *, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p_a - p_b (independent proportions)."""
    p_a, p_b = successes_a / max(trials_a, 1), successes_b / max(trials_b, 1)
    low_a, high_a = wilson_interval(successes_a, trials_a, confidence=confidence)
    low_b, high_b = wilson_interval(successes_b, trials_b, confidence=confidence)
    difference = p_a - p_b
    low = difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return max(-1.0, low), min(1.0, high)


# --- The funnel ------------------------------------------------------------------------------------------------


@dataclass
class Funnel:
    """Counts for one group of sent messages."""

    sent: int = 0
    responses: int = 0
    positive: int = 0
    negative: int = 0
    neutral: int = 0
    opt_outs: int = 0
    bookings: int = 0
    days_to_booking: list[float] = field(default_factory=list)

    def add(self, other: Funnel) -> None:
        for name in ("sent", "responses", "positive", "negative", "neutral", "opt_outs", "bookings"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.days_to_booking.extend(other.days_to_booking)

    def as_dict(self) -> dict[str, Any]:
        median = statistics.median(self.days_to_booking) if self.days_to_booking else None
        return {
            "sent": self.sent,
            "responses": self.responses,
            "positive": self.positive,
            "negative": self.negative,
            "neutral": self.neutral,
            "opt_outs": self.opt_outs,
            "bookings": self.bookings,
            "response_rate": _rate(self.responses, self.sent),
            "conversion_rate": _rate(self.bookings, self.sent),
            "median_days_to_booking": None if median is None else round(median, 1),
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _period(session: Session, company_id: int, since: date | None, until: date | None) -> tuple[Any, Any]:
    company = load_company(session, company_id=company_id)
    if since is not None and until is not None and since > until:
        raise ValueError(f"--since {since} is after --until {until}")
    start = local_midnight(since, company.tz) if since else None
    end = local_midnight(until + timedelta(days=1), company.tz) if until else None
    return start, end


def _in_period(column: Any, start: datetime | None, end: datetime | None) -> Any:
    conditions = [column.is_not(None)]
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return and_(*conditions)


def _group_key(kind: str, value: Any) -> str:
    if value is None:
        return "none"
    if kind == "step":
        try:
            return Step(int(value)).message_type
        except ValueError:
            return str(value)
    return str(value)


def _count(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0), type_=Integer)


def _funnels(session: Session, company_id: int, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    h = ReactivationHistory
    keys = (h.step, h.interval_source, h.generator, h.variant)
    where = (
        h.company_id == company_id,
        h.status == Status.SENT,
        not_dry_run(),
        _in_period(h.message_sent_at, start, end),
    )
    grouped = session.execute(
        select(
            *keys,
            func.count(),
            _count(h.response_received.is_(True)),
            _count(h.response_type == "positive"),
            _count(h.response_type == "negative"),
            _count(h.response_type == "neutral"),
            _count(h.response_type == "opt_out"),
            _count(h.booking_created.is_(True)),
        )
        .where(*where)
        .group_by(*keys)
    ).all()
    booked = session.execute(
        select(*keys, h.message_sent_at, h.booking_created_at).where(
            *where, h.booking_created.is_(True), h.booking_created_at.is_not(None)
        )
    ).all()

    total = Funnel()
    groups: dict[str, dict[str, Funnel]] = {name: defaultdict(Funnel) for name in BREAKDOWNS}
    for step, source, generator, variant, *counts in grouped:
        sent, responses, positive, negative, neutral, opt_outs, bookings = (int(c or 0) for c in counts)
        funnel = Funnel(sent, responses, positive, negative, neutral, opt_outs, bookings)
        _spread(total, groups, funnel, step, source, generator, variant)
    for step, source, generator, variant, sent_at, booked_at in booked:
        if sent_at is not None and booked_at is not None:
            days = Funnel(days_to_booking=[_days_between(sent_at, booked_at)])
            _spread(total, groups, days, step, source, generator, variant)
    return {
        "total": total.as_dict(),
        **{name: {key: funnel.as_dict() for key, funnel in sorted(by_key.items())} for name, by_key in groups.items()},
    }


def _spread(
    total: Funnel,
    groups: dict[str, dict[str, Funnel]],
    funnel: Funnel,
    step: Any,
    source: Any,
    generator: Any,
    variant: Any,
) -> None:
    total.add(funnel)
    for name, value in zip(BREAKDOWNS, (step, source, generator, variant), strict=True):
        groups[name][_group_key(BREAKDOWNS[name], value)].add(funnel)


def _days_between(earlier: datetime, later: datetime) -> float:
    return max(0.0, (as_aware(later) - as_aware(earlier)).total_seconds() / 86_400)


# --- Delivery ---------------------------------------------------------------------------------------------------


def _delivery(session: Session, company_id: int, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    """What the provider reported about the messages it accepted in the period (sent then, real runs only): how
    many were delivered and read, and the failures by the provider's code (a failed one is not a contact)."""
    h = ReactivationHistory
    where = (
        h.company_id == company_id,
        h.dry_run.is_(False),
        h.provider_message_id.is_not(None),
        _in_period(h.message_sent_at, start, end),
    )
    accepted, delivered, read, failed = session.execute(
        select(
            func.count(),
            _count(h.delivered_at.is_not(None)),
            _count(h.read_at.is_not(None)),
            _count(h.failed_at.is_not(None)),
        ).where(*where)
    ).one()
    by_code = session.execute(
        select(h.delivery_error_code, func.count())
        .where(*where, h.failed_at.is_not(None))
        .group_by(h.delivery_error_code)
    ).all()
    accepted, delivered, read, failed = (int(v or 0) for v in (accepted, delivered, read, failed))
    return {
        "accepted": accepted,
        "delivered": delivered,
        "read": read,
        "failed": failed,
        "delivered_rate": _rate(delivered, accepted),
        "read_rate": _rate(read, accepted),
        "failures_by_code": {
            str(code or "none"): int(count)
            for code, count in sorted(by_code, key=lambda item: (-item[1], item[0] or ""))
        },
    }


# --- Hold-out --------------------------------------------------------------------------------------------------


def holdout_comparison(
    *, treated: int, treated_bookings: int, control: int, control_bookings: int, confidence: float = CONFIDENCE
) -> dict[str, Any] | None:
    """Conversion of treated against control lapses and the uplift with its interval; None without a control group."""
    if control <= 0 or treated <= 0:
        return None
    p_treated, p_control = treated_bookings / treated, control_bookings / control
    low, high = difference_interval(treated_bookings, treated, control_bookings, control, confidence=confidence)
    uplift = p_treated - p_control
    return {
        "treated": {"clients": treated, "bookings": treated_bookings, "conversion_rate": round(p_treated, 4)},
        "control": {"clients": control, "bookings": control_bookings, "conversion_rate": round(p_control, 4)},
        "uplift": round(uplift, 4),
        "uplift_ci_low": round(low, 4),
        "uplift_ci_high": round(high, 4),
        "confidence": confidence,
        "method": "newcombe_hybrid_score",
        "significant": low > 0 or high < 0,
        # Bookings the messages added among the treated clients, by the point estimate.
        "extra_bookings": round(uplift * treated, 1),
    }


def _holdout(session: Session, company_id: int, start: datetime | None, end: datetime | None) -> dict[str, Any] | None:
    h = ReactivationHistory
    lapses = (
        select(
            _count(h.status == Status.SENT).label("sent"),
            _count(h.status == Status.HOLDOUT).label("held"),
            func.max(case((h.booking_created.is_(True), 1), else_=0)).label("booked"),
        )
        .where(
            h.company_id == company_id,
            h.status.in_([Status.SENT, Status.HOLDOUT]),
            not_dry_run(),
            _in_period(contact_time(), start, end),
        )
        .group_by(h.client_id, h.last_visit_date)
        .subquery()
    )
    treated_lapse = and_(lapses.c.sent > 0, lapses.c.held == 0)
    control_lapse = and_(lapses.c.held > 0, lapses.c.sent == 0)
    row = session.execute(
        select(
            _count(treated_lapse),
            _count(and_(treated_lapse, lapses.c.booked == 1)),
            _count(control_lapse),
            _count(and_(control_lapse, lapses.c.booked == 1)),
        )
    ).one()
    treated, treated_bookings, control, control_bookings = (int(v or 0) for v in row)
    return holdout_comparison(
        treated=treated, treated_bookings=treated_bookings, control=control, control_bookings=control_bookings
    )


def campaign_stats(session: Session, *, company_id: int, since: date | None, until: date | None) -> dict[str, Any]:
    """The funnel in total and by step, source, generator and variant, what the provider reported about delivery,
    the hold-out comparison (or None), the replies by label and reason, the snoozes and the unhappy replies (see
    reply_stats.py), and Gemini's usage.

    `since` and `until` are the company's local dates, both included; None leaves that end open.
    """
    start, end = _period(session, company_id, since, until)
    tz = load_company(session, company_id=company_id).tz
    return {
        "company_id": company_id,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        **_funnels(session, company_id, start, end),
        "delivery": _delivery(session, company_id, start, end),
        "holdout": _holdout(session, company_id, start, end),
        "replies_by_reason": reply_stats.replies_by_reason(session, company_id=company_id, start=start, end=end),
        "snoozes": reply_stats.snoozes(session, company_id=company_id, start=start, end=end),
        "unhappy": reply_stats.unhappy_replies(session, company_id=company_id, tz=tz, start=start, end=end),
        # Requests, tokens and tokens per message Gemini spent on this company's messages in the period.
        "gemini": usage_summary(session, company_id=company_id, start=start, end=end).as_dict(),
    }
