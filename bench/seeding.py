"""Seeding a synthetic salon of 100k clients (about 1M visits) into PostgreSQL."""

from __future__ import annotations

from datetime import date

from bench.common import Figure, bench_database, timer
from reactivation.storage.db import make_engine, make_session_factory, session_scope
from reactivation.tools.bulk import load_salon
from reactivation.tools.synthetic import generate_salon

CLIENTS = 100_000


def run(clients: int = CLIENTS) -> list[Figure]:
    with bench_database("reactivation_bench_seeding") as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        with timer() as generating:
            plan = generate_salon(company_id=962302, clients=clients, seed=1, today=date(2026, 11, 23))
        with timer() as writing, session_scope(factory) as session:
            counts = load_salon(session, plan)
        engine.dispose()
    total = generating[0] + writing[0]
    return [
        Figure(
            f"seed {clients:,} clients / {counts['appointments']:,} visits",
            total,
            "s",
            note=f"generate {generating[0]:.1f} s + write (COPY) {writing[0]:.1f} s",
        )
    ]
