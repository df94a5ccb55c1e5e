"""`campaign run` says what it claimed; `campaign status` shows the run with its limits and ETA, and `--follow`
watches it until nothing is in flight (bounded; Ctrl-C stops it cleanly). On the embedded default (SQLite, the
chains run in this process); a real worker run is in tests/test_workers.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session
from time_machine import TimeMachineFixture
from typer.testing import CliRunner

from reactivation.core.vocabulary import Status
from reactivation.storage.models import ReactivationHistory
from reactivation.tools import cli, watch
from tests.salon import Salon, build_salon

runner = CliRunner()


@pytest.fixture
def salon(embedded: tuple[Engine, Path], time_machine: TimeMachineFixture) -> Salon:
    """Six due clients on the embedded default, at the salon's noon; their campaign ran once, in this process."""
    engine, _ = embedded
    built = build_salon(engine, due=6)
    time_machine.move_to(built.now, tick=True)
    first = run("campaign", "run", "--company", str(built.company_id), "--inline")
    assert first.exit_code == 0, first.output
    assert "claimed 6 client(s) of the 6 most valuable due" in first.output
    built.engine = engine  # type: ignore[attr-defined]
    return built


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(cli.app, list(args))


def back_in_flight(engine: Engine, company_id: int, rows: int) -> None:
    """Put `rows` of the run back to `generated`, as if the sender had not reached them yet."""
    with Session(engine) as session:
        ids = session.scalars(
            ReactivationHistory.__table__.select()
            .with_only_columns(ReactivationHistory.id)
            .where(ReactivationHistory.company_id == company_id)
            .limit(rows)
        ).all()
        session.execute(
            update(ReactivationHistory)
            .where(ReactivationHistory.id.in_(ids))
            .values(status=Status.GENERATED.value, updated_at=datetime.now(UTC))
        )
        session.commit()


def test_a_second_run_says_there_is_nothing_to_claim(salon: Salon) -> None:
    again = run("campaign", "run", "--company", str(salon.company_id), "--inline")
    assert again.exit_code == 0
    assert f"nothing to claim: company {salon.company_id} already ran on {salon.today:%Y-%m-%d}" in again.output


def test_status_shows_the_rows_the_limits_and_no_eta_once_all_are_sent(salon: Salon) -> None:
    result = run("campaign", "status", "--company", str(salon.company_id))
    assert result.exit_code == 0, result.output
    assert "sent" in result.output and "run done: due read 6 (the most valuable first), claimed 6" in result.output
    assert f"WhatsApp 30 per 60 s for sender {salon.company_id}" in result.output
    assert "ETA" not in result.output


def test_status_of_rows_in_flight_has_an_eta(salon: Salon) -> None:
    back_in_flight(salon.engine, salon.company_id, 4)  # type: ignore[attr-defined]
    result = run("campaign", "status", "--company", str(salon.company_id))
    assert "in flight 4: 4 moving, none waiting for the send window" in result.output
    assert "ETA: under a minute" in result.output


def test_follow_a_finished_run_ends_at_once(salon: Salon) -> None:
    result = run("campaign", "status", "--company", str(salon.company_id), "--follow")
    assert result.exit_code == 0, result.output
    assert "6/6 final, nothing in flight" in result.output


def test_follow_ends_cleanly_on_ctrl_c(salon: Salon, monkeypatch: pytest.MonkeyPatch) -> None:
    back_in_flight(salon.engine, salon.company_id, 2)  # type: ignore[attr-defined]

    def ctrl_c(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(watch, "pause", ctrl_c)
    result = run("campaign", "status", "--company", str(salon.company_id), "--follow")
    assert result.exit_code == cli.INTERRUPTED
    assert "stopped watching" in result.stderr and "Traceback" not in result.output


def test_follow_stops_after_its_timeout(salon: Salon) -> None:
    back_in_flight(salon.engine, salon.company_id, 2)  # type: ignore[attr-defined]
    result = run("campaign", "status", "--company", str(salon.company_id), "--follow", "--timeout", "0")
    assert result.exit_code == 1
    assert "still 2 in flight after 0 s" in result.stderr
