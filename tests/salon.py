"""A small committed salon with a known set of due clients, for pipeline, worker and fault tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reactivation.core.phones import normalize_phone
from reactivation.storage.models import Client
from tests.factories import make_booking, make_client, make_company, make_service

# A title no industry keyword matches: these clients fall to the universal 30 days, so step 1 is due at 33 days.
UNMATCHED_TITLE = "Камуфляж седины"
OPEN_ALL_DAY = {"send_window_start": "00:00", "send_window_end": "23:59", "skip_holidays": False}


@dataclass
class Salon:
    company_id: int
    today: date
    due: list[int] = field(default_factory=list)  # client ids that must get exactly one message
    not_due: list[int] = field(default_factory=list)
    phones: dict[int, str] = field(default_factory=dict)  # client id -> E.164

    @property
    def now(self) -> datetime:
        """Noon UTC of the salon's `today` (15:00 in Moscow), inside any all-day window."""
        return datetime.combine(self.today, time(12, 0), tzinfo=UTC)


def build_salon(
    engine: Engine,
    *,
    due: int,
    company_id: int = 962302,
    today: date = date(2026, 11, 23),
    settings: dict[str, object] | None = None,
    extras: bool = True,
) -> Salon:
    """`due` clients due for step 1 today, and (with `extras`) clients who must not be contacted."""
    salon = Salon(company_id=company_id, today=today)
    with Session(engine) as session:
        make_company(session, company_id, name="Салон «Бархат»", settings={**OPEN_ALL_DAY, **(settings or {})})
        service = make_service(session, company_id, UNMATCHED_TITLE)
        names = ["Мария", "Иванова Анна Петровна", "ОЛЬГА", None, "Клиент 79001112233", "Дмитрий Смирнов"]
        for index in range(due):
            client = make_client(
                session,
                company_id,
                id=company_id * 100_000 + index + 1,
                last_visit=today - timedelta(days=40 + index % 5),
                services=[service],
                phone=_phone(company_id, index),
                name=names[index % len(names)],
                total_spent=Decimal(1000 + index),
            )
            salon.due.append(client.id)
        if extras:
            base = company_id * 100_000 + 90_000
            recent = make_client(
                session, company_id, id=base + 1, last_visit=today - timedelta(days=10), services=[service]
            )
            black = make_client(
                session,
                company_id,
                id=base + 2,
                last_visit=today - timedelta(days=40),
                services=[service],
                blacklisted=True,
            )
            booked = make_client(
                session, company_id, id=base + 3, last_visit=today - timedelta(days=40), services=[service]
            )
            make_booking(session, booked, when=datetime.combine(today + timedelta(days=3), time(9), tzinfo=UTC))
            never = make_client(session, company_id, id=base + 4, last_visit=None, services=[service])
            salon.not_due += [recent.id, black.id, booked.id, never.id]
        session.commit()
    with Session(engine) as session:
        for client_id, phone in session.execute(
            select(Client.id, Client.phone).where(Client.company_id == company_id, Client.id.in_(salon.due))
        ):
            salon.phones[client_id] = normalize_phone(phone)
    return salon


def _phone(company_id: int, index: int) -> str:
    # Written the way the booking system writes them; unique per company.
    digits = f"{(company_id % 7) * 1_000_000 + index:07d}"
    return f"8 (916) {digits[:3]}-{digits[3:5]}-{digits[5:]}"
