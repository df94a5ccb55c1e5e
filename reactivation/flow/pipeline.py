"""The per-client chain, one function per step: select_interval → generate_message → send_message →
persist_history → save_context.

Each step takes the history row's id and the chain's facts (reactivation.flow.chain_facts: the company's settings
and the client's facts, read once when the chain started; a step given none reads them), does its work, and moves
the status forward with a conditional UPDATE from the status the step starts from, so running a step twice changes
nothing; only when that UPDATE finds the row elsewhere is the row read, to tell a step done earlier from a chain that
must stop. What may have changed since the claim (an opt-out, a booking, a visit, a hold) is re-checked once, right
before the send, never at the steps before it. A step returns what the Celery
task should do next: go on (`Continue`), stop the chain (`Stop`), run again later (`RetryLater`), or hand the rest
of the chain over (`Handoff`: the generate step queues the row for a Gemini batch, which continues the chain once it
has written the message; see reactivation.flow.batching).

Sending is guarded by the row: it moves to `sending` and that is committed before the provider is called. A row
found in `sending` later (a worker died mid-call) is sent again by the sweep only through a provider that
de-duplicates by idempotency key (the gateway), with the same key; otherwise the sweep marks it `unknown`.

Each salon sends from its own sender (CompanySettings.sender_id, else the deployment's default), within that
sender's rate limit; a salon without a usable sender is skipped, never sent from another salon's number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis
import tenacity
from sqlalchemy.orm import Session

from reactivation.audience.selection import recheck_client
from reactivation.compliance.optouts import record_opt_out
from reactivation.core.phones import mask_phone
from reactivation.core.vocabulary import SkipReason, Status, Step
from reactivation.delivery.cloud_api import ApprovedMessage, CloudApiSender
from reactivation.delivery.contract import Sender, SendRequest, SendResult, idempotency_key
from reactivation.delivery.errors import (
    InvalidSendRequest,
    SenderMissing,
    SenderRefused,
    SendError,
    SendOutcomeUnknown,
    SendSkipped,
    TemplateRejected,
    TransientSendError,
)
from reactivation.flow.batching import record_message, write_one
from reactivation.flow.chain_facts import ChainFacts, load_facts
from reactivation.flow.delivery_status import failure_plan
from reactivation.flow.sending_stops import SendingStop, sending_stopped, stop_sending
from reactivation.handover.admin_handover import ContextError, save_context, withdraw_handover
from reactivation.handover.from_history import handover_context
from reactivation.messaging.composing import NO_KEY, ComposedMessage, MessageRequest, template_message
from reactivation.messaging.gemini_gate import Closed
from reactivation.messaging.names import first_name
from reactivation.storage import gemini_queue, history
from reactivation.storage.companies import CompanyConfig
from reactivation.storage.db import TRANSIENT_DB_ERRORS
from reactivation.storage.models import ReactivationHistory
from reactivation.timing.sendwindow import SendWindow, is_send_allowed, next_send_time

if TYPE_CHECKING:
    from reactivation.runtime import Runtime

log = logging.getLogger(__name__)

# A transient gateway error is retried this many times (with backoff) before the row ends failed/unknown.
MAX_SEND_ATTEMPTS = 8
MAX_CONTEXT_ATTEMPTS = 6
# Tries to record the gateway's answer on the row before giving up (waiting 0.5 + 1 + 2 + 4 s in between).
RECORD_ATTEMPTS = 5


@dataclass(frozen=True)
class Continue:
    """The step is done (now or earlier): the chain goes on."""


@dataclass(frozen=True)
class Stop:
    """Nothing more for this chain now (final status, or waiting for the send window)."""

    reason: str


@dataclass(frozen=True)
class RetryLater:
    """Run this step again after `countdown` seconds (a rate limit, a transient error).

    `limit` names the rate limit that had no slot (None for any other wait): waiting for one is the normal pace of a
    campaign, which the worker counts rather than logging every time.
    """

    countdown: float
    reason: str
    limit: str | None = None


@dataclass(frozen=True)
class Handoff:
    """This chain stops here and goes on from elsewhere: the Gemini batch that writes the row's message continues it."""

    reason: str


