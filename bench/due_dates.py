"""The kept due dates on the big salon (1M clients, its own database): filling and refreshing them, the selection
that reads them (top N and every due client, fresh and stale statistics) beside the reference query it replaces,
and the whole-salon CSV through the command line.

`python -m bench due_dates` (BENCH_DUE_CLIENTS=200000 for a smaller salon; BENCH_REUSE=1 keeps the database).
Stale statistics: the table is analyzed while every row is marked stale (as right after the migration), then
filled without ANALYZE and with autovacuum off on it, so the planner believes nothing is due and no value is set;
the fresh figures follow an ANALYZE.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

import bench.bigsalon as bigsalon
from bench.common import Figure, median_seconds, timer
from reactivation.audience import selection
from reactivation.audience.selection import due_clients, reference_due_clients
from reactivation.storage import due_dates
from reactivation.storage.companies import load_company
from reactivation.storage.db import make_engine
from reactivation.timing.averages import job as averages_job
from reactivation.timing.due_dates import refresh

CLIENTS = int(os.environ.get("BENCH_DUE_CLIENTS", bigsalon.CLIENTS))
NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
DAY_OF_CHANGES = 10_000  # clients whose last visit moves between two nightly passes


def run() -> list[Figure]:
    bigsalon.DATABASE = "reactivation_bench_due"
    # The salon's averages run fills no kept rows while it is built: the first fill is measured below.
    with _without_refresh():
        salon = bigsalon.big_salon(CLIENTS)
    engine = make_engine(salon.url)
    try:
        figures = [_first_fill_on_stale_statistics(engine, salon)]
        figures += _selection(engine, salon, statistics="stale")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE reactivation_due_dates"))
        figures += _selection(engine, salon, statistics="fresh")
        figures.append(_cli_csv(salon))
        figures += _nightly(engine, salon)
    finally:
        engine.dispose()
    return figures


@contextmanager
def _without_refresh() -> Iterator[None]:
    original = averages_job.refresh_due_dates
    averages_job.refresh_due_dates = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        yield
    finally:
        averages_job.refresh_due_dates = original


def _commit(engine: Engine, action: Any) -> tuple[float, Any]:
    with Session(engine) as session, timer() as took:
        result = action(session)
        session.commit()
    return took[0], result


def _mark_all_stale(session: Session, company_id: int) -> None:
    session.execute(
        text("UPDATE reactivation_due_dates SET next_due_on = DATE '0001-01-01' WHERE company_id = :c"),
        {"c": company_id},
    )


def _first_fill_on_stale_statistics(engine: Engine, salon: bigsalon.BigSalon) -> Figure:
    """Every kept row stale and analyzed so (as right after the migration), autovacuum off on the table, then the
    first fill without ANALYZE: the planner's statistics say nothing is due and no value is set."""
    company = salon.company_id
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ALTER TABLE reactivation_due_dates SET (autovacuum_enabled = false)"))
    _commit(engine, lambda s: _mark_all_stale(s, company))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE reactivation_due_dates"))
    fill, filled = _commit(engine, lambda s: refresh(s, company_id=company, now=NOW, analyze=False))
    return Figure(f"kept due dates: first fill, {CLIENTS:,} clients", fill, "s", note=f"{filled.recomputed:,} rows")


def _nightly(engine: Engine, salon: bigsalon.BigSalon) -> list[Figure]:
    company = salon.company_id
    idle, unchanged = _commit(engine, lambda s: refresh(s, company_id=company, now=NOW))
    _commit(
        engine,
        lambda s: s.execute(
            text(
                "UPDATE clients SET last_visit_date = last_visit_date + 1 WHERE id IN "
                "(SELECT id FROM clients WHERE company_id = :c AND last_visit_date IS NOT NULL ORDER BY id LIMIT :n)"
            ),
            {"c": company, "n": DAY_OF_CHANGES},
        ),
    )
    nightly, changed = _commit(engine, lambda s: refresh(s, company_id=company, now=NOW))
    return [
        Figure("kept due dates: nightly pass, nothing changed", idle, "s", note=f"{unchanged.recomputed} rows"),
        Figure(
            f"kept due dates: nightly pass after {DAY_OF_CHANGES:,} new visits",
            nightly,
            "s",
            note=f"{changed.recomputed:,} rows (the join on the kept lapse)",
        ),
    ]


