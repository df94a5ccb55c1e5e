"""The averages job on PostgreSQL: bulk SQL around one pass over the company's visits.

A window function (lag) gives every interval once, and an in-memory result (a CTE) holds, per client and service,
the personal median and consistency (stats.py defines them) and the salon intervals to count. PostgreSQL will not
run that pass in parallel itself (the window function keeps it in one process), so the job splits the company's
clients into `workers` shares (ranges of client ids with about as many visits each), each passed over on its own
connection at the same time; each share writes its clients' personal rows (INSERT … ON CONFLICT DO UPDATE of only
the rows whose values changed, compared first in a join, and a DELETE of rows no longer backed by data) and commits
them. The salon intervals are kept, counted per service, length and local day the interval ended, in
`service_interval_counts`; the salon medians are computed from those counts (exactly what percentile_cont over the
intervals gives). In an incremental run only the clients the changes touch are passed over, and the counts are
recounted from the first changed day (see job.py).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware, local_midnight
from reactivation.storage.db import pg_local_settings
from reactivation.timing.averages.plan import AveragesPlan, Changes, Computed
from reactivation.timing.averages.stats import ServiceStats, service_stats_from_counts
from reactivation.timing.waterfall import MAX_INTERVAL_DAYS, MIN_INTERVAL_DAYS, MIN_PERSONAL_INTERVALS

# Sorting a few million intervals in memory instead of on disk.
WORK_MEM = "256MB"


# Settings for the one pass over a company's visits. The local day comes from the session's time zone (a cast
# per row instead of a zone lookup per row); the sort of a few million visits fits in memory; compiling the
# expressions (JIT) costs more than it saves on a statement that runs once a week.
def _pass_settings(tz: ZoneInfo) -> dict[str, str]:
    return {"TimeZone": tz.key, "work_mem": WORK_MEM, "jit": "off"}


@dataclass(frozen=True)
class _Share:
    """The company's clients whose ids lie in [low, high) (None: unbounded), computed on their own."""

    low: int | None
    high: int | None

    def clients(self, column: str) -> str:
        """The SQL condition that `column` holds one of this share's client ids (bound as :share_low/high).

        A range, not a remainder, so that each share reads only its part of the (company, client, date) index.
        """
        low = f"AND {column} >= :share_low" if self.low is not None else ""
        high = f"AND {column} < :share_high" if self.high is not None else ""
        return f"{low} {high}"

    def params(self) -> dict[str, int]:
        return {
            name: value for name, value in (("share_low", self.low), ("share_high", self.high)) if value is not None
        }


def shares_between(bounds: Sequence[int]) -> list[_Share]:
    """The shares that the sorted `bounds` cut the client ids into: below the first, between each, from the last."""
    edges: list[int | None] = [None, *sorted(set(bounds)), None]
    return [_Share(low, high) for low, high in itertools.pairwise(edges)]


def _visits_sql(share: _Share, *, incremental: bool) -> str:
    """An appointment's services, one row each, whatever the JSON holds (non-arrays and non-integers skipped)."""
    touched = f"AND a.client_id = {_TOUCHED_IDS}" if incremental else ""
    return f"""
    SELECT a.client_id, s.sid::bigint AS service_id, a.appointment_datetime::date AS day
    FROM appointments_cache a
    CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(a.service_ids) = 'array' THEN a.service_ids ELSE '[]'::jsonb END
    ) AS s(sid)
    WHERE a.company_id = :company_id
      AND a.attendance = 1
      AND a.appointment_datetime >= :start AND a.appointment_datetime < :end
      AND s.sid ~ '^[0-9]{{1,18}}$'
      {share.clients("a.client_id")} {touched}
"""


_TOUCHED = "_reactivation_touched_clients"
# The touched clients as one sorted array: the index on (company, client, date) is searched once per client, in
# client order, instead of being read whole for a merge join with them (the planner's choice on a big salon).
_TOUCHED_IDS = f"ANY(ARRAY(SELECT client_id FROM {_TOUCHED} ORDER BY client_id))"