Outcome = Continue | Stop | RetryLater | Handoff


def backoff(attempt: int, *, base: float = 5.0, cap: float = 300.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, …): base, doubling, at most cap."""
    return min(cap, base * 2 ** max(0, attempt - 1))


def _recheck(session: Session, row: ReactivationHistory, company: CompanyConfig, now: datetime) -> SkipReason | None:
    """The reason this row must not go on, if something changed since it was claimed."""
    return recheck_client(
        session,
        company_id=row.company_id,
        client_id=row.client_id,
        lapse_date=row.last_visit_date,
        now=now,
        company=company,
    )


def _facts(session: Session, pair: tuple[int, int], facts: ChainFacts | None) -> ChainFacts | None:
    """The chain's facts: those it carries, else read now (None: the row is gone). A company whose settings became
    invalid raises CompanyConfigError (the task ends the row `failed`)."""
    if facts is not None:
        return facts
    return load_facts(session, [pair], strict=True).get(pair)


def _moved_elsewhere(session: Session, pair: tuple[int, int], expected: Status, later: tuple[Status, ...]) -> Outcome:
    """A step's conditional UPDATE found the row out of `expected`: the chain goes on if the step was done earlier."""
    row = history.get(session, company_id=pair[0], history_id=pair[1])
    return _not_ready(row, expected, later) or Stop(f"status {expected}")


def _move(
    session: Session,
    ids: tuple[int, int],
    from_status: Status | tuple[Status, ...],
    to_status: Status,
    *,
    now: datetime,
    **values: Any,
) -> bool:
    """Move the row `ids` = (company_id, history_id) on, if it is still in `from_status`; False when another worker
    was first. Every status change of the chain goes through here."""
    company_id, history_id = ids
    return history.transition(
        session,
        company_id=company_id,
        history_id=history_id,
        from_status=from_status,
        to_status=to_status,
        now=now,
        **values,
    )


def fail_unsent(rt: Runtime, *, company_id: int, history_id: int, error: str, now: datetime) -> Stop:
    """End a row that cannot go on (its company's settings became invalid after the claim) as `failed`, unless
    its message already left: a row in `sending` or `delivered` waits for the sweep or for the settings to be
    fixed, so that a sent message is never recorded as failed."""
    unsent = (Status.CLAIMED, Status.INTERVAL_SELECTED, Status.GENERATED)
    with rt.session() as session:
        moved = _move(session, (company_id, history_id), unsent, Status.FAILED, now=now, error=history.cut(error))
    where = {"company_id": company_id, "history_id": history_id}
    if moved:
        log.error("company settings invalid; row not sent", extra=where)
        return Stop(Status.FAILED)
    log.error("company settings invalid; row waits for them to be fixed", extra=where)
    return Stop("company settings invalid")


def _skip(
    session: Session,
    row: ReactivationHistory,
    from_status: Status,
    reason: SkipReason,
    *,
    now: datetime,
    **values: Any,
) -> Stop:
    _move(session, (row.company_id, row.id), from_status, Status.SKIPPED, now=now, skip_reason=reason, **values)
    log.info("contact skipped", extra={"history_id": row.id, "company_id": row.company_id, "reason": reason})
    return Stop(reason)


def _not_ready(row: ReactivationHistory | None, expected: Status, later: tuple[Status, ...]) -> Outcome | None:
    """What to do when the row is not in the status this step starts from (None: it is)."""
    if row is None:
        return Stop("missing")
    if row.status == expected:
        return None
    if row.status in later:
        # Done by an earlier delivery of this same task: let the chain go on.
        return Continue()
    return Stop(f"status {row.status}")


# --- select_interval ------------------------------------------------------------------------------------------


