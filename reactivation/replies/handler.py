"""What the AI admin calls when a client writes back (`handle_reply`; a booking it made is an outcome:
`reactivation.outcomes.attribution.mark_booking_created`).

The reply handler finds the reactivation the reply answers: the `pendingAction` in Redis, or, when Redis lost
it, the client's latest message sent within the attribution window. It classifies the reply (label, reason and,
for not_now, the date it names relative to the reply's local date), records it on the history row, acts on the
reason (followup.py: a snooze, a hold for a move, or the end of the lapse's flow) and returns the enriched prompt
the admin adds to its own. An opt-out is permanent for the phone in that company and revokes its consent.

PostgreSQL is the truth and Redis a copy that can be late: the reply is recorded first, in one transaction with
what the admin's keys still owe (the pendingAction to remove); then Redis is told. When Redis is down the reply
still succeeds and says the hand-over is pending (`handover_pending`); the sweep or the next reply repeats it
(reactivation.handover.pending).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reactivation.compliance.consent import revoke_consent
from reactivation.compliance.optouts import record_opt_out
from reactivation.core.errors import ExternalError
from reactivation.core.phones import mask_phone, normalize_phone
from reactivation.core.vocabulary import PendingHandover, Status, Step
from reactivation.handover.admin_handover import read_pending_action
from reactivation.handover.from_history import handover_context
from reactivation.handover.pending import hand_over_owed
from reactivation.messaging.gemini_gate import Go
from reactivation.replies.admin_prompt import build_enriched_prompt
from reactivation.replies.classify import Classification, EmptyReply, ReplyLabel, explain
from reactivation.replies.followup import Followup, follow
from reactivation.replies.times import named_until
from reactivation.storage import history
from reactivation.storage.companies import CompanyConfig, load_company
from reactivation.storage.db import after_commit
from reactivation.storage.history import latest_sent_message
from reactivation.storage.models import Client, ReactivationHistory

if TYPE_CHECKING:
    from reactivation.runtime import Runtime

log = logging.getLogger(__name__)

# A reply longer than this is stored cut; the classifier and the prompt see the same cut text.
MAX_REPLY_LENGTH = 2000
# Gemini's answer to a one-word classification must come quickly; past it the rules decide.
CLASSIFY_TIMEOUT_SECONDS = 8.0
CLASSIFY_INSTRUCTION = "Ты классифицируешь ответы клиентов салона красоты. Отвечаешь одним словом-меткой."


@dataclass(frozen=True)
class Reactivation:
    """The reactivation a reply answers: its history row and the pendingAction as the admin saw it."""

    row: ReactivationHistory
    pending: dict[str, Any]
    from_redis: bool


def handle_reply(rt: Runtime, *, company_id: int, phone: str, text: str, now: datetime) -> dict[str, Any]:
    """Classify a client's reply, record it, act on its reason and return what the AI admin needs (JSON-ready).

    `until` in the result is the date the lapse is due again after a not_now (None otherwise).
    """
    if not isinstance(text, str) or not text.strip():
        raise EmptyReply()
    reply = history.cut(text.strip(), MAX_REPLY_LENGTH) or ""
    with rt.session() as session:
        company = load_company(session, company_id=company_id)
        e164 = normalize_phone(phone, region=company.country)
    classification = _classify(rt, company, reply, now=now)
    label = classification.label
    local_day = company.local_today(now)
    named = named_until(classification, on=local_day, country=company.country)
    found = find_reactivation(rt, company=company, phone=e164, now=now)
    result: dict[str, Any] = {
        "is_reactivation": found is not None,
        "response_type": label.value,
        "reason": classification.reason.value if classification.reason else None,
        "until": None,
        "enriched_prompt": None,
        "suggested_service": None,
        "should_start_booking": False,
        "history_id": None,
        "handover_pending": False,
    }
    with rt.session() as session:
        # Once the reply is committed, Redis learns what it owes: this reply's, and any an earlier one left pending.
        after_commit(session, partial(_hand_over, rt, result, company_id=company_id, phone=e164, now=now))
        if label is ReplyLabel.OPT_OUT:
            _opt_out(session, company=company, phone=e164, found=found, text=reply, now=now)
        if found is None:
            log.info("reply to no reactivation", extra={"company_id": company_id, "label": label.value})
            return result
        row = found.row
        followed = follow(
            session,
            company_id=company_id,
            row=row,
            classification=classification,
            named=named,
            local_day=local_day,
            now=now,
        )
        _record(
            session, row=row, classification=classification, named=named, reply=reply, stops=followed.stops, now=now
        )
    result.update(_for_the_admin(found, company, reply, classification, followed))
    log.info(
        "reply handled",
        extra={
            "company_id": company_id,
            "history_id": row.id,
            "label": label.value,
            "reason": result["reason"],
            "from_redis": found.from_redis,
        },
    )
    return result


def _hand_over(rt: Runtime, result: dict[str, Any], *, company_id: int, phone: str, now: datetime) -> None:
    """Tell Redis what this phone's rows owe it; `result` says whether some of it is still pending."""
    result["handover_pending"] = bool(hand_over_owed(rt, company_id=company_id, now=now, phone=phone).pending)


