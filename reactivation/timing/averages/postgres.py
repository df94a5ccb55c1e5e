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

On PostgreSQL everything is bulk SQL around one pass over the visits: a window function (lag) gives every interval
once, and an in-memory result (a CTE) holds, per client and service, the personal median and consistency and the
salon intervals to count. PostgreSQL will not run that pass in parallel itself (the window function keeps it in one
process), so the job splits the company's clients into `workers` shares (ranges of client ids with about as many
visits each), each passed over on its own connection at the same time; each share writes its clients' personal rows
(INSERT … ON CONFLICT DO UPDATE of only the rows whose values changed, compared first in a join, and a DELETE of
rows no longer backed by data) and commits them. The salon intervals are kept, counted per service, length and local
day the interval ended, in `service_interval_counts`; the salon medians are computed from those counts (exactly what
percentile_cont over the intervals gives). On SQLite (the embedded default, small data) the same numbers
come from Python (`compute_averages`); tests check both agree.

Incremental runs read only the clients whose data may have changed since the last run recorded in
`reactivation_averages_state`. Which days changed comes from day digests (reactivation/day_digests.py): each run
keeps a digest of every local day's appointment rows from LATE_DAYS before it on, and the next run compares. The
first day that differs (a visit added, moved, deleted or its attendance marked), or the first day after the last
run's window if earlier, is where the changes begin; the clients recomputed are those with appointment rows from
that day on, those with rows added since (id above the highest seen, whatever their date) and those whose visits
left the 12-month window. Their personal rows are rewritten, and the salon counts are recounted from that first
day (or the date of the earliest added row if older): an interval that ends before it lies between two visits
that did not change, so its count stands; counts that left the 6-month window are dropped. A full run happens
when there is no state, when the last full run is FULL_EVERY_DAYS old, when time went backwards, or when asked
(`full=True`); it also heals what the incremental rule cannot see (rows deleted or edited long after the fact,
before the digests' days).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware, local_midnight, naive_utc
from reactivation.storage.companies import load_company
from reactivation.storage.db import is_postgres, pg_local_settings
from reactivation.storage.models import (
    AppointmentCache,
    AveragesState,
    ClientPersonalizedInterval,
    Service,
    ServiceReactivationInterval,
)
from reactivation.timing.day_digests import DayDigest, current_digests, first_changed_day, store_digests, stored_digests
from reactivation.timing.waterfall import (
    MAX_INTERVAL_DAYS,
    MIN_INTERVAL_DAYS,
    MIN_PERSONAL_INTERVALS,
    MIN_SERVICE_SAMPLE,
)

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
    return _interpolated(sorted_values.__getitem__, len(sorted_values), fraction)


def _interpolated(value_at: Callable[[int], float], count: int, fraction: float) -> float:
    position = fraction * (count - 1)
    low = math.floor(position)
    high = math.ceil(position)
    first = float(value_at(low))
    second = float(value_at(high))
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
    return service_stats_from_counts(Counter(intervals))


def service_stats_from_counts(counts: Mapping[int, int]) -> ServiceStats | None:
    """The statistics of intervals given as {length in days: how many}; None when there are none."""
    lengths = sorted(days for days, times in counts.items() if times > 0)
    if not lengths:
        return None
    # ends[i]: how many intervals are at most lengths[i] long, to find the k-th shortest.
    ends = list(itertools.accumulate(counts[days] for days in lengths))
    n = ends[-1]
    total = sum(days * counts[days] for days in lengths)
    stddev: Decimal | None = None
    if n > 1:
        # Σ(v − mean)² / (n − 1) in integers, exactly.
        squares = sum(days * days * counts[days] for days in lengths)
        variance = Fraction(n * squares - total * total, n * (n - 1))
        with localcontext() as context:
            context.prec = 40
            root = (Decimal(variance.numerator) / Decimal(variance.denominator)).sqrt()
        stddev = root.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    mean = (Decimal(total) / Decimal(n)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    median = _interpolated(lambda k: lengths[bisect.bisect_right(ends, k)], n, 0.5)
    return ServiceStats(
        median_days=round_half_up(median),
        avg_days=int(mean),
        min_days=lengths[0],
        max_days=lengths[-1],
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
    service_start_day = today - timedelta(days=SERVICE_WINDOW_DAYS)
    return _Window(
        today=today,
        personal_start=local_midnight(today - timedelta(days=PERSONAL_WINDOW_DAYS), tz),
        service_start_day=service_start_day,
        service_start=local_midnight(service_start_day, tz),
        end=local_midnight(today + timedelta(days=1), tz),
    )


def calculate_averages(
    session: Session, *, company_id: int, now: datetime, full: bool | None = None, workers: int = 1
) -> AveragesResult:
    """Recompute the company's service medians and personal rhythms as of `now` (the caller commits).

    `full=None` decides by itself (incremental when a recent full run exists), True forces a full run,
    False asks for an incremental one when possible.

    `workers` > 1 splits a PostgreSQL company's clients into that many shares, each read and written on its own
    connection at the same time and committed on its own: they see only committed visits, so a caller with
    uncommitted appointment rows passes 1 (then everything happens in `session`).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if workers < 1:
        raise ValueError("workers must be at least 1")
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

    # Taken before any visit is read, so that a change made during the run shows in the next run's comparison.
    keep_from = _late_from(now, company.tz)
    last_from = _late_from(state.calculated_at, company.tz) if incremental and state is not None else keep_from
    digests = current_digests(session, company_id=company_id, since=min(last_from, keep_from), tz=company.tz)
    first_changed = (
        _first_changed(session, company_id=company_id, state=state, digests=digests, since=last_from, tz=company.tz)
        if incremental and state is not None
        else None
    )

    if postgres:
        services, written, deleted, recomputed = _pg_run(
            session,
            company_id=company_id,
            window=window,
            now=now,
            tz=company.tz,
            state=state,
            incremental=incremental,
            first_changed=first_changed,
            workers=workers,
        )
    else:
        clients = (
            _sqlite_touched_clients(
                session, company_id=company_id, state=state, window=window, tz=company.tz, first_changed=first_changed
            )
            if incremental
            else None
        )
        services, written, deleted, recomputed = _sqlite_run(
            session, company_id=company_id, window=window, now=now, tz=company.tz, touched=clients
        )
    active = _write_services(session, company_id=company_id, services=services, now=now)
    store_digests(session, company_id=company_id, digests=digests, since=keep_from)

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
        services_active=sum(1 for is_active in active.values() if is_active),
        services_inactive=sum(1 for is_active in active.values() if not is_active),
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
    if now < as_aware(state.calculated_at):
        return False
    return not (full is None and now - as_aware(state.full_calculated_at) >= timedelta(days=FULL_EVERY_DAYS))


def _late_from(moment: datetime, tz: ZoneInfo) -> date:
    """The first local day whose rows a run at `moment` keeps digests of, for the next run to compare."""
    return (as_aware(moment) - timedelta(days=LATE_DAYS)).astimezone(tz).date()


def _first_changed(
    session: Session,
    *,
    company_id: int,
    state: AveragesState,
    digests: Mapping[date, DayDigest],
    since: date,
    tz: ZoneInfo,
) -> date:
    """The first local day whose visits the last run did not see as they are now: the first day whose rows
    changed, or the first day after the last run's window (its visits enter this one), whichever is earlier."""
    entering = _window(as_aware(state.calculated_at), tz).today + timedelta(days=1)
    changed = first_changed_day(stored_digests(session, company_id=company_id), digests, since=since)
    return min(changed, entering) if changed is not None else entering


def _write_services(
    session: Session, *, company_id: int, services: Mapping[int, ServiceStats], now: datetime
) -> dict[int, bool]:
    """Upsert the salon medians; a service without intervals any more stays, inactive. Returns id → is_active."""
    insert = pg_insert if is_postgres(session) else sqlite_insert
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
        statement = insert(sri).values(company_id=company_id, service_id=service_id, **values)
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
    return {
        service_id: active
        for service_id, active in session.execute(
            select(sri.service_id, sri.is_active).where(sri.company_id == company_id)
        ).all()
    }


# --- PostgreSQL -------------------------------------------------------------------------------------------------


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


def _pg_visits_sql(share: _Share, *, incremental: bool) -> str:
    """An appointment's services, one row each, whatever the JSON holds (non-arrays and non-integers skipped)."""
    touched = f"AND a.client_id IN (SELECT client_id FROM {_TOUCHED})" if incremental else ""
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


def _pg_touched_sql(share: _Share) -> str:
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


def _pg_groups_sql(share: _Share, *, incremental: bool) -> str:
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
        FROM ({_pg_visits_sql(share, incremental=incremental)}) visits
    ) intervals
    WHERE gap BETWEEN :min_gap AND :max_gap
    GROUP BY client_id, service_id
) grouped
"""


def _pg_share_sql(share: _Share, *, incremental: bool) -> str:
    """One statement for a share: its pass over the visits (see _pg_groups_sql), its personal rows written (of the
    touched clients only, in an incremental run), and its salon intervals counted per service and code.

    One statement, so that the pass's result stays in memory (a CTE) instead of going through a temporary table.
    The share's personal rows are compared with the stored ones in one join (new, changed, no longer backed by
    data), so a rerun over unchanged visits writes nothing; the unnest sits in the select list, where it is twice
    as fast as a lateral join of the arrays.
    """
    scope = f"{share.clients('t.client_id')} " + (
        f"AND t.client_id IN (SELECT client_id FROM {_TOUCHED})" if incremental else ""
    )
    return f"""
