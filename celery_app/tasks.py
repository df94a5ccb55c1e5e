"""Thin Celery tasks: each opens a session, calls the domain, commits, and only then sends what comes next.

Tasks take ids: `(company_id, history_id)` for the per-client chain, whose tasks also carry the chain's facts
(reactivation.flow.chain_facts: the company's settings and the client's facts, read in bulk once per claim batch or
Gemini batch, as a small JSON keyword `facts`, shown in logs and Flower as the company's id only). A step that ends
the chain raises `Ignore` (Celery's way to stop a chain without marking a failure); a step that must wait retries
itself with a countdown, never sleeping in a worker. A generate step that queues its row for a Gemini batch ends its
chain as a success; the batching task (`write_messages`, queue gemini) sends the rest of the chain once the message
is written. Every task is a ReactivationTask (celery_app.base), retried
when the database or Redis went away under it. Follow-up tasks are handed to `send_after_commit` inside the
transaction that wrote what they will read: they leave once it has committed, and never if it rolled back.
The periodic jobs that work per company send one task per company.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from celery import Task, chain
from celery.canvas import Signature
from celery.exceptions import Ignore
from sqlalchemy.orm import Session

from celery_app.app import app, runtime
from celery_app.config import task_name
from celery_app.worker_logs import RateLimitWait, waits
from reactivation.compliance import retention
from reactivation.core.vocabulary import ChainStep
from reactivation.flow import batching, campaign, pipeline, planning, sweeps
from reactivation.flow.chain_facts import ChainFacts, load_facts
from reactivation.flow.pipeline import Continue, Handoff, Outcome, RetryLater, Stop
from reactivation.handover.pending import hand_over_owed
from reactivation.outcomes import attribution
from reactivation.replies.handler import handle_reply as handle_reply_domain
from reactivation.storage.companies import company_ids
from reactivation.storage.company_settings import CompanyConfigError
from reactivation.storage.db import after_commit
from reactivation.timing import averages, due_dates

log = logging.getLogger(__name__)

# Retries a step may take for rate limits and transient errors before it gives up (each bounded in time).
MAX_STEP_RETRIES = 50


def _now() -> datetime:
    return datetime.now(UTC)


def chain_from(step: ChainStep, company_id: int, history_id: int, facts: ChainFacts | None = None) -> Any:
    """The rest of a row's chain from `step` on, as one Celery chain of immutable signatures, carrying `facts`
    (without them each step reads what it needs)."""
    kwargs = {"facts": facts.to_json()} if facts is not None else {}
    # The facts hold a first name: logs and Flower show the company instead.
    shown = {"kwargsrepr": f"{{'facts': 'company {company_id}'}}"} if facts is not None else {}
    return chain(
        *(
            app.signature(task_name(name), args=(company_id, history_id), kwargs=kwargs, immutable=True, **shown)
            for name in step.and_after()
        )
    )


def chains_with_facts(session: Session, pairs: list[tuple[int, int]], step: ChainStep) -> list[Any]:
    """The chains of these rows from `step` on, their facts read in one go (a row whose company's settings are
    invalid gets none: its steps read them and end it `failed`)."""
    facts = load_facts(session, pairs)
    return [
        chain_from(step, company_id, history_id, facts.get((company_id, history_id)))
        for company_id, history_id in pairs
    ]


def dispatch_chains(company_id: int, history_ids: list[int]) -> None:
    """Start the chains of rows just claimed (committed), with their facts; with Gemini on (and workers to batch),
    queue the rows for Gemini batches in bulk instead: each batch starts the chains of the rows it wrote."""
    rt = runtime()
    if pipeline.written_by_batches(rt) and not app.conf.task_always_eager:
        with rt.session() as session:
            queued = batching.queue_claimed(session, company_id=company_id, history_ids=history_ids, now=_now())
        if queued:
            wake_batches()
        history_ids = sorted(set(history_ids) - set(queued))
    if not history_ids:
        return
    with rt.session() as session:
        pairs = [(company_id, history_id) for history_id in history_ids]
        chains = chains_with_facts(session, pairs, ChainStep.SELECT_INTERVAL)
    for started in chains:
        started.apply_async()


def send_after_commit(session: Session, signatures: Iterable[Signature]) -> None:
    """Send these tasks once the session's transaction has committed; never when it rolls back."""
    for signature in signatures:
        after_commit(session, signature.apply_async)