def _for_the_admin(
    found: Reactivation, company: CompanyConfig, reply: str, classification: Classification, followed: Followup
) -> dict[str, Any]:
    """The enriched prompt and the rest of the result the admin reads."""
    row = found.row
    service = found.pending.get("suggestedService")
    prompt = build_enriched_prompt(
        found.pending,
        reply,
        classification.label,
        tz=company.tz,
        reason=classification.reason,
        until=followed.snoozed_until,
        discount=_discount(row),
    )
    return {
        "until": followed.snoozed_until.isoformat() if followed.snoozed_until else None,
        "enriched_prompt": prompt,
        "suggested_service": service if isinstance(service, dict) and service.get("name") else None,
        "should_start_booking": classification.label is ReplyLabel.POSITIVE,
        "history_id": row.id,
    }


def _record(
    session: Session,
    *,
    row: ReactivationHistory,
    classification: Classification,
    named: date | None,
    reply: str,
    stops: bool,
    now: datetime,
) -> None:
    """The reply on its history row: text, label, reason, the date it named, and whether the lapse stopped."""
    opted_out = row.response_type == ReplyLabel.OPT_OUT.value
    values: dict[str, Any] = {
        "response_received": True,
        "response_at": func.coalesce(ReactivationHistory.response_at, now),
        "response_text": reply,
        # An opt-out stays what it was, whatever the client writes after it.
        "response_type": row.response_type if opted_out else classification.label.value,
        "response_reason": None if opted_out or classification.reason is None else classification.reason.value,
        "response_until": None if opted_out else named,
    }
    if stops:
        label = classification.label.value
        values["flow_stopped_reason"] = func.coalesce(ReactivationHistory.flow_stopped_reason, label)
    if classification.label in (ReplyLabel.NEGATIVE, ReplyLabel.OPT_OUT):
        # The admin must stop offering a booking: the row's pendingAction goes, recorded with the reply.
        values["handover_pending"] = PendingHandover.CLEAR.value
    history.set_fields(session, company_id=row.company_id, history_id=row.id, now=now, **values)


def _discount(row: ReactivationHistory) -> int | None:
    """The discount the message of this step offered (None for a step without one)."""
    try:
        return Step(row.step).discount_percent or None
    except ValueError:
        return None


def find_reactivation(rt: Runtime, *, company: CompanyConfig, phone: str, now: datetime) -> Reactivation | None:
    """The reactivation this phone's reply answers: Redis's pendingAction first, then (Redis lost it, or cannot be
    reached) the latest sent message."""
    try:
        pending = read_pending_action(rt.redis, prefix=rt.settings.redis_key_prefix, company_id=company.id, phone=phone)
    except redis.RedisError as exc:
        log.warning(
            "Redis unreachable: the reply is matched from PostgreSQL",
            extra={"company_id": company.id, "error": type(exc).__name__},
        )
        pending = None
    with rt.session() as session:
        if pending is not None:
            row = _row_for_pending(session, company_id=company.id, phone=phone, pending=pending)
            if row is not None:
                return Reactivation(row, pending, from_redis=True)
        row = latest_sent_message(
            session, company_id=company.id, phone_e164=phone, now=now, days=company.settings.attribution_days
        )
        if row is None:
            return None
        return Reactivation(row, handover_context(row).pending_action(), from_redis=False)


def _row_for_pending(
    session: Session, *, company_id: int, phone: str, pending: dict[str, Any]
) -> ReactivationHistory | None:
    history_id = pending.get("reactivationHistoryId")
    if isinstance(history_id, bool) or not isinstance(history_id, int):
        return None
    row = history.get(session, company_id=company_id, history_id=history_id)
    # The key names the phone; a row of another client (a recycled number, a stale key) is not this reply's.
    if row is None or row.phone != phone or row.status != Status.SENT or row.dry_run:
        return None
    return row


def _opt_out(
    session: Session, *, company: CompanyConfig, phone: str, found: Reactivation | None, text: str, now: datetime
) -> None:
    client_id = (
        found.row.client_id
        if found
        else session.scalar(
            select(Client.id).where(Client.company_id == company.id, Client.phone_key == phone).limit(1)
        )
    )
    record_opt_out(
        session,
        company_id=company.id,
        phone=phone,
        client_id=client_id,
        history_id=found.row.id if found else None,
        text=text,
        source="reply",
        now=now,
    )
    revoke_consent(session, company_id=company.id, phone=phone, reason="opt_out", now=now)
    log.info("opt-out recorded", extra={"company_id": company.id, "phone": mask_phone(phone)})


def _classify(rt: Runtime, company: CompanyConfig, text: str, *, now: datetime) -> Classification:
    writer = rt.gemini_writer
    if company.settings.reply_classifier != "gemini" or writer is None:
        return explain(text)

    def ask(prompt: str) -> str:
        # A classification never waits: without a slot (or while Gemini is paused, blocked or its breaker open for
        # every worker) the rules answer at once.
        if not isinstance(rt.gemini_gate.acquire(now), Go):
            raise ExternalError("rate_limited", "no Gemini slot for a classification")
        answer = writer.generate_once(
            prompt, timeout_seconds=CLASSIFY_TIMEOUT_SECONDS, system_instruction=CLASSIFY_INSTRUCTION
        )
        if answer.text is None:
            raise ExternalError(answer.problem or "empty", "no classification")
        return answer.text

    return explain(text, classifier="gemini", ask=ask)
