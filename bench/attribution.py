"""Attribution and stats at a busy salon's scale: 50,000 contacts over 90 days and the bookings that followed."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from bench.common import Figure, analyze, bench_database, timer
from reactivation.outcomes.attribution import attribute_bookings
from reactivation.outcomes.stats import campaign_stats
from reactivation.storage.db import make_engine, make_session_factory, session_scope
from reactivation.storage.models import Booking, Company, ReactivationHistory

CONTACTS = 50_000
COMPANY_ID = 962302
NOW = datetime(2026, 3, 20, tzinfo=UTC)


def _rows(contacts: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(1)
    history, bookings = [], []
    for i in range(contacts):
        sent = NOW - timedelta(days=rng.uniform(0, 90))
        held = i % 10 == 0
        history.append(
            {
                "company_id": COMPANY_ID,
                "client_id": i,
                "phone": f"+7900{i:07d}",
                "step": 1,
                "message_type": "gentle",
                "status": "holdout" if held else "sent",
                "message_sent_at": None if held else sent,
                "created_at": sent,
                "inactive_days": 40,
                "last_visit_date": date(2025, 12, 1),
                "interval_days": 30,
                "interval_source": "universal",
            }
        )
        if rng.random() < 0.3:
            made = sent + timedelta(days=rng.uniform(-3, 10))
            # Half the bookings carry the client id; the other half only a phone in the national form.
            bookings.append(
                {
                    "id": i + 1,
                    "company_id": COMPANY_ID,
                    "client_id": i if i % 2 else None,
                    "client_phone": f"8 (900) {i:07d}",
                    "datetime": made + timedelta(days=3),
                    "status": "confirmed",
                    "created_at": made,
                }
            )
    return history, bookings


def run(contacts: int = CONTACTS) -> list[Figure]:
    history, bookings = _rows(contacts)
    with bench_database("reactivation_bench_attribution") as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            session.add(Company(id=COMPANY_ID, name="bench", settings={"holdout_percent": 10}))
            session.flush()
            session.execute(insert(ReactivationHistory), history)
            session.execute(insert(Booking), bookings)
        analyze(engine)
        with timer() as first, session_scope(factory) as session:
            linked = attribute_bookings(session, company_id=COMPANY_ID, now=NOW)
        with timer() as again, session_scope(factory) as session:
            relinked = attribute_bookings(session, company_id=COMPANY_ID, now=NOW)
        with timer() as counting, session_scope(factory) as session:
            stats = campaign_stats(session, company_id=COMPANY_ID, since=None, until=None)
        engine.dispose()
    return [
        Figure(
            f"attribute {len(bookings):,} bookings to {contacts:,} contacts",
            first[0],
            "s",
            note=f"{linked:,} linked (latest contact within 7 days, by id or phone)",
        ),
        Figure("attribute again (idempotent)", again[0], "s", note=f"{relinked} linked"),
        Figure(
            f"stats over {contacts:,} contacts",
            counting[0],
            "s",
            note=f"uplift {stats['holdout']['uplift']:+.3f}" if stats["holdout"] else "",
        ),
    ]
