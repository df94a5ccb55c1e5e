"""What the averages job wrote, read back as plain values, and the synthetic salon its database tests run on."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reactivation.storage.models import ClientPersonalizedInterval, ServiceIntervalCount, ServiceReactivationInterval
from reactivation.tools.bulk import load_salon
from reactivation.tools.synthetic import generate_salon

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def seeded_salon(session: Session, company_id: int) -> None:
    """A synthetic salon of 250 clients with a year of visits up to TODAY."""
    plan = generate_salon(company_id=company_id, clients=250, seed=3, today=TODAY)
    load_salon(session, plan)
    session.flush()


def service_rows(session: Session, company_id: int) -> dict[int, tuple[Any, ...]]:
    """The salon medians: service id → (name, median, mean, min, max, stddev, sample size, active)."""
    s = ServiceReactivationInterval
    rows = session.execute(
        select(
            s.service_id,
            s.service_name,
            s.median_interval_days,
            s.avg_interval_days,
            s.min_interval_days,
            s.max_interval_days,
            s.stddev_days,
            s.sample_size,
            s.is_active,
        ).where(s.company_id == company_id)
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def personal_rows(session: Session, company_id: int) -> dict[tuple[int, int], tuple[Any, ...]]:
    """The personal rhythms: (client, service) → (interval, visit count, consistency)."""
    p = ClientPersonalizedInterval
    rows = session.execute(
        select(p.client_id, p.service_id, p.personal_interval_days, p.visit_count, p.consistency_score).where(
            p.company_id == company_id
        )
    )
    return {(row[0], row[1]): (row[2], row[3], Decimal(row[4])) for row in rows}


def interval_counts(session: Session, company_id: int) -> dict[tuple[int, date, int], int]:
    """The salon interval counts kept between runs (PostgreSQL only: SQLite recounts everything each time)."""
    c = ServiceIntervalCount
    rows = session.execute(
        select(c.service_id, c.ended_on, c.interval_days, c.intervals).where(c.company_id == company_id)
    )
    return {(service, ended, days): intervals for service, ended, days, intervals in rows}