def _touched_sql(share: _Share) -> str:
    """The share's clients whose personal rows may differ from the last run's, and every client of the share
    with a visit on or after :changed_since (whose recent salon intervals are recounted): see the module
    docstring."""
    return f"""
CREATE TEMP TABLE {_TOUCHED} AS
SELECT client_id FROM (
    SELECT client_id FROM appointments_cache WHERE company_id = :company_id AND id > :max_id
    UNION
    SELECT client_id FROM appointments_cache
    WHERE company_id = :company_id AND appointment_datetime >= :changed_since AND appointment_datetime < :end
    UNION
    SELECT client_id FROM appointments_cache
    WHERE company_id = :company_id AND attendance = 1
      AND appointment_datetime >= :old_start AND appointment_datetime < :start
) touched
WHERE true {share.clients("client_id")}
"""


# A salon interval to count travels as one integer, (day it ended − :recount_from) × _DAY_STRIDE + its length:
# one array per group instead of two, and a grouping on one key (the lengths are below _DAY_STRIDE).
_DAY_STRIDE = 1000
assert MAX_INTERVAL_DAYS < _DAY_STRIDE


def _groups_sql(share: _Share, *, incremental: bool) -> str:
    """Every (client, service) of the share with an interval, in one pass: the personal median and consistency
    (see the module docstring) where there are enough intervals, and the salon intervals to count (those in the
    salon window that end on or after :recount_from).

    The intervals are computed once for both levels: a salon interval is one whose earlier visit lies in the
    6-month window, and the visit before it is the same whether 12 months or 6 are read.
    """
    return f"""
SELECT client_id, service_id, n, counted,
       CASE WHEN n >= :min_intervals THEN floor(q[2] + 0.5)::int END AS median,
       CASE WHEN n >= :min_intervals
            THEN round(greatest(0.0, least(1.0, 1.0 - (q[3] - q[1]) / (2.0 * q[2])))::numeric, 2) END AS consistency
FROM (
    SELECT client_id, service_id,
           count(*) AS n,
           percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY gap) AS q,
           array_agg((day - :recount_from) * {_DAY_STRIDE} + gap)
               FILTER (WHERE day >= :recount_from AND day - gap >= :service_start_day) AS counted
    FROM (
        SELECT client_id, service_id, day,
               day - lag(day) OVER (PARTITION BY client_id, service_id ORDER BY day) AS gap
        FROM ({_visits_sql(share, incremental=incremental)}) visits
    ) intervals
    WHERE gap BETWEEN :min_gap AND :max_gap
    GROUP BY client_id, service_id
) grouped
"""