def select_interval(
    rt: Runtime, *, company_id: int, history_id: int, now: datetime, facts: ChainFacts | None = None
) -> Outcome:
    """Confirm the interval the claim chose (recorded on the row): one conditional UPDATE. Nothing is re-checked
    here: the send re-checks the client right before it leaves."""
    pair = (company_id, history_id)
    with rt.session() as session:
        if _facts(session, pair, facts) is None:
            return Stop("missing")
        if _move(session, pair, Status.CLAIMED, Status.INTERVAL_SELECTED, now=now):
            return Continue()
        later = (Status.INTERVAL_SELECTED, Status.GENERATED, Status.DELIVERED, Status.SENT)
        return _moved_elsewhere(session, pair, Status.CLAIMED, later)


# --- generate_message -----------------------------------------------------------------------------------------


def generate_message(
    rt: Runtime,
    *,
    company_id: int,
    history_id: int,
    now: datetime,
    inline: bool = False,
    facts: ChainFacts | None = None,
) -> Outcome:
    """Queue the row for a Gemini batch, which writes its message and continues the chain (`Handoff`); or write
    its message now: the template without a key or while Gemini is closed for everybody, and, `inline` (a run in one
    process, where nothing waits for a batch), Gemini's own."""
    pair = (company_id, history_id)
    later = (Status.GENERATED, Status.DELIVERED, Status.SENT)
    with rt.session() as session:
        facts = _facts(session, pair, facts)
        if facts is None:
            return Stop("missing")
        request = facts.message_request()
        at_once = _written_at_once(rt, request, now=now)
        if at_once is not None:
            composed, template = at_once
            if record_message(session, pair=pair, composed=composed, now=now, **template):
                return Continue()
            return _moved_elsewhere(session, pair, Status.INTERVAL_SELECTED, later)
        row = history.get(session, company_id=company_id, history_id=history_id)
        if (outcome := _not_ready(row, Status.INTERVAL_SELECTED, later)) is not None:
            return outcome
        if not inline:
            # Queued once, however often this step runs; the batch continues the chain from send_message.
            gemini_queue.enqueue(session, company_id=company_id, history_id=history_id, now=now)
            return Handoff("waiting for a Gemini batch")
    # No transaction is held open while Gemini thinks.
    write_one(rt, pair=pair, request=request, run_id=facts.campaign_run_id, now=now)
    return Continue()


def written_by_batches(rt: Runtime) -> bool:
    """Whether messages are written by Gemini batches: a key, and a sender that does not send its own approved
    templates (the Cloud API's messages are its templates, written at the generate step)."""
    return rt.batch_writer is not None and not isinstance(rt.sender, CloudApiSender)


def _written_at_once(
    rt: Runtime, request: MessageRequest, *, now: datetime
) -> tuple[ComposedMessage, dict[str, str]] | None:
    """The message written without Gemini, if it is: the Cloud API's approved template (Gemini is not asked), or the
    template with the reason Gemini is off (no key; closed for everybody: no request, no limiter slot)."""
    approved = _approved_template(rt, request)
    if approved is not None:
        return approved
    closed = rt.gemini_gate.closed(now) if rt.batch_writer is not None else Closed(NO_KEY, None)
    if closed is not None:
        return template_message(request, reason=closed.reason), {}
    return None


def _approved_template(rt: Runtime, request: MessageRequest) -> tuple[ComposedMessage, dict[str, str]] | None:
    """With the Cloud API, the step's approved template filled for this client, and the template's name and language
    for the row; None with any other provider."""
    sender = rt.sender
    if not isinstance(sender, CloudApiSender):
        return None
    name = first_name(request.client_name)
    approved: ApprovedMessage = sender.approved_message(
        request.step, first_name=name, service_title=request.service_title
    )
    composed = ComposedMessage(
        text=approved.text,
        generator="template",
        variant=f"cloud_api:{approved.template_name}",
        model=None,
        fallback_reason=None,
        first_name=name,
    )
    return composed, {"template_name": approved.template_name, "template_language": approved.language}


