"""Gemini batches for the per-client chains: rows wait in a queue, one request writes up to GEMINI_BATCH_SIZE of
them, and each row's chain goes on from there.

A chain's generate step puts its row in the queue (storage/gemini_queue.py) and hands the chain over; the batching
task (`reactivation.write_messages`, queue gemini) serves whatever waits, across companies, fairly:
1. nothing free to lease: nothing to do;
2. Gemini closed for everybody (the day's pause, an open breaker) or no key: the waiting rows take their templates,
   without a limiter slot;
3. fewer rows than a batch, the oldest waiting less than GEMINI_BATCH_WAIT_SECONDS: look again when it has;
4. no slot from the gate (the shared limiter, a per-minute block): look again when the slot frees; this is the only
   polling of the limiter, by one task for the whole backlog, never by each waiting row;
5. a slot: lease the rows (round-robin across companies), ask Gemini once for all of them, write each row's message
   (its template when Gemini gave none; back to the queue when a quota blocked every worker), record the request's
   tokens, and, once that has committed, continue each written row's chain (send_message → persist_history →
   save_context).
With Gemini on, a campaign's claimed rows do not wait for their chains' first steps to reach the queue one task at
a time: `queue_claimed` moves each claim batch to `interval_selected` and queues it in two statements, right after
the claim commits (select_interval has nothing to check: the claim chose the interval, and the client is re-checked
before the send); their chains start at send_message from the batch that wrote their messages. So every salon's
rows wait together within seconds of beat's tick, and the round-robin serves them side by side.
A waiting row costs nothing: it is a row in a table. Writing is idempotent: a row's message is written by a
conditional UPDATE from `interval_selected`, only while this batch still holds its lease, so a batch delivered twice
(acks_late) writes nothing twice and continues no chain twice; a batch whose worker died gives its rows back when
its lease passes, and the sweep wakes the batching task while rows wait (it never resumes a waiting row one by one).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import Status
from reactivation.messaging.composing import (
    NO_KEY,
    ComposedMessage,
    Composition,
    MessageRequest,
    compose_messages,
    template_message,
)
from reactivation.messaging.gemini_batch import RequestRecord, Requeue
from reactivation.messaging.gemini_gate import Closed, Go
from reactivation.storage import gemini_queue, gemini_usage, history
from reactivation.storage.db import TRANSIENT_DB_ERRORS
from reactivation.storage.gemini_usage import RequestShare
from reactivation.storage.models import Client, Company, ReactivationHistory

if TYPE_CHECKING:
    from reactivation.runtime import Runtime

log = logging.getLogger(__name__)

# Rows given templates at once while Gemini is closed (no request is made for them, so more fit in one pass).
DRAIN_ROWS = 200
# A lease outlives the batch's own bound (its budget and one more request's timeout) by this much.
LEASE_MARGIN = timedelta(seconds=60)
# How long the mark of a scheduled batching task outlives its countdown (a lost task is replaced after this).
SCHEDULED_SLACK = timedelta(seconds=30)
# A run scheduled further ahead than this is not marked: it holds back no run that rows arriving meanwhile ask for.
SCHEDULED_HORIZON = timedelta(seconds=10)

Pair = tuple[int, int]  # (company_id, history_id)


@dataclass(frozen=True)
class WaitingRow:
    """A leased row with what its message is written from."""

    company_id: int
    history_id: int
    campaign_run_id: int | None
    attempts: int
    request: MessageRequest

    @property
    def pair(self) -> Pair:
        return (self.company_id, self.history_id)


@dataclass
class BatchRun:
    """What one run of the batching task did, and when the next should look (None: when something is queued)."""

    reason: str
    written: list[Pair] = field(default_factory=list)
    requeued: int = 0
    next_in: float | None = None


def _scheduled_key(rt: Runtime) -> str:
    return f"{rt.settings.redis_key_prefix}gemini:batch:scheduled"


def mark_scheduled(rt: Runtime, *, countdown: float) -> bool:
    """Whether to send a batching run `countdown` seconds from now: False when one comes sooner anyway.

    A run within SCHEDULED_HORIZON is marked in Redis (for the countdown and a little more, so that a task lost on its
    way is replaced by the next row that waits), and a second one is not sent: one run at a time asks the limiter. A
    run further ahead (the end of a long block) is sent unmarked, so that it never keeps rows arriving meanwhile
    from being served."""
    if countdown > SCHEDULED_HORIZON.total_seconds():
        return True
    ttl_ms = int((max(countdown, 0.0) + SCHEDULED_SLACK.total_seconds()) * 1000)
    return bool(rt.redis.set(_scheduled_key(rt), "1", nx=True, px=ttl_ms))


def clear_scheduled(rt: Runtime) -> None:
    """The scheduled batching task has started: a row queued from now on schedules the next one."""
    rt.redis.delete(_scheduled_key(rt))


def lease_seconds(rt: Runtime) -> float:
    """How long a batch holds its rows: its budget, one request's timeout, and a margin."""
    settings = rt.settings
    return settings.gemini_budget_seconds + settings.gemini_timeout_seconds + LEASE_MARGIN.total_seconds()