WITH grouped AS MATERIALIZED ({_pg_groups_sql(share, incremental=incremental)}),
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
_PG_REPLACE_COUNTS = f"""
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


def _pg_share(session: Session, share: _Share, params: dict[str, Any], tz: ZoneInfo) -> _ShareOutcome:
    """One share's pass over the visits (its touched clients only, in an incremental run), its personal rows,
    and its salon intervals to count."""
    incremental = params["incremental"]
    params = {**params, **share.params()}
    touched: int | None = None
    session.execute(text(f"DROP TABLE IF EXISTS {_TOUCHED}"))
    with pg_local_settings(session, _pass_settings(tz)):
        if incremental:
            touched = session.execute(text(_pg_touched_sql(share)), params).rowcount  # type: ignore[attr-defined]
            session.execute(text(f"ANALYZE {_TOUCHED}"))
        statement = text(_pg_share_sql(share, incremental=incremental))
        written, removed, service_ids, codes, intervals = session.execute(statement, params).one()
    session.execute(text(f"DROP TABLE IF EXISTS {_TOUCHED}"))
    return _ShareOutcome(written, removed, service_ids, codes, intervals, touched)


def _pg_shares(session: Session, params: dict[str, Any], tz: ZoneInfo, *, workers: int) -> list[_ShareOutcome]:
    """Every share's outcome: in the caller's session for one worker, else each on its own connection at once.

    PostgreSQL runs none of this pass in parallel by itself (a window function keeps it in one process), so
    the job splits the clients into ranges of about the same number of visits and runs one pass per core.
    Each share commits its own personal rows.
    """
    if workers == 1:
        return [_pg_share(session, _Share(None, None), params, tz)]
    shares = shares_between(_pg_share_bounds(session, company_id=params["company_id"], workers=workers))
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine

    def run(share: _Share) -> _ShareOutcome:
        with Session(engine) as own, own.begin():
            return _pg_share(own, share, params, tz)

    with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="averages") as pool:
        futures = [pool.submit(run, share) for share in shares]
        return [future.result() for future in futures]


# Enough sampled visits to cut the clients into shares of about the same size.
_BOUNDS_SAMPLE_ROWS = 50_000


def _pg_share_bounds(session: Session, *, company_id: int, workers: int) -> list[int]:
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


def _pg_run(
    session: Session,
    *,
    company_id: int,
    window: _Window,
    now: datetime,
    tz: ZoneInfo,
    state: AveragesState | None,
    incremental: bool,
    first_changed: date | None,
    workers: int,
) -> tuple[dict[int, ServiceStats], int, int, int | None]:
    """The shares' passes, then the salon interval counts (recent days recounted) and the medians from them."""
    recount_from = window.service_start_day
    changes: dict[str, Any] = {}
    if incremental and state is not None and first_changed is not None:
        changed_from = _pg_changed_from(session, company_id=company_id, state=state, tz=tz, first_changed=first_changed)
        recount_from = max(changed_from, window.service_start_day)
        changes = {
            "max_id": state.max_appointment_id,
            "changed_since": local_midnight(changed_from, tz),
            "old_start": _window(as_aware(state.calculated_at), tz).personal_start,
        }
    params: dict[str, Any] = {
        **changes,
        "incremental": bool(changes),
        "company_id": company_id,
        "start": window.personal_start,
        "end": window.end,
        "service_start_day": window.service_start_day,
        "recount_from": recount_from,
        "min_gap": MIN_INTERVAL_DAYS,
        "max_gap": MAX_INTERVAL_DAYS,
        "min_intervals": MIN_PERSONAL_INTERVALS,
        "now": now,
    }
    outcomes = _pg_shares(session, params, tz, workers=workers)
    # The planner cannot see how many counts the arrays hold: it would probe the index once per count, and its
    # cost estimate is high enough to compile the statement (JIT), which takes longer than running it.
    with pg_local_settings(session, {**_pass_settings(tz), "enable_nestloop": "off"}):
        session.execute(
            text(_PG_REPLACE_COUNTS),
            {
                **params,
                "service_ids": _joined(outcome.service_ids for outcome in outcomes),
                "codes": _joined(outcome.codes for outcome in outcomes),
                "intervals": _joined(outcome.intervals for outcome in outcomes),
            },
        )
    by_service: dict[int, Counter[int]] = defaultdict(Counter)
    for service_id, interval_days, intervals in session.execute(
        text(
            """
            SELECT service_id, interval_days, sum(intervals)
            FROM service_interval_counts
            WHERE company_id = :company_id AND ended_on - interval_days >= :service_start_day AND ended_on <= :today
            GROUP BY service_id, interval_days
            """
        ),
        {**params, "today": window.today},
    ):
        by_service[service_id][interval_days] = int(intervals)
    services = {sid: s for sid, counts in by_service.items() if (s := service_stats_from_counts(counts)) is not None}
    written = sum(outcome.personal_written for outcome in outcomes)
    removed = sum(outcome.personal_removed for outcome in outcomes)
    recomputed = sum(outcome.touched or 0 for outcome in outcomes) if changes else None
    return services, written, removed, recomputed


