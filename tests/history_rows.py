"""A factory for client_reactivation_history rows, inserted directly: tests of replies, attribution, stats, consent
and retention state only what matters to them (status, step, when it was sent, the reply, the booking)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from reactivation.core.phones import normalize_phone
from reactivation.core.vocabulary import Step
from reactivation.storage.models import Client, ReactivationHistory


def make_history(
    session: Session,
    client: Client,
    *,
    sent_at: datetime | None,
    status: str = "sent",
    step: int = 1,
    last_visit: date | None = None,
    **fields: Any,
) -> ReactivationHistory:
    """A history row for `client`: sent at `sent_at` (status 'sent'), or claimed then (status 'holdout')."""
    step_ = Step(step)
    lapse = last_visit or client.last_visit_date or date(2026, 1, 1)
    moment = sent_at or datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    row = ReactivationHistory(
        company_id=client.company_id,
        client_id=client.id,
        phone=fields.pop("phone", normalize_phone(client.phone) if client.phone else None),
        step=int(step_),
        message_type=step_.message_type,
        campaign=step_.campaign,
        status=status,
        message_sent_at=sent_at if status == "sent" else fields.pop("message_sent_at", None),
        message_text=fields.pop("message_text", None if status == "holdout" else "Мария, давно не виделись!"),
        generator=fields.pop("generator", None if status == "holdout" else "template"),
        variant=fields.pop("variant", None),
        inactive_days=fields.pop("inactive_days", 40),
        last_visit_date=lapse,
        due_date=fields.pop("due_date", lapse + timedelta(days=30)),
        interval_days=fields.pop("interval_days", 30),
        interval_source=fields.pop("interval_source", "universal"),
        last_service_id=fields.pop("last_service_id", None),
        last_service_name=fields.pop("last_service_name", "Стрижка женская"),
        **fields,
    )
    # A hold-out row is created at the moment it would have been sent.
    row.created_at = fields.get("created_at", moment - timedelta(minutes=5) if status == "sent" else moment)
    # Last written when it was sent (or created): the row's own instants, never the database's clock.
    row.updated_at = fields.get("updated_at", sent_at if status == "sent" and sent_at else row.created_at)
    session.add(row)
    session.flush()
    return row
