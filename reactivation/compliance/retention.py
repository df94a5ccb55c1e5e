"""Data retention: history rows older than the company's retention_days lose what identifies a person.

Removed (set to NULL): the phone, the message text (it names the client), the client's reply, and the error texts
(a provider's error may quote a number). Kept: the client id (the booking system's key, which also keeps the flow
from contacting the same lapse twice), the step, status, dates, interval, generator, variant, response label and
booking link, so that stats over old periods still add up. `anonymized_at` marks the row, which makes the job
idempotent. A row's age is counted from when it was sent, or created if it never was.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from reactivation.storage.companies import load_company
from reactivation.storage.models import ReactivationHistory

log = logging.getLogger(__name__)


def anonymize_old_history(session: Session, *, company_id: int, now: datetime) -> int:
    """Anonymize the company's history rows older than retention_days; returns how many rows it changed."""
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    company = load_company(session, company_id=company_id)
    now = now.astimezone(UTC)
    cutoff = now - timedelta(days=company.settings.retention_days)
    h = ReactivationHistory
    changed = session.execute(
        update(h)
        .where(
            h.company_id == company_id,
            h.anonymized_at.is_(None),
            func.coalesce(h.message_sent_at, h.created_at) < cutoff,
        )
        .values(
            phone=None,
            message_text=None,
            response_text=None,
            error=None,
            context_error=None,
            anonymized_at=now,
            updated_at=now,
        )
        .returning(h.id)
        .execution_options(synchronize_session=False)
    ).all()
    log.info(
        "history anonymized",
        extra={"company_id": company_id, "rows": len(changed), "retention_days": company.settings.retention_days},
    )
    return len(changed)
