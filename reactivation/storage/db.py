"""Engines and sessions: one transaction per unit of work, engines built after a worker forks, never at import."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

# What a retry on a fresh connection may cure: the server ended the connection (a failover, a restart,
# pg_terminate_backend), a lock or statement timeout. The transaction was rolled back, so the work can run again;
# the pool's pre-ping hands the retry a live connection.
TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """An engine for PostgreSQL (psycopg 3) or SQLite, with the settings each needs."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, json_serializer=_json_dumps, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 5)
    # A statement that waits on a lock longer than this fails instead of wedging a worker.
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("options", "-c lock_timeout=10000 -c statement_timeout=300000")
    return create_engine(url, connect_args=connect_args, json_serializer=_json_dumps, **kwargs)


def _json_dumps(value: Any) -> str:
    # Cyrillic stays readable in the database instead of \u escapes.
    return json.dumps(value, ensure_ascii=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


# Where session_scope keeps the work to do after its commit, in the session's `info`.
_AFTER_COMMIT = "reactivation.after_commit"


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, always close; then, only once committed, what was
    handed to `after_commit` inside it."""
    session = factory()
    session.info[_AFTER_COMMIT] = []
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        actions: list[Callable[[], object]] = session.info.pop(_AFTER_COMMIT)
        session.close()
    for action in actions:
        action()


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run `action` once this session's transaction has committed (never when it rolls back): how follow-up work,
    such as a task about rows written here, is started only when those rows are visible to it."""
    actions = session.info.get(_AFTER_COMMIT)
    if actions is None:
        raise RuntimeError("after_commit needs a session opened by session_scope (Runtime.session)")
    actions.append(action)


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def analyze_tables(session: Session, tables: Iterable[str]) -> None:
    """ANALYZE the tables a bulk writer changed, in the caller's transaction (the new statistics are seen once it
    commits): the next statement is planned on the data as it now is, not on what autovacuum last saw, which after a
    first load may be an empty table.

    PostgreSQL only. SQLite keeps no statistics until ANALYZE is run and never refreshes them after, so analyzing
    once would leave statistics that go stale with every later write; without them it plans from its indexes.
    """
    if not is_postgres(session):
        return
    for table in dict.fromkeys(tables):
        if not table.replace("_", "").isalnum():
            raise ValueError(f"not a table name: {table!r}")
        session.execute(text(f"ANALYZE {table}"))


def copy_into(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """PostgreSQL's COPY FROM STDIN of `rows` into `table` (in the caller's transaction); how many rows. Lists and
    dicts go as JSON text."""
    raw = session.connection().connection.driver_connection
    assert raw is not None
    count = 0
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_copy_value(value) for value in row])
            count += 1
    return count


def _copy_value(value: Any) -> Any:
    """JSON columns go to COPY as text; everything else psycopg adapts itself (in C)."""
    kind = type(value)
    if kind is list and all(type(item) is int for item in value):
        # The common case (service id lists) without json.dumps, which would dominate the load.
        return "[" + ",".join(map(str, value)) + "]"
    if kind is list or kind is dict:
        return _json_dumps(value)
    return value


@contextmanager
def pg_local_settings(session: Session, settings: dict[str, str]) -> Iterator[None]:
    """PostgreSQL settings for the statements inside the block, then back to what they were.

    SET LOCAL would last until the caller's transaction ends; the job runs inside transactions it does not own.
    """
    names = list(settings)
    previous = {name: session.execute(text("SELECT current_setting(:n)"), {"n": name}).scalar_one() for name in names}
    for name, value in settings.items():
        session.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})
    yield
    for name in names:
        session.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": previous[name]})
