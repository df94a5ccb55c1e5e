"""The large salon the timing benchmarks share: 1M clients and about 5M attended-or-not visits on PostgreSQL.

`generate_salon` with 137 days of history gives about five visits per client; on top of it come what a real
booking system's tables hold and the generator leaves out: a past booking for every visit (the `bookings` table
keeps history, not just the future), a month of earlier reactivation messages and a few opt-outs.

Building it takes a few minutes, so one process builds it once for every bench that asks (`python -m bench
selection averages`), and drops it at exit. With BENCH_REUSE=1 the database is kept and reused by later runs.
"""

from __future__ import annotations

import atexit
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select, text

from bench.common import PG_ADMIN_URL, analyze, timer
from reactivation.core.phones import try_normalize_phone
from reactivation.storage import migrations
from reactivation.storage.db import make_engine, make_session_factory, session_scope
from reactivation.storage.models import AveragesState, Company
from reactivation.timing.averages import calculate_averages
from reactivation.tools.bulk import copy_rows, load_salon
from reactivation.tools.synthetic import SalonPlan, generate_salon

COMPANY_ID = 777
TODAY = date(2026, 11, 23)
CLIENTS = 1_000_000
HISTORY_DAYS = 137
DATABASE = "reactivation_bench_timing"
# When the salon's last averages job ran: the night before the bench date.
AVERAGES_AT = datetime.combine(TODAY, time(0), tzinfo=UTC)
_MARKER = "bench salon complete"


@dataclass(frozen=True)
class BigSalon:
    url: str
    company_id: int
    today: date
    clients: int
    appointments: int
    build_seconds: float


_built: dict[int, BigSalon] = {}


def big_salon(clients: int = CLIENTS) -> BigSalon:
    """The shared salon, built on first use in this process (or reused with BENCH_REUSE=1)."""
    if clients in _built:
        return _built[clients]
    reuse = os.environ.get("BENCH_REUSE") == "1"
    name = f"{DATABASE}_{clients}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with admin.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if exists and reuse and _complete(url):
                # A salon kept from an earlier checkout gets the tables added since.
                migrations.upgrade(url)
                _ensure_averages(url)
                salon = _describe(url, clients, build_seconds=0.0)
                _built[clients] = salon
                return salon
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    if not reuse:
        atexit.register(_drop, name)
    migrations.upgrade(url)
    with timer() as building:
        _build(url, clients)
        _ensure_averages(url)
    salon = _describe(url, clients, build_seconds=building[0])
    _built[clients] = salon
    return salon


def _ensure_averages(url: str) -> None:
    """The weekly averages job has run, as it has at any salon in service: the waterfall has levels 1 and 2.

    A separate step (not part of `_build`) so that a salon kept with BENCH_REUSE=1 from before gets it too.
    """
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        computed = session.get(AveragesState, COMPANY_ID) is None
        if computed:
            calculate_averages(session, company_id=COMPANY_ID, now=AVERAGES_AT, full=True)
    if computed:
        analyze(engine)
    engine.dispose()


def _complete(url: str) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            name = connection.execute(select(Company.name).where(Company.id == COMPANY_ID)).scalar()
            return name == _MARKER
    except Exception:  # a half-built or foreign database is simply rebuilt
        return False
    finally:
        engine.dispose()


def _describe(url: str, clients: int, *, build_seconds: float) -> BigSalon:
    engine = make_engine(url)
    with engine.connect() as connection:
        appointments = connection.execute(
            text("SELECT count(*) FROM appointments_cache WHERE company_id = :c"), {"c": COMPANY_ID}
        ).scalar_one()
    engine.dispose()
    return BigSalon(url, COMPANY_ID, TODAY, clients, appointments, build_seconds)


def _drop(name: str) -> None:
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _build(url: str, clients: int) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    plan = generate_salon(company_id=COMPANY_ID, clients=clients, seed=1, today=TODAY, history_days=HISTORY_DAYS)
    with session_scope(factory) as session:
        load_salon(session, plan)
    with session_scope(factory) as session:
        copy_rows(
            session,
            "bookings",
            ("id", "company_id", "client_id", "client_phone", "datetime", "status", "created_at"),
            _past_bookings(plan),
        )
    with session_scope(factory) as session:
        copy_rows(
            session,
            "client_reactivation_history",
            (
                "company_id",
                "client_id",
                "phone",
                "step",
                "message_type",
                "campaign",
                "status",
                "inactive_days",
                "last_visit_date",
                "interval_days",
                "interval_source",
                "message_sent_at",
                "created_at",
            ),
            _earlier_messages(plan),
        )
        copy_rows(session, "reactivation_opt_outs", ("company_id", "phone", "client_id", "source"), _opt_outs(plan))
        session.execute(text("UPDATE companies SET name = :m WHERE id = :c"), {"m": _MARKER, "c": COMPANY_ID})
    analyze(engine)
    engine.dispose()


def _past_bookings(plan: SalonPlan) -> Iterator[tuple[object, ...]]:
    """The booking behind every visit: the bookings table holds history, not just what is ahead."""
    rng = random.Random(11)
    phones = {c.id: c.phone for c in plan.clients}
    next_id = COMPANY_ID * 100_000_000 + 50_000_000
    for visit in plan.appointments:
        next_id += 1
        status = "deleted" if rng.random() < 0.04 else "confirmed"
        created = visit.appointment_datetime - timedelta(days=rng.randint(0, 14), hours=rng.randint(0, 8))
        phone = phones[visit.client_id]
        yield (next_id, COMPANY_ID, visit.client_id, phone, visit.appointment_datetime, status, created)


def _earlier_messages(plan: SalonPlan) -> Iterator[tuple[object, ...]]:
    """A month of earlier campaigns: gentle messages to some lapsed clients, a few of them this week."""
    rng = random.Random(12)
    for client in plan.clients:
        if client.last_visit_date is None or (TODAY - client.last_visit_date).days < 35 or rng.random() > 0.08:
            continue
        sent_day = TODAY - timedelta(days=rng.randint(1, 30))
        sent = datetime.combine(sent_day, time(7, 30), tzinfo=UTC)
        yield (
            COMPANY_ID,
            client.id,
            try_normalize_phone(client.phone),
            1,
            "gentle",
            "dormant_30",
            "sent",
            (sent_day - client.last_visit_date).days,
            client.last_visit_date,
            30,
            "universal",
            sent,
            sent,
        )


def _opt_outs(plan: SalonPlan) -> Iterator[tuple[object, ...]]:
    rng = random.Random(13)
    seen: set[str] = set()
    for client in plan.clients:
        phone = try_normalize_phone(client.phone)
        if phone and phone not in seen and rng.random() < 0.005:
            seen.add(phone)
            yield (COMPANY_ID, phone, client.id, "reply")
