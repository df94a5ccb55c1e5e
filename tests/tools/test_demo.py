"""`make demo` is `reactivation demo`: the embedded default end to end, with nothing configured, twice in a row; it
says where it writes and never replaces a company it did not write."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from reactivation.core.settings import get_settings, load_settings
from reactivation.storage.models import Client, Company
from reactivation.tools import cli
from reactivation.tools.demo import DEMO_COMPANY_ID, demo_settings, where_it_writes
from tests.factories import make_client, make_company

REACTIVATION = Path(sys.executable).parent / "reactivation"
# What a newcomer's shell may hold that would take the demo off the embedded default.
CONFIGURATION = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GEMINI_API_KEY", "REDIS_KEY_PREFIX")


def run_demo(cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION and not k.startswith("WHATSAPP_")}
    env.update(COLUMNS="120", NO_COLOR="1")
    done = subprocess.run(
        [str(REACTIVATION), "demo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.subprocess
def test_the_demo_runs_twice_from_an_empty_folder_and_keeps_its_files_under_var(tmp_path: Path) -> None:
    # Given an empty folder and no configuration
    # When the demo runs twice in a row
    first = run_demo(tmp_path)
    second = run_demo(tmp_path)
    for output in (first, second):
        # Then each run says where it writes
        assert "Embedded default: SQLite at var/reactivation.db" in output
        assert "SQLite at var/reactivation.db (company 990001)" in output
        # and ends with the whole summary: templates said, coverage, steps with examples, replies, funnel
        assert "templates" in output and "no GEMINI_API_KEY" in output
        assert "waterfall coverage" in output and "personal" in output and "service_average" in output
        assert "Messages sent, by step" in output
        assert re.search(r"gentle: [^\n]+\n?[^\n]*\?", output) and re.search(r"win_back: .+20%", output, re.S)
        assert "opt_out" in output and "positive" in output
        assert "bookings" in output and "conversion" in output
        # and no phone number is printed unmasked
        assert not re.search(r"\+7\d{10}", output)
    # And the second run rebuilt the salon rather than finding nothing due
    sent = int(re.search(r"messages sent\s*│\s*(\d+)", second).group(1))  # type: ignore[union-attr]
    assert sent > 50
    outbox = [json.loads(line) for line in (tmp_path / "var" / "demo-outbox.jsonl").read_text().splitlines()]
    assert len(outbox) == sent
    # And everything it wrote is under var/, which git ignores
    assert {p.name for p in tmp_path.iterdir()} == {"var"}


def test_the_demo_names_the_database_it_writes_to_with_the_password_masked() -> None:
    base = load_settings(_env_file=None)
    assert where_it_writes(demo_settings(base)).startswith(
        "[bold]Embedded default[/bold]: SQLite at var/reactivation.db"
    )
    # DATABASE_URL set, REDIS_URL not: not the embedded default's SQLite, whatever else is embedded
    postgres = load_settings(database_url="postgresql://owner:s3cret@db.example:5432/salon", _env_file=None)
    line = where_it_writes(demo_settings(postgres))
    assert line.startswith("Database: postgresql+psycopg://owner:***@db.example:5432/salon")
    assert "in-process Redis stand-in (REDIS_URL unset)" in line
    assert "s3cret" not in line and "SQLite" not in line and "Embedded" not in line
    both = load_settings(
        database_url="postgresql://owner:s3cret@db.example/salon",
        redis_url="redis://:r3dis@cache:6379/0",
        _env_file=None,
    )
    assert "Redis: redis://:***@cache:6379/0" in where_it_writes(demo_settings(both))


def test_the_demo_refuses_to_replace_a_company_it_did_not_write(
    committed_url: str,
    committed_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Given a PostgreSQL database (its URL with a password) that holds a real salon under the demo's company id
    with Session(committed_engine) as session:
        make_company(session, DEMO_COMPANY_ID, name="Настоящий салон")
        make_client(session, DEMO_COMPANY_ID, last_visit=date(2026, 11, 1), id=9_900_010_000_001)
        session.commit()
    url = committed_url.replace("postgres@", "postgres:s3cret@", 1)
    assert url != committed_url
    for name in CONFIGURATION:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "300")  # one line stays one line
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        # When the demo runs
        result = CliRunner().invoke(cli.app, ["demo"])
    finally:
        get_settings.cache_clear()
    # Then it says where it writes (password masked), refuses in one line with what to do, and exits with 2
    assert result.exit_code == 2, result.output
    assert "Database: postgresql+psycopg://postgres:***@127.0.0.1:5432/" in result.output
    assert "s3cret" not in result.output and "Embedded default" not in result.output
    assert f"company {DEMO_COMPANY_ID} exists and is not demo data" in result.output
    assert "DATABASE_URL" in result.output and "Traceback" not in result.output
    # And the salon is as it was
    with Session(committed_engine) as session:
        assert session.scalar(select(Company.name).where(Company.id == DEMO_COMPANY_ID)) == "Настоящий салон"
        assert session.scalar(select(func.count()).select_from(Client).where(Client.company_id == DEMO_COMPANY_ID)) == 1