def _later(
    rt: Runtime, ids: tuple[int, int], wait_seconds: float, reason: str, *, now: datetime, limit: str | None = None
) -> RetryLater:
    """Run the step again after `wait_seconds` (capped), telling the sweep that the row is waiting, not lost."""
    countdown = min(wait_seconds, rt.settings.max_countdown_seconds)
    with rt.session() as session:
        history.set_fields(
            session,
            company_id=ids[0],
            history_id=ids[1],
            now=now,
            next_attempt_at=now + timedelta(seconds=countdown),
        )
    return RetryLater(countdown, reason, limit=limit)


# --- send_message ---------------------------------------------------------------------------------------------


def send_message(
    rt: Runtime, *, company_id: int, history_id: int, now: datetime, facts: ChainFacts | None = None
) -> Outcome:
    """Send once: re-check the client (the chain's one re-check), commit `sending`, call the provider, record what
    it said."""
    with rt.session() as session:
        row = history.get(session, company_id=company_id, history_id=history_id)
        if row is not None and row.status == Status.SENDING:
            # A redelivered task finds the row mid-send; the sweep resends it if the provider de-duplicates.
            log.warning("row already sending; not calling the provider again", extra={"history_id": history_id})
            return Stop("already sending")
        if (outcome := _not_ready(row, Status.GENERATED, (Status.DELIVERED, Status.SENT))) is not None:
            return outcome
        assert row is not None
        if row.send_after is not None and row.send_after > now:
            # Waiting for the send window or a rescheduled attempt: the sweep resumes it when the time comes.
            return Stop("waiting until send_after")
        facts = _facts(session, (company_id, history_id), facts)
        if facts is None:
            return Stop("missing")
        company = facts.company.config()
        if reason := _recheck(session, row, company, now):
            return _skip(session, row, Status.GENERATED, reason, now=now)
        window = SendWindow.for_company(company)
        if not row.dry_run and not is_send_allowed(now, window):
            opens = next_send_time(now, window)
            history.set_fields(session, company_id=company_id, history_id=history_id, now=now, send_after=opens)
            log.info("outside the send window; waiting", extra={"history_id": history_id, "opens": opens.isoformat()})
            return Stop("waiting for the send window")
        sender = rt.sender_for(row.dry_run)
        if (held := _held_back(rt, session, row, company, sender, now=now)) is not None:
            return held
        request = _send_request(row, company, facts)
        if not _move(
            session,
            (company_id, history_id),
            Status.GENERATED,
            Status.SENDING,
            now=now,
            sending_started_at=now,
            attempts=row.attempts + 1,
            provider=sender.provider,
        ):
            return Stop("claimed by another worker")
        attempt = row.attempts + 1
    # Committed: from here on a crash leaves the row in `sending` for the sweep.
    return _deliver(rt, request, attempt=attempt, dry_run=row.dry_run, now=now)


def _held_back(
    rt: Runtime, session: Session, row: ReactivationHistory, company: CompanyConfig, sender: Sender, *, now: datetime
) -> Outcome | None:
    """Why this row may not go to the provider now (None: it may): the salon has no sender, its sending is
    stopped, or its sender's rate limit has no slot."""
    try:
        sender_key = sender.sender_key(company.settings.sender_id)
    except SenderMissing as exc:
        log.error("salon has no WhatsApp sender; row skipped", extra={"company_id": row.company_id, "error": str(exc)})
        return _skip(session, row, Status.GENERATED, SkipReason.SENDER_MISSING, now=now, error=str(exc))
    stop = (
        None
        if row.dry_run
        else sending_stopped(rt.redis, prefix=rt.settings.redis_key_prefix, company_id=row.company_id)
    )
    if stop is not None and stop.reason == "sender_refused":
        return _skip(session, row, Status.GENERATED, SkipReason.SENDER_REFUSED, now=now, error=f"fix {stop.fix}")
    if stop is not None:
        history.set_fields(session, company_id=row.company_id, history_id=row.id, now=now, send_after=stop.until)
        return Stop("company sending stopped")
    if row.dry_run:
        # A dry run's message goes to the outbox, not to the sender: it takes none of the sender's slots.
        return None
    slot = rt.whatsapp_limiter.acquire(sender_key, rate=company.settings.sender_limit)
    if slot.acquired:
        return None
    countdown = min(slot.wait_seconds, rt.settings.max_countdown_seconds)
    history.set_fields(
        session,
        company_id=row.company_id,
        history_id=row.id,
        now=now,
        next_attempt_at=now + timedelta(seconds=countdown),
    )
    return RetryLater(countdown, "whatsapp rate limit", limit=rt.whatsapp_limiter.name)


