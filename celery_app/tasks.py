"""Thin Celery tasks: each opens the runtime, calls the domain, and enqueues what comes next after the commit.

Tasks take ids, never data: `(company_id, history_id)` for the per-client chain. A step that ends the chain
raises `Ignore` (Celery's way to stop a chain without marking a failure); a step that must wait retries
itself with a countdown, never sleeping in a worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import redis
from celery import Task, chain
from celery.exceptions import Ignore

from celery_app.app import app, runtime
from reactivation.compliance import retention
from reactivation.flow import campaign, pipeline, planning, sweeps
from reactivation.flow.pipeline import Continue, Outcome, RetryLater, Stop
from reactivation.outcomes import attribution
from reactivation.replies.handler import handle_reply as handle_reply_domain
from reactivation.replies.handler import mark_booking_created as mark_booking_created_domain
from reactivation.storage.companies import load_company
from reactivation.storage.company_settings import CompanyConfigError
from reactivation.storage.db import TRANSIENT_DB_ERRORS
from reactivation.timing import averages

log = logging.getLogger(__name__)

# The chain every claimed row goes down, in order.
CHAIN = ("select_interval", "generate_message", "send_message", "persist_history", "save_context")
# Retries a step may take for rate limits and transient errors before it gives up (each bounded in time).
MAX_STEP_RETRIES = 50
# The database or Redis went away under a task (a failover, a restart, a killed connection): its transaction was
# rolled back and every task here is idempotent, so it runs again on fresh connections after a short wait.
TRANSIENT_INFRA_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_DB_ERRORS, redis.ConnectionError, redis.TimeoutError)
MAX_INFRA_RETRIES = 8


def _now() -> datetime:
    return datetime.now(UTC)


def chain_from(step: str, company_id: int, history_id: int) -> Any:
    """The rest of a row's chain from `step` on, as one Celery chain of immutable signatures."""
    names = CHAIN[CHAIN.index(step) :]
    return chain(
        *(app.signature(f"reactivation.{name}", args=(company_id, history_id), immutable=True) for name in names)
    )


def dispatch_chains(company_id: int, history_ids: list[int], step: str = "select_interval") -> None:
    for history_id in history_ids:
        chain_from(step, company_id, history_id).apply_async()


def _infra_countdown(task: Task) -> float:
    """1, 2, 4 … seconds, within the longest countdown the broker's visibility timeout allows."""
    return pipeline.backoff(task.request.retries + 1, base=1.0, cap=runtime().settings.max_countdown_seconds)


def _run_step(func: Callable[..., Outcome], task: Task, company_id: int, history_id: int) -> Outcome:
    now = _now()
    try:
        return func(runtime(), company_id=company_id, history_id=history_id, now=now)
    except TRANSIENT_INFRA_ERRORS as exc:
        log.warning(
            "step cut by a lost connection; retrying",
            extra={"task": task.name, "history_id": history_id, "company_id": company_id, "error": type(exc).__name__},
        )
        return RetryLater(_infra_countdown(task), "database or redis unavailable")
    except CompanyConfigError as exc:
        return pipeline.fail_unsent(runtime(), company_id=company_id, history_id=history_id, error=str(exc), now=now)


def _follow(task: Task, outcome: Outcome) -> str:
    """Turn a step's outcome into Celery's terms."""
    if isinstance(outcome, Continue):
        return "continue"
    if isinstance(outcome, RetryLater):
        raise task.retry(countdown=max(0.1, outcome.countdown), max_retries=MAX_STEP_RETRIES)
    assert isinstance(outcome, Stop)
    raise Ignore(outcome.reason)


def _step(func: Callable[..., Outcome]) -> Callable[[Task, int, int], str]:
    def run(self: Task, company_id: int, history_id: int) -> str:
        outcome = _run_step(func, self, company_id, history_id)
        if self.request.is_eager:
            # The in-process emulation (embedded default, --inline) has no broker to hold a countdown:
            # the one process waits for the slot itself, a bounded number of times.
            for _ in range(MAX_STEP_RETRIES):
                if not isinstance(outcome, RetryLater):
                    break
                time.sleep(outcome.countdown)
                outcome = _run_step(func, self, company_id, history_id)
        return _follow(self, outcome)

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


select_interval = app.task(name="reactivation.select_interval", bind=True)(_step(pipeline.select_interval))
generate_message = app.task(
    name="reactivation.generate_message",
    bind=True,
    # The Gemini budget per message plus room for the database around it.
    soft_time_limit=runtime().settings.gemini_budget_seconds + 60,
    time_limit=runtime().settings.gemini_budget_seconds + 90,
)(_step(pipeline.generate_message))
send_message = app.task(name="reactivation.send_message", bind=True)(_step(pipeline.send_message))
persist_history = app.task(name="reactivation.persist_history", bind=True)(_step(pipeline.persist_history))


