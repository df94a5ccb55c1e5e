"""The averages job: each service's median return interval for a salon, and each client's own rhythm.

What it computes (the waterfall's levels 1 and 2, read by the due selection):

* An *interval* is the number of days between two consecutive attended visits of one client for one service
  (local dates in the company's time zone; visits of the same day count once). Only intervals of 1 to 365 days
  count; both visits lie inside the window.
* `service_reactivation_intervals`: per service, over the last SERVICE_WINDOW_DAYS (6 months): the median
  (percentile_cont(0.5), so 24, 24, 24, 100 gives 24), mean, min, max, sample standard deviation and the number
  of intervals. A service with fewer than 10 intervals is written with is_active = false, so is one that no
  longer has any.
* `client_personalized_intervals`: per client and service with at least 3 intervals in the last
  PERSONAL_WINDOW_DAYS (12 months): the median and a consistency score; rows that no longer qualify are removed.

Consistency score = clamp(1 − (Q3 − Q1) / (2 × median), 0, 1), rounded to 2 decimals, where Q1, median, Q3 are
percentile_cont(0.25 / 0.5 / 0.75) of the client's intervals. (Q3 − Q1) / 2 is the typical distance of an
interval from the middle, so the score is about 1 − (typical relative deviation): 1.0 for a client who comes
exactly every 21 days, ~0.9 for one within ±10 %, 0 when the middle half spreads over twice the median. It
comes from one pass of one ordered-set aggregate and, unlike the standard deviation, one vacation gap among five
visits does not sink it.

On PostgreSQL everything is bulk SQL around one pass over the visits: a window function (lag) gives every
interval once, and a temporary table holds, per client and service, the quartiles (percentile_cont) and the
intervals that fall in the salon window. Both tables are written from it: the salon medians with percentile_cont
over those intervals, the personal rows with INSERT … ON CONFLICT DO UPDATE of only the rows whose values changed
(compared first in a join) and a DELETE of rows no longer backed by data. On SQLite (the embedded default, small
data) the same numbers come from Python (`compute_averages`); tests check both agree.

Incremental runs. The salon medians are always recomputed in full: they need every interval of the 6 months.
The personal rows are rewritten only for clients whose data may have changed since the last run recorded in
`reactivation_averages_state`: clients with appointment rows added since (id above the highest seen), with
appointments dated from LATE_DAYS before the last run on (attendance is often marked after the visit), and with
visits that left the 12-month window since. A full run happens when there is no state, when the last full run is
FULL_EVERY_DAYS old, when time went backwards, or when asked (`full=True`); it also heals what the incremental
rule cannot see (rows deleted or edited long after the fact).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from reactivation.companies import load_company
from reactivation.db import is_postgres, pg_local_settings
from reactivation.models import (
    AppointmentCache,
    AveragesState,
    ClientPersonalizedInterval,
    Service,
    ServiceReactivationInterval,
)
from reactivation.waterfall import MAX_INTERVAL_DAYS, MIN_INTERVAL_DAYS, MIN_PERSONAL_INTERVALS, MIN_SERVICE_SAMPLE

log = logging.getLogger(__name__)

SERVICE_WINDOW_DAYS = 183
PERSONAL_WINDOW_DAYS = 365
FULL_EVERY_DAYS = 28
LATE_DAYS = 14
# Sorting a few million intervals in memory instead of on disk.
WORK_MEM = "256MB"


# --- Pure: intervals and their statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceStats:
    median_days: int
    avg_days: int
    min_days: int
    max_days: int
    stddev_days: Decimal | None
    sample_size: int

    @property
    def is_active(self) -> bool:
        return self.sample_size >= MIN_SERVICE_SAMPLE


@dataclass(frozen=True)
class PersonalStats:
    interval_days: int
    intervals: int
    consistency: Decimal

    @property
    def visit_count(self) -> int:
        return self.intervals + 1


def percentile_cont(sorted_values: Sequence[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont over already sorted values (linear interpolation, same float steps)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    first = float(sorted_values[low])
    second = float(sorted_values[high])
    return first + (second - first) * (position - low)


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _to_cents(value: float) -> Decimal:
    # As PostgreSQL turns a float8 into numeric (15 significant digits), then rounds half away from zero.
    return Decimal(format(value, ".15g")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def consistency_score(sorted_intervals: Sequence[int]) -> Decimal:
    """clamp(1 − (Q3 − Q1) / (2 × median), 0, 1) to 2 decimals; see the module docstring."""
    q1 = percentile_cont(sorted_intervals, 0.25)
    q2 = percentile_cont(sorted_intervals, 0.5)
    q3 = percentile_cont(sorted_intervals, 0.75)
    score = 1.0 - (q3 - q1) / (2.0 * q2)
    return _to_cents(min(1.0, max(0.0, score)))


def service_stats(intervals: Iterable[int]) -> ServiceStats | None:
    values = sorted(intervals)
    if not values:
        return None
    n = len(values)
    stddev: Decimal | None = None
    if n > 1:
        # Σ(v − mean)² / (n − 1) in integers, exactly: one pass instead of a Fraction per value.
        total = sum(values)
        variance = Fraction(n * sum(v * v for v in values) - total * total, n * (n - 1))
        with localcontext() as context:
            context.prec = 40
            root = (Decimal(variance.numerator) / Decimal(variance.denominator)).sqrt()
        stddev = root.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    mean = (Decimal(sum(values)) / Decimal(n)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return ServiceStats(
        median_days=round_half_up(percentile_cont(values, 0.5)),
        avg_days=int(mean),
        min_days=values[0],
        max_days=values[-1],
        stddev_days=stddev,
        sample_size=n,
    )


def personal_stats(intervals: Iterable[int]) -> PersonalStats | None:
    values = sorted(intervals)
    if len(values) < MIN_PERSONAL_INTERVALS:
        return None
    return PersonalStats(
        interval_days=round_half_up(percentile_cont(values, 0.5)),
        intervals=len(values),
        consistency=consistency_score(values),
    )


def compute_averages(
    visits: Iterable[tuple[int, int, date]], *, today: date
) -> tuple[dict[int, ServiceStats], dict[tuple[int, int], PersonalStats]]:
    """The job's numbers from plain (client, service, local visit day) triples; the reference for SQL."""
    personal_start = today - timedelta(days=PERSONAL_WINDOW_DAYS)
    service_start = today - timedelta(days=SERVICE_WINDOW_DAYS)
    in_window = [(c, s, d) for c, s, d in visits if personal_start <= d <= today]
    by_service: dict[int, list[int]] = defaultdict(list)
    personal: dict[tuple[int, int], PersonalStats] = {}
    for (client_id, service_id), gaps in interval_series(in_window).items():
        for earlier, _later, gap in gaps:
            if earlier >= service_start:
                by_service[service_id].append(gap)
        stats = personal_stats(gap for _, _, gap in gaps)
        if stats is not None:
            personal[(client_id, service_id)] = stats
    services = {sid: s for sid, gaps in by_service.items() if (s := service_stats(gaps)) is not None}
    return services, personal