def _send_request(row: ReactivationHistory, company: CompanyConfig, facts: ChainFacts) -> SendRequest:
    return SendRequest(
        company_id=row.company_id,
        history_id=row.id,
        phone=row.phone or "",
        message=row.message_text or "",
        idempotency_key=idempotency_key(row.company_id, row.id, row.resend_count),
        step=Step(row.step),
        first_name=facts.first_name,
        service_title=row.last_service_name,
        sender_id=company.settings.sender_id,
    )


def _deliver(rt: Runtime, request: SendRequest, *, attempt: int, dry_run: bool, now: datetime) -> Outcome:
    try:
        result = rt.sender_for(dry_run).send(request)
    except (SendError, InvalidSendRequest) as exc:
        return _not_sent(rt, request, exc, attempt=attempt, dry_run=dry_run, now=now)
    _record_sent(rt, request, result, now=now)
    log.info(
        "message sent",
        extra={"history_id": request.history_id, "company_id": request.company_id, "phone": mask_phone(request.phone)},
    )
    return Continue()


def _record_sent(rt: Runtime, request: SendRequest, result: SendResult, *, now: datetime) -> None:
    values: dict[str, Any] = {}
    if result.sent_text is not None:
        # What the client received (the approved template as filled at the send), word for word.
        values["message_text"] = result.sent_text
    if result.template_name is not None:
        values["template_name"] = result.template_name
    _record_answer(
        rt,
        request,
        to_status=Status.DELIVERED,
        now=now,
        provider_message_id=result.provider_message_id,
        # The step's own clock (the time it was given), so one run has one reference time.
        message_sent_at=now,
        error=None,
        **values,
    )


def _not_sent(
    rt: Runtime,
    request: SendRequest,
    exc: SendError | InvalidSendRequest,
    *,
    attempt: int,
    dry_run: bool,
    now: datetime,
) -> Outcome:
    """Record what a send that did not succeed means for the row, and what the chain does next."""
    if isinstance(exc, TransientSendError):
        return _transient(rt, request, exc, attempt=attempt, now=now)
    if isinstance(exc, TemplateRejected):
        stop = _stop_company(rt, request, SendingStop.starting("template_rejected", exc.setting, now=now), exc)
        # Nothing was sent: the row waits for the stop to lapse (and the template to be fixed) instead of failing.
        return _end_send(
            rt, request, Status.GENERATED, now=now, send_after=stop.until, error=history.cut(str(exc)), reason="held"
        )
    if isinstance(exc, SenderRefused):
        _stop_company(rt, request, SendingStop.starting("sender_refused", _sender_fix(exc), now=now), exc)
        reason = SkipReason.SENDER_REFUSED
        return _end_send(
            rt, request, Status.SKIPPED, now=now, skip_reason=reason, error=history.cut(str(exc)), reason=reason
        )
    if isinstance(exc, SendSkipped):
        return _declined(rt, request, exc, dry_run=dry_run, now=now)
    if isinstance(exc, SendOutcomeUnknown):
        return _end_send(rt, request, Status.UNKNOWN, now=now, error=history.cut(str(exc)))
    if getattr(exc, "affects_all_messages", False):
        log.error("sender misconfigured: every message will fail", extra={"error": str(exc)})
    return _end_send(rt, request, Status.FAILED, now=now, error=history.cut(str(exc)))


