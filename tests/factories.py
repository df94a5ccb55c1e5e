"""Row factories with sensible defaults: a test states only what matters to it."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from reactivation.storage.models import AppointmentCache, Booking, Client, Company, Service

_ids = itertools.count(1)


def next_id() -> int:
    return 900_000_000 + next(_ids)


def make_company(session: Session, company_id: int | None = None, **fields: Any) -> Company:
    company = Company(
        id=company_id or next_id(),
        name=fields.pop("name", "Салон «Тест»"),
        timezone=fields.pop("timezone", "Europe/Moscow"),
        country=fields.pop("country", "RU"),
        enabled=fields.pop("enabled", True),
        settings=fields.pop("settings", {}),
        **fields,
    )
    session.add(company)
    session.flush()
    return company


def make_service(session: Session, company_id: int, title: str, yclients_id: int | None = None) -> Service:
    service = Service(company_id=company_id, yclients_id=yclients_id or next_id(), title=title)
    session.add(service)
    session.flush()
    return service


def make_client(
    session: Session,
    company_id: int,
    *,
    last_visit: date | None,
    services: list[Service] | None = None,
    phone: str | None = None,
    **fields: Any,
) -> Client:
    client_id = fields.pop("id", None) or next_id()
    client = Client(
        id=client_id,
        company_id=company_id,
        name=fields.pop("name", "Мария"),
        phone=phone if phone is not None else f"+7900{client_id % 10_000_000:07d}",
        last_visit_date=last_visit,
        visit_count=fields.pop("visit_count", 5 if last_visit else 0),
        last_services=[{"id": s.yclients_id, "title": s.title} for s in (services or [])],
        total_spent=fields.pop("total_spent", Decimal(5000)),
        blacklisted=fields.pop("blacklisted", False),
        **fields,
    )
    session.add(client)
    session.flush()
    return client


def at_noon(day: date) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=UTC)


def make_visits(
    session: Session,
    client: Client,
    service: Service,
    days: list[date],
    *,
    attendance: int = 1,
) -> list[AppointmentCache]:
    rows = [
        AppointmentCache(
            company_id=client.company_id,
            client_id=client.id,
            service_ids=[service.yclients_id],
            appointment_datetime=at_noon(day),
            attendance=attendance,
        )
        for day in days
    ]
    session.add_all(rows)
    session.flush()
    return rows


def every(start: date, step_days: int, count: int) -> list[date]:
    """`count` dates from `start`, `step_days` apart."""
    return [start + timedelta(days=step_days * i) for i in range(count)]


def make_booking(
    session: Session,
    client: Client | None,
    *,
    when: datetime,
    status: str = "confirmed",
    company_id: int | None = None,
    phone: str | None = None,
    created_at: datetime | None = None,
) -> Booking:
    """A booking for `when`, made `created_at` (by default the day before: attribution reads when it was made, so a
    test's booking never takes the database's clock)."""
    booking = Booking(
        id=next_id(),
        company_id=company_id if company_id is not None else client.company_id,  # type: ignore[union-attr]
        client_id=client.id if client else None,
        client_phone=phone if phone is not None else (client.phone if client else None),
        datetime=when,
        status=status,
        created_at=created_at if created_at is not None else when - timedelta(days=1),
    )
    session.add(booking)
    session.flush()
    return booking
