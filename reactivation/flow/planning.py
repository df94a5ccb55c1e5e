"""Planning daily runs: which companies' local send time has come, and one campaign run per company and local date.

The run table's unique key (company_id, run_date) is what makes two beats, a restarted beat or a repeated
tick harmless: whoever inserts the row first owns the run; everyone else inserts nothing. The key covers real runs
only: a dry run gets a record of its own each time it is started, and never takes the day's real run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import RunStatus
from reactivation.storage.companies import CompanyConfig, company_config
from reactivation.storage.company_settings import CompanyConfigError
from reactivation.storage.db import is_postgres
from reactivation.storage.models import CampaignRun, Company

log = logging.getLogger(__name__)

# A run planned but not started within this long was lost between commit and broker; it is dispatched again.
STALE_PLANNED_RUN = timedelta(minutes=10)
# Longer than run_campaign's hard time limit (16 minutes): a run still 'running' after this was cut off (a
# database outage beyond its retries, a killed worker) and is started again; its claims are idempotent.
STALE_RUNNING_RUN = timedelta(minutes=20)
# The weekly averages job: Sunday, 03:00–03:59 in the company's own time zone, a quiet hour for a salon.
AVERAGES_WEEKDAY = 6
AVERAGES_HOUR = 3


@dataclass(frozen=True)
class PlannedRun:
    run_id: int
    company_id: int
    run_date: date


def run_is_due(*, local_now: datetime, send_time: time) -> bool:
    """True once the company's local send time has come on its local date."""
    return local_now.time() >= send_time


def averages_due(session: Session, *, now: datetime) -> list[int]:
    """The companies, enabled or not, whose weekly averages job is due this hour (local time Sunday 03:xx).

    A company with unusable settings is logged and left out, so that it never stops the others' jobs."""
    due: list[int] = []
    for row in session.scalars(select(Company).order_by(Company.id)):
        try:
            local = company_config(row).local_now(now)
        except CompanyConfigError as exc:
            log.error(
                "company skipped: invalid settings",
                extra={"job": "plan_averages", "company_id": row.id, "error": exc.problem},
            )
            continue
        if local.weekday() == AVERAGES_WEEKDAY and local.hour == AVERAGES_HOUR:
            due.append(row.id)
    return due


def plan_runs(session: Session, *, now: datetime) -> list[PlannedRun]:
    """Create today's run for every enabled company whose local send time has passed; return the new ones."""
    planned: list[PlannedRun] = []
    for row in session.scalars(select(Company).where(Company.enabled.is_(True)).order_by(Company.id)):
        try:
            company = company_config(row)
        except CompanyConfigError as exc:
            # One company's bad settings never stop the others' campaigns.
            log.error("company skipped by the planner", extra={"company_id": row.id, "error": exc.problem})
            continue
        local_now = company.local_now(now)
        if not run_is_due(local_now=local_now, send_time=company.settings.send_time):
            continue
        run_id = create_run(session, company_id=company.id, run_date=local_now.date(), trigger="beat", now=now)
        if run_id is not None:
            planned.append(PlannedRun(run_id, company.id, local_now.date()))
    return planned


def create_run(
    session: Session, *, company_id: int, run_date: date, trigger: str, now: datetime, dry_run: bool = False
) -> int | None:
    """Insert a run for (company, date), created at `now`; None when the real run already exists (someone else
    planned it). A dry run is always inserted: it has a record of its own and never conflicts with the real one."""
    values = {
        "company_id": company_id,
        "run_date": run_date,
        "trigger": trigger,
        "dry_run": dry_run,
        "status": RunStatus.PLANNED,
        # The planner's clock, which stale_planned_runs compares it with later.
        "created_at": now,
    }
    dialect = postgresql if is_postgres(session) else sqlite
    statement = (
        dialect.insert(CampaignRun)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["company_id", "run_date"], index_where=text("NOT dry_run"))
        .returning(CampaignRun.id)
    )
    return session.execute(statement).scalar_one_or_none()


def get_or_create_run(session: Session, *, company_id: int, run_date: date, trigger: str, now: datetime) -> CampaignRun:
    """The real run for (company, date), created at `now` if missing (a dispatch by hand)."""
    create_run(session, company_id=company_id, run_date=run_date, trigger=trigger, now=now)
    return session.execute(
        select(CampaignRun).where(
            CampaignRun.company_id == company_id, CampaignRun.run_date == run_date, CampaignRun.dry_run.is_(False)
        )
    ).scalar_one()


def latest_run_id(session: Session, *, company_id: int, run_date: date, dry_run: bool = False) -> int | None:
    """The company's run for a date: the real one, or with `dry_run` the latest dry run started for it."""
    return session.scalar(
        select(CampaignRun.id)
        .where(
            CampaignRun.company_id == company_id,
            CampaignRun.run_date == run_date,
            CampaignRun.dry_run.is_(dry_run),
        )
        .order_by(CampaignRun.id.desc())
        .limit(1)
    )


def stale_planned_runs(session: Session, *, now: datetime) -> list[PlannedRun]:
    """Runs still 'planned' long after they were created (their dispatch was lost), or still 'running' long
    after they started (the task was cut off): each is dispatched again."""
    rows = session.execute(
        select(CampaignRun.id, CampaignRun.company_id, CampaignRun.run_date).where(
            # A dry run cut off stays as it was: dispatched again it would be a real run.
            CampaignRun.dry_run.is_(False),
            or_(
                and_(CampaignRun.status == RunStatus.PLANNED, CampaignRun.created_at < now - STALE_PLANNED_RUN),
                and_(CampaignRun.status == RunStatus.RUNNING, CampaignRun.started_at < now - STALE_RUNNING_RUN),
            ),
        )
    ).all()
    return [PlannedRun(run_id, company_id, run_date) for run_id, company_id, run_date in rows]


def mark_run(session: Session, *, run_id: int, company_id: int, **values: object) -> None:
    session.execute(
        update(CampaignRun).where(CampaignRun.id == run_id, CampaignRun.company_id == company_id).values(**values)
    )


def local_run_date(company: CompanyConfig, now: datetime) -> date:
    """The company's local date at `now`: the default date of a run dispatched by hand."""
    return company.local_today(now)
