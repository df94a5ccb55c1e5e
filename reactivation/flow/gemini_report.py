"""Gemini in a campaign's status: what the run's messages cost, what still waits for a batch, and whether Gemini is
paused, blocked or behind an open breaker for every worker (with the setting to fix)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from reactivation.messaging.gemini_errors import CAUSES
from reactivation.messaging.gemini_gate import PACIFIC, GateState
from reactivation.storage import gemini_queue, history
from reactivation.storage.gemini_usage import UsageSummary, usage_summary
from reactivation.storage.models import CampaignRun

if TYPE_CHECKING:
    from reactivation.runtime import Runtime


@dataclass(frozen=True)
class GeminiReport:
    """One company's run as far as Gemini goes."""

    enabled: bool
    usage: UsageSummary
    waiting: int  # the company's rows waiting for a batch now
    gate: GateState | None  # None without a key
    templates: dict[str, int] = field(default_factory=dict)  # the run's template messages by why Gemini did not write


def gemini_report(rt: Runtime, *, company_id: int, run_date: date, now: datetime) -> GeminiReport:
    """The real run's usage (by campaign run; a dry run the same day asks Gemini nothing), the company's queue and
    the shared gate's state."""
    with rt.session() as session:
        run_id = session.scalar(
            select(CampaignRun.id).where(
                CampaignRun.company_id == company_id, CampaignRun.run_date == run_date, CampaignRun.dry_run.is_(False)
            )
        )
        usage = usage_summary(session, company_id=company_id, run_id=run_id) if run_id is not None else UsageSummary()
        templates = history.template_reasons(session, company_id=company_id, run_id=run_id) if run_id else {}
        waiting = gemini_queue.waiting(session, company_id=company_id)
    enabled = rt.batch_writer is not None
    return GeminiReport(enabled, usage, waiting, rt.gemini_gate.state(now) if enabled else None, templates)


def _counts(counts: dict[str, int]) -> str:
    """ "connection_error 57, ok 3": the biggest first."""
    return ", ".join(f"{key} {count}" for key, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC ({moment.astimezone(PACIFIC):%H:%M} Pacific)"


def describe(report: GeminiReport) -> list[str]:
    """The report as lines an operator reads under the status table (nothing when Gemini played no part)."""
    usage = report.usage
    if not report.enabled and not usage.requests:
        return []
    lines = []
    if usage.requests:
        per_message = usage.per_message(usage.tokens)
        thinking = usage.per_message(usage.thinking_tokens)
        lines.append(
            f"Gemini: {usage.requests} request(s) for this run ({usage.request_share:.1f} by its share of the "
            f"batches), {usage.written} message(s) written, {usage.tokens:,} tokens"
            + (f" ({per_message:g} per message, {thinking:g} of them thinking)" if per_message is not None else "")
        )
        failed = {outcome: count for outcome, count in usage.outcomes.items() if outcome != "ok"}
        if failed:
            lines.append(f"Gemini requests by outcome: {_counts(usage.outcomes)}")
    else:
        lines.append("Gemini: no request for this run yet")
    if report.templates:
        total = sum(report.templates.values())
        lines.append(f"Templates instead of Gemini: {total} message(s) ({_counts(report.templates)})")
    if report.waiting:
        lines.append(f"Gemini: {report.waiting} row(s) of this company waiting for a batch")
    gate = report.gate
    if gate is None:
        return lines
    limit = f" of {gate.daily_limit:,} (GEMINI_DAILY_LIMIT)" if gate.daily_limit else ""
    lines.append(
        f"Gemini today ({gate.day:%Y-%m-%d} Pacific, every company): {gate.requests_today:,} request(s){limit}, "
        f"{gate.checks_today:,} limiter check(s)"
    )
    if gate.paused is not None and gate.paused.until is not None:
        lines.append(
            f"Gemini PAUSED for every worker until {_when(gate.paused.until)}: {gate.paused.reason}; "
            "messages use the templates meanwhile"
        )
    if gate.breaker is not None and gate.breaker.until is not None:
        cause = CAUSES.get(gate.breaker.reason)
        fix = f"; {cause.advice}" if cause else ""
        state = (
            "half-open: the next request probes"
            if gate.breaker_half_open
            else f"open until {_when(gate.breaker.until)}"
        )
        lines.append(f"Gemini breaker {state} ({gate.breaker.reason}){fix}")
    if gate.blocked_until is not None:
        lines.append(f"Gemini blocked for every worker until {_when(gate.blocked_until)} (a per-minute quota)")
    return lines