def interval_series(
    visits: Iterable[tuple[int, int, date]],
) -> dict[tuple[int, int], list[tuple[date, date, int]]]:
    """(client, service) → [(earlier visit, later visit, days between)], for 1..365-day intervals, in order."""
    days: dict[tuple[int, int], set[date]] = defaultdict(set)
    for client_id, service_id, day in visits:
        days[(client_id, service_id)].add(day)
    result: dict[tuple[int, int], list[tuple[date, date, int]]] = {}
    for key, visit_days in days.items():
        ordered = sorted(visit_days)
        result[key] = [
            (earlier, later, (later - earlier).days)
            for earlier, later in itertools.pairwise(ordered)
            if MIN_INTERVAL_DAYS <= (later - earlier).days <= MAX_INTERVAL_DAYS
        ]
    return result


def service_ids_of(raw: Any) -> list[int]:
    """The service ids of an appointment's JSON list; anything that is not a whole number is ignored."""
    if not isinstance(raw, list):
        return []
    ids: list[int] = []
    for item in raw:
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and 0 <= item < 10**18:
            ids.append(item)
        elif isinstance(item, str) and item.isascii() and item.isdigit() and len(item) <= 18:
            ids.append(int(item))
    return ids


# --- The job ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AveragesResult:
    company_id: int
    mode: str  # 'full' | 'incremental'
    today: date
    services_active: int
    services_inactive: int
    personal_rows: int
    personal_written: int
    personal_deleted: int
    clients_recomputed: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "mode": self.mode,
            "today": self.today.isoformat(),
            "services_active": self.services_active,
            "services_inactive": self.services_inactive,
            "personal_rows": self.personal_rows,
            "personal_written": self.personal_written,
            "personal_deleted": self.personal_deleted,
            "clients_recomputed": self.clients_recomputed,
        }


@dataclass(frozen=True)
class _Window:
    today: date
    personal_start: datetime
    service_start_day: date
    service_start: datetime
    end: datetime


