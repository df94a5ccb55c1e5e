"""Opt-outs: permanent per company and phone, kept in a table the booking-system sync never writes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reactivation.storage.db import is_postgres
from reactivation.storage.history import cut
from reactivation.storage.models import OptOut


def record_opt_out(
    session: Session,
    *,
    company_id: int,
    phone: str,
    client_id: int | None,
    history_id: int | None,
    text: str | None,
    source: str,
    now: datetime,
) -> bool:
    """Record that this E.164 phone asked to stop; True if new (a repeated opt-out keeps the first record)."""
    dialect = postgresql if is_postgres(session) else sqlite
    statement = (
        dialect.insert(OptOut)
        .values(
            company_id=company_id,
            phone=phone,
            client_id=client_id,
            history_id=history_id,
            reason_text=cut(text, 500),
            source=source,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["company_id", "phone"])
        .returning(OptOut.phone)
    )
    return session.execute(statement).first() is not None


def is_opted_out(session: Session, *, company_id: int, phone: str) -> bool:
    return (
        session.execute(select(OptOut.phone).where(OptOut.company_id == company_id, OptOut.phone == phone)).first()
        is not None
    )
