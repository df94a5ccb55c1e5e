"""A run's progress: its rows by status, the ones waiting for the send window, and an ETA from the limits in force.
The arithmetic is pure; the reading runs on SQLite (nothing here depends on PostgreSQL) with two companies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from reactivation.core.settings import RateLimit
from reactivation.core.vocabulary import RunStatus, Status
from reactivation.flow.planning import create_run, mark_run
from reactivation.flow.progress import Limits, RunProgress, RunRecord, pace_seconds, read_progress, read_run
from reactivation.storage import migrations
from reactivation.storage.db import make_engine
from tests.factories import make_client, make_company
from tests.history_rows import make_history

RUN_DATE = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LIMITS = Limits(whatsapp=RateLimit(30, 60), gemini=None, daily_limit=300, sender="1")
RUN = RunRecord(1, RunStatus.DONE, due=10, claimed=10, holdout=0, started_at=NOW, finished_at=NOW)


def progress(
    counts: dict[Status, int], *, waiting: int = 0, opens: datetime | None = None, **limits: object
) -> RunProgress:
    return RunProgress(
        company_id=1,
        run_date=RUN_DATE,
        now=NOW,
        limits=Limits(**{**LIMITS.__dict__, **limits}),  # type: ignore[arg-type]
        run=RUN,
        reasons=[(str(status), None, count) for status, count in counts.items()],
        waiting_for_window=waiting,
        window_opens=opens,
    )


@pytest.mark.parametrize(("calls", "seconds"), [(0, 0), (1, 0), (30, 0), (31, 60), (60, 60), (300, 540)])
def test_pace_the_first_windows_calls_go_at_once(calls: int, seconds: float) -> None:
    assert pace_seconds(calls, RateLimit(30, 60)) == seconds


def test_eta_is_paced_by_the_sender() -> None:
    # Given 270 rows still to send at 30 a minute, and 30 sent
    run = progress({Status.SENT: 30, Status.GENERATED: 200, Status.CLAIMED: 70})
    # Then the last one can go 8 minutes from now
    assert (run.total, run.done, run.in_flight, run.moving) == (300, 30, 270, 270)
    assert run.eta() == NOW + timedelta(minutes=8)
    assert not run.finished


def test_eta_is_paced_by_gemini_when_it_writes() -> None:
    # Given 100 rows still to write at 15 a minute (Gemini), 100 to send at 30 a minute
    run = progress({Status.CLAIMED: 100}, gemini=RateLimit(15, 60))
    # Then Gemini is the slower of the two
    assert run.eta() == NOW + timedelta(minutes=6)


def test_rows_waiting_for_the_send_window_start_when_it_opens() -> None:
    opens = NOW + timedelta(hours=14)
    run = progress({Status.SENT: 10, Status.GENERATED: 40}, waiting=40, opens=opens)
    assert run.moving == 0 and run.finished
    assert run.eta() == opens + timedelta(minutes=1)


def test_a_run_with_nothing_in_flight_has_no_eta() -> None:
    run = progress({Status.SENT: 5, Status.SKIPPED: 1})
    assert run.eta() is None and run.finished


@pytest.fixture
def session(sqlite_url: str) -> Iterator[Session]:
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_read_progress_counts_one_companys_run_and_its_window_waits(session: Session) -> None:
    # Given two companies with a run each on the same date
    runs = {}
    for company_id in (1, 2):
        make_company(session, company_id)
        runs[company_id] = create_run(session, company_id=company_id, run_date=RUN_DATE, trigger="cli", now=NOW)
        mark_run(session, run_id=runs[company_id], company_id=company_id, status=RunStatus.DONE, due_count=4)
    opens = NOW + timedelta(hours=2)
    # and company 1's rows: one sent, one waiting for the window, one still to send, one skipped
    statuses = [(Status.SENT, None), (Status.GENERATED, opens), (Status.GENERATED, None), (Status.SKIPPED, None)]
    for index, (status, send_after) in enumerate(statuses):
        client = make_client(session, 1, id=100 + index, last_visit=RUN_DATE - timedelta(days=40))
        make_history(
            session,
            client,
            sent_at=NOW if status == Status.SENT else None,
            status=status,
            campaign_run_id=runs[1],
            send_after=send_after,
            created_at=NOW,
            updated_at=NOW,
        )
    # and company 2's row, which company 1's progress must not count
    other = make_client(session, 2, id=200, last_visit=RUN_DATE - timedelta(days=40))
    make_history(session, other, sent_at=None, status=Status.GENERATED, campaign_run_id=runs[2], created_at=NOW)
    session.commit()
    # When company 1's progress is read
    run = read_progress(session, company_id=1, run_date=RUN_DATE, now=NOW, limits=LIMITS)
    # Then it counts its own rows only, and the one that waits for the window, opening in two hours
    assert run.run is not None and run.run.status == RunStatus.DONE and run.run.due == 4
    assert (run.total, run.in_flight, run.waiting_for_window, run.moving) == (4, 2, 1, 1)
    assert run.window_opens == opens
    # And a company without a run on that date has none
    assert read_run(session, company_id=2, run_date=RUN_DATE + timedelta(days=1)) is None
    empty = read_progress(session, company_id=2, run_date=RUN_DATE + timedelta(days=1), now=NOW, limits=LIMITS)
    assert empty.run is None and empty.total == 0