def _run_step(
    func: Callable[..., Outcome], company_id: int, history_id: int, facts: dict[str, Any] | None = None
) -> Outcome:
    now = _now()
    carried = ChainFacts.from_json(facts) if facts is not None else None
    try:
        return func(runtime(), company_id=company_id, history_id=history_id, now=now, facts=carried)
    except CompanyConfigError as exc:
        return pipeline.fail_unsent(runtime(), company_id=company_id, history_id=history_id, error=str(exc), now=now)


def _follow(task: Task, outcome: Outcome) -> str:
    """Turn a step's outcome into Celery's terms."""
    if isinstance(outcome, Continue):
        return "continue"
    if isinstance(outcome, Handoff):
        # The rest of this chain is sent by whoever took it over; the task itself succeeded.
        task.request.chain = None
        return outcome.reason
    if isinstance(outcome, RetryLater):
        countdown = max(0.1, outcome.countdown)
        if outcome.limit is None:
            raise task.retry(countdown=countdown)
        _note_wait(task, outcome.limit, countdown)
        raise task.retry(countdown=countdown, exc=RateLimitWait(outcome.limit, countdown))
    assert isinstance(outcome, Stop)
    raise Ignore(outcome.reason)


def _note_wait(task: Task, limit: str, countdown: float) -> None:
    """A rate-limit wait: a DEBUG line when the task first waits, and a count for the worker's minute summary."""
    if task.request.retries == 0:
        log.debug(
            "waiting for a rate limit",
            extra={"task": task.name, "ids": list(task.request.args or ()), "limit": limit, "countdown": countdown},
        )
    waits.record(limit)


def _step(func: Callable[..., Outcome]) -> Callable[..., str]:
    def run(self: Task, company_id: int, history_id: int, facts: dict[str, Any] | None = None) -> str:
        outcome = _run_step(func, company_id, history_id, facts)
        if self.request.is_eager:
            # The in-process emulation (embedded default, --inline) has no broker to hold a countdown:
            # the one process waits for the slot itself, a bounded number of times.
            for _ in range(MAX_STEP_RETRIES):
                if not isinstance(outcome, RetryLater):
                    break
                time.sleep(outcome.countdown)
                outcome = _run_step(func, company_id, history_id, facts)
        return _follow(self, outcome)

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def _chain_task(step: ChainStep, func: Callable[..., Outcome], **options: Any) -> Any:
    """The Celery task of one chain step."""
    return app.task(name=task_name(step), bind=True, max_retries=MAX_STEP_RETRIES, **options)(_step(func))


select_interval = _chain_task(ChainStep.SELECT_INTERVAL, pipeline.select_interval)


@app.task(
    name=task_name(ChainStep.GENERATE_MESSAGE),
    bind=True,
    max_retries=MAX_STEP_RETRIES,
    # Writing at once in one process (eager) takes a Gemini batch's budget; queueing takes a moment.
    soft_time_limit=runtime().settings.gemini_budget_seconds + 60,
    time_limit=runtime().settings.gemini_budget_seconds + 90,
)
def generate_message(self: Task, company_id: int, history_id: int, facts: dict[str, Any] | None = None) -> str:
    """Write the client's message: queued for a Gemini batch (which continues the chain), or at once (templates;
    a run in one process)."""
    step = partial(pipeline.generate_message, inline=self.request.is_eager)
    outcome = _run_step(step, company_id, history_id, facts)
    if isinstance(outcome, Handoff):
        wake_batches()
    return _follow(self, outcome)


def wake_batches(countdown: float = 0.0) -> None:
    """Make sure `write_messages` runs (after `countdown` seconds): sent unless one is scheduled already, so that one
    run at a time asks the limiter however many rows wait."""
    if app.conf.task_always_eager:
        return  # in one process every message is written at once; nothing waits for a batch
    rt = runtime()
    if batching.mark_scheduled(rt, countdown=countdown):
        write_messages.apply_async(countdown=max(0.0, countdown))


_BATCH_LIMIT = runtime().settings.gemini_budget_seconds + runtime().settings.gemini_timeout_seconds


@app.task(name="reactivation.write_messages", soft_time_limit=_BATCH_LIMIT + 30, time_limit=_BATCH_LIMIT + 45)
def write_messages() -> dict[str, Any]:
    """Serve the Gemini queue once: a batch of waiting rows written (across companies, fairly), their chains
    continued; then look again when there is something to look at."""
    rt = runtime()
    batching.clear_scheduled(rt)
    result = batching.write_batch(
        rt,
        now=_now(),
        on_leased=wake_batches,
        on_written=lambda session, pairs: send_after_commit(
            session, chains_with_facts(session, pairs, ChainStep.SEND_MESSAGE)
        ),
    )
    if result.next_in is not None:
        wake_batches(min(result.next_in, rt.settings.max_countdown_seconds))
    return {"reason": result.reason, "written": len(result.written), "requeued": result.requeued}