def _share_sql(share: _Share, *, incremental: bool) -> str:
    """One statement for a share: its pass over the visits (see _groups_sql), its personal rows written (of the
    touched clients only, in an incremental run), and its salon intervals counted per service and code.

    One statement, so that the pass's result stays in memory (a CTE) instead of going through a temporary table.
    The share's personal rows are compared with the stored ones in one join (new, changed, no longer backed by
    data), so a rerun over unchanged visits writes nothing; the unnest sits in the select list, where it is twice
    as fast as a lateral join of the arrays.
    """
    scope = f"{share.clients('t.client_id')} " + (f"AND t.client_id = {_TOUCHED_IDS}" if incremental else "")
    return f"""
WITH grouped AS MATERIALIZED ({_groups_sql(share, incremental=incremental)}),
diff AS MATERIALIZED (
    SELECT s.client_id, s.service_id, s.n, s.median, s.consistency, t.id AS stale_id
    FROM (SELECT client_id, service_id, n, median, consistency FROM grouped WHERE median IS NOT NULL) s
    FULL JOIN (
        SELECT id, client_id, service_id, personal_interval_days, visit_count, consistency_score
        FROM client_personalized_intervals t
        WHERE t.company_id = :company_id {scope}
    ) t ON t.client_id = s.client_id AND t.service_id = s.service_id
    WHERE t.id IS NULL OR s.client_id IS NULL
       OR (t.personal_interval_days, t.visit_count, t.consistency_score)
          IS DISTINCT FROM (s.median, s.n + 1, s.consistency)
),
written AS (
    INSERT INTO client_personalized_intervals AS t (
        company_id, client_id, service_id, personal_interval_days, visit_count, consistency_score, last_calculated)
    SELECT :company_id, client_id, service_id, median, n + 1, consistency, :now FROM diff WHERE client_id IS NOT NULL
    ON CONFLICT (company_id, client_id, service_id) DO UPDATE SET
        personal_interval_days = EXCLUDED.personal_interval_days,
        visit_count = EXCLUDED.visit_count,
        consistency_score = EXCLUDED.consistency_score,
        last_calculated = EXCLUDED.last_calculated
    RETURNING 1
),
removed AS (
    DELETE FROM client_personalized_intervals t
    WHERE t.company_id = :company_id AND t.id IN (SELECT stale_id FROM diff WHERE client_id IS NULL)
    RETURNING 1
),
counts AS (
    SELECT service_id, code, count(*) AS intervals
    FROM (SELECT service_id, unnest(counted) AS code FROM grouped) x
    GROUP BY service_id, code
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM removed),
       coalesce(string_agg(service_id::text, ','), ''), coalesce(string_agg(code::text, ','), ''),
       coalesce(string_agg(intervals::text, ','), '')
FROM counts
"""


# The shares' counts, summed, replace the recounted days; days before :recount_from are kept, less what left the
# window. Counts are compared with the stored ones in one join and only the differences written, so a rerun over
# unchanged visits writes nothing.
_REPLACE_COUNTS = f"""
WITH fresh AS (
    SELECT service_id, :recount_from + code / {_DAY_STRIDE} AS ended_on, code % {_DAY_STRIDE} AS interval_days,
           sum(intervals) AS intervals
    FROM unnest(string_to_array(:service_ids, ',')::bigint[], string_to_array(:codes, ',')::int[],
                string_to_array(:intervals, ',')::int[]) AS counted(service_id, code, intervals)
    GROUP BY service_id, code
),
diff AS MATERIALIZED (
    SELECT coalesce(f.service_id, t.service_id) AS service_id, coalesce(f.ended_on, t.ended_on) AS ended_on,
           coalesce(f.interval_days, t.interval_days) AS interval_days, f.intervals
    FROM fresh f
    FULL JOIN (
        SELECT service_id, ended_on, interval_days, intervals FROM service_interval_counts
        WHERE company_id = :company_id AND ended_on >= :recount_from
    ) t ON t.service_id = f.service_id AND t.ended_on = f.ended_on AND t.interval_days = f.interval_days
    WHERE f.intervals IS DISTINCT FROM t.intervals
),
removed AS (
    DELETE FROM service_interval_counts t
    WHERE t.company_id = :company_id
      AND (t.ended_on - t.interval_days < :service_start_day
           OR (t.service_id, t.ended_on, t.interval_days) IN (
               SELECT service_id, ended_on, interval_days FROM diff WHERE intervals IS NULL))
    RETURNING 1
),
written AS (
    INSERT INTO service_interval_counts AS t (company_id, service_id, ended_on, interval_days, intervals)
    SELECT :company_id, service_id, ended_on, interval_days, intervals FROM diff WHERE intervals IS NOT NULL
    ON CONFLICT (company_id, service_id, ended_on, interval_days) DO UPDATE SET intervals = EXCLUDED.intervals
    RETURNING 1
)
SELECT (SELECT count(*) FROM removed), (SELECT count(*) FROM written)
"""


@dataclass(frozen=True)
class _ShareOutcome:
    personal_written: int
    personal_removed: int
    # The share's salon intervals to count, as comma-separated lists (passed on as they came, which is several
    # times faster than a list of integers each way): services, intervals as _DAY_STRIDE codes, how many of each.
    service_ids: str
    codes: str
    intervals: str
    # In an incremental run, how many of the share's clients were recomputed.
    touched: int | None