def _window(now: datetime, tz: ZoneInfo) -> _Window:
    today = now.astimezone(tz).date()

    def midnight(day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)

    service_start_day = today - timedelta(days=SERVICE_WINDOW_DAYS)
    return _Window(
        today=today,
        personal_start=midnight(today - timedelta(days=PERSONAL_WINDOW_DAYS)),
        service_start_day=service_start_day,
        service_start=midnight(service_start_day),
        end=midnight(today + timedelta(days=1)),
    )


def calculate_averages(session: Session, *, company_id: int, now: datetime, full: bool | None = None) -> AveragesResult:
    """Recompute the company's service medians and personal rhythms as of `now` (the caller commits).

    `full=None` decides by itself (incremental when a recent full run exists), True forces a full run,
    False asks for an incremental one when possible.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # Stored as UTC: SQLite keeps the wall time of whatever zone it is given and gives it back naive.
    now = now.astimezone(UTC)
    company = load_company(session, company_id=company_id)
    window = _window(now, company.tz)
    postgres = is_postgres(session)
    if postgres:
        # One job per company at a time; a second waits instead of interleaving its upserts.
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('reactivation.averages:' || :c, 0))"),
            {"c": str(company_id)},
        )
    state = session.get(AveragesState, company_id, with_for_update=postgres)
    incremental = _incremental_since(state, now=now, full=full)
    # Ids are global and increasing: the company's highest one marks where its next incremental run starts.
    max_id = (
        session.scalar(
            select(func.coalesce(func.max(AppointmentCache.id), 0)).where(AppointmentCache.company_id == company_id)
        )
        or 0
    )

    if postgres:
        touched = (
            _pg_touched_clients(session, company_id=company_id, state=state, window=window, tz=company.tz)
            if incremental
            else None
        )
        services, written, deleted, recomputed = _pg_run(
            session, company_id=company_id, window=window, now=now, tz=company.tz, touched=touched
        )
    else:
        clients = (
            _sqlite_touched_clients(session, company_id=company_id, state=state, window=window, tz=company.tz)
            if incremental
            else None
        )
        services, written, deleted, recomputed = _sqlite_run(
            session, company_id=company_id, window=window, now=now, tz=company.tz, touched=clients
        )

    mode = "incremental" if incremental else "full"
    if state is None:
        state = AveragesState(company_id=company_id)
        session.add(state)
    state.calculated_at = now
    if not incremental:
        state.full_calculated_at = now
    state.max_appointment_id = max(max_id, state.max_appointment_id or 0)
    state.mode = mode
    state.clients_recomputed = recomputed if recomputed is not None else -1
    session.flush()

    personal_rows = session.scalar(
        select(func.count())
        .select_from(ClientPersonalizedInterval)
        .where(ClientPersonalizedInterval.company_id == company_id)
    )
    result = AveragesResult(
        company_id=company_id,
        mode=mode,
        today=window.today,
        services_active=sum(1 for active in services.values() if active),
        services_inactive=sum(1 for active in services.values() if not active),
        personal_rows=personal_rows or 0,
        personal_written=written,
        personal_deleted=deleted,
        clients_recomputed=recomputed,
    )
    log.info("averages calculated", extra=result.as_dict())
    return result


def _incremental_since(state: AveragesState | None, *, now: datetime, full: bool | None) -> bool:
    if full is True or state is None:
        return False
    if now < _aware(state.calculated_at):
        return False
    return not (full is None and now - _aware(state.full_calculated_at) >= timedelta(days=FULL_EVERY_DAYS))


def _aware(moment: datetime) -> datetime:
    """SQLite gives timestamps back naive; they were stored as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- PostgreSQL -------------------------------------------------------------------------------------------------


# Settings for the one pass over a company's visits. The local day comes from the session's time zone (a cast
# per row instead of a zone lookup per row); the sort of a few million visits fits in memory; compiling the
# expressions (JIT) costs more than it saves on a statement that runs once a week.
def _pass_settings(tz: ZoneInfo) -> dict[str, str]:
    return {"TimeZone": tz.key, "work_mem": WORK_MEM, "jit": "off"}


# An appointment's services, one row each, whatever the JSON holds (non-arrays and non-integers are skipped).
_PG_VISITS = """
    SELECT a.client_id, s.sid::bigint AS service_id, a.appointment_datetime::date AS day
    FROM appointments_cache a
    CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(a.service_ids) = 'array' THEN a.service_ids ELSE '[]'::jsonb END
    ) AS s(sid)
    WHERE a.company_id = :company_id
      AND a.attendance = 1
      AND a.appointment_datetime >= :start AND a.appointment_datetime < :end
      AND s.sid ~ '^[0-9]{1,18}$'
"""