send_message = _chain_task(
    ChainStep.SEND_MESSAGE,
    pipeline.send_message,
    # One provider request plus room for the database: a `sending` row outlives this only if its worker died.
    soft_time_limit=runtime().settings.whatsapp_timeout_seconds + 30,
    time_limit=runtime().settings.whatsapp_timeout_seconds + 60,
)
persist_history = _chain_task(ChainStep.PERSIST_HISTORY, pipeline.persist_history)


@app.task(name=task_name(ChainStep.SAVE_CONTEXT), bind=True, max_retries=pipeline.MAX_CONTEXT_ATTEMPTS)
def save_context(self: Task, company_id: int, history_id: int, facts: dict[str, Any] | None = None) -> str:
    """Hand the conversation to the AI admin through Redis (it reads the sent row; the facts are not needed)."""
    outcome = pipeline.save_handover(
        runtime(), company_id=company_id, history_id=history_id, now=_now(), attempt=self.request.retries + 1
    )
    if isinstance(outcome, RetryLater):
        raise self.retry(countdown=outcome.countdown)
    return outcome.reason if isinstance(outcome, Stop) else "continue"


@app.task(name="reactivation.run_campaign", bind=True, soft_time_limit=900, time_limit=960)
def run_campaign(self: Task, company_id: int, run_date: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Select today's due clients of a company, claim a row each, and start one chain per new row.

    Claims are idempotent: a run cut half-way (a lost connection retries it) claims the rest when it runs again;
    the run is `running` by then, so no planner starts it a second time."""
    try:
        result = campaign.run_campaign(
            runtime(),
            company_id=company_id,
            run_date=date.fromisoformat(run_date) if run_date else None,
            now=_now(),
            dry_run=dry_run,
            on_claimed=lambda ids: dispatch_chains(company_id, ids),
        )
    except CompanyConfigError as exc:
        # Nothing was claimed; retrying cannot help until someone fixes the settings, which the error names.
        log.error("campaign not run: invalid company settings", extra={"company_id": company_id, "error": exc.problem})
        return {"company_id": company_id, "error": str(exc)}
    return {
        "company_id": company_id,
        "run_date": result.run_date.isoformat(),
        "due": result.due,
        "claimed": len(result.claimed),
        "holdout": result.holdout,
        "skipped": result.skipped,
        "over_limit": result.over_limit,
    }


@app.task(name="reactivation.plan_campaigns")
def plan_campaigns() -> int:
    """Beat's tick: create today's run for each company whose local send time has come, and start it."""
    now = _now()
    with runtime().session() as session:
        planned = planning.plan_runs(session, now=now)
        stale = planning.stale_planned_runs(session, now=now)
        send_after_commit(
            session, (run_campaign.si(run.company_id, run.run_date.isoformat()) for run in [*planned, *stale])
        )
    return len(planned)


def _fan_out(task: Task) -> int:
    """One `task(company_id)` per company; returns how many were sent."""
    with runtime().session() as session:
        companies = company_ids(session)
        send_after_commit(session, (task.si(company_id) for company_id in companies))
    return len(companies)


def _company_job(job: str, company_id: int, work: Callable[[Session], int]) -> int:
    """`work` on one company in one transaction; a company whose settings are unusable is logged by id and skipped
    (0), so that the job's other companies never notice."""
    try:
        with runtime().session() as session:
            return work(session)
    except CompanyConfigError as exc:
        log.error(
            "company skipped: invalid settings", extra={"job": job, "company_id": company_id, "error": exc.problem}
        )
        return 0


@app.task(name="reactivation.sweep")
def sweep() -> int:
    """Every minute: one `sweep_company` per company."""
    return _fan_out(sweep_company)


@app.task(name="reactivation.sweep_company")
def sweep_company(company_id: int) -> dict[str, int]:
    """Resolve one company's rows stuck in an in-flight status (see reactivation.flow.sweeps), then repeat the
    hand-overs Redis still owes after a reply or booking recorded while it was down."""
    return sweep_and_resume(company_id, now=_now())


def sweep_and_resume(company_id: int, *, now: datetime) -> dict[str, int]:
    """Sweep one company as of `now`, send what it found to resume (after the commit) and repeat the hand-overs
    Redis owes; what it did, counted. The task above and `reactivation sweep` both run this."""
    with runtime().session() as session:
        found = sweeps.sweep_company(session, company_id=company_id, now=now)
        resumed = (chain_from(step, company, history_id) for company, history_id, step in found.resume)
        handovers = (save_context.si(company, history_id) for company, history_id in found.handover)
        send_after_commit(session, [*resumed, *handovers])
    if found.gemini_waiting:
        # Rows wait for a Gemini batch: one wake-up serves them all (a lost batching task is replaced here).
        wake_batches()
    owed = hand_over_owed(runtime(), company_id=company_id, now=now)
    return {
        "resent": found.resent,
        "unknown": found.unknown,
        "expired": found.expired,
        "resumed": len(found.resume),
        "handover": len(found.handover),
        "handover_repeated": len(owed.done),
        "gemini_waiting": int(found.gemini_waiting),
    }


@app.task(name="reactivation.withdraw_handover", bind=True, max_retries=pipeline.MAX_CONTEXT_ATTEMPTS)
def withdraw_handover(self: Task, company_id: int, history_id: int, resend: int) -> str:
    """Take back the AI admin's pendingAction for a message the provider reported not delivered."""
    outcome = pipeline.withdraw_failed_handover(
        runtime(), company_id=company_id, history_id=history_id, resend=resend, attempt=self.request.retries + 1
    )
    if isinstance(outcome, RetryLater):
        raise self.retry(countdown=outcome.countdown)
    return outcome.reason if isinstance(outcome, Stop) else "continue"


@app.task(name="reactivation.calculate_service_averages", soft_time_limit=900, time_limit=960)
def calculate_service_averages(company_id: int) -> dict[str, Any]:
    """Recompute the salon's service medians and its clients' own rhythms."""
    rt = runtime()
    with rt.session() as session:
        return averages.calculate_averages(
            session, company_id=company_id, now=_now(), workers=rt.settings.averages_workers
        ).as_dict()


@app.task(name="reactivation.plan_averages")
def plan_averages() -> int:
    """Hourly: one averages job for each company whose local time is Sunday 03:xx."""
    with runtime().session() as session:
        due = planning.averages_due(session, now=_now())
        send_after_commit(session, (calculate_service_averages.si(company_id) for company_id in due))
    return len(due)


@app.task(name="reactivation.attribute_bookings")
def attribute_bookings(company_id: int | None = None) -> int:
    """Link bookings made within the attribution window to the message before them: one company's, or, without
    one (beat's hourly call), one task per company."""
    if company_id is None:
        return _fan_out(attribute_bookings)
    return _company_job(
        "attribute_bookings",
        company_id,
        lambda session: attribution.attribute_bookings(session, company_id=company_id, now=_now()),
    )


@app.task(name="reactivation.retention")
def retention_sweep() -> int:
    """Nightly: one `retention_company` per company."""
    return _fan_out(retention_company)


@app.task(name="reactivation.retention_company")
def retention_company(company_id: int) -> int:
    """Anonymize one company's message texts and phones older than its retention period."""
    return _company_job(
        "retention",
        company_id,
        lambda session: retention.anonymize_old_history(session, company_id=company_id, now=_now()),
    )


@app.task(name="reactivation.refresh_due_dates")
def refresh_due_dates_sweep() -> int:
    """Nightly: one `refresh_due_dates_company` per company."""
    return _fan_out(refresh_due_dates_company)


@app.task(name="reactivation.refresh_due_dates_company")
def refresh_due_dates_company(company_id: int) -> int:
    """Recompute one company's kept due dates that no longer fit its clients (a join on the kept lapse)."""
    return _company_job(
        "refresh_due_dates",
        company_id,
        lambda session: due_dates.refresh(session, company_id=company_id, now=_now()).recomputed,
    )


@app.task(name="reactivation.handle_reply")
def handle_reply(company_id: int, phone: str, text: str) -> dict[str, Any]:
    """The AI admin's call when a client writes back: classify, record, and return the enriched prompt."""
    return handle_reply_domain(runtime(), company_id=company_id, phone=phone, text=text, now=_now())


@app.task(name="reactivation.mark_booking_created")
def mark_booking_created(company_id: int, phone: str, booking_id: int) -> dict[str, Any]:
    """The AI admin's call after a booking: link it to the message and clear the pending action."""
    return attribution.mark_booking_created(
        runtime(), company_id=company_id, phone=phone, booking_id=booking_id, now=_now()
    )