def _run_share(session: Session, share: _Share, params: dict[str, Any], tz: ZoneInfo) -> _ShareOutcome:
    """One share's pass over the visits (its touched clients only, in an incremental run), its personal rows,
    and its salon intervals to count."""
    incremental = params["incremental"]
    params = {**params, **share.params()}
    touched: int | None = None
    session.execute(text(f"DROP TABLE IF EXISTS {_TOUCHED}"))
    with pg_local_settings(session, _pass_settings(tz)):
        if incremental:
            touched = session.execute(text(_touched_sql(share)), params).rowcount  # type: ignore[attr-defined]
            session.execute(text(f"ANALYZE {_TOUCHED}"))
        statement = text(_share_sql(share, incremental=incremental))
        written, removed, service_ids, codes, intervals = session.execute(statement, params).one()
    session.execute(text(f"DROP TABLE IF EXISTS {_TOUCHED}"))
    return _ShareOutcome(written, removed, service_ids, codes, intervals, touched)


def _run_shares(session: Session, params: dict[str, Any], tz: ZoneInfo, *, workers: int) -> list[_ShareOutcome]:
    """Every share's outcome: in the caller's session for one worker, else each on its own connection at once.

    PostgreSQL runs none of this pass in parallel by itself (a window function keeps it in one process), so
    the job splits the clients into ranges of about the same number of visits and runs one pass per core.
    Each share commits its own personal rows.
    """
    if workers == 1:
        return [_run_share(session, _Share(None, None), params, tz)]
    shares = shares_between(share_bounds(session, company_id=params["company_id"], workers=workers))
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine

    def run(share: _Share) -> _ShareOutcome:
        with Session(engine) as own, own.begin():
            return _run_share(own, share, params, tz)

    with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="averages") as pool:
        futures = [pool.submit(run, share) for share in shares]
        return [future.result() for future in futures]


# Enough sampled visits to cut the clients into shares of about the same size.
_BOUNDS_SAMPLE_ROWS = 50_000


def share_bounds(session: Session, *, company_id: int, workers: int) -> list[int]:
    """The client ids that cut the company's visits into `workers` parts of about the same size.

    From a sample of the table's pages (a few milliseconds on millions of rows); from all the company's rows
    when the sample holds too few of them (a small company in a big table, where reading them all is cheap).
    """
    fractions = [index / workers for index in range(1, workers)]
    table_rows = session.scalar(
        text("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'appointments_cache'::regclass")
    )
    percent = min(100.0, 100.0 * _BOUNDS_SAMPLE_ROWS / table_rows) if table_rows else 100.0
    quantiles = "percentile_disc(CAST(:fractions AS float8[])) WITHIN GROUP (ORDER BY client_id), count(*)"
    bounds, sampled = session.execute(
        text(
            f"SELECT {quantiles} FROM appointments_cache TABLESAMPLE SYSTEM (:percent) REPEATABLE (0) "
            "WHERE company_id = :c"
        ),
        {"fractions": fractions, "percent": percent, "c": company_id},
    ).one()
    if sampled < _BOUNDS_SAMPLE_ROWS // 10:
        bounds, _ = session.execute(
            text(f"SELECT {quantiles} FROM appointments_cache WHERE company_id = :c"),
            {"fractions": fractions, "c": company_id},
        ).one()
    return [int(bound) for bound in bounds or []]


def run_postgres(session: Session, plan: AveragesPlan) -> Computed:
    """The shares' passes, then the salon interval counts (recent days recounted) and the medians from them."""
    params = _params(session, plan)
    outcomes = _run_shares(session, params, plan.tz, workers=plan.workers)
    _replace_counts(session, params, outcomes, tz=plan.tz)
    return Computed(
        services=_salon_stats(session, params, today=plan.window.today),
        personal_written=sum(outcome.personal_written for outcome in outcomes),
        personal_deleted=sum(outcome.personal_removed for outcome in outcomes),
        clients_recomputed=sum(outcome.touched or 0 for outcome in outcomes) if plan.changes is not None else None,
    )


