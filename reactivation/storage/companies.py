"""Loading a company with its validated settings; the one place that turns a `companies` row into config."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from reactivation.storage.company_settings import CompanySettings, parse_company_settings, parse_timezone
from reactivation.storage.models import Company


class UnknownCompany(LookupError):
    def __init__(self, company_id: int) -> None:
        super().__init__(f"unknown company {company_id}")
        self.company_id = company_id


@dataclass(frozen=True)
class CompanyConfig:
    """A company as the pipeline uses it: validated settings and a real time zone."""

    id: int
    name: str
    tz: ZoneInfo
    country: str
    enabled: bool
    settings: CompanySettings

    def local_now(self, now: datetime) -> datetime:
        return now.astimezone(self.tz)

    def local_today(self, now: datetime) -> date:
        return self.local_now(now).date()


def company_config(row: Company) -> CompanyConfig:
    """Validate a row; raises CompanyConfigError naming the company when a value is unusable."""
    return parse_company(
        id=row.id,
        name=row.name,
        timezone=row.timezone,
        country=row.country,
        enabled=row.enabled,
        settings=row.settings,
    )


def parse_company(
    *, id: int, name: str | None, timezone: str | None, country: str | None, enabled: bool | None, settings: Any
) -> CompanyConfig:
    """A company's values (a row's, or the copy a chain carries) validated; CompanyConfigError names the company."""
    return CompanyConfig(
        id=id,
        name=name or "",
        tz=parse_timezone(id, timezone),
        country=(country or "RU").upper(),
        enabled=bool(enabled),
        settings=parse_company_settings(id, settings),
    )


def load_company(session: Session, *, company_id: int) -> CompanyConfig:
    """The company's config; UnknownCompany if there is no such row."""
    row = session.execute(select(Company).where(Company.id == company_id)).scalar_one_or_none()
    if row is None:
        raise UnknownCompany(company_id)
    return company_config(row)


def company_ids(session: Session) -> list[int]:
    """Every company's id, enabled or not, in order."""
    return list(session.scalars(select(Company.id).order_by(Company.id)))
