"""Queries on the history table that several domains share."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from reactivation.storage.history import latest_sent_message
from tests.factories import make_client, make_company
from tests.history_rows import make_history

SENT_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LAST_VISIT = date(2026, 1, 20)


def test_latest_sent_message_is_what_the_reply_handler_falls_back_to(db: Session) -> None:
    # given a sent gentle message, a later failed offer, and another company's message to the same phone
    company, other = make_company(db), make_company(db)
    client = make_client(db, company.id, last_visit=LAST_VISIT, phone="+79005551234")
    gentle = make_history(db, client, sent_at=SENT_AT, step=1)
    make_history(db, client, sent_at=None, status="failed", step=2, created_at=SENT_AT + timedelta(days=2))
    stranger = make_client(db, other.id, last_visit=LAST_VISIT, phone="+79005551234")
    make_history(db, stranger, sent_at=SENT_AT + timedelta(days=1))
    now = SENT_AT + timedelta(days=3)
    # then the company's latest *sent* message is found, and nothing once the window has passed
    found = latest_sent_message(db, company_id=company.id, phone_e164="+79005551234", now=now, days=7)
    assert found is not None and found.id == gentle.id
    late = SENT_AT + timedelta(days=8)
    assert latest_sent_message(db, company_id=company.id, phone_e164="+79005551234", now=late, days=7) is None


def test_latest_sent_message_refuses_a_naive_now(db: Session) -> None:
    company = make_company(db)
    with pytest.raises(ValueError, match="timezone-aware"):
        latest_sent_message(db, company_id=company.id, phone_e164="+79005551234", now=datetime(2026, 3, 5), days=7)
