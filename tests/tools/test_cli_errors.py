"""Errors an operator can act on: each is one or two lines naming the variable and the remedy, exit code 2 for the
command or its configuration, 1 for a failure while running; the traceback only with --debug or LOG_LEVEL=DEBUG."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from reactivation.core.settings import get_settings
from reactivation.storage import migrations
from reactivation.storage.db import make_engine
from reactivation.tools import cli
from reactivation.tools.problems import RUNTIME, USAGE, Endpoints, explain, hide_password
from tests.conftest import PG_ADMIN_URL, create_database, drop_database
from tests.factories import make_company

runner = CliRunner()
REACTIVATION = Path(sys.executable).parent / "reactivation"
# Settings a developer's shell may hold; each test sets what it means.
CONFIGURATION = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GEMINI_API_KEY", "REDIS_KEY_PREFIX", "LOG_LEVEL")


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in CONFIGURATION:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pg_database(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def invoke(monkeypatch: pytest.MonkeyPatch, *args: str, **environment: str) -> tuple[int, str]:
    """Run the command with this environment; its exit code and what it printed (stdout and stderr)."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    result = runner.invoke(cli.app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def embedded_salon(url: str, *, company_id: int) -> None:
    """A migrated SQLite database with one company."""
    migrations.upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        make_company(session, company_id=company_id)
        session.commit()
    engine.dispose()


def assert_explained(output: str, *words: str) -> None:
    """One or two lines, no traceback, and every expected word."""
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, output
    for word in words:
        assert word in output, (word, output)


def test_a_database_that_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"reactivation_missing_{uuid.uuid4().hex[:8]}"
    code, output = invoke(monkeypatch, "stats", "--company", "1", DATABASE_URL=pg_database(missing))
    assert code == USAGE
    assert_explained(output, "DATABASE_URL", f'"{missing}"', "does not exist", "reactivation migrate")


def test_a_database_nobody_listens_for(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{closed_port()}/test"
    code, output = invoke(monkeypatch, "attribute", "--company", "1", DATABASE_URL=url)
    assert code == RUNTIME
    assert_explained(output, "cannot reach the database", "DATABASE_URL", "start PostgreSQL")
    # the password stays out of the terminal
    assert "s3cret" not in output and "postgres:***@" in output


def test_a_postgres_database_never_migrated(monkeypatch: pytest.MonkeyPatch, pg_admin: Engine) -> None:
    name = f"reactivation_empty_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin, name)
    try:
        code, output = invoke(monkeypatch, "campaign", "status", "--company", "1", DATABASE_URL=url)
    finally:
        drop_database(pg_admin, name)
    assert code == USAGE
    assert_explained(output, "not migrated", "DATABASE_URL", "run `reactivation migrate`")


def test_an_embedded_database_never_migrated(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    code, output = invoke(monkeypatch, "stats", "--company", "1", DATABASE_URL=sqlite_url)
    assert code == USAGE
    assert_explained(output, "not migrated", "no such table", "run `reactivation migrate`")


def test_a_broker_nobody_listens_for(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    embedded_salon(sqlite_url, company_id=7)
    code, output = invoke(
        monkeypatch,
        "campaign",
        "run",
        "--company",
        "7",
        DATABASE_URL=sqlite_url,
        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
    )
    assert code == RUNTIME
    assert_explained(output, "cannot reach the Celery broker", "REDIS_URL", "--inline")


def test_a_redis_nobody_listens_for_is_named_with_its_remedy() -> None:
    url = f"redis://:pw@127.0.0.1:{closed_port()}/0"
    with pytest.raises(redis.ConnectionError) as error:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    problem = explain(error.value, Endpoints(redis_url=url))
    assert problem is not None and problem.exit_code == RUNTIME
    assert "REDIS_URL" in problem.message and "pw" not in problem.message
    assert "start Redis" in problem.remedy


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = invoke(monkeypatch, "stats", "--company", "1", LOG_LEVEL="loud")
    assert code == USAGE
    assert_explained(output, "LOG_LEVEL", ".env")
    code, output = invoke(monkeypatch, "stats", "--company", "1", WHATSAPP_RATE_LIMIT="fast", LOG_LEVEL="info")
    assert code == USAGE
    assert_explained(output, "WHATSAPP_RATE_LIMIT", "15/60")


def test_log_levels_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    for written in ("debug", "Info", " warning "):
        monkeypatch.setenv("LOG_LEVEL", written)
        get_settings.cache_clear()
        assert get_settings().log_level == written.strip().upper()


def test_a_date_error_names_its_option(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = invoke(monkeypatch, "stats", "--company", "1", "--since", "2026-13-01")
    assert code == USAGE
    assert "--since" in output and "YYYY-MM-DD" in output and "2026-13-01" in output


def test_the_operators_own_phone_is_shown_as_typed(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    embedded_salon(sqlite_url, company_id=7)
    code, output = invoke(
        monkeypatch, "reply", "--company", "7", "--phone", "12345", "--text", "да", DATABASE_URL=sqlite_url
    )
    assert code == USAGE
    assert "'12345'" in output and "--phone" in output and "***" not in output


def test_debug_brings_the_traceback_back(monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_database(f"reactivation_missing_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("DATABASE_URL", url)
    from sqlalchemy.exc import OperationalError

    for args, level in ((["--debug", "stats", "--company", "1"], "INFO"), (["stats", "--company", "1"], "debug")):
        monkeypatch.setenv("LOG_LEVEL", level)
        get_settings.cache_clear()
        result = runner.invoke(cli.app, args)
        assert isinstance(result.exception, OperationalError), result.output


def test_an_error_nobody_foresaw_keeps_its_traceback() -> None:
    assert explain(KeyError("row"), Endpoints()) is None
    # and a bad value raised while handling another error is that other error's to explain, not the operator's
    try:
        try:
            raise ValueError("inner")
        except ValueError:
            raise RuntimeError("a bug") from None
    except RuntimeError as exc:
        assert explain(exc, Endpoints()) is None


def test_passwords_are_hidden() -> None:
    assert hide_password("postgresql+psycopg://u:p@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert hide_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert hide_password(None) == "unset"


@pytest.mark.subprocess
def test_as_a_process_an_error_is_two_lines_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION}
    env.update(DATABASE_URL=pg_database(f"reactivation_missing_{uuid.uuid4().hex[:8]}"), COLUMNS="60")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REACTIVATION), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    plain = run("stats", "--company", "1")
    assert plain.returncode == USAGE and plain.stdout == ""
    assert "Traceback" not in plain.stderr and len(plain.stderr.strip().splitlines()) == 2
    assert "run `reactivation migrate`" in plain.stderr
    debug = run("--debug", "stats", "--company", "1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.subprocess
def test_help_and_classify_import_neither_gemini_nor_celery_nor_the_database() -> None:
    heavy = ("google.genai", "celery", "sqlalchemy", "reactivation.runtime", "pydantic_settings")
    probe = (
        "import sys\n"
        "from reactivation.tools import cli\n"
        "sys.argv = ['reactivation', *sys.argv[1:]]\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION}
    for args in (["--help"], ["classify", "да"], ["campaign", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.stderr.strip().splitlines()[-1:] in ([], [""]), (args, done.stderr)