_GROUPS = "_reactivation_interval_groups"


def _pg_groups_sql() -> str:
    """Every (client, service) with an interval, in one pass: the personal quartiles and the salon-window gaps.

    The intervals are computed once for both levels: a salon interval is one whose earlier visit lies in the
    6-month window, and the visit before it is the same whether 12 months or 6 are read.
    """
    return f"""
CREATE TEMP TABLE {_GROUPS} AS
SELECT client_id, service_id,
       count(*) AS n,
       percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY gap) AS q,
       array_agg(gap) FILTER (WHERE day - gap >= :service_start_day) AS service_gaps
FROM (
    SELECT client_id, service_id, day,
           day - lag(day) OVER (PARTITION BY client_id, service_id ORDER BY day) AS gap
    FROM ({_PG_VISITS}) visits
) intervals
WHERE gap BETWEEN :min_gap AND :max_gap
GROUP BY client_id, service_id
"""


_PG_SERVICES = f"""
WITH stats AS (
    SELECT service_id,
           count(*) AS n,
           floor(percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) + 0.5)::int AS median,
           round(avg(gap))::int AS mean,
           min(gap) AS low,
           max(gap) AS high,
           round(stddev_samp(gap), 2) AS stddev
    FROM {_GROUPS} CROSS JOIN LATERAL unnest(service_gaps) AS gap
    GROUP BY service_id
),
written AS (
    INSERT INTO service_reactivation_intervals AS t (
        company_id, service_id, service_name, median_interval_days, avg_interval_days, min_interval_days,
        max_interval_days, stddev_days, sample_size, last_calculated, is_active)
    SELECT :company_id, st.service_id, sv.title, st.median, st.mean, st.low, st.high, st.stddev, st.n, :now,
           st.n >= :min_sample
    FROM stats st
    LEFT JOIN services sv ON sv.company_id = :company_id AND sv.yclients_id = st.service_id
    ON CONFLICT (company_id, service_id) DO UPDATE SET
        service_name = coalesce(EXCLUDED.service_name, t.service_name),
        median_interval_days = EXCLUDED.median_interval_days,
        avg_interval_days = EXCLUDED.avg_interval_days,
        min_interval_days = EXCLUDED.min_interval_days,
        max_interval_days = EXCLUDED.max_interval_days,
        stddev_days = EXCLUDED.stddev_days,
        sample_size = EXCLUDED.sample_size,
        last_calculated = EXCLUDED.last_calculated,
        is_active = EXCLUDED.is_active
    RETURNING t.service_id, t.is_active
),
emptied AS (
    UPDATE service_reactivation_intervals t
    SET is_active = false, sample_size = 0, last_calculated = :now
    WHERE t.company_id = :company_id AND NOT EXISTS (SELECT 1 FROM stats st WHERE st.service_id = t.service_id)
    RETURNING t.service_id, t.is_active
)
SELECT service_id, is_active FROM written UNION ALL SELECT service_id, is_active FROM emptied
"""


def _pg_personal_sql(*, incremental: bool) -> str:
    """The personal rows (of the touched clients only, in an incremental run); rows are compared first, so a
    rerun over unchanged visits writes nothing."""
    only_touched = "AND client_id = ANY(CAST(:touched AS bigint[]))" if incremental else ""
    scope = "AND t.client_id = ANY(CAST(:touched AS bigint[]))" if incremental else ""
    return f"""
WITH stats AS (
    SELECT client_id, service_id, n,
           floor(q[2] + 0.5)::int AS median,
           round(greatest(0.0, least(1.0, 1.0 - (q[3] - q[1]) / (2.0 * q[2])))::numeric, 2) AS consistency
    FROM {_GROUPS}
    WHERE n >= :min_intervals {only_touched}
),
changed AS (
    SELECT s.* FROM stats s
    LEFT JOIN client_personalized_intervals t
      ON t.company_id = :company_id AND t.client_id = s.client_id AND t.service_id = s.service_id
    WHERE t.id IS NULL
       OR (t.personal_interval_days, t.visit_count, t.consistency_score)
          IS DISTINCT FROM (s.median, s.n + 1, s.consistency)
),
written AS (
    INSERT INTO client_personalized_intervals AS t (
        company_id, client_id, service_id, personal_interval_days, visit_count, consistency_score, last_calculated)
    SELECT :company_id, client_id, service_id, median, n + 1, consistency, :now FROM changed
    ON CONFLICT (company_id, client_id, service_id) DO UPDATE SET
        personal_interval_days = EXCLUDED.personal_interval_days,
        visit_count = EXCLUDED.visit_count,
        consistency_score = EXCLUDED.consistency_score,
        last_calculated = EXCLUDED.last_calculated
    RETURNING 1
),
removed AS (
    DELETE FROM client_personalized_intervals t
    WHERE t.company_id = :company_id {scope}
      AND NOT EXISTS (SELECT 1 FROM stats s WHERE s.client_id = t.client_id AND s.service_id = t.service_id)
    RETURNING 1
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM removed)
"""