def _joined(lists: Iterable[str]) -> str:
    return ",".join(part for part in lists if part)


def _pg_changed_from(
    session: Session,
    *,
    company_id: int,
    state: AveragesState,
    tz: ZoneInfo,
    first_changed: date,
) -> date:
    """The first local day whose visits may differ from what the last run read: `first_changed` (see
    _first_changed), or the day of the earliest appointment row added since, if that is earlier."""
    changed_from = first_changed
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
        {"c": company_id, "max_id": state.max_appointment_id},
    )
    if earliest_new is not None:
        changed_from = min(changed_from, as_aware(earliest_new).astimezone(tz).date())
    return changed_from


# --- SQLite (and the reference for tests) -------------------------------------------------------------------------


def _sqlite_touched_clients(
    session: Session,
    *,
    company_id: int,
    state: AveragesState | None,
    window: _Window,
    tz: ZoneInfo,
    first_changed: date | None,
) -> set[int] | None:
    if state is None or first_changed is None:
        return None
    a = AppointmentCache
    changed_since = naive_utc(local_midnight(first_changed, tz))
    old_start = naive_utc(_window(as_aware(state.calculated_at), tz).personal_start)
    rows = session.execute(
        select(a.client_id).where(
            a.company_id == company_id,
            (a.id > state.max_appointment_id)
            | ((a.appointment_datetime >= changed_since) & (a.appointment_datetime < naive_utc(window.end)))
            | (
                (a.attendance == 1)
                & (a.appointment_datetime >= old_start)
                & (a.appointment_datetime < naive_utc(window.personal_start))
            ),
        )
    ).scalars()
    return set(rows)


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
        day = as_aware(moment).astimezone(tz).date()
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
) -> tuple[dict[int, ServiceStats], int, int, int | None]:
    start, end = naive_utc(window.personal_start), naive_utc(window.end)
    everyone = load_visit_days(session, company_id=company_id, start=start, end=end, tz=tz)
    services, personal = compute_averages(everyone, today=window.today)
    if touched is not None:
        # A client's rhythm comes from their own visits only: those of the others stand as they were written.
        personal = {key: stats for key, stats in personal.items() if key[0] in touched}

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
    return services, len(changed), len(stale), (len(touched) if touched is not None else None)
