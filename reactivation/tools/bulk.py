"""Bulk writes for seeding and benchmarks: COPY on PostgreSQL, batched inserts on SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from reactivation.storage.db import analyze_tables, copy_into, is_postgres
from reactivation.storage.models import (
    AppointmentCache,
    AveragesState,
    Base,
    Booking,
    CampaignRun,
    Client,
    ClientPersonalizedInterval,
    Company,
    Consent,
    OptOut,
    ReactivationHistory,
    Service,
    ServiceReactivationInterval,
)
from reactivation.tools.synthetic import SalonPlan

_BATCH = 5_000
# Every table that holds a company's rows, children first.
COMPANY_TABLES = (
    ReactivationHistory,
    CampaignRun,
    OptOut,
    Consent,
    ClientPersonalizedInterval,
    ServiceReactivationInterval,
    AveragesState,
    Booking,
    AppointmentCache,
    Client,
    Service,
)


class NotDemoData(ValueError):
    """The company holds data the demo tools did not write: they never replace it."""


def refuse_unless_demo(session: Session, *, company_id: int, remedy: str) -> None:
    """NotDemoData when the company exists and is not marked as demo data (`companies.is_demo`): a salon the
    booking-system sync wrote, or one made by hand, is never replaced by a synthetic one."""
    is_demo = session.scalar(select(Company.is_demo).where(Company.id == company_id))
    if is_demo is False:
        raise NotDemoData(
            f"company {company_id} exists and is not demo data (companies.is_demo is false); "
            f"refusing to replace it. {remedy}"
        )


def delete_company_data(session: Session, *, company_id: int) -> None:
    """Remove every row of one company (its own tables and the synced ones), then the company."""
    for model in COMPANY_TABLES:
        session.execute(delete(model).where(model.company_id == company_id))
    session.execute(delete(Company).where(Company.id == company_id))


def copy_rows(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write rows fast: COPY on PostgreSQL, executemany in batches elsewhere. Returns the row count."""
    if is_postgres(session):
        return copy_into(session, table, columns, rows)
    count = 0
    target = Base.metadata.tables[table]
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(dict(zip(columns, row, strict=True)))
        if len(batch) >= _BATCH:
            session.execute(insert(target), batch)
            count += len(batch)
            batch = []
    if batch:
        session.execute(insert(target), batch)
        count += len(batch)
    return count


def load_salon(session: Session, plan: SalonPlan, *, replace: bool = False, remedy: str = "") -> dict[str, int]:
    """Write a synthetic salon, marked as demo data; with `replace`, first delete whatever that company had, if it is
    demo data too (NotDemoData otherwise, with `remedy` said after the refusal)."""
    if replace:
        refuse_unless_demo(session, company_id=plan.company_id, remedy=remedy)
        delete_company_data(session, company_id=plan.company_id)
    session.execute(
        insert(Company).values(
            id=plan.company_id,
            name=plan.name,
            timezone=plan.timezone,
            country="RU",
            enabled=True,
            settings=plan.settings,
            is_demo=True,
        )
    )
    company_id = plan.company_id
    counts = {
        "services": copy_rows(
            session,
            "services",
            ("company_id", "yclients_id", "title"),
            ((company_id, s.yclients_id, s.title) for s in plan.services),
        ),
        "clients": copy_rows(
            session,
            "clients",
            (
                "id",
                "company_id",
                "name",
                "phone",
                "last_visit_date",
                "visit_count",
                "last_services",
                "total_spent",
                "blacklisted",
                "favorite_staff_ids",
                "preferred_time_slots",
            ),
            (
                (
                    c.id,
                    company_id,
                    c.name,
                    c.phone,
                    c.last_visit_date,
                    c.visit_count,
                    c.last_services,
                    c.total_spent,
                    c.blacklisted,
                    c.favorite_staff_ids,
                    c.preferred_time_slots,
                )
                for c in plan.clients
            ),
        ),
        "appointments": copy_rows(
            session,
            "appointments_cache",
            ("company_id", "client_id", "service_ids", "appointment_datetime", "attendance"),
            ((company_id, a.client_id, a.service_ids, a.appointment_datetime, a.attendance) for a in plan.appointments),
        ),
        "bookings": copy_rows(
            session,
            "bookings",
            ("id", "company_id", "client_id", "client_phone", "datetime", "status", "created_at"),
            (
                (b.id, company_id, b.client_id, b.client_phone, b.datetime, b.status, b.created_at)
                for b in plan.bookings
            ),
        ),
    }
    # The salon is queried right after (a demo's campaign, a bench): planned on its rows, not on empty tables.
    analyze_tables(session, ("companies", "services", "clients", "appointments_cache", "bookings"))
    return counts
