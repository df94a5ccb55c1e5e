"""The averages job on the two bench salons whose histories matter (bench/bigsalon.py: the big salon, and the one
whose valuable clients are rarely due; 1M clients each), beside the seed's calculate_service_averages().

Ours (`calculate_averages`) computes every service's median over 6 months and every client's own rhythm over 12
months, and writes both tables. Timed:

* a full run over the salon as it stands (the job already ran the night before, so few rows change: the
  monthly full run), the median of a few;
* the first full run, on empty interval tables (every row written);
* an incremental run after a week of new visits (last week's visits again, a week later), and a full run at
  the same point for comparison.

The seed's `calculate_service_averages()` (service medians only, no personal rhythms) runs on the same data,
corrected just enough to run on PostgreSQL: `unnest()` of a jsonb list becomes a lateral
`jsonb_array_elements_text` (a set-returning function cannot sit in a window's PARTITION BY either), the text
ids are cast to the services' type, and NOW() is the bench's reference time.

The job runs as the Celery task and the CLI run it: with AVERAGES_WORKERS shares of clients at once, each on its
own connection, so it reads committed data only. Each timed run therefore commits, and the bench puts the salon
back afterwards (the week's visits deleted, a full run as of the bench date). The plans go to
bench/plans/averages.txt; they are taken on one connection (workers=1) in a transaction that is rolled back, and
each share runs the same statements on its part of the clients.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from bench.bigsalon import AVERAGES_AT, KINDS, BigSalon, salon
from bench.common import Figure, explain_run, median_seconds, timer, write_plans
from reactivation.core.settings import Settings
from reactivation.storage.db import make_engine
from reactivation.timing.averages import AveragesResult, calculate_averages

# BENCH_AVERAGES_RUNS=1 for a quicker run on a busy machine.
RUNS = int(os.environ.get("BENCH_AVERAGES_RUNS", "3"))
WEEK = timedelta(days=7)
# As deployed: the setting's default.
WORKERS: int = Settings.model_fields["averages_workers"].default

# The seed's calculate_service_averages(p_company_id), corrected to run (see the module docstring).
SEED_SERVICE_AVERAGES = """
WITH service_intervals AS (
  SELECT
    s.sid,
    ac1.client_id,
    ac1.appointment_datetime,
    LEAD(ac1.appointment_datetime) OVER (
      PARTITION BY ac1.client_id, s.sid
      ORDER BY ac1.appointment_datetime
    ) as next_visit
  FROM appointments_cache ac1
  CROSS JOIN LATERAL jsonb_array_elements_text(ac1.service_ids) AS s(sid)
  WHERE ac1.company_id = :company_id
    AND ac1.attendance = 1  -- Only completed visits
    AND ac1.appointment_datetime >= CAST(:now AS timestamptz) - INTERVAL '6 months'
),
interval_calculations AS (
  SELECT
    si.sid,
    EXTRACT(EPOCH FROM (si.next_visit - si.appointment_datetime)) / 86400 as days_between
  FROM service_intervals si
  WHERE si.next_visit IS NOT NULL
    AND EXTRACT(EPOCH FROM (si.next_visit - si.appointment_datetime)) / 86400 BETWEEN 1 AND 365
)
SELECT
  ic.sid::INTEGER,
  s.title as service_name,
  PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY ic.days_between)::INTEGER as median_interval,
  COUNT(*)::INTEGER as sample_size,
  AVG(ic.days_between)::INTEGER as avg_interval,
  MIN(ic.days_between)::INTEGER as min_interval,
  MAX(ic.days_between)::INTEGER as max_interval
