"""The large salons the timing benchmarks share: 1M clients each, on PostgreSQL, each in a database of its own.

* `big_salon`: the project's big salon. `generate_salon` with 137 days of history gives about five visits per
  client.
* `rare_salon`: a salon whose most valuable clients are rarely due: every client keeps a steady rhythm of their
  own, last visits spread over four months, values rounded to 1,000 (many ties), one client in 13 with an
  upcoming booking, 150 days of history.
* `idle_salon`: almost nobody due: every client's last visit lies within 0.8 of their own rhythm, 100 days of
  history.

On top of the generator's rows come what a real booking system's tables hold and the generator leaves out: a
past booking for every visit (the `bookings` table keeps history, not just the future), a month of earlier
reactivation messages and a few opt-outs. Every salon has had its averages job run (the night before the bench
date), and its tables are analyzed.

Building one takes a few minutes, so one process builds each once for every bench that asks (`python -m bench
selection averages`), and drops it at exit. With BENCH_REUSE=1 the databases are kept and reused by later runs.
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
from reactivation.tools.synthetic import DEFAULT_SHAPE, SalonPlan, SalonShape, generate_salon

COMPANY_ID = 777
TODAY = date(2026, 11, 23)
# BENCH_CLIENTS makes smaller salons (a quick try of a bench); the figures are for 1M.
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "1000000"))
HISTORY_DAYS = 137
# BENCH_DATABASE names them otherwise: two checkouts benchmarking at once keep to their own.
DATABASE = os.environ.get("BENCH_DATABASE", "reactivation_bench_timing")
# When the salon's last averages job ran: the night before the bench date.
AVERAGES_AT = datetime.combine(TODAY, time(0), tzinfo=UTC)
_MARKER = "bench salon complete"


@dataclass(frozen=True)
class SalonKind:
    """One of the bench salons: its company, history and the shape of its clients."""

    key: str
    label: str
    company_id: int
    history_days: int
    shape: SalonShape


BIG = SalonKind("big", "the big salon", COMPANY_ID, HISTORY_DAYS, DEFAULT_SHAPE)
RARE = SalonKind(
    "rare",
    "valuable clients rarely due",
    778,
    150,
    SalonShape(
        archetypes=(("regular", 0.94), ("vip", 0.06)),
        last_visit_days=(0.0, 120.0),
        booking_share=1 / 13,
        spent_step=1000,
    ),
)
IDLE = SalonKind(
    "idle",
    "almost nobody due",
    779,
    100,
    SalonShape(archetypes=(("regular", 0.94), ("vip", 0.06)), last_visit_rhythms=(0.0, 0.8)),
)
KINDS = {kind.key: kind for kind in (BIG, RARE, IDLE)}


@dataclass(frozen=True)
class BigSalon:
    url: str
    company_id: int
    today: date
    clients: int
    appointments: int
    build_seconds: float
    kind: SalonKind = BIG

    @property
    def label(self) -> str:
        return self.kind.label


_built: dict[tuple[str, int], BigSalon] = {}


def big_salon(clients: int = CLIENTS) -> BigSalon:
    """The project's big salon, built on first use in this process (or reused with BENCH_REUSE=1)."""
    return salon(BIG, clients)


def rare_salon(clients: int = CLIENTS) -> BigSalon:
    """The salon whose most valuable clients are rarely due (see the module docstring)."""
    return salon(RARE, clients)


def idle_salon(clients: int = CLIENTS) -> BigSalon:
    """The salon where almost nobody is due (see the module docstring)."""
    return salon(IDLE, clients)


def database_name(kind: SalonKind, clients: int) -> str:
    # The big salon keeps the name it always had, so that a database kept with BENCH_REUSE=1 is found again.
    return f"{DATABASE}_{clients}" if kind is BIG else f"{DATABASE}_{kind.key}_{clients}"