def queue_claimed(session: Session, *, company_id: int, history_ids: Sequence[int], now: datetime) -> list[int]:
    """Rows of one company just claimed, moved to `interval_selected` and queued for a Gemini batch in bulk; the ids
    moved (a row another worker moved first is not: its own chain goes on)."""
    if not history_ids:
        return []
    h = ReactivationHistory
    moved = list(
        session.scalars(
            update(h)
            .where(h.company_id == company_id, h.id.in_(list(history_ids)), h.status == Status.CLAIMED)
            .values(status=Status.INTERVAL_SELECTED.value, updated_at=now)
            .returning(h.id)
            .execution_options(synchronize_session=False)
        )
    )
    gemini_queue.enqueue_many(session, company_id=company_id, history_ids=moved, now=now)
    return moved


def record_message(session: Session, *, pair: Pair, composed: ComposedMessage, now: datetime, **values: object) -> bool:
    """Write a row's message (and `values`, e.g. the approved template's name) if the row still waits for one
    (`interval_selected`); False when it has moved on."""
    company_id, history_id = pair
    return history.transition(
        session,
        company_id=company_id,
        history_id=history_id,
        from_status=Status.INTERVAL_SELECTED,
        to_status=Status.GENERATED,
        now=now,
        message_text=composed.text,
        generator=composed.generator,
        variant=composed.variant,
        model=composed.model,
        generator_fallback_reason=composed.fallback_reason,
        **values,
    )


def write_batch(
    rt: Runtime,
    *,
    now: datetime,
    on_leased: Callable[[], None],
    on_written: Callable[[Session, list[Pair]], None],
) -> BatchRun:
    """Serve the queue once (see the module's steps). `on_leased` runs when rows still wait after this batch took
    its own (so that another batch can start meanwhile); `on_written(session, pairs)` inside the transaction that
    wrote the messages (to continue their chains once it commits)."""
    settings = rt.settings
    started = time.monotonic()
    with rt.session() as session:
        backlog = gemini_queue.backlog(session, now=now)
    if backlog.free == 0:
        # Rows a dead batch still holds come back when its lease passes: to the next run that rows arriving ask for,
        # to the task's redelivery, or to the sweep.
        return BatchRun("nothing waits")
    closed = rt.gemini_gate.closed(now) if rt.batch_writer is not None else Closed(NO_KEY, None)
    if closed is not None:
        return _drain(rt, now=now, reason=closed.reason, on_written=on_written, more=backlog.free > DRAIN_ROWS)
    wait = timedelta(seconds=settings.gemini_batch_wait_seconds)
    if backlog.free < settings.gemini_batch_size and backlog.oldest is not None and backlog.oldest + wait > now:
        return BatchRun("filling", next_in=(backlog.oldest + wait - now).total_seconds())
    # Rows first, the slot after: a slot taken for rows another batch leased meanwhile would be lost.
    token = uuid.uuid4().hex
    rows = _lease(rt, now=now, token=token, limit=settings.gemini_batch_size)
    if not rows:
        return BatchRun("taken by another batch")
    decision = rt.gemini_gate.acquire(now)
    if not isinstance(decision, Go):
        with rt.session() as session:
            gemini_queue.give_back(session, token=token, rows=[row.pair for row in rows], attempt=False)
        if isinstance(decision, Closed):
            return _drain(rt, now=now, reason=decision.reason, on_written=on_written, more=backlog.free > DRAIN_ROWS)
        return BatchRun(decision.why, next_in=decision.seconds)
    if backlog.free > len(rows):
        on_leased()
    # The writer's clock starts now, not at the task's start: a per-minute block is measured from the answer.
    asked_at = now + timedelta(seconds=time.monotonic() - started)
    composition = compose_messages(
        [row.request for row in rows], writer=rt.batch_writer, now=asked_at, slot_taken=True, can_requeue=True
    )
    try:
        result = _store(rt, rows, composition, now=now, token=token, on_written=on_written)
    except TRANSIENT_DB_ERRORS:
        _release_cut_lease(rt, token=token, rows=rows)
        raise
    if result.requeued:
        # Rows wait again behind a block: the next run learns from the gate how long.
        result.next_in = 0.0
    return result


