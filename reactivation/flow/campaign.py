"""A company's campaign for one local date: select the due clients, claim one history row per client, fan out.

Claims are `INSERT … ON CONFLICT DO NOTHING` on the unique key (company, client, lapse, step): a second
dispatch for the same company and date, or two at once, claims nothing new. A dry run claims rows of its own
(marked `dry_run`, outside that key) under a run record of its own: they are never a contact, and the day's real
run still reaches every client. Rows are claimed and committed
in batches and each batch is handed to `on_claimed` once its commit is done (`after_commit`), so that follow-up work
is only enqueued once it is visible, and a crash mid-run leaves claimed rows that the sweep picks up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reactivation.audience.holdout import in_holdout
from reactivation.audience.selection import DueClient, due_clients
from reactivation.compliance.consent import consented_phones
from reactivation.core.phones import InvalidPhone, normalize_phone
from reactivation.core.vocabulary import RunStatus, SkipReason, Status
from reactivation.flow.planning import create_run, get_or_create_run, latest_run_id, mark_run
from reactivation.storage import history, holds
from reactivation.storage.companies import CompanyConfig, load_company
from reactivation.storage.db import after_commit
from reactivation.storage.models import ReactivationHistory

if TYPE_CHECKING:
    from reactivation.runtime import Runtime

log = logging.getLogger(__name__)

CLAIM_BATCH = 100
# Due clients asked for beyond the capacity, for the few that turn out skipped (an invalid phone, no consent).
SELECTION_MARGIN = 20
# Planned rows that do not take a place of the daily limit.
# A due client past today's daily limit: planned but never claimed (not a history status: no row is written).
OVER_LIMIT = "over_limit"
_NOT_COUNTED = (Status.SKIPPED, Status.HOLDOUT, OVER_LIMIT)


@dataclass
class CampaignResult:
    company_id: int
    run_date: date
    run_id: int | None
    due: int = 0
    claimed: list[int] = field(default_factory=list)  # rows that go down the chain
    holdout: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    over_limit: int = 0
    already_claimed: int = 0


def claim_row(
    company: CompanyConfig, client: DueClient, *, run_id: int | None, now: datetime, dry_run: bool
) -> dict[str, Any]:
    """The history row for one due client, before its status is decided."""
    interval = client.interval
    return {
        "company_id": company.id,
        "client_id": client.client_id,
        "campaign_run_id": run_id,
        "step": int(client.step),
        "message_type": client.step.message_type,
        "campaign": client.step.campaign,
        "status": Status.CLAIMED.value,
        # Every row carries every key: a multi-row INSERT needs the same columns in each.
        "phone": None,
        "skip_reason": None,
        "error": None,
        "dry_run": dry_run,
        "last_service_id": client.last_service_id,
        "last_service_name": history.cut(client.last_service_name, history.MAX_SERVICE_NAME),
        "inactive_days": client.days_inactive,
        "last_visit_date": client.last_visit_date,
        "due_date": client.due_date,
        "interval_days": interval.interval_days,
        "interval_source": str(interval.source),
        "confidence_score": round(float(interval.confidence), 2),
        "interval_evidence": dict(interval.evidence),
        "snooze_repeat": client.repeat,
        "created_at": now,
        "updated_at": now,
    }


def plan_rows(
    company: CompanyConfig,
    clients: Sequence[DueClient],
    *,
    run_id: int | None,
    now: datetime,
    dry_run: bool,
    capacity: int,
    consented: set[str] | None,
) -> Iterator[dict[str, Any]]:
    """Decide each due client's row: to send (within the daily capacity), held out, or skipped with a reason.

    `consented` is the set of E.164 phones with consent when the company requires it (None: assumed).
    """
    settings = company.settings
    for client in clients:
        row = claim_row(company, client, run_id=run_id, now=now, dry_run=dry_run)
        if capacity <= 0:
            # Over today's limit: not claimed at all (not even held out or skipped), so that tomorrow's run can
            # still reach this client and the control group stays drawn from the clients that were in reach.
            row["status"] = OVER_LIMIT
            yield row
            continue
        if client.moved:
            # Said they moved away: left alone until their phone or last visit changes (not an opt-out).
            row.update(status=Status.SKIPPED.value, skip_reason=SkipReason.MOVED_AWAY.value)
            yield row
            continue
        try:
            row["phone"] = normalize_phone(client.phone, client_id=client.client_id)
        except InvalidPhone as exc:
            row.update(
                status=Status.SKIPPED.value,
                skip_reason=SkipReason.INVALID_PHONE.value,
                error=history.cut(str(exc), 300),
            )
            yield row
            continue
        if consented is not None and row["phone"] not in consented:
            row.update(status=Status.SKIPPED.value, skip_reason=SkipReason.NO_CONSENT.value)
            yield row
            continue
        if in_holdout(
            company_id=company.id,
            client_id=client.client_id,
            lapse=client.last_visit_date,
            percent=settings.holdout_percent,
        ):
            # The control group: nothing is sent, the row is attributed like any other.
            row["status"] = Status.HOLDOUT.value
            yield row
            continue
        capacity -= 1
        yield row


def claimed_today(session: Session, *, company_id: int, run_id: int) -> int:
    """Rows of this run that count against the daily limit (everything that went or goes to the gateway)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(ReactivationHistory)
            .where(
                ReactivationHistory.company_id == company_id,
                ReactivationHistory.campaign_run_id == run_id,
                ReactivationHistory.status.not_in([Status.SKIPPED.value, Status.HOLDOUT.value]),
            )
        )
        or 0
    )