def _timed(engine: Engine, action: Any, *, runs: int = 5) -> tuple[float, Any]:
    box: list[Any] = []

    def once() -> None:
        with Session(engine) as session:
            box[:] = [action(session)]
            session.rollback()

    median, _ = median_seconds(once, runs=runs, warmups=1)
    return median, box[0]


def _every_due_sql(session: Session, company_id: int, today: Any) -> int:
    """Every due client's row from the kept query, in SQL only (no Python per row beyond fetching)."""
    reference = selection._reference(session, company_id=company_id, today=today)
    held = selection._snoozes_ended(session, reference)
    query = selection._kept_query(reference, postgres=True, among=None, snoozes_ended=held)
    with selection._work_mem(session, postgres=True, hash_joins=True):
        return len(session.execute(query).all())


def _top_sql(session: Session, company_id: int, today: Any, limit: int) -> int:
    """The top N's statements alone: the candidates from the kept rows, then the exclusions on them."""
    reference = selection._reference(session, company_id=company_id, today=today)
    ids = selection._candidate_ids(session, reference, cap=limit * 2 + 50, postgres=True)
    among = due_dates.among(ids, postgres=True)
    return len(session.execute(selection._kept_query(reference, postgres=True, among=among)).all())


def _every_due_reference_sql(session: Session, company_id: int, today: Any) -> int:
    reference = selection._reference(session, company_id=company_id, today=today)
    query = selection._due_query(reference, postgres=True, cap=None, floor=None)
    with selection._work_mem(session, postgres=True):
        return len(session.execute(query).all())


def _selection(engine: Engine, salon: bigsalon.BigSalon, *, statistics: str) -> list[Figure]:
    company, today = salon.company_id, salon.today
    with Session(engine) as session:
        limit = load_company(session, company_id=company).settings.daily_limit
    top, found = _timed(engine, lambda s: due_clients(s, company_id=company, today=today, limit=limit))
    top_ref, found_ref = _timed(
        engine, lambda s: reference_due_clients(s, company_id=company, today=today, limit=limit), runs=3
    )
    same = [d.client_id for d in found] == [d.client_id for d in found_ref]
    top_sql, ranked = _timed(engine, lambda s: _top_sql(s, company, today, limit))
    every, count = _timed(engine, lambda s: _every_due_sql(s, company, today), runs=3)
    every_ref, count_ref = _timed(engine, lambda s: _every_due_reference_sql(s, company, today), runs=1)
    return [
        Figure(
            f"top {limit} from kept due dates ({statistics} statistics)",
            top,
            "s",
            baseline=top_ref,
            baseline_label="reference query",
            note=f"{len(found)} clients, same as the reference: {same}; Python included (phones, opt-outs)",
        ),
        Figure(
            f"top {limit} from kept due dates, SQL only ({statistics} statistics)",
            top_sql,
            "s",
            note=f"candidates and exclusions: {ranked} rows",
        ),
        Figure(
            f"every due client in SQL from kept due dates ({statistics} statistics)",
            every,
            "s",
            baseline=every_ref,
            baseline_label="reference query",
            note=f"{count:,} rows (reference {count_ref:,} rows, before the Python opt-out and probe filters)",
        ),
    ]


def _cli_csv(salon: bigsalon.BigSalon) -> Figure:
    """`reactivation preview --format csv` of every due client, through the command line into a file."""
    command = [
        sys.executable,
        "-m",
        "reactivation.tools.cli",
        "preview",
        "--company",
        str(salon.company_id),
        "--date",
        salon.today.isoformat(),
        "--format",
        "csv",
    ]
    environment = {**os.environ, "DATABASE_URL": salon.url, "LOG_LEVEL": "WARNING"}
    with timer() as took:
        done = subprocess.run(command, env=environment, capture_output=True, check=True)
    rows = done.stdout.count(b"\n") - 1
    return Figure("preview --format csv, every due client (command line)", took[0], "s", note=f"{rows:,} rows")