FROM interval_calculations ic
JOIN services s ON s.yclients_id = ic.sid::BIGINT
WHERE s.company_id = :company_id
GROUP BY ic.sid, s.title
HAVING COUNT(*) >= 10  -- Minimum 10 visits for statistical validity
"""

# A week of new visits: last week's, a week later (same clients, services and hours).
ADD_A_WEEK = """
INSERT INTO appointments_cache (company_id, client_id, service_ids, appointment_datetime, attendance)
SELECT company_id, client_id, service_ids, appointment_datetime + INTERVAL '7 days', attendance
FROM appointments_cache
WHERE company_id = :company_id AND appointment_datetime >= :start AND appointment_datetime < :end
"""

EMPTY_INTERVALS = """
DELETE FROM client_personalized_intervals WHERE company_id = :company_id;
DELETE FROM service_reactivation_intervals WHERE company_id = :company_id;
DELETE FROM service_interval_counts WHERE company_id = :company_id;
DELETE FROM reactivation_averages_state WHERE company_id = :company_id;
"""

# The salon as the job sees it, to check that an incremental run and a full run agree.
FINGERPRINT = """
SELECT (SELECT md5(string_agg(concat_ws(':', service_id, median_interval_days, avg_interval_days,
                                        min_interval_days, max_interval_days, stddev_days, sample_size, is_active),
                              ',' ORDER BY service_id))
        FROM service_reactivation_intervals WHERE company_id = :company_id),
       (SELECT md5(string_agg(concat_ws(':', client_id, service_id, personal_interval_days, visit_count,
                                        consistency_score), ',' ORDER BY client_id, service_id))
        FROM client_personalized_intervals WHERE company_id = :company_id)
"""


def _add_a_week(session: Session, salon: BigSalon) -> int:
    return _replay_week(session.connection(), salon)


def _empty_intervals(session: Session, salon: BigSalon) -> None:
    for statement in EMPTY_INTERVALS.strip().splitlines():
        session.execute(text(statement), {"company_id": salon.company_id})


def _averages(session: Session, salon: BigSalon, *, now: datetime, full: bool, workers: int = 1) -> AveragesResult:
    return calculate_averages(session, company_id=salon.company_id, now=now, full=full, workers=workers)


def _committed_run(engine: Engine, salon: BigSalon, *, now: datetime, full: bool) -> tuple[AveragesResult, float]:
    with Session(engine) as session, timer() as took:
        result = _averages(session, salon, now=now, full=full, workers=WORKERS)
        session.commit()
    return result, took[0]


def _fingerprint(engine: Engine, salon: BigSalon) -> tuple[str, str]:
    with engine.connect() as connection:
        services, personal = connection.execute(text(FINGERPRINT), {"company_id": salon.company_id}).one()
    return services, personal


def _highest_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT coalesce(max(id), 0) FROM appointments_cache")).scalar_one())


def _restore(engine: Engine, salon: BigSalon, *, above_id: int) -> None:
    """The salon as built: the bench's added visits gone, the averages as of the bench date."""
    with Session(engine) as session:
        session.execute(text("DELETE FROM appointments_cache WHERE id > :id"), {"id": above_id})
        session.commit()
    _committed_run(engine, salon, now=AVERAGES_AT, full=True)


def _seed(session: Session, salon: BigSalon) -> list[Any]:
    return list(session.execute(text(SEED_SERVICE_AVERAGES), {"company_id": salon.company_id, "now": AVERAGES_AT}))


# The salons with histories that matter for the averages: almost nobody due changes nothing here.
SALONS = ("big", "rare")


def run() -> list[Figure]:
    """Each salon in turn (BENCH_SALONS=big or rare picks one); the plans of both in bench/plans/averages.txt.

    The stale-statistics part of `python -m bench selection` reruns the job on the same salons: not at the same
    time as this bench."""
    wanted = [key for key in os.environ.get("BENCH_SALONS", ",".join(SALONS)).split(",") if key in SALONS]
    figures: list[Figure] = []
    plans: list[str] = []
    for key in wanted:
        bench_salon = salon(KINDS[key])
        engine = make_engine(bench_salon.url, connect_args={"options": "-c statement_timeout=0"})
        try:
            measured = _measure(engine, bench_salon)
            for figure in measured:
                # Said as soon as measured (the table comes at the end of the whole run).
                print(f"{figure.name}: {figure.value:.3g} s; {figure.note}", file=sys.stderr, flush=True)
            figures += measured
            plans.append(_plans(engine, bench_salon))
        finally:
            engine.dispose()
    header = (
        f"EXPLAIN (ANALYZE, BUFFERS) of the averages job on the bench salons, as of {AVERAGES_AT.isoformat()}.\n"
        "Regenerated by `python -m bench averages`.\n\n"
    )
    write_plans("averages", header + "\n\n".join(plans))
    return figures