def _select_and_plan(
    session: Session,
    company: CompanyConfig,
    *,
    day: date,
    run_id: int | None,
    reference: datetime,
    dry_run: bool,
    capacity: int,
) -> tuple[list[DueClient], list[dict[str, Any]]]:
    """The most valuable due clients, as many as fill today's `capacity` once hold-out and skips are set aside,
    and their planned rows.

    A large salon can have hundreds of thousands of clients due for a daily limit of 300: reading them all (and
    normalizing every phone) would take minutes, so the selection asks for the top `want` and asks again for four
    times as many while the answer was full but the capacity is not. The hold-out is drawn from the same
    clients as the messages, so the control group is comparable."""
    if capacity <= 0:
        return [], []
    sent_share = max(1 - company.settings.holdout_percent / 100, 0.05)
    want = math.ceil(capacity / sent_share) + SELECTION_MARGIN
    while True:
        due = due_clients(session, company_id=company.id, today=day, limit=want)
        consented = (
            consented_phones(
                session,
                company_id=company.id,
                phones=[c.phone_e164 for c in due if c.phone_e164],
                at=reference,
            )
            if company.settings.consent_mode == "required"
            else None
        )
        rows = list(
            plan_rows(
                company, due, run_id=run_id, now=reference, dry_run=dry_run, capacity=capacity, consented=consented
            )
        )
        to_send = sum(1 for row in rows if row["status"] not in _NOT_COUNTED)
        if to_send >= capacity or len(due) < want:
            return due, rows
        want *= 4


def run_campaign(
    rt: Runtime,
    *,
    company_id: int,
    run_date: date | None,
    now: datetime,
    on_claimed: Callable[[list[int]], None],
    dry_run: bool = False,
    trigger: str = "task",
) -> CampaignResult:
    """Select, claim and hand over one company's campaign for `run_date` (default: its local today)."""
    started = monotonic()
    with rt.session() as session:
        company = load_company(session, company_id=company_id)
        day = run_date or company.local_today(now)
        # The run's reference instant: the run date's local send time, or now when the run is for today.
        reference = now if day == company.local_today(now) else _local_instant(company, day, company.settings.send_time)
        if dry_run:
            # A dry run has a record of its own and does not take the day's run: the real one must still happen.
            run_id = create_run(session, company_id=company_id, run_date=day, trigger=trigger, now=now, dry_run=True)
            assert run_id is not None  # the run key covers real runs only
        else:
            run_id = get_or_create_run(session, company_id=company_id, run_date=day, trigger=trigger, now=now).id
        mark_run(session, run_id=run_id, company_id=company_id, status=RunStatus.RUNNING, started_at=now)
        capacity = company.settings.daily_limit - claimed_today(session, company_id=company_id, run_id=run_id)
        due, rows = _select_and_plan(
            session, company, day=day, run_id=run_id, reference=reference, dry_run=dry_run, capacity=capacity
        )
    result = CampaignResult(company_id=company_id, run_date=day, run_id=run_id, due=len(due))
    to_insert = []
    for row in rows:
        if row["status"] == OVER_LIMIT:
            result.over_limit += 1
        else:
            to_insert.append(row)
    for start in range(0, len(to_insert), CLAIM_BATCH):
        batch = to_insert[start : start + CLAIM_BATCH]
        with rt.session() as session:
            new_ids = history.claim(session, batch)
            if not dry_run:
                holds.mark_repeated(session, company_id=company_id, history_ids=new_ids, now=reference)
            claimed = _ids_with_status(session, company_id, new_ids, Status.CLAIMED)
            if claimed:
                # The chains start once this batch is committed, never before: they must find their rows.
                after_commit(session, partial(on_claimed, claimed))
        result.claimed.extend(claimed)
        result.already_claimed += len(batch) - len(new_ids)
        for row in batch:
            if row["status"] == Status.HOLDOUT.value:
                result.holdout += 1
            elif row["status"] == Status.SKIPPED.value:
                result.skipped[row["skip_reason"]] = result.skipped.get(row["skip_reason"], 0) + 1
    with rt.session() as session:
        mark_run(
            session,
            run_id=run_id,
            company_id=company_id,
            status=RunStatus.DONE,
            # The run's own clock moved on by the time it took, so that one run keeps one reference.
            finished_at=now + timedelta(seconds=monotonic() - started),
            due_count=result.due,
            claimed_count=claimed_today(session, company_id=company_id, run_id=run_id),
            holdout_count=result.holdout,
        )
    log.info(
        "campaign claimed",
        extra={
            "company_id": company_id,
            "run_date": day.isoformat(),
            "due": result.due,
            "claimed": len(result.claimed),
            "holdout": result.holdout,
            "over_limit": result.over_limit,
            "dry_run": dry_run,
        },
    )
    return result


def _ids_with_status(session: Session, company_id: int, ids: list[int], status: Status) -> list[int]:
    if not ids:
        return []
    return list(
        session.scalars(
            select(ReactivationHistory.id)
            .where(
                ReactivationHistory.company_id == company_id,
                ReactivationHistory.id.in_(ids),
                ReactivationHistory.status == status.value,
            )
            .order_by(ReactivationHistory.id)
        )
    )


def _local_instant(company: CompanyConfig, day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=company.tz).astimezone(UTC)


def run_status(
    session: Session, *, company_id: int, run_date: date, dry_run: bool = False
) -> list[tuple[str, str | None, int]]:
    """(status, reason, count) of the rows of the company's run for a date: the real run, or with `dry_run` the
    latest dry run started for that date."""
    run_id = latest_run_id(session, company_id=company_id, run_date=run_date, dry_run=dry_run)
    if run_id is None:
        return []
    return history.counts_by_status(session, company_id=company_id, run_id=run_id)
