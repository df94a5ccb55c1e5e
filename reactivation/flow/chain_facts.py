"""What a per-client chain carries from its start: the company's settings and the client's facts, read once.

A chain's steps used to read the company and the client again at every step. They are read once instead, in bulk
for every chain a claim batch (or a Gemini batch) starts, and each chain's tasks carry them as a small JSON object:
the company's validated settings, its name and time zone; the row's facts fixed at the claim (client, step, lapse,
service, interval) and the client's first name (never the full name, never the phone: the phone is read with the row
at the send). What may change after the claim (an opt-out, a booking, a visit, a hold) is re-checked once, right
before the send (reactivation.flow.pipeline.send_message); the row's status is never carried, always read or moved
by a conditional UPDATE.

A step called without facts (a chain resumed by the sweep, a call by hand, a task queued before this existed) reads
them itself, and a company whose settings became invalid then raises CompanyConfigError as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, time
from functools import lru_cache
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import Step
from reactivation.messaging.composing import MessageRequest
from reactivation.messaging.names import first_name
from reactivation.storage import history
from reactivation.storage.companies import CompanyConfig, UnknownCompany, company_config, parse_company
from reactivation.storage.company_settings import (
    CompanyConfigError,
    CompanySettings,
)
from reactivation.storage.models import Client, Company, ReactivationHistory

Pair = tuple[int, int]  # (company_id, history_id)


@dataclass(frozen=True)
class CompanyFacts:
    """A company's row as the chain needs it; `settings` in the JSON form the `companies.settings` column holds."""

    id: int
    name: str
    timezone: str
    country: str
    enabled: bool
    settings: dict[str, Any]

    def config(self) -> CompanyConfig:
        """The validated config (parsed once per process for the same facts)."""
        return _config(json.dumps(asdict(self), sort_keys=True))


@lru_cache(maxsize=256)
def _config(frozen: str) -> CompanyConfig:
    return parse_company(**json.loads(frozen))


def settings_json(settings: CompanySettings) -> dict[str, Any]:
    """Validated settings back in the column's JSON form (times as "HH:MM"), only what differs from the defaults."""
    values = settings.model_dump(exclude_defaults=True)
    return {key: value.strftime("%H:%M") if isinstance(value, time) else value for key, value in values.items()}


def company_facts(company: CompanyConfig) -> CompanyFacts:
    return CompanyFacts(
        id=company.id,
        name=company.name,
        timezone=company.tz.key,
        country=company.country,
        enabled=company.enabled,
        settings=settings_json(company.settings),
    )


@dataclass(frozen=True)
class ChainFacts:
    """One chain's facts: its company's and its row's, as claimed."""

    company: CompanyFacts
    client_id: int
    first_name: str | None
    step: int
    last_service_name: str | None
    last_visit_date: date
    inactive_days: int | None
    interval_days: int | None
    dry_run: bool
    campaign_run_id: int | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["last_visit_date"] = self.last_visit_date.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainFacts:
        values = dict(data)
        values["company"] = CompanyFacts(**values["company"])
        values["last_visit_date"] = date.fromisoformat(values["last_visit_date"])
        return cls(**values)

    def message_request(self) -> MessageRequest:
        """What the row's message is composed from (as MessageRequest.of builds it from the row)."""
        return MessageRequest(
            company_name=self.company.name,
            client_name=self.first_name,
            service_title=self.last_service_name,
            step=Step(self.step),
            client_id=self.client_id,
            lapse_date=self.last_visit_date,
            days_inactive=self.inactive_days,
            interval_days=self.interval_days,
        )


def load_facts(session: Session, pairs: Iterable[Pair], *, strict: bool = False) -> dict[Pair, ChainFacts]:
    """The facts of these rows, in two queries. A company whose settings are invalid (or gone) raises with `strict`;
    otherwise its rows are left out, and their chains read (and fail on) the settings themselves."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return {}
    companies = _companies(session, {company_id for company_id, _ in wanted}, strict=strict)
    h = ReactivationHistory
    statement = (
        select(
            h.company_id,
            h.id,
            h.client_id,
            h.step,
            h.last_service_name,
            h.last_visit_date,
            h.inactive_days,
            h.interval_days,
            h.dry_run,
            h.campaign_run_id,
            Client.name.label("client_name"),
        )
        .outerjoin(Client, (Client.company_id == h.company_id) & (Client.id == h.client_id))
        .where(tuple_(h.company_id, h.id).in_(wanted))
    )
    found = {}
    for row in session.execute(statement):
        company = companies.get(row.company_id)
        if company is None:
            continue
        found[(row.company_id, row.id)] = ChainFacts(
            company=company,
            client_id=row.client_id,
            first_name=first_name(row.client_name),
            step=row.step,
            last_service_name=history.cut(row.last_service_name, history.MAX_SERVICE_NAME),
            last_visit_date=row.last_visit_date,
            inactive_days=row.inactive_days,
            interval_days=row.interval_days,
            dry_run=bool(row.dry_run),
            campaign_run_id=row.campaign_run_id,
        )
    return found


def _companies(session: Session, ids: set[int], *, strict: bool) -> dict[int, CompanyFacts]:
    rows = {row.id: row for row in session.scalars(select(Company).where(Company.id.in_(sorted(ids))))}
    facts = {}
    for company_id in sorted(ids):
        row = rows.get(company_id)
        try:
            if row is None:
                raise UnknownCompany(company_id)
            facts[company_id] = company_facts(company_config(row))
        except (CompanyConfigError, UnknownCompany):
            if strict:
                raise
    return facts