def _measure(engine: Engine, salon: BigSalon) -> list[Figure]:
    highest = _highest_id(engine)
    results: list[AveragesResult] = []

    def full_rerun() -> None:
        results.append(_committed_run(engine, salon, now=AVERAGES_AT, full=True)[0])

    rerun, rerun_runs = median_seconds(full_rerun, runs=RUNS)
    rerun_result = results[-1]

    with Session(engine) as session:
        _empty_intervals(session, salon)
        session.commit()
    first, first_took = _committed_run(engine, salon, now=AVERAGES_AT, full=True)

    incremental_runs: list[float] = []
    try:
        for _ in range(RUNS):
            with Session(engine) as session:
                added = _add_a_week(session, salon)
                session.commit()
            incremental, took = _committed_run(engine, salon, now=AVERAGES_AT + WEEK, full=False)
            incremental_runs.append(took)
            after_incremental = _fingerprint(engine, salon)
            _restore(engine, salon, above_id=highest)
        incremental_runs.sort()
        with Session(engine) as session:
            _add_a_week(session, salon)
            session.commit()
        _, full_after_took = _committed_run(engine, salon, now=AVERAGES_AT + WEEK, full=True)
        agree = _fingerprint(engine, salon) == after_incremental
    finally:
        _restore(engine, salon, above_id=highest)

    seed_rows: list[Any] = []

    def seed_once() -> None:
        with Session(engine) as session:
            seed_rows[:] = _seed(session, salon)
            session.rollback()

    seed, seed_runs = median_seconds(seed_once, runs=RUNS, warmups=0)

    scale = f"{salon.label}: {salon.clients:,} clients / {salon.appointments:,} visits"
    seed_note = f"seed: {len(seed_rows)} service medians only, runs {min(seed_runs):.1f}–{max(seed_runs):.1f} s"
    return [
        Figure(
            f"averages, full run ({scale})",
            rerun,
            "s",
            baseline=seed,
            baseline_label="calculate_service_averages()",
            note=f"seed ÷ full = {seed / rerun:.2f}× (target ≥ 2×); {WORKERS} workers; "
            f"{rerun_result.services_active} services active, "
            f"{rerun_result.personal_rows:,} personal rows, {rerun_result.personal_written:,} changed; "
            f"runs {min(rerun_runs):.1f}–{max(rerun_runs):.1f} s; {seed_note}",
        ),
        Figure(
            f"averages, {salon.label}, first full run (empty tables)",
            first_took,
            "s",
            baseline=seed,
            baseline_label="calculate_service_averages()",
            note=f"seed ÷ first run = {seed / first_took:.2f}×; {first.personal_written:,} personal rows written",
        ),
        Figure(
            f"averages, {salon.label}, incremental after a week of new visits",
            incremental_runs[len(incremental_runs) // 2],
            "s",
            note=f"target ≤ 1 s; {added:,} visits added, {incremental.clients_recomputed or 0:,} clients recomputed, "
            f"{incremental.personal_written:,} rows changed; runs "
            f"{min(incremental_runs):.1f}–{max(incremental_runs):.1f} s; "
            f"full run at that point {full_after_took:.1f} s, same numbers: {'yes' if agree else 'NO'}",
        ),
    ]


def _plans(engine: Engine, salon: BigSalon) -> str:
    sections = [
        explain_run(
            engine,
            lambda s: _averages(s, salon, now=AVERAGES_AT, full=True),
            title="--- calculate_averages, full run",
        ),
        explain_run(
            engine,
            lambda s: _averages(s, salon, now=AVERAGES_AT + WEEK, full=False),
            title="--- calculate_averages, incremental after a week of new visits",
            prepare=lambda connection: _replay_week(connection, salon),
        ),
        explain_run(engine, lambda s: _seed(s, salon), title="--- the seed's calculate_service_averages()"),
    ]
    header = (
        f"=== {salon.label} ({salon.clients:,} clients, {salon.appointments:,} visits), company {salon.company_id}\n\n"
    )
    return header + "\n\n".join(sections)


def _replay_week(connection: Connection, salon: BigSalon) -> int:
    added = connection.execute(
        text(ADD_A_WEEK), {"company_id": salon.company_id, "start": AVERAGES_AT - WEEK, "end": AVERAGES_AT}
    )
    return int(added.rowcount or 0)
