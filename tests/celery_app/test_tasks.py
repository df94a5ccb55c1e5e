"""The tasks' common behaviour: one base class retries every task on a lost connection, the periodic jobs send one
task per company to the default queue, and follow-up tasks leave only once the transaction that wrote their rows
has committed. Run in this process on a migrated SQLite database (nothing here depends on PostgreSQL)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from celery.canvas import Signature, _chain
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from celery_app import base, tasks
from celery_app.app import app
from celery_app.base import MAX_INFRA_RETRIES, ReactivationTask
from reactivation.core.settings import load_settings
from reactivation.core.vocabulary import ChainStep, Status
from reactivation.flow import planning
from reactivation.storage import migrations
from reactivation.storage.db import make_engine
from reactivation.storage.models import ReactivationHistory
from tests.factories import make_client, make_company
from tests.history_rows import make_history

# Sunday 03:30 in Moscow, when the weekly averages job is due there.
NOW = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
COMPANIES = (11, 12, 13)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite database with three companies, and the Celery app configured on it, run eagerly."""
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        for company_id in COMPANIES:
            make_company(session, company_id)
        session.commit()
    app_module = importlib.import_module("celery_app.app")
    previous = app_module.runtime().settings
    app_module.configure(load_settings(database_url=sqlite_url, redis_url=None, celery_broker_url=None, _env_file=None))
    yield engine
    app_module.configure(previous)
    engine.dispose()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Every task a task sends: (name, args), instead of running it."""
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def record(self: Signature, *args: Any, **kwargs: Any) -> None:
        first = self.tasks[0] if isinstance(self, _chain) else self
        calls.append((first.task, tuple(first.args)))

    _instead_of_sending(monkeypatch, record)
    return calls


def _instead_of_sending(monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    """Run `action(signature)` where a task or a chain would be sent to the broker."""
    monkeypatch.setattr(Signature, "apply_async", action)
    monkeypatch.setattr(_chain, "apply_async", action)


def _queue(name: str) -> str:
    return str(app.amqp.router.route({}, name, args=(), kwargs={})["queue"].name)


def test_every_task_has_the_one_base_class() -> None:
    ours = [task for name, task in app.tasks.items() if name.startswith("reactivation.")]
    assert len(ours) == 20
    assert all(isinstance(task, ReactivationTask) for task in ours)


@pytest.mark.parametrize(
    ("job", "per_company"),
    [
        ("reactivation.sweep", "reactivation.sweep_company"),
        ("reactivation.attribute_bookings", "reactivation.attribute_bookings"),
        ("reactivation.retention", "reactivation.retention_company"),
        ("reactivation.refresh_due_dates", "reactivation.refresh_due_dates_company"),
    ],
)
def test_a_periodic_job_sends_one_task_per_company_to_the_default_queue(
    engine: Engine, sent: list[tuple[str, tuple[Any, ...]]], job: str, per_company: str
) -> None:
    # When beat's job runs
    count = app.tasks[job].apply().get()
    # Then it sends one task per company, each on the default queue
    assert count == len(COMPANIES)
    assert sent == [(per_company, (company_id,)) for company_id in COMPANIES]
    assert _queue(per_company) == "default"


def test_the_averages_plan_sends_a_job_to_each_company_whose_sunday_night_it_is(
    engine: Engine, sent: list[tuple[str, tuple[Any, ...]]]
) -> None:
    # Given a company on the other side of the world, where it is Sunday noon
    with Session(engine) as session:
        make_company(session, 14, timezone="Pacific/Auckland")
        session.commit()
    # When the hourly plan runs at 03:30 on Sunday in Moscow
    with time_machine.travel(NOW, tick=False):
        started = tasks.plan_averages.apply().get()
    # Then only the Moscow companies get their job
    assert started == len(COMPANIES)
    assert sent == [("reactivation.calculate_service_averages", (company_id,)) for company_id in COMPANIES]


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds a task run in this process waits before it runs again (recorded, not slept)."""
    waited: list[float] = []
    monkeypatch.setattr(base.time, "sleep", waited.append)
    return waited


