"""The hand-over of one sent history row: what the pipeline saves for the AI admin after a send, and what the reply
handler rebuilds when Redis has lost it."""

from __future__ import annotations

from reactivation.core.vocabulary import Step
from reactivation.handover.admin_handover import HandoverContext
from reactivation.storage.models import ReactivationHistory


def handover_context(row: ReactivationHistory) -> HandoverContext:
    """What the AI admin gets for this sent row."""
    assert row.phone and row.message_text and row.message_sent_at
    return HandoverContext(
        company_id=row.company_id,
        phone=row.phone,
        history_id=row.id,
        step=Step(row.step),
        message=row.message_text,
        sent_at=row.message_sent_at,
        days_inactive=row.inactive_days,
        last_visit_date=row.last_visit_date,
        interval_days=row.interval_days,
        interval_source=row.interval_source,
        confidence=float(row.confidence_score) if row.confidence_score is not None else None,
        suggested_service_id=row.last_service_id,
        suggested_service_name=row.last_service_name,
        resend=row.resend_count or 0,
    )
