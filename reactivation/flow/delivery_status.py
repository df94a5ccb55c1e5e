"""Applying what a WhatsApp provider reports about a message it accepted: delivered, read, or failed.

Each report is applied at most once per (message id, status), and never backwards: a late `delivered` after
`read` keeps `read`; a `failed` after `delivered` or `read` is ignored (the client has the message); a report
about a message the row no longer holds (it was sent again since) changes nothing. Replays change nothing.

A failed delivery is not a contact: the row leaves `sent` with the provider's code. Meta's per-user marketing
limit (131049) schedules the same step again 24 hours later, at most twice, as a new message (its own
idempotency key); a number not on WhatsApp (131026) ends the row, and the phone is skipped as `not_on_whatsapp`
for this company until the client's number changes (audience.selection.recheck_client). The AI admin's
pendingAction for the failed message is withdrawn by a task the caller enqueues (`Applied.withdraw`).

Meta echoes each message's `biz_opaque_callback_data`, this product's idempotency key: it names the row. When the
Cloud API's answer was lost (a timeout after Meta took the message: the row is `sending` or `unknown`, without a
message id), a report about it proves the message left: the row is recorded as accepted with that id, and the caller
resumes its chain (`Applied.resume`), so it is persisted and handed over instead of being lost as `unknown`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from reactivation.core.vocabulary import DeliveryStatus, Status
from reactivation.delivery.errors import MARKETING_LIMIT_CODE, NOT_ON_WHATSAPP_CODE
from reactivation.delivery.webhooks import StatusReport
from reactivation.storage import history

log = logging.getLogger(__name__)

# Meta's per-user marketing limit lifts within a day; the same step is tried again after that, this many times.
MARKETING_LIMIT_DELAY = timedelta(hours=24)
MAX_RESCHEDULES = 2

Outcome = Literal["applied", "duplicate", "unknown_message", "ignored"]
# The idempotency key (delivery.contract.idempotency_key): company, row and, for a message sent again, its round.
_CALLBACK = re.compile(r"^reactivation:(\d+):(\d+)(?::r(\d+))?$")


@dataclass(frozen=True)
class Applied:
    """What applying one report did. `withdraw` is the round (resend count) of a failed message whose hand-over
    to the AI admin must be withdrawn, None when there is nothing to withdraw."""

    outcome: Outcome
    company_id: int | None = None
    history_id: int | None = None
    withdraw: int | None = None
    # The row was found through the callback data with its answer lost: resume its chain (persist, hand over).
    resume: bool = False


def callback_row(callback: str | None) -> tuple[int, int, int] | None:
    """(company_id, history_id, resend round) named by a message's callback data, None when it names none."""
    match = _CALLBACK.match(callback or "")
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


@dataclass(frozen=True)
class FailurePlan:
    """Where a row whose message failed goes: `failed`, or back to `generated` to be sent again at `send_after`."""

    status: Status
    values: dict[str, Any]


def failure_plan(*, code: str | None, text: str | None, resend_count: int, failed_at: datetime) -> FailurePlan:
    """The row's next state after a delivery failure with the provider's `code` (pure)."""
    reason = history.cut(f"delivery failed ({code or 'no code'}): {text or 'no details'}", 500)
    common: dict[str, Any] = {"failed_at": failed_at, "delivery_error_code": code, "error": reason}
    if code == MARKETING_LIMIT_CODE and resend_count < MAX_RESCHEDULES:
        again = {
            "send_after": failed_at + MARKETING_LIMIT_DELAY,
            "resend_count": resend_count + 1,
            # The next message is handed over to the AI admin anew.
            "context_saved_at": None,
            "context_error": None,
        }
        return FailurePlan(Status.GENERATED, {**common, **again})
    return FailurePlan(Status.FAILED, common)


def apply_report(session: Session, report: StatusReport, *, now: datetime) -> Applied:
    """Apply one provider report to the history row of its message, idempotently and never backwards."""
    found = history.rows_for_provider_message(session, provider=report.provider, message_id=report.message_id)
    where: dict[str, Any] = {"provider": report.provider, "message_id": report.message_id, "status": report.status}
    named = callback_row(report.callback_data)
    if not found and named is not None and report.status is not DeliveryStatus.FAILED:
        recovered = _recover_lost_answer(session, report, named, now=now)
        if recovered is not None:
            return recovered
    if not found:
        log.warning("delivery report for an unknown message; acknowledged", extra=where)
        return Applied("unknown_message")
    # Ids are the provider's: when two rows share one, the callback data says whose it is.
    company_id, history_id = named[:2] if named is not None and named[:2] in found else found[0]
    where.update(company_id=company_id, history_id=history_id)
    at = report.at or now
    if report.status is DeliveryStatus.SENT:
        return Applied("ignored", company_id, history_id)
    if report.status is DeliveryStatus.FAILED:
        return _apply_failure(session, report, ids=(company_id, history_id), at=at, now=now, where=where)
    column = "read_at" if report.status is DeliveryStatus.READ else "delivered_at"
    changed = history.record_delivery_time(
        session,
        company_id=company_id,
        history_id=history_id,
        message_id=report.message_id,
        column=column,
        at=at,
        now=now,
    )
    log.info("delivery report applied" if changed else "delivery report changed nothing", extra=where)
    return Applied("applied" if changed else "duplicate", company_id, history_id)


def _apply_failure(
    session: Session, report: StatusReport, *, ids: tuple[int, int], at: datetime, now: datetime, where: dict[str, Any]
) -> Applied:
    company_id, history_id = ids
    row = history.get(session, company_id=company_id, history_id=history_id)
    if row is None:
        return Applied("unknown_message")
    plan = failure_plan(code=report.error_code, text=report.error_text, resend_count=row.resend_count, failed_at=at)
    changed = history.record_delivery_failure(
        session,
        company_id=company_id,
        history_id=history_id,
        message_id=report.message_id,
        to_status=plan.status,
        now=now,
        **plan.values,
    )
    if not changed:
        log.info("delivery failure changed nothing (replayed, or after a delivery)", extra=where)
        return Applied("duplicate", company_id, history_id)
    log.warning(
        "message not delivered",
        extra={
            **where,
            "error_code": report.error_code,
            "rescheduled": plan.status is Status.GENERATED,
            "not_on_whatsapp": report.error_code == NOT_ON_WHATSAPP_CODE,
        },
    )
    return Applied("applied", company_id, history_id, withdraw=row.resend_count)


def _recover_lost_answer(
    session: Session, report: StatusReport, named: tuple[int, int, int], *, now: datetime
) -> Applied | None:
    """Record a message whose send's answer was lost as accepted, from Meta's report about it; None when the row
    it names is not such a row (its answer was recorded, it is another round, or it does not exist)."""
    company_id, history_id, resend = named
    at = report.at or now
    times = {"delivered_at": at} if report.status is DeliveryStatus.DELIVERED else {}
    if report.status is DeliveryStatus.READ:
        times = {"delivered_at": at, "read_at": at}
    recovered = history.record_lost_answer(
        session,
        company_id=company_id,
        history_id=history_id,
        provider=report.provider,
        resend=resend,
        now=now,
        provider_message_id=report.message_id,
        message_sent_at=at,
        error=None,
        **times,
    )
    if not recovered:
        return None
    log.warning(
        "lost send answer recovered from a delivery report",
        extra={"company_id": company_id, "history_id": history_id, "message_id": report.message_id},
    )
    return Applied("applied", company_id, history_id, resume=True)
