"""The embedded default's path: `campaign run --inline` runs the real tasks and chains eagerly, in-process, on
SQLite with the in-process Redis stand-in and the outbox. The one place tests use task_always_eager."""

from __future__ import annotations

import json
import re

from sqlalchemy import select
from sqlalchemy.orm import Session
from time_machine import TimeMachineFixture
from typer.testing import CliRunner

from reactivation.storage.models import ReactivationHistory
from reactivation.tools import cli
from tests.salon import build_salon


def test_inline_campaign_runs_the_chains_in_process(embedded, time_machine: TimeMachineFixture) -> None:  # type: ignore[no-untyped-def]
    engine, outbox = embedded
    salon = build_salon(engine, due=6)
    # The command takes the wall clock: it is the salon's day, whatever day the suite runs on.
    time_machine.move_to(salon.now, tick=True)
    result = CliRunner().invoke(cli.app, ["campaign", "run", "--company", str(salon.company_id), "--inline"])
    assert result.exit_code == 0, result.output
    assert "claimed 6" in result.output
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert sorted(line["phone"] for line in lines) == sorted(salon.phones.values())
    with Session(engine) as session:
        statuses = session.scalars(select(ReactivationHistory.status)).all()
    assert statuses == ["sent"] * 6
    # A second inline run claims nothing and sends nothing
    again = CliRunner().invoke(cli.app, ["campaign", "run", "--company", str(salon.company_id), "--inline"])
    assert again.exit_code == 0 and "claimed 0" in again.output
    assert len(outbox.read_text().splitlines()) == 6


def test_a_dry_run_shows_in_its_own_status_and_the_real_run_still_sends(  # type: ignore[no-untyped-def]
    embedded, time_machine: TimeMachineFixture
) -> None:
    engine, outbox = embedded
    salon = build_salon(engine, due=4, extras=False)
    time_machine.move_to(salon.now, tick=True)
    company = str(salon.company_id)
    # Given a dry run of the day
    dry = CliRunner().invoke(cli.app, ["campaign", "run", "--company", company, "--inline", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "claimed 4" in dry.output and "(dry run)" in dry.output
    # Then `campaign status --dry-run` shows its rows, and the real run's status has none yet
    shown = CliRunner().invoke(cli.app, ["campaign", "status", "--company", company, "--dry-run"])
    assert shown.exit_code == 0 and "(dry run)" in shown.output
    assert re.search(r"sent\s*│\s*│\s*4", shown.output), shown.output
    real_status = CliRunner().invoke(cli.app, ["campaign", "status", "--company", company])
    assert "no rows" in real_status.output
    # And the real run reaches every client; the outbox tells its lines from the dry run's
    real = CliRunner().invoke(cli.app, ["campaign", "run", "--company", company, "--inline"])
    assert real.exit_code == 0 and "claimed 4" in real.output
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert sorted(line["dry_run"] for line in lines) == [False] * 4 + [True] * 4


def test_without_a_broker_dispatch_asks_for_inline(embedded) -> None:  # type: ignore[no-untyped-def]
    engine, _ = embedded
    salon = build_salon(engine, due=1, extras=False)
    result = CliRunner().invoke(cli.app, ["campaign", "run", "--company", str(salon.company_id)])
    assert result.exit_code == 2 and "--inline" in result.output


def test_unknown_company_is_a_clear_error(embedded) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli.app, ["campaign", "run", "--company", "404", "--inline"])
    assert result.exit_code == 2 and "unknown company 404" in result.output