def test_a_task_cut_by_a_lost_connection_runs_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, waits: list[float]
) -> None:
    calls: list[datetime] = []

    def flaky(session: Session, *, now: datetime) -> list[int]:
        calls.append(now)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return []

    monkeypatch.setattr(planning, "averages_due", flaky)
    # When the database goes away under the task once
    assert tasks.plan_averages.apply().get() == 0
    # Then it ran again a second later, and said why
    assert len(calls) == 2 and waits == [1.0]
    retried = [r for r in caplog.records if r.getMessage() == "task cut by a lost connection; retrying"]
    assert [(r.task, r.retries) for r in retried] == [("reactivation.plan_averages", 0)]  # type: ignore[attr-defined]


def test_a_task_whose_database_stays_away_gives_up_with_the_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> None:
    calls: list[datetime] = []

    def down(session: Session, *, now: datetime) -> list[int]:
        calls.append(now)
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(planning, "averages_due", down)
    with pytest.raises(OperationalError):
        tasks.plan_averages.apply().get()
    # after waiting longer each time, never longer than the broker's visibility timeout allows
    assert len(calls) == MAX_INFRA_RETRIES + 1
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]


def test_a_resumed_chain_leaves_only_once_the_sweep_committed(
    engine: Engine, sent: list[tuple[str, tuple[Any, ...]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a claimed row whose chain was lost an hour ago
    with Session(engine) as session:
        client = make_client(session, COMPANIES[0], last_visit=date(2026, 10, 1))
        row = make_history(
            session,
            client,
            sent_at=None,
            status=Status.CLAIMED,
            created_at=NOW - timedelta(hours=1),
            updated_at=NOW - timedelta(hours=1),
        )
        session.commit()
        history_id = row.id
    # When the company's sweep resumes it, each sent task looks at the row from another connection
    seen: list[datetime] = []

    def look(self: Signature, *args: Any, **kwargs: Any) -> None:
        with Session(engine) as other:
            seen.append(
                other.scalars(select(ReactivationHistory.updated_at).where(ReactivationHistory.id == history_id)).one()
            )

    _instead_of_sending(monkeypatch, look)
    with time_machine.travel(NOW, tick=False):
        summary = tasks.sweep_company.apply(args=(COMPANIES[0],)).get()
    # Then the chain was sent, and it found the sweep's write committed
    assert summary == {
        "resent": 0,
        "unknown": 0,
        "expired": 0,
        "resumed": 1,
        "handover": 0,
        "handover_repeated": 0,
        "gemini_waiting": 0,
    }
    assert seen == [NOW]
    assert sent == []


def test_nothing_is_sent_when_the_transaction_rolls_back(
    engine: Engine, sent: list[tuple[str, tuple[Any, ...]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a planner that plans a run, then fails before its transaction commits
    def planned(session: Session, *, now: datetime) -> list[planning.PlannedRun]:
        return [planning.PlannedRun(1, COMPANIES[0], NOW.date())]

    def broken(session: Session, *, now: datetime) -> list[planning.PlannedRun]:
        raise RuntimeError("a bug after the first query")

    monkeypatch.setattr(planning, "plan_runs", planned)
    monkeypatch.setattr(planning, "stale_planned_runs", broken)
    with pytest.raises(RuntimeError):
        tasks.plan_campaigns.apply().get()
    # Then no campaign was sent for a run that was never committed
    assert sent == []


def test_chain_steps_are_the_chain_task_names() -> None:
    resumed = tasks.chain_from(ChainStep.SEND_MESSAGE, 1, 2)
    assert [task.task for task in resumed.tasks] == [
        "reactivation.send_message",
        "reactivation.persist_history",
        "reactivation.save_context",
    ]
    assert all(f"reactivation.{step}" in app.tasks for step in ChainStep)