def salon(kind: SalonKind, clients: int = CLIENTS) -> BigSalon:
    """A bench salon, built on first use in this process (or reused with BENCH_REUSE=1)."""
    if (kind.key, clients) in _built:
        return _built[kind.key, clients]
    reuse = os.environ.get("BENCH_REUSE") == "1"
    name = database_name(kind, clients)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with admin.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if exists and reuse and _complete(url, kind):
                # A salon kept from an earlier checkout gets the tables added since.
                migrations.upgrade(url)
                _ensure_averages(url, kind)
                built = _describe(url, kind, clients, build_seconds=0.0)
                _built[kind.key, clients] = built
                return built
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    if not reuse:
        atexit.register(_drop, name)
    migrations.upgrade(url)
    with timer() as building:
        _build(url, kind, clients)
        _ensure_averages(url, kind)
    built = _describe(url, kind, clients, build_seconds=building[0])
    _built[kind.key, clients] = built
    return built


def _ensure_averages(url: str, kind: SalonKind) -> None:
    """The weekly averages job has run, as it has at any salon in service: the waterfall has levels 1 and 2.

    A separate step (not part of `_build`) so that a salon kept with BENCH_REUSE=1 from before gets it too.
    The job analyzes the tables it wrote itself.
    """
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        if session.get(AveragesState, kind.company_id) is None:
            calculate_averages(session, company_id=kind.company_id, now=AVERAGES_AT, full=True)
    engine.dispose()


def _complete(url: str, kind: SalonKind) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            name = connection.execute(select(Company.name).where(Company.id == kind.company_id)).scalar()
            return name == _MARKER
    except Exception:  # a half-built or foreign database is simply rebuilt
        return False
    finally:
        engine.dispose()


def _describe(url: str, kind: SalonKind, clients: int, *, build_seconds: float) -> BigSalon:
    engine = make_engine(url)
    with engine.connect() as connection:
        appointments = connection.execute(
            text("SELECT count(*) FROM appointments_cache WHERE company_id = :c"), {"c": kind.company_id}
        ).scalar_one()
    engine.dispose()
    return BigSalon(url, kind.company_id, TODAY, clients, appointments, build_seconds, kind)


def _drop(name: str) -> None:
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _build(url: str, kind: SalonKind, clients: int) -> None:
    # Millions of rows in one COPY may take longer than the application's statement timeout on a busy machine.
    engine = make_engine(url, connect_args={"options": "-c statement_timeout=0"})
    factory = make_session_factory(engine)
    plan = generate_salon(
        company_id=kind.company_id,
        clients=clients,
        seed=1,
        today=TODAY,
        history_days=kind.history_days,
        shape=kind.shape,
    )
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
        session.execute(text("UPDATE companies SET name = :m WHERE id = :c"), {"m": _MARKER, "c": kind.company_id})
    # The loader analyzed what it wrote; this also sets the visibility map (index-only scans) as a salon in
    # service would have it.
    analyze(engine)
    engine.dispose()


def _past_bookings(plan: SalonPlan) -> Iterator[tuple[object, ...]]:
    """The booking behind every visit: the bookings table holds history, not just what is ahead."""
    rng = random.Random(11)
    phones = {c.id: c.phone for c in plan.clients}
    next_id = plan.company_id * 100_000_000 + 50_000_000
    for visit in plan.appointments:
        next_id += 1
        status = "deleted" if rng.random() < 0.04 else "confirmed"
        created = visit.appointment_datetime - timedelta(days=rng.randint(0, 14), hours=rng.randint(0, 8))
        phone = phones[visit.client_id]
        yield (next_id, plan.company_id, visit.client_id, phone, visit.appointment_datetime, status, created)


def _earlier_messages(plan: SalonPlan) -> Iterator[tuple[object, ...]]:
    """A month of earlier campaigns: gentle messages to some lapsed clients, a few of them this week."""
    rng = random.Random(12)
    for client in plan.clients:
        if client.last_visit_date is None or (TODAY - client.last_visit_date).days < 35 or rng.random() > 0.08:
            continue
        sent_day = TODAY - timedelta(days=rng.randint(1, 30))
        sent = datetime.combine(sent_day, time(7, 30), tzinfo=UTC)
        yield (
            plan.company_id,
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
    """One client in 200 opted out; the phone is parsed only for those (parsing a million takes minutes)."""
    rng = random.Random(13)
    seen: set[str] = set()
    for client in plan.clients:
        if rng.random() >= 0.005:
            continue
        phone = try_normalize_phone(client.phone)
        if phone and phone not in seen:
            seen.add(phone)
            yield (plan.company_id, phone, client.id, "reply")
