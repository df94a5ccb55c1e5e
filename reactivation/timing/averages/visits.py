"""The visits the averages job counts: an appointment's service ids read defensively, and the attended visits of a
company as (client, service, local day), read in one query.

The SQLite backend and the backtest read visits this way; the PostgreSQL backend reads the same ones in SQL (its
own filter on the JSON list skips what `service_ids_of` skips).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware
from reactivation.storage.models import AppointmentCache


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