def _pg_run(
    session: Session,
    *,
    company_id: int,
    window: _Window,
    now: datetime,
    tz: ZoneInfo,
    touched: list[int] | None,
) -> tuple[dict[int, bool], int, int, int | None]:
    """One pass over the visits, then both tables from it; the temporary table is dropped after."""
    params: dict[str, Any] = {
        "company_id": company_id,
        "start": window.personal_start,
        "end": window.end,
        "service_start_day": window.service_start_day,
        "min_gap": MIN_INTERVAL_DAYS,
        "max_gap": MAX_INTERVAL_DAYS,
        "min_intervals": MIN_PERSONAL_INTERVALS,
        "min_sample": MIN_SERVICE_SAMPLE,
        "now": now,
        "touched": touched,
    }
    session.execute(text(f"DROP TABLE IF EXISTS {_GROUPS}"))
    with pg_local_settings(session, _pass_settings(tz)):
        session.execute(text(_pg_groups_sql()), params)
        session.execute(text(f"ANALYZE {_GROUPS}"))
        services = {sid: active for sid, active in session.execute(text(_PG_SERVICES), params).all()}
        personal = text(_pg_personal_sql(incremental=touched is not None))
        written, removed = session.execute(personal, params).one()
    session.execute(text(f"DROP TABLE {_GROUPS}"))
    return services, written, removed, (len(touched) if touched is not None else None)


def _pg_touched_clients(
    session: Session, *, company_id: int, state: AveragesState | None, window: _Window, tz: ZoneInfo
) -> list[int] | None:
    """Clients whose personal rows may differ from the last run's: see the module docstring."""
    if state is None:
        return None
    old = _window(_aware(state.calculated_at), tz)
    rows = session.execute(
        text(
            """
            SELECT client_id FROM appointments_cache WHERE company_id = :c AND id > :max_id
            UNION
            SELECT client_id FROM appointments_cache
            WHERE company_id = :c AND appointment_datetime >= :changed_since AND appointment_datetime < :end
            UNION
            SELECT client_id FROM appointments_cache
            WHERE company_id = :c AND attendance = 1
              AND appointment_datetime >= :old_start AND appointment_datetime < :new_start
            """
        ),
        {
            "c": company_id,
            "max_id": state.max_appointment_id,
            "changed_since": _aware(state.calculated_at) - timedelta(days=LATE_DAYS),
            "end": window.end,
            "old_start": old.personal_start,
            "new_start": window.personal_start,
        },
    ).scalars()
    return list(rows)


# --- SQLite (and the reference for tests) -------------------------------------------------------------------------


def _sqlite_touched_clients(
    session: Session, *, company_id: int, state: AveragesState | None, window: _Window, tz: ZoneInfo
) -> set[int] | None:
    if state is None:
        return None
    a = AppointmentCache
    changed_since = _naive_utc(_aware(state.calculated_at) - timedelta(days=LATE_DAYS))
    old_start = _naive_utc(_window(_aware(state.calculated_at), tz).personal_start)
    rows = session.execute(
        select(a.client_id).where(
            a.company_id == company_id,
            (a.id > state.max_appointment_id)
            | ((a.appointment_datetime >= changed_since) & (a.appointment_datetime < _naive_utc(window.end)))
            | (
                (a.attendance == 1)
                & (a.appointment_datetime >= old_start)
                & (a.appointment_datetime < _naive_utc(window.personal_start))
            ),
        )
    ).scalars()
    return set(rows)


def _naive_utc(moment: datetime) -> datetime:
    # SQLite keeps timestamps as naive UTC text.
    return moment.astimezone(UTC).replace(tzinfo=None)