def _release_cut_lease(rt: Runtime, *, token: str, rows: Sequence[WaitingRow]) -> None:
    """A write cut by a lost connection gives its rows back at once (a new connection usually works), so that the
    task's retry serves them now instead of after the lease; if the database is still away, the lease passes."""
    try:
        with rt.session() as session:
            gemini_queue.give_back(session, token=token, rows=[row.pair for row in rows], attempt=False)
    except TRANSIENT_DB_ERRORS:
        log.warning("a cut batch could not give its rows back; they wait for its lease to pass", exc_info=True)


def write_one(rt: Runtime, *, pair: Pair, request: MessageRequest, run_id: int | None, now: datetime) -> bool:
    """A row's message written at once, without the queue (a run in one process, where nothing waits for a batch)."""
    row = WaitingRow(pair[0], pair[1], run_id, 0, request)
    composition = compose_messages([request], writer=rt.batch_writer, now=now)
    result = _store(rt, [row], composition, now=now, token=None, on_written=lambda _session, _pairs: None)
    return bool(result.written)


def _served_key(rt: Runtime) -> str:
    return f"{rt.settings.redis_key_prefix}gemini:batch:served"


def _turns(rt: Runtime, companies: Sequence[int]) -> dict[int, int]:
    """Each waiting company's place in the round: never served first (0), then the least recently served."""
    served = cast(list[str | None], rt.redis.hmget(_served_key(rt), [str(c) for c in companies])) if companies else []
    known = sorted((float(at), company) for company, at in zip(companies, served, strict=True) if at is not None)
    return {company: place for place, (_, company) in enumerate(known, start=1)}


def _mark_served(rt: Runtime, companies: set[int], now: datetime) -> None:
    if companies:
        pipe = rt.redis.pipeline()
        pipe.hset(_served_key(rt), mapping={str(company): repr(now.timestamp()) for company in companies})
        pipe.expire(_served_key(rt), 86_400)
        pipe.execute()


def _lease(rt: Runtime, *, now: datetime, token: str, limit: int) -> list[WaitingRow]:
    """Lease rows and read what their messages are written from; rows that moved on leave the queue."""
    until = now + timedelta(seconds=lease_seconds(rt))
    with rt.session() as session:
        turns = _turns(rt, gemini_queue.waiting_companies(session, now=now))
        leased = gemini_queue.lease(session, now=now, until=until, token=token, limit=limit, turns=turns)
        rows = _waiting_rows(session, leased)
        found = {row.pair for row in rows}
        gone = [
            (lease.company_id, lease.history_id)
            for lease in leased
            if (lease.company_id, lease.history_id) not in found
        ]
        gemini_queue.finish(session, token=token, rows=gone)
    _mark_served(rt, {lease.company_id for lease in leased}, now)
    return rows


def _waiting_rows(session: Session, leased: Sequence[gemini_queue.Leased]) -> list[WaitingRow]:
    """The leased rows still waiting for their message, in the lease's order, with their facts (one query)."""
    if not leased:
        return []
    h = ReactivationHistory
    statement = (
        select(
            h.company_id,
            h.id,
            h.campaign_run_id,
            h.client_id,
            h.step,
            h.last_service_name,
            h.last_visit_date,
            h.inactive_days,
            h.interval_days,
            Client.name.label("client_name"),
            Company.name.label("company_name"),
        )
        .join(Company, Company.id == h.company_id)
        .outerjoin(Client, (Client.company_id == h.company_id) & (Client.id == h.client_id))
        .where(
            tuple_(h.company_id, h.id).in_([(row.company_id, row.history_id) for row in leased]),
            h.status == Status.INTERVAL_SELECTED,
        )
    )
    found = {(row.company_id, row.id): row for row in session.execute(statement)}
    rows = []
    for lease in leased:
        fact = found.get((lease.company_id, lease.history_id))
        if fact is not None:
            request = MessageRequest.of(fact.company_name, fact, client_name=fact.client_name)
            rows.append(WaitingRow(fact.company_id, fact.id, fact.campaign_run_id, lease.attempts, request))
    return rows