def _transient(rt: Runtime, request: SendRequest, exc: TransientSendError, *, attempt: int, now: datetime) -> Outcome:
    if attempt >= MAX_SEND_ATTEMPTS:
        final = Status.UNKNOWN if exc.maybe_delivered else Status.FAILED
        error = history.cut(f"gave up after {attempt} attempts: {exc}")
        return _end_send(rt, request, final, now=now, error=error, reason=f"transient error, {final}")
    # Backoff, never sooner than the server asked: an outage answering "Retry-After: 1" would otherwise use up
    # every attempt within seconds, and a gateway down for a minute would fail the whole run.
    countdown = min(max(exc.retry_after or 0.0, backoff(attempt)), rt.settings.max_countdown_seconds)
    # The gateway de-duplicates by idempotency key, so sending again after a failed attempt is safe.
    _record_answer(
        rt,
        request,
        to_status=Status.GENERATED,
        now=now,
        error=history.cut(str(exc)),
        next_attempt_at=now + timedelta(seconds=countdown),
    )
    return RetryLater(countdown, "transient send error")


def _declined(rt: Runtime, request: SendRequest, exc: SendSkipped, *, dry_run: bool, now: datetime) -> Outcome:
    """The provider declined the recipient: skipped with its reason and code, or (Meta's per-user marketing limit)
    the same step scheduled again a day later."""
    if exc.reason is SkipReason.MARKETING_OPT_OUT and not dry_run:
        # The client told WhatsApp to stop this business's marketing: the same as telling the salon.
        for attempt_to_record in _recording():
            with attempt_to_record, rt.session() as session:
                record_opt_out(
                    session,
                    company_id=request.company_id,
                    phone=request.phone,
                    client_id=None,
                    history_id=request.history_id,
                    text=str(exc),
                    source="whatsapp",
                    now=now,
                )
    if exc.reason is SkipReason.MARKETING_LIMIT:
        with rt.session() as session:
            row = history.get(session, company_id=request.company_id, history_id=request.history_id)
            resends = row.resend_count if row is not None else 0
        plan = failure_plan(code=exc.code, text=str(exc), resend_count=resends, failed_at=now)
        if plan.status is Status.GENERATED:
            return _end_send(rt, request, Status.GENERATED, now=now, reason="rescheduled", **plan.values)
    return _end_send(rt, request, Status.SKIPPED, now=now, skip_reason=exc.reason, delivery_error_code=exc.code)


def _sender_fix(exc: SenderRefused) -> str:
    """What the operator fixes when the provider refuses a salon's sender."""
    return f"the company's sender_id ({exc.sender_id or 'the default sender'}) at the provider or in companies.settings"


def _stop_company(rt: Runtime, request: SendRequest, stop: SendingStop, exc: SendError) -> SendingStop:
    return stop_sending(
        rt.redis, prefix=rt.settings.redis_key_prefix, company_id=request.company_id, stop=stop, error=str(exc)
    )


def _end_send(
    rt: Runtime, request: SendRequest, status: Status, *, now: datetime, reason: str | None = None, **values: object
) -> Stop:
    _record_answer(rt, request, to_status=status, now=now, **values)
    return Stop(reason or status)


def _recording() -> tenacity.Retrying:
    """Retries for writing down what the provider answered.

    The row is `sending` and stays so if this write is lost: a database connection dropped at this moment would
    leave a sent message (or one that may safely be retried) to the sweep. The write is retried on a fresh
    connection instead.
    """
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(RECORD_ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=0.5, max=5),
        retry=tenacity.retry_if_exception_type(TRANSIENT_DB_ERRORS),
        reraise=True,
    )


def _record_answer(rt: Runtime, request: SendRequest, *, to_status: Status, now: datetime, **values: object) -> None:
    """Move the row out of `sending` to what the provider's answer means, retrying a dropped connection."""
    for attempt in _recording():
        with attempt, rt.session() as session:
            _move(session, (request.company_id, request.history_id), Status.SENDING, to_status, now=now, **values)


