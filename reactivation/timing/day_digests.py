"""Which recent days of a company's appointments changed since the averages job last read them.

appointments_cache has no updated_at, and the sync marks attendance, moves and deletes visits after the fact. So
each averages run keeps, for every local day from LATE_DAYS before its reference time on, a digest of that day's
appointment rows (how many, and the XOR of a hash of each row's id, client, attendance, time and services). The
next incremental run computes the same digests again: the first day whose digest differs is where the changes
begin, and only the clients with visits from that day on need recomputing. Without this, every client seen in the
last LATE_DAYS was recomputed every week, whether anything of theirs had changed or not.

A day with no stored digest (the first run after an upgrade, or a day nobody had booked) counts as changed when
it now holds rows, so the rule only ever recomputes more than needed, never less. Changes to days before the
stored range are not seen here; the monthly full run heals them (see reactivation.timing.averages.job).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, select, text
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware, local_midnight, naive_utc
from reactivation.storage.db import is_postgres, pg_local_settings
from reactivation.storage.models import AppointmentCache, AveragesDayDigest


@dataclass(frozen=True)
class DayDigest:
    rows: int
    digest: int


def first_changed_day(
    stored: Mapping[date, DayDigest], current: Mapping[date, DayDigest], *, since: date
) -> date | None:
    """The first day on or after `since` whose rows differ from what was stored (None: nothing changed)."""
    days = {day for day in (*stored, *current) if day >= since}
    changed = [day for day in days if stored.get(day) != current.get(day)]
    return min(changed, default=None)


def row_digest(appointment_id: int, client_id: int, attendance: int | None, moment: datetime, services: Any) -> int:
    """A signed 64-bit hash of one row's contents (SQLite; PostgreSQL computes its own in SQL)."""
    content = f"{appointment_id}|{client_id}|{attendance}|{as_aware(moment).timestamp()}|{services!r}"
    return int.from_bytes(hashlib.blake2b(content.encode(), digest_size=8).digest(), "big", signed=True)


_PG_CURRENT = """
SELECT appointment_datetime::date AS day, count(*) AS rows,
       bit_xor(hashtextextended(concat_ws('|', id, client_id, attendance, appointment_datetime, service_ids), 0))
FROM appointments_cache
WHERE company_id = :company_id AND appointment_datetime >= :since
GROUP BY 1
"""


def current_digests(session: Session, *, company_id: int, since: date, tz: ZoneInfo) -> dict[date, DayDigest]:
    """The digest of every local day from `since` on that holds appointment rows, as they are now."""
    start = local_midnight(since, tz)
    if is_postgres(session):
        # The local day from the session's time zone, as the averages pass takes it.
        with pg_local_settings(session, {"TimeZone": tz.key, "jit": "off"}):
            rows = session.execute(text(_PG_CURRENT), {"company_id": company_id, "since": start}).all()
        return {day: DayDigest(count, digest) for day, count, digest in rows}
    a = AppointmentCache
    digests: dict[date, DayDigest] = {}
    for appointment_id, client_id, attendance, moment, services in session.execute(
        select(a.id, a.client_id, a.attendance, a.appointment_datetime, a.service_ids).where(
            a.company_id == company_id, a.appointment_datetime >= naive_utc(start)
        )
    ):
        day = as_aware(moment).astimezone(tz).date()
        before = digests.get(day, DayDigest(0, 0))
        digests[day] = DayDigest(
            before.rows + 1, before.digest ^ row_digest(appointment_id, client_id, attendance, moment, services)
        )
    return digests


def stored_digests(session: Session, *, company_id: int) -> dict[date, DayDigest]:
    d = AveragesDayDigest
    rows = session.execute(select(d.day, d.rows, d.digest).where(d.company_id == company_id)).all()
    return {day: DayDigest(count, digest) for day, count, digest in rows}


def store_digests(session: Session, *, company_id: int, digests: Mapping[date, DayDigest], since: date) -> None:
    """What the next run compares with: the digests of the days from `since` on, replacing the stored ones."""
    d = AveragesDayDigest
    session.execute(delete(d).where(d.company_id == company_id))
    kept = [
        {"company_id": company_id, "day": day, "rows": digest.rows, "digest": digest.digest}
        for day, digest in sorted(digests.items())
        if day >= since
    ]
    if kept:
        session.execute(insert(d), kept)
