"""Test harness: one PostgreSQL database per test session (migrated once by running the migrations), one
transaction per test rolled back at its end, and a Redis key prefix per session, cleaned up afterwards.

PostgreSQL and Redis must be reachable (`make test` starts them): a missing service fails the run loudly.

Two guards hold for every test: a statement that takes the database's clock fails it (tests/clock_guard.py), and
so does starting a subprocess without the `subprocess` marker (tests/subprocesses.py). `TEST_CLOCK_OFFSET_DAYS=N`
runs the whole suite with the process clock N days ahead (tests/clock_offset.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from reactivation.core.settings import Settings, get_settings, load_settings
from reactivation.runtime import Runtime
from reactivation.storage import migrations
from reactivation.storage.db import make_engine
from tests import clock_offset, subprocesses
from tests.clock_guard import database_clock_forbidden
from tests.fake_gateway import FakeGateway

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]


def pytest_configure(config: pytest.Config) -> None:
    clock_offset.start(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    clock_offset.stop(config)


def pytest_report_header(config: pytest.Config) -> str | None:
    return clock_offset.header(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    clock_offset.skip_what_cannot_move(config, items)


@pytest.fixture(scope="session", autouse=True)
def _database_clock_forbidden() -> Iterator[None]:
    """Every instant the code under test writes comes from its `now`, never from the database's clock."""
    with database_clock_forbidden():
        yield


@pytest.fixture(autouse=True)
def _subprocesses_need_their_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that starts a subprocess says so (`@pytest.mark.subprocess`), so that `make test-fast` leaves it out."""
    if request.node.get_closest_marker(subprocesses.MARKER) is not None:
        yield
        return
    with subprocesses.refused(request.node.nodeid):
        yield


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.exit(f"PostgreSQL is unreachable at {PG_ADMIN_URL}: {exc}. Run `make test`.", returncode=3)
    yield engine
    engine.dispose()


def create_database(pg_admin: Engine, name: str) -> str:
    with pg_admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return _pg_url(name)


def drop_database(pg_admin: Engine, name: str) -> None:
    with pg_admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url(pg_admin: Engine) -> Iterator[str]:
    """A migrated PostgreSQL database of this test session's own."""
    name = f"reactivation_test_{RUN_ID}"
    url = create_database(pg_admin, name)
    migrations.upgrade(url)
    yield url
    drop_database(pg_admin, name)


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(pg_engine: Engine) -> Iterator[Session]:
    """A session inside a transaction rolled back after the test; the code under test may commit freely."""
    connection = pg_engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'reactivation.db'}"


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Session]:
    """A migrated SQLite database in a temporary folder, for the embedded default's code paths."""
    migrations.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    session = Session(bind=engine, expire_on_commit=False)
    yield session
    session.close()
    engine.dispose()


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """This session's Redis key prefix; every key under it is deleted at the end."""
    prefix = f"test:{RUN_ID}:"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is unreachable at {REDIS_URL}: {exc}. Run `make test`.", returncode=3)
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def redis_client(redis_prefix: str) -> Iterator[redis.Redis]:
    """The real Redis; tests write only under `redis_prefix`, and each test's keys are removed after it."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    for key in client.scan_iter(match=f"{redis_prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def settings(pg_url: str, redis_prefix: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings for code under test: this session's database, the real Redis under this session's prefix."""
    return load_settings(
        database_url=pg_url,
        redis_url=REDIS_URL,
        redis_key_prefix=redis_prefix,
        whatsapp_provider="outbox",
        whatsapp_outbox_path=tmp_path / "outbox.jsonl",
        _env_file=None,
    )


@pytest.fixture
def embedded(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, Path]]:  # type: ignore[no-untyped-def]
    """The embedded default as the CLI opens it: DATABASE_URL on a migrated SQLite file, no Redis (tasks run in this
    process), messages to an outbox file; the engine and the outbox's path."""
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "GEMINI_API_KEY", "WHATSAPP_GATEWAY_URL", "REDIS_KEY_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("WHATSAPP_PROVIDER", "outbox")
    monkeypatch.setenv("WHATSAPP_OUTBOX_PATH", str(tmp_path / "outbox.jsonl"))
    get_settings.cache_clear()
    migrations.upgrade(url)
    engine = make_engine(url)
    yield engine, tmp_path / "outbox.jsonl"
    engine.dispose()
    get_settings.cache_clear()


# --- Committed data: for code that opens its own sessions (the pipeline, real workers, the CLI). ----------------

KEEP_TABLES = {"alembic_version", "industry_standard_intervals"}


@pytest.fixture(scope="session")
def committed_url(pg_admin: Engine) -> Iterator[str]:
    """A second migrated database whose rows are really committed; emptied before each test that uses it."""
    name = f"reactivation_committed_{RUN_ID}"
    url = create_database(pg_admin, name)
    migrations.upgrade(url)
    yield url
    drop_database(pg_admin, name)


@pytest.fixture
def committed_engine(committed_url: str) -> Iterator[Engine]:
    engine = make_engine(committed_url)
    with engine.begin() as connection:
        tables = [
            name
            for (name,) in connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            if name not in KEEP_TABLES
        ]
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


@pytest.fixture
def test_redis_prefix(redis_prefix: str) -> Iterator[str]:
    """A prefix of this test's own under the run's, removed after it: the committed database restarts its ids for
    every test, so keys named after history ids (hand-over markers) must not outlive the test."""
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def committed_settings(committed_url: str, committed_engine: Engine, test_redis_prefix: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings on the committed database (emptied for this test) and the real Redis under this test's prefix."""
    return load_settings(
        database_url=committed_url,
        redis_url=REDIS_URL,
        redis_key_prefix=test_redis_prefix,
        whatsapp_provider="outbox",
        whatsapp_outbox_path=tmp_path / "outbox.jsonl",
        whatsapp_rate_limit="1000/1",
        gemini_api_key=None,
        _env_file=None,
    )


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    """A fake WhatsApp gateway on 127.0.0.1 for this test (it stops by itself after two minutes at most)."""
    with FakeGateway(lifetime=120) as fake:
        yield fake


@pytest.fixture
def outbox_rt(committed_settings: Settings) -> Iterator[Runtime]:
    """One process's runtime on the committed database, sending to an outbox file."""
    runtime = Runtime(committed_settings)
    yield runtime
    runtime.dispose()


@pytest.fixture
def rt(committed_settings: Settings, gateway: FakeGateway) -> Iterator[Runtime]:
    """One process's runtime on the committed database, sending through `gateway`."""
    settings = load_settings(
        **{**committed_settings.model_dump(), "whatsapp_provider": "gateway", "whatsapp_gateway_url": gateway.url},
        _env_file=None,
    )
    runtime = Runtime(settings)
    yield runtime
    runtime.dispose()
