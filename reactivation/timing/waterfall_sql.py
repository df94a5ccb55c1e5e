"""The interval waterfall in SQL, and the per-service facts it needs, shared by the due selection and the kept due
dates: which personal and salon rows the waterfall accepts, the industry level as a small table, the interval and
its source as SQL expressions, and the Python rebuild of one client's Interval (with its evidence) from the raw rows.

The SQL uses the constants of timing/waterfall.py; tests check it agrees with `choose_interval`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, null, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from reactivation.storage.models import Client, ClientPersonalizedInterval, Service, ServiceReactivationInterval
from reactivation.timing.industry import IndustryMatch, load_standards, match_industry
from reactivation.timing.waterfall import (
    MAX_INTERVAL_DAYS,
    MIN_CONSISTENCY,
    MIN_INTERVAL_DAYS,
    MIN_PERSONAL_INTERVALS,
    MIN_SERVICE_SAMPLE,
    UNIVERSAL_DAYS,
    Interval,
    PersonalRhythm,
    ServiceAverage,
    Source,
    choose_interval,
)


@dataclass(frozen=True)
class ServiceFacts:
    """A company's service titles (yclients_id → title) and the industry category each matches."""

    titles: dict[int, str]
    industry: dict[int, IndustryMatch]

    def title(self, service_id: int | None, last_services: Any) -> str | None:
        """The last service's title: the services table's, else the first item of clients.last_services."""
        title = self.titles.get(service_id) if service_id is not None else None
        return title if title is not None else first_title(last_services)

    def interval(
        self,
        *,
        service_id: int | None,
        title: str | None,
        personal: tuple[Any, Any, Any] | None,
        service: tuple[Any, Any, Any] | None,
    ) -> Interval:
        """The waterfall's Interval for one client from the raw rows: personal (days, visit_count, consistency)
        and salon (median, sample, is_active). Many clients share the inputs, so the answers are cached."""
        return _interval(self.industry.get(service_id) if service_id is not None else None, service_id, title,
                         personal, service)  # fmt: skip


def service_facts(session: Session, *, company_id: int) -> ServiceFacts:
    standards = load_standards(session)
    titles = dict(
        session.execute(select(Service.yclients_id, Service.title).where(Service.company_id == company_id)).all()
    )
    industry = {}
    for service_id, title in titles.items():
        found = match_industry(title, standards)
        if found is not None:
            industry[service_id] = found
    return ServiceFacts(titles=titles, industry=industry)


@lru_cache(maxsize=200_000)
def _interval(
    industry: IndustryMatch | None,
    service_id: int | None,
    title: str | None,
    personal: tuple[Any, Any, Any] | None,
    service: tuple[Any, Any, Any] | None,
) -> Interval:
    rhythm = None
    if personal is not None:
        rhythm = PersonalRhythm(personal[0], personal[1] - 1, personal[2])
    average = ServiceAverage(*service) if service is not None else None
    return choose_interval(
        personal=rhythm, service=average, industry=industry, service_id=service_id, service_name=title
    )


def first_title(raw: Any) -> str | None:
    """The title of the first item of clients.last_services, if it has one."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        title = raw[0].get("title")
        if isinstance(title, str) and title.strip():
            return title.strip()[:200]
    return None


# Only usable personal and salon rows take part in a join over a company's clients (a smaller hash on a million).


def usable_personal(company_id: int) -> ColumnElement[bool]:
    """A personal row the waterfall's level 1 accepts for the client's last service."""
    p = ClientPersonalizedInterval
    return and_(
        p.company_id == company_id,
        p.client_id == Client.id,
        p.service_id == Client.last_service_id,
        p.visit_count >= MIN_PERSONAL_INTERVALS + 1,
        p.consistency_score >= MIN_CONSISTENCY,
        p.consistency_score <= 1,
        p.personal_interval_days.between(MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS),
    )


def usable_service(company_id: int) -> ColumnElement[bool]:
    """A salon row the waterfall's level 2 accepts for the client's last service."""
    s = ServiceReactivationInterval
    return and_(
        s.company_id == company_id,
        s.service_id == Client.last_service_id,
        s.is_active.is_(True),
        s.sample_size >= MIN_SERVICE_SAMPLE,
        s.median_interval_days.between(MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS),
    )


def industry_table(industry: dict[int, IndustryMatch]) -> Any:
    """(service_id, days) for the company's services that match an industry category, as a CTE."""
    rows = [
        select(literal(service_id, Integer).label("service_id"), literal(m.interval_days, Integer).label("days"))
        for service_id, m in sorted(industry.items())
    ]
    if not rows:
        empty = select(cast(null(), Integer).label("service_id"), cast(null(), Integer).label("days")).where(
            literal(False)
        )
        return empty.cte("industry")
    if len(rows) == 1:
        return rows[0].cte("industry")
    return union_all(*rows).cte("industry")


def waterfall_days(industry: Any) -> ColumnElement[int]:
    """The personal median, else the salon's, else the industry's, else the universal days (with the usable rows
    outer-joined)."""
    return func.coalesce(
        ClientPersonalizedInterval.personal_interval_days,
        ServiceReactivationInterval.median_interval_days,
        case((industry.c.days.between(MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS), industry.c.days)),
        UNIVERSAL_DAYS,
    )


def waterfall_source(industry: Any) -> ColumnElement[str]:
    """The level `waterfall_days` takes its days from."""
    return case(
        (ClientPersonalizedInterval.personal_interval_days.is_not(None), literal(Source.PERSONAL.value)),
        (ServiceReactivationInterval.median_interval_days.is_not(None), literal(Source.SERVICE_AVERAGE.value)),
        (industry.c.days.between(MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS), literal(Source.INDUSTRY_STANDARD.value)),
        else_=literal(Source.UNIVERSAL.value),
    )
