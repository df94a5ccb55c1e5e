"""Retention: old history rows lose phones and texts, keep what the stats count, and only once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from reactivation.compliance.retention import anonymize_old_history
from reactivation.outcomes.stats import campaign_stats
from reactivation.storage.companies import UnknownCompany
from reactivation.storage.models import ReactivationHistory
from tests.factories import make_client, make_company
from tests.history_rows import make_history

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def reload(db: Session, row: ReactivationHistory) -> ReactivationHistory:
    db.expire(row)
    return db.execute(select(ReactivationHistory).where(ReactivationHistory.id == row.id)).scalar_one()


def test_old_rows_are_anonymized_and_the_stats_still_add_up(db: Session) -> None:
    # given a message sent 400 days ago with a reply and a booking, and one sent 10 days ago
    company = make_company(db)
    client = make_client(db, company.id, last_visit=date(2024, 12, 1))
    old = make_history(
        db,
        client,
        sent_at=NOW - timedelta(days=400),
        response_received=True,
        response_type="positive",
        response_text="Да, запишите, это Мария",
        booking_created=True,
        booking_id=7,
        booking_created_at=NOW - timedelta(days=399),
        error="gateway said +79001234567 is busy",
    )
    recent = make_history(db, client, sent_at=NOW - timedelta(days=10), last_visit=date(2026, 2, 1))
    before = campaign_stats(db, company_id=company.id, since=None, until=None)
    # when old history is anonymized
    changed = anonymize_old_history(db, company_id=company.id, now=NOW)
    # then the old row has no phone or texts left, but its label, dates and booking stay
    assert changed == 1
    row = reload(db, old)
    assert (row.phone, row.message_text, row.response_text, row.error) == (None, None, None, None)
    assert row.anonymized_at == NOW
    assert (row.response_type, row.booking_id, row.client_id, row.step) == ("positive", 7, client.id, 1)
    assert row.message_sent_at == NOW - timedelta(days=400)
    # and the recent row is untouched
    assert reload(db, recent).phone is not None and reload(db, recent).message_text is not None
    # and the stats are the same as before
    assert campaign_stats(db, company_id=company.id, since=None, until=None) == before


def test_anonymizing_is_idempotent_and_follows_the_setting(db: Session) -> None:
    # given a company keeping history 60 days, with rows of 30 and 90 days ago and a hold-out row of 90
    company = make_company(db, settings={"retention_days": 60})
    client = make_client(db, company.id, last_visit=date(2025, 11, 1))
    make_history(db, client, sent_at=NOW - timedelta(days=30), last_visit=date(2026, 1, 1))
    make_history(db, client, sent_at=NOW - timedelta(days=90))
    make_history(db, client, sent_at=None, status="holdout", step=2, created_at=NOW - timedelta(days=90))
    # when it runs twice
    first = anonymize_old_history(db, company_id=company.id, now=NOW)
    second = anonymize_old_history(db, company_id=company.id, now=NOW + timedelta(hours=1))
    # then the two old rows changed once
    assert (first, second) == (2, 0)


def test_two_companies_never_mix(db: Session) -> None:
    first, second = make_company(db), make_company(db, settings={"retention_days": 30})
    mine = make_client(db, first.id, last_visit=date(2025, 12, 1))
    kept = make_history(db, mine, sent_at=NOW - timedelta(days=100))
    assert anonymize_old_history(db, company_id=second.id, now=NOW) == 0
    assert reload(db, kept).anonymized_at is None


def test_bad_input(db: Session) -> None:
    with pytest.raises(UnknownCompany):
        anonymize_old_history(db, company_id=987654321, now=NOW)
    company = make_company(db)
    with pytest.raises(ValueError, match="timezone-aware"):
        anonymize_old_history(db, company_id=company.id, now=datetime(2026, 3, 20))


def test_retention_on_sqlite(sqlite_db: Session) -> None:
    company = make_company(sqlite_db)
    client = make_client(sqlite_db, company.id, last_visit=date(2024, 12, 1))
    make_history(sqlite_db, client, sent_at=NOW - timedelta(days=400))
    assert anonymize_old_history(sqlite_db, company_id=company.id, now=NOW) == 1
    assert anonymize_old_history(sqlite_db, company_id=company.id, now=NOW) == 0