def _params(session: Session, plan: AveragesPlan) -> dict[str, Any]:
    """The statements' parameters: the windows and, in an incremental run, where the changes begin."""
    recount_from = plan.window.service_start_day
    changes: dict[str, Any] = {}
    if plan.changes is not None:
        changed_from = _changed_from(session, company_id=plan.company_id, changes=plan.changes, tz=plan.tz)
        recount_from = max(changed_from, plan.window.service_start_day)
        changes = {
            "max_id": plan.changes.max_appointment_id,
            "changed_since": local_midnight(changed_from, plan.tz),
            "old_start": plan.changes.old_personal_start,
        }
    return {
        **changes,
        "incremental": bool(changes),
        "company_id": plan.company_id,
        "start": plan.window.personal_start,
        "end": plan.window.end,
        "service_start_day": plan.window.service_start_day,
        "recount_from": recount_from,
        "min_gap": MIN_INTERVAL_DAYS,
        "max_gap": MAX_INTERVAL_DAYS,
        "min_intervals": MIN_PERSONAL_INTERVALS,
        "now": plan.now,
    }


def _replace_counts(
    session: Session, params: dict[str, Any], outcomes: Sequence[_ShareOutcome], *, tz: ZoneInfo
) -> None:
    """The shares' salon intervals, summed, replace the stored counts of the recounted days."""
    # The planner cannot see how many counts the arrays hold: it would probe the index once per count, and its
    # cost estimate is high enough to compile the statement (JIT), which takes longer than running it.
    with pg_local_settings(session, {**_pass_settings(tz), "enable_nestloop": "off"}):
        session.execute(
            text(_REPLACE_COUNTS),
            {
                **params,
                "service_ids": _joined(outcome.service_ids for outcome in outcomes),
                "codes": _joined(outcome.codes for outcome in outcomes),
                "intervals": _joined(outcome.intervals for outcome in outcomes),
            },
        )


_SALON_COUNTS = """
SELECT service_id, interval_days, sum(intervals)
FROM service_interval_counts
WHERE company_id = :company_id AND ended_on - interval_days >= :service_start_day AND ended_on <= :today
GROUP BY service_id, interval_days
"""


def _salon_stats(session: Session, params: dict[str, Any], *, today: date) -> dict[int, ServiceStats]:
    """Each service's statistics from the stored counts of the intervals inside the salon window."""
    by_service: dict[int, Counter[int]] = defaultdict(Counter)
    for service_id, interval_days, intervals in session.execute(text(_SALON_COUNTS), {**params, "today": today}):
        by_service[service_id][interval_days] = int(intervals)
    return {sid: s for sid, counts in by_service.items() if (s := service_stats_from_counts(counts)) is not None}


def _joined(lists: Iterable[str]) -> str:
    return ",".join(part for part in lists if part)


def _changed_from(session: Session, *, company_id: int, changes: Changes, tz: ZoneInfo) -> date:
    """The first local day whose visits may differ from what the last run read: the first changed day (see
    plan.first_changed), or the day of the earliest appointment row added since, if that is earlier."""
    changed_from = changes.first_changed
    # Materialized, so that the new rows are found by id: as a plain min() the planner walks the company's
    # appointments in date order looking for one with a high id, which on a big salon is nearly all of them.
    earliest_new = session.scalar(
        text(
            """
            WITH added AS MATERIALIZED (
                SELECT appointment_datetime FROM appointments_cache WHERE company_id = :c AND id > :max_id
            )
            SELECT min(appointment_datetime) FROM added
            """
        ),
        {"c": company_id, "max_id": changes.max_appointment_id},
    )
    if earliest_new is not None:
        changed_from = min(changed_from, as_aware(earliest_new).astimezone(tz).date())
    return changed_from