# --- persist_history ------------------------------------------------------------------------------------------


def persist_history(
    rt: Runtime, *, company_id: int, history_id: int, now: datetime, facts: ChainFacts | None = None
) -> Outcome:
    """Make the delivered message part of the audit log and the funnel: status `sent`, its facts final."""
    pair = (company_id, history_id)
    with rt.session() as session:
        row = history.get(session, company_id=company_id, history_id=history_id)
        if (outcome := _not_ready(row, Status.DELIVERED, (Status.SENT,))) is not None:
            return outcome
        assert row is not None
        facts = _facts(session, pair, facts)
        if facts is None:
            return Stop("missing")
        sent_at = row.message_sent_at or now
        local_day = sent_at.astimezone(facts.company.config().tz).date()
        _move(
            session,
            pair,
            Status.DELIVERED,
            Status.SENT,
            now=now,
            message_sent_at=sent_at,
            inactive_days=(local_day - row.last_visit_date).days,
        )
    return Continue()


# --- save_context ---------------------------------------------------------------------------------------------


def save_handover(
    rt: Runtime,
    *,
    company_id: int,
    history_id: int,
    now: datetime,
    attempt: int = 1,
    facts: ChainFacts | None = None,
) -> Outcome:
    """Hand the conversation to the AI admin through Redis; a failure never un-sends the message. One session: the
    row is read, Redis written, and the outcome recorded on the row (a plain read holds no lock meanwhile)."""
    with rt.session() as session:
        row = history.get(session, company_id=company_id, history_id=history_id)
        if row is None or row.status != Status.SENT or row.dry_run:
            return Stop("nothing to hand over")
        if row.flow_stopped_reason is not None:
            # A no or a booking came first (Redis was down at the send): the admin must not offer a booking now.
            return Stop("flow stopped; nothing to hand over")
        if row.context_saved_at is not None:
            return Stop("already handed over")
        context = handover_context(row)
        try:
            save_context(
                rt.redis,
                context,
                prefix=rt.settings.redis_key_prefix,
                ttl_seconds=rt.settings.context_ttl_seconds,
            )
        except (ContextError, redis.RedisError) as exc:
            if attempt < MAX_CONTEXT_ATTEMPTS:
                return RetryLater(backoff(attempt, base=2.0, cap=120.0), "redis hand-over failed")
            log.error(
                "hand-over to the AI admin failed; the message stays sent and the sweep tries again",
                extra={"history_id": history_id, "company_id": company_id, "error": str(exc)},
            )
            history.set_fields(
                session, company_id=company_id, history_id=history_id, now=now, context_error=history.cut(str(exc), 500)
            )
            return Stop("hand-over failed")
        history.set_fields(
            session, company_id=company_id, history_id=history_id, now=now, context_saved_at=now, context_error=None
        )
    return Stop("done")


def withdraw_failed_handover(
    rt: Runtime, *, company_id: int, history_id: int, resend: int, attempt: int = 1
) -> Outcome:
    """Take back the hand-over of a message the provider reported not delivered (round `resend` of the row): the
    AI admin must not wait for a reply to a message the client never got."""
    with rt.session() as session:
        row = history.get(session, company_id=company_id, history_id=history_id)
        if row is None or row.dry_run or not (row.phone and row.message_text and row.message_sent_at):
            return Stop("nothing to withdraw")
        context = replace(handover_context(row), resend=resend)
    try:
        withdraw_handover(
            rt.redis, context, prefix=rt.settings.redis_key_prefix, ttl_seconds=rt.settings.context_ttl_seconds
        )
    except redis.RedisError as exc:
        if attempt < MAX_CONTEXT_ATTEMPTS:
            return RetryLater(backoff(attempt, base=2.0, cap=120.0), "redis withdraw failed")
        log.error(
            "withdrawing the hand-over failed; the AI admin may wait for a reply",
            extra={"history_id": history_id, "company_id": company_id, "error": str(exc)},
        )
        return Stop("withdraw failed")
    return Stop("withdrawn")