def _drain(
    rt: Runtime, *, now: datetime, reason: str, on_written: Callable[[Session, list[Pair]], None], more: bool
) -> BatchRun:
    """Gemini is closed for everybody: the waiting rows take their templates now, without any request."""
    token = uuid.uuid4().hex
    rows = _lease(rt, now=now, token=token, limit=DRAIN_ROWS)
    composition = Composition([template_message(row.request, reason=reason) for row in rows], [])
    result = _store(rt, rows, composition, now=now, token=token, on_written=on_written)
    result.reason = f"closed: {reason}"
    result.next_in = 0.0 if more else None
    return result


def _store(
    rt: Runtime,
    rows: Sequence[WaitingRow],
    composition: Composition,
    *,
    now: datetime,
    token: str | None,
    on_written: Callable[[Session, list[Pair]], None],
) -> BatchRun:
    """Write each row's message (or give it back to wait), record the requests' usage, in one transaction.

    With a `token` (a queued batch) only the rows this batch still holds are written: removing them from the queue
    under the token is what claims them, so a batch that ran twice, or whose lease passed, writes nothing twice."""
    result = BatchRun("written")
    max_attempts = rt.settings.gemini_max_attempts
    pairs = list(zip(rows, composition.messages, strict=True))
    waiting = [
        (row, message) for row, message in pairs if isinstance(message, Requeue) and row.attempts + 1 < max_attempts
    ]
    back = [row.pair for row, _ in waiting]
    writes = [(row, message) for row, message in pairs if row.pair not in back]
    with rt.session() as session:
        if token is not None:
            kept = gemini_queue.finish(session, token=token, rows=[row.pair for row, _ in writes])
            writes = [(row, message) for row, message in writes if row.history_id in kept]
            gemini_queue.give_back(session, token=token, rows=back)
        for row, message in writes:
            if isinstance(message, Requeue):
                # Given back too often: the quota that blocked it does not clear in time for this message.
                message = template_message(row.request, reason=message.reason)
            if record_message(session, pair=row.pair, composed=message, now=now):
                result.written.append(row.pair)
        gemini_usage.record(session, _shares(rows, composition.requests, now=now))
        on_written(session, result.written)
    result.requeued = len(back)
    if back:
        # A per-minute quota or backoff that blocks every worker, or no limiter slot within the batch's budget.
        reasons = sorted({message.reason for _, message in waiting})
        log.info("gemini rows wait for a later batch", extra={"rows": len(back), "reasons": ",".join(reasons)})
    return result


def _shares(rows: Sequence[WaitingRow], requests: Sequence[RequestRecord], *, now: datetime) -> list[RequestShare]:
    """Each request's usage split by the company (and run) of the rows it asked for."""
    shares = []
    for request in requests:
        groups: dict[tuple[int, int | None], list[int]] = {}
        for index in request.positions:
            row = rows[index]
            groups.setdefault((row.company_id, row.campaign_run_id), []).append(index)
        weights = [len(indices) for indices in groups.values()]
        usage = request.usage
        splits = zip(
            gemini_usage.apportion(usage.prompt, weights),
            gemini_usage.apportion(usage.output, weights),
            gemini_usage.apportion(usage.thinking, weights),
            strict=True,
        )
        for ((company_id, run_id), indices), (prompt, output, thinking) in zip(groups.items(), splits, strict=True):
            shares.append(
                RequestShare(
                    request_key=request.key,
                    company_id=company_id,
                    campaign_run_id=run_id,
                    requested_at=now,
                    model=request.model,
                    thinking=request.thinking,
                    items=len(indices),
                    batch_items=len(request.positions),
                    written=sum(index in request.written for index in indices),
                    prompt_tokens=prompt,
                    output_tokens=output,
                    thinking_tokens=thinking,
                    outcome=request.outcome,
                    finish_reason=request.finish_reason,
                )
            )
    return shares