def load_visit_days(
    session: Session,
    *,
    company_id: int,
    start: datetime | None,
    end: datetime | None,
    tz: ZoneInfo,
    clients: Iterable[int] | None = None,
) -> list[tuple[int, int, date]]:
    """(client, service, local day) of every attended visit in [start, end) (None: unbounded), in one query."""
    a = AppointmentCache
    query = select(a.client_id, a.service_ids, a.appointment_datetime).where(
        a.company_id == company_id, a.attendance == 1
    )
    if start is not None:
        query = query.where(a.appointment_datetime >= start)
    if end is not None:
        query = query.where(a.appointment_datetime < end)
    if clients is not None:
        query = query.where(a.client_id.in_(list(clients)))
    visits: list[tuple[int, int, date]] = []
    for client_id, service_ids, moment in session.execute(query):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        day = moment.astimezone(tz).date()
        for service_id in service_ids_of(service_ids):
            visits.append((client_id, service_id, day))
    return visits


_BATCH = 2_000


def _sqlite_run(
    session: Session,
    *,
    company_id: int,
    window: _Window,
    now: datetime,
    tz: ZoneInfo,
    touched: set[int] | None,
) -> tuple[dict[int, bool], int, int, int | None]:
    start, end = _naive_utc(window.personal_start), _naive_utc(window.end)
    everyone = load_visit_days(session, company_id=company_id, start=start, end=end, tz=tz)
    services, _ = compute_averages(everyone, today=window.today)
    personal_visits = everyone if touched is None else [v for v in everyone if v[0] in touched]
    _, personal = compute_averages(personal_visits, today=window.today)

    titles = dict(
        session.execute(select(Service.yclients_id, Service.title).where(Service.company_id == company_id)).all()
    )
    sri = ServiceReactivationInterval
    for service_id, stats in services.items():
        values = {
            "service_name": titles.get(service_id),
            "median_interval_days": stats.median_days,
            "avg_interval_days": stats.avg_days,
            "min_interval_days": stats.min_days,
            "max_interval_days": stats.max_days,
            "stddev_days": stats.stddev_days,
            "sample_size": stats.sample_size,
            "last_calculated": now,
            "is_active": stats.is_active,
        }
        statement = sqlite_insert(sri).values(company_id=company_id, service_id=service_id, **values)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[sri.company_id, sri.service_id],
                set_={**values, "service_name": func.coalesce(statement.excluded.service_name, sri.service_name)},
            )
        )
    session.execute(
        update(sri)
        .where(sri.company_id == company_id, sri.service_id.not_in(list(services)))
        .values(is_active=False, sample_size=0, last_calculated=now)
    )
    outcome = {
        service_id: active
        for service_id, active in session.execute(
            select(sri.service_id, sri.is_active).where(sri.company_id == company_id)
        ).all()
    }

    cpi = ClientPersonalizedInterval
    scope = cpi.company_id == company_id
    if touched is not None:
        scope = scope & cpi.client_id.in_(list(touched))
    existing = {
        (c, s): (days, visits, consistency)
        for c, s, days, visits, consistency in session.execute(
            select(
                cpi.client_id, cpi.service_id, cpi.personal_interval_days, cpi.visit_count, cpi.consistency_score
            ).where(scope)
        ).all()
    }
    changed = [
        {
            "company_id": company_id,
            "client_id": c,
            "service_id": s,
            "personal_interval_days": stats.interval_days,
            "visit_count": stats.visit_count,
            "consistency_score": stats.consistency,
            "last_calculated": now,
        }
        for (c, s), stats in personal.items()
        if existing.get((c, s)) != (stats.interval_days, stats.visit_count, stats.consistency)
    ]
    for batch_start in range(0, len(changed), _BATCH):
        batch = changed[batch_start : batch_start + _BATCH]
        statement = sqlite_insert(cpi).values(batch)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[cpi.company_id, cpi.client_id, cpi.service_id],
                set_={
                    "personal_interval_days": statement.excluded.personal_interval_days,
                    "visit_count": statement.excluded.visit_count,
                    "consistency_score": statement.excluded.consistency_score,
                    "last_calculated": statement.excluded.last_calculated,
                },
            )
        )
    stale = [key for key in existing if key not in personal]
    for batch_start in range(0, len(stale), _BATCH):
        keys = stale[batch_start : batch_start + _BATCH]
        session.execute(
            delete(cpi).where(cpi.company_id == company_id, tuple_(cpi.client_id, cpi.service_id).in_(keys))
        )
    return outcome, len(changed), len(stale), (len(touched) if touched is not None else None)