@app.task(name="reactivation.save_context", bind=True, max_retries=pipeline.MAX_CONTEXT_ATTEMPTS)
def save_context(self: Task, company_id: int, history_id: int) -> str:
    """Hand the conversation to the AI admin through Redis."""
    try:
        outcome = pipeline.save_handover(
            runtime(), company_id=company_id, history_id=history_id, now=_now(), attempt=self.request.retries + 1
        )
    except TRANSIENT_DB_ERRORS:
        raise self.retry(countdown=_infra_countdown(self)) from None
    if isinstance(outcome, RetryLater):
        raise self.retry(countdown=outcome.countdown)
    return outcome.reason if isinstance(outcome, Stop) else "continue"


@app.task(name="reactivation.run_campaign", bind=True, soft_time_limit=900, time_limit=960)
def run_campaign(self: Task, company_id: int, run_date: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Select today's due clients of a company, claim a row each, and start one chain per new row."""
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
    except TRANSIENT_DB_ERRORS:
        # Claims are idempotent: a run cut half-way claims the rest when it runs again (the run is `running`
        # by now, so no planner would start it again).
        raise self.retry(countdown=_infra_countdown(self), max_retries=MAX_INFRA_RETRIES) from None
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
    rt = runtime()
    now = _now()
    with rt.session() as session:
        planned = planning.plan_runs(session, now=now)
        stale = planning.stale_planned_runs(session, now=now)
    for run in [*planned, *stale]:
        run_campaign.delay(run.company_id, run.run_date.isoformat())
    return len(planned)


@app.task(name="reactivation.sweep")
def sweep() -> dict[str, int]:
    """Resolve rows stuck in an in-flight status (see reactivation.flow.sweeps)."""
    rt = runtime()
    totals = {"unknown": 0, "expired": 0, "resumed": 0, "handover": 0}
    with rt.session() as session:
        companies = sweeps.company_ids(session)
    for company_id in companies:
        with rt.session() as session:
            found = sweeps.sweep_company(session, company_id=company_id, now=_now())
        for company, history_id, step in found.resume:
            chain_from(step, company, history_id).apply_async()
        for company, history_id in found.handover:
            save_context.delay(company, history_id)
        totals["unknown"] += found.unknown
        totals["expired"] += found.expired
        totals["resumed"] += len(found.resume)
        totals["handover"] += len(found.handover)
    return totals


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
    """Hourly: start the averages job for each company whose local time is Sunday 03:xx."""
    rt = runtime()
    now = _now()
    with rt.session() as session:
        companies = sweeps.company_ids(session)

        def start_if_due(company_id: int) -> int:
            local = load_company(session, company_id=company_id).local_now(now)
            if local.weekday() == 6 and local.hour == 3:
                calculate_service_averages.delay(company_id)
                return 1
            return 0

        return _per_company(companies, start_if_due, job="plan_averages")


@app.task(name="reactivation.attribute_bookings")
def attribute_bookings(company_id: int | None = None) -> int:
    """Link bookings made within the attribution window to the message before them."""
    rt = runtime()
    with rt.session() as session:
        companies = [company_id] if company_id is not None else sweeps.company_ids(session)

    def attribute(company: int) -> int:
        with rt.session() as session:
            return attribution.attribute_bookings(session, company_id=company, now=_now())

    return _per_company(companies, attribute, job="attribute_bookings")


@app.task(name="reactivation.retention")
def retention_sweep() -> int:
    """Anonymize message texts and phones older than each company's retention period."""
    rt = runtime()
    with rt.session() as session:
        companies = sweeps.company_ids(session)

    def anonymize(company: int) -> int:
        with rt.session() as session:
            return retention.anonymize_old_history(session, company_id=company, now=_now())

    return _per_company(companies, anonymize, job="retention")


def _per_company(companies: list[int], work: Callable[[int], int], *, job: str) -> int:
    """The sum of `work` over the companies; one company's unusable settings are logged and skipped, so that they
    never stop the job for every company after it."""
    total = 0
    for company_id in companies:
        try:
            total += work(company_id)
        except CompanyConfigError as exc:
            log.error(
                "company skipped: invalid settings", extra={"job": job, "company_id": company_id, "error": exc.problem}
            )
    return total


@app.task(name="reactivation.handle_reply")
def handle_reply(company_id: int, phone: str, text: str) -> dict[str, Any]:
    """The AI admin's call when a client writes back: classify, record, and return the enriched prompt."""
    return handle_reply_domain(runtime(), company_id=company_id, phone=phone, text=text, now=_now())


@app.task(name="reactivation.mark_booking_created")
def mark_booking_created(company_id: int, phone: str, booking_id: int) -> dict[str, Any]:
    """The AI admin's call after a booking: link it to the message and clear the pending action."""
    return mark_booking_created_domain(runtime(), company_id=company_id, phone=phone, booking_id=booking_id, now=_now())
