"""The harness's own guards: no instant from the database's clock, no unmarked subprocess, one clock when moved."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from reactivation.storage.models import ReactivationHistory
from tests import clock_offset
from tests.clock_guard import DatabaseClockUsed, check_statement
from tests.subprocesses import UnmarkedSubprocess, refused

# --- the database's clock ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE client_reactivation_history SET status=%(status)s, updated_at=now() WHERE id = 1",
        "UPDATE campaign_runs SET finished_at=CURRENT_TIMESTAMP WHERE id = 1",
        "INSERT INTO reactivation_opt_outs (company_id, phone, created_at) VALUES (1, '+7', datetime('now'))",
        "INSERT INTO client_reactivation_history (company_id, client_id, created_at) VALUES (1, 2, %(c)s)",
        'INSERT INTO campaign_runs (company_id, run_date, "trigger") VALUES (1, %(d)s, %(t)s)',
        "INSERT INTO bookings (id, company_id, datetime) VALUES (1, 2, %(when)s)",
    ],
)
def test_a_write_that_takes_the_databases_clock_is_refused(statement: str) -> None:
    with pytest.raises(DatabaseClockUsed):
        check_statement(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE client_reactivation_history SET status=%(status)s, updated_at=%(updated_at)s WHERE id = 1",
        "INSERT INTO client_reactivation_history (company_id, created_at, updated_at) VALUES (1, %(c)s, %(u)s)",
        'INSERT INTO campaign_runs (company_id, "trigger", created_at) VALUES (1, %(t)s, %(c)s)',
        # The sync's tables keep their server default as a safety net; nothing compares it with a run's clock.
        "INSERT INTO clients (id, company_id, name) VALUES (1, 2, 'Мария')",
        "SELECT now()",
    ],
)
def test_a_write_with_its_own_instants_passes(statement: str) -> None:
    check_statement(statement)


def test_the_guard_holds_for_every_engine_of_the_suite(db: Session) -> None:
    # when a status changes without an updated_at, the model's onupdate would send the database's now()
    statement = update(ReactivationHistory).where(ReactivationHistory.id == -1).values(status="sent")
    # then the statement never reaches the database
    with pytest.raises(DatabaseClockUsed, match="now"):
        db.execute(statement)


# --- subprocesses ------------------------------------------------------------------------------------------------


@pytest.mark.subprocess
def test_an_unmarked_test_cannot_start_a_process_even_when_it_swallows_the_error() -> None:
    # given the guard an unmarked test runs under
    with pytest.raises(UnmarkedSubprocess, match="tried to start"), refused("a test"):
        # then each way of starting a process is refused on the spot ...
        with pytest.raises(UnmarkedSubprocess, match=r"mark it @pytest\.mark\.subprocess"):
            subprocess.run([sys.executable, "-c", "pass"], check=False)
        with pytest.raises(UnmarkedSubprocess):
            multiprocessing.get_context("spawn").Process(target=print).start()
        with pytest.raises(UnmarkedSubprocess):
            os.system("true")
        # ... and once more when the block ends, had the code under test swallowed the error
    # and a marked test starts processes as usual
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


# --- the moved clock -----------------------------------------------------------------------------------------


@pytest.mark.subprocess
def test_a_subprocess_reads_the_same_clock_as_this_process() -> None:
    # when a subprocess tells its time (moved by libfaketime when TEST_CLOCK_OFFSET_DAYS is set)
    code = "import datetime; print(datetime.datetime.now(datetime.UTC).isoformat())"
    theirs = datetime.fromisoformat(subprocess.check_output([sys.executable, "-c", code], text=True).strip())
    # then it is this process's time (moved by time-machine), not the real one a year apart
    assert abs(theirs - datetime.now(UTC)) < timedelta(minutes=1)


def test_the_offset_must_be_whole_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock_offset.OFFSET_ENV, "a year")
    with pytest.raises(pytest.UsageError, match="whole number of days"):
        clock_offset.offset_days()
    monkeypatch.setenv(clock_offset.OFFSET_ENV, "-30")
    assert clock_offset.offset_days() == -30
    monkeypatch.delenv(clock_offset.OFFSET_ENV)
    assert clock_offset.offset_days() == 0


def test_a_named_libfaketime_must_exist_and_servers_keep_the_real_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock_offset.LIBFAKETIME_ENV, "/nowhere/libfaketime.so.1")
    with pytest.raises(pytest.UsageError, match="is not a file"):
        clock_offset.find_libfaketime()
    monkeypatch.setenv("FAKETIME", "+365d")
    monkeypatch.setenv("LD_PRELOAD", "/some/libfaketime.so.1")
    env = clock_offset.server_env()
    assert "FAKETIME" not in env and "LD_PRELOAD" not in env and env["PATH"] == os.environ["PATH"]
