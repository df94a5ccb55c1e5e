"""What the benchmarks share: a PostgreSQL database of their own, timing, and the result table."""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session

from reactivation.storage import migrations
from reactivation.storage.db import make_engine

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Figure:
    """One row of the bench table: what was measured, the figure, and the seed's approach beside it."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    note: str = ""


@contextmanager
def bench_database(name: str) -> Iterator[str]:
    """A freshly migrated PostgreSQL database, dropped afterwards."""
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{base}/{name}"
    try:
        migrations.upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def timer() -> Iterator[list[float]]:
    """`with timer() as t: ...` then `t[0]` is the elapsed seconds."""
    box: list[float] = []
    started = time.perf_counter()
    yield box
    box.append(time.perf_counter() - started)


def analyze(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


PLANS_DIR = Path(__file__).resolve().parent / "plans"


def median_seconds(action: Callable[[], object], *, runs: int = 5, warmups: int = 1) -> tuple[float, list[float]]:
    """The median wall time of `runs` calls after `warmups` untimed ones (caches warm), and every timing."""
    for _ in range(warmups):
        action()
    timings = []
    for _ in range(runs):
        with timer() as took:
            action()
        timings.append(took[0])
    return statistics.median(timings), timings


@contextmanager
def captured_statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement (with its parameters) the engine sends inside the block, in order."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def explain_run(
    engine: Engine,
    action: Callable[[Session], object],
    *,
    title: str,
    prepare: Callable[[Connection], object] | None = None,
    analyze: bool = True,
) -> str:
    """The plans of what `action` sends: captured in a session that is rolled back, then replayed by
    `explain_statements` in a transaction that is rolled back too. `prepare` (not captured) sets up the same data
    before each: a bench's added visits, say."""
    with Session(engine) as session:
        if prepare is not None:
            prepare(session.connection())
        with captured_statements(engine) as statements:
            action(session)
        session.rollback()
    with engine.connect() as connection:
        if prepare is not None:
            prepare(connection)
        plans = explain_statements(connection, statements, title=title, analyze=analyze)
        connection.rollback()
    return plans


def explain_statements(
    connection: Connection, statements: list[tuple[str, Any]], *, title: str, analyze: bool = True
) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of each captured query (SELECT, WITH, CREATE TEMP TABLE … AS), replayed in order;
    with `analyze` False the plain EXPLAIN (the plan the planner chose, not run: for a query too slow to run).

    Settings the code makes (set_config, SET) are replayed as they were, so that every plan runs under the same
    work_mem as the timed run. EXPLAIN ANALYZE executes the statement: the caller rolls the transaction back.
    """
    sections = []
    seen: dict[str, int] = {}
    for number, (statement, parameters) in enumerate(statements, start=1):
        head = statement.lstrip().upper()
        if "SET_CONFIG" in head or "CURRENT_SETTING" in head or head.startswith(("SET ", "DROP ", "ANALYZE ")):
            # Settings, and the temporary tables a later statement reads, as the timed run made them.
            connection.exec_driver_sql(statement, parameters)
            continue
        if not head.startswith(("SELECT", "WITH", "CREATE TEMP TABLE")):
            continue
        # A statement repeated in batches (the same shape, other values) is explained once.
        shape = _LONG_LIST.sub("(…)", statement)
        if shape in seen:
            seen[shape] += 1
            continue
        seen[shape] = 1
        options = "ANALYZE, BUFFERS" if analyze else "COSTS"
        plan = connection.exec_driver_sql(f"EXPLAIN ({options}) {statement}", parameters).scalars()
        shown = {
            key: (f"<{len(value):,} values>" if isinstance(value, list) and len(value) > 20 else value)
            for key, value in dict(parameters or {}).items()
            if not _EXPANDED.search(key)
        }
        text_ = _LONG_LIST.sub(lambda m: f"({m.group(0).count(',') + 1:,} values)", statement.strip())
        sections.append((shape, f"-- statement {number}\n{text_}\n-- parameters: {shown}\n\n" + "\n".join(plan)))
    rendered = [
        body + (f"\n-- (sent {seen[shape]} times in all, other values; explained once)" if seen[shape] > 1 else "")
        for shape, body in sections
    ]
    return f"{title}\n\n" + "\n\n".join(rendered) + "\n"


# An IN list of many bound values, as SQLAlchemy expands it: (%(phone_1_1)s, %(phone_1_2)s, ...).
_LONG_LIST = re.compile(r"\((?:%\([a-z_0-9]+\)s(?:::[A-Z]+)?, ){20,}%\([a-z_0-9]+\)s(?:::[A-Z]+)?\)")
# The parameters behind such a list are numbered twice (phone_1_1, phone_1_2, ...).
_EXPANDED = re.compile(r"_\d+_\d+$")


def write_plans(name: str, text_: str) -> Path:
    PLANS_DIR.mkdir(exist_ok=True)
    path = PLANS_DIR / f"{name}.txt"
    path.write_text(text_)
    return path
