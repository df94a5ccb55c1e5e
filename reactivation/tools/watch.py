"""Watching a campaign: what a dispatch claimed, a run's rows by status with its limits and estimate, and
`campaign status --follow`, which refreshes a progress bar until nothing is in flight.

The follow loop is bounded (it ends when nothing moves, after `timeout` seconds, or on Ctrl-C) and takes its clock
and its pause from the caller, so that a test drives it without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from reactivation.core.settings import RateLimit, Settings
from reactivation.core.vocabulary import RunStatus, Status
from reactivation.flow.progress import Limits, RunProgress, RunRecord
from reactivation.storage.companies import CompanyConfig

# How often --follow reads the run again: often enough to see the sender's pace, cheap for the database.
FOLLOW_INTERVAL_SECONDS = 2.0
_BAR_WIDTH = 40


class FollowEnd(StrEnum):
    """Why the watch stopped: the run has nothing in flight, the timeout passed, or the operator pressed Ctrl-C."""

    FINISHED = "finished"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class ClaimReport:
    """What one dispatch of a run claimed, from the run's record before and after it."""

    company_id: int
    run_date: date
    before: RunRecord | None
    after: RunRecord | None
    daily_limit: int

    @property
    def claimed_now(self) -> int:
        """Rows this dispatch claimed: the run's count after it less the count before."""
        if self.after is None:
            return 0
        return (self.after.claimed or 0) - ((self.before.claimed or 0) if self.before is not None else 0)

    def text(self) -> str:
        """One line for the operator: how many clients the dispatch claimed, or why it claimed none."""
        after, before = self.after, self.before
        if after is None or after.status != RunStatus.DONE:
            return f"company {self.company_id}, {self.run_date:%Y-%m-%d}: the run has not finished claiming yet"
        claimed_now = self.claimed_now
        due = after.due or 0
        if claimed_now > 0:
            return (
                f"claimed {claimed_now} client(s) of the {due} most valuable due for company {self.company_id} on "
                f"{self.run_date:%Y-%m-%d} (held out {after.holdout or 0}; daily limit {self.daily_limit})"
            )
        if before is not None and before.status == RunStatus.DONE:
            return (
                f"nothing to claim: company {self.company_id} already ran on {self.run_date:%Y-%m-%d} "
                f"({before.claimed or 0} claimed then)"
            )
        if due == 0:
            return f"nothing to claim: no client of company {self.company_id} is due on {self.run_date:%Y-%m-%d}"
        if (after.claimed or 0) >= self.daily_limit:
            return f"nothing to claim: company {self.company_id} reached its daily limit of {self.daily_limit}"
        return (
            f"nothing to claim: the {due} due client(s) of company {self.company_id} were held out or skipped "
            f"(see the reasons below)"
        )


def run_limits(settings: Settings, company: CompanyConfig) -> Limits:
    """The limits that pace this company's run: its sender's, Gemini's when a key is set, the daily limit."""
    return Limits(
        whatsapp=settings.whatsapp_limit,
        gemini=settings.gemini_limit if settings.gemini_enabled else None,
        daily_limit=company.settings.daily_limit,
        sender=company.settings.sender_id or str(company.id),
    )


def status_table(progress: RunProgress) -> Table:
    """The run's rows by status and reason (final rows' reasons: why skipped, what failed)."""
    table = Table(title=f"company {progress.company_id}, {progress.run_date:%Y-%m-%d}")
    for column in ("status", "reason", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for status, reason, count in progress.reasons:
        table.add_row(status, reason or "", str(count))
    if not progress.reasons:
        table.add_row("no rows", "", "0")
    return table


def summary_lines(progress: RunProgress, tz: ZoneInfo) -> list[str]:
    """The run in a few lines: its state, what is in flight, what waits for the window, the limits and the ETA."""
    run = progress.run
    if run is None:
        return [f"no run of company {progress.company_id} on {progress.run_date:%Y-%m-%d} yet"]
    limits = progress.limits
    lines = [
        f"run {run.status}: due read {run.due if run.due is not None else '?'} (the most valuable first), "
        f"claimed {run.claimed or 0} "
        f"(daily limit {limits.daily_limit}), held out {run.holdout or 0}"
    ]
    if progress.in_flight:
        lines.append(f"in flight {progress.in_flight}: {progress.moving} moving, {_waiting(progress, tz)}")
    gemini = f"Gemini {_rate(limits.gemini)} for every company" if limits.gemini else "Gemini off (templates)"
    lines.append(f"limits: WhatsApp {_rate(limits.whatsapp)} for sender {limits.sender}; {gemini}")
    eta = progress.eta()
    if eta is not None:
        lines.append(f"ETA: {_duration(eta - progress.now)}, {_local(eta, progress, tz)} (the limits above pace it)")
    return lines


def progress_view(progress: RunProgress, tz: ZoneInfo) -> RenderableType:
    """One refresh of --follow: a bar of final rows over all rows, and what is left."""
    return Text.assemble(
        _local(progress.now, progress, tz, seconds=True),
        " ",
        (_bar(progress.done, progress.total), "green"),
        f" {progress.done}/{progress.total} final, {_left(progress, tz)}",
    )


def _bar(done: int, total: int) -> str:
    """A bar drawn with characters, so that it reads the same in a terminal and in a file."""
    filled = round(_BAR_WIDTH * done / total) if total else 0
    return "━" * filled + "─" * (_BAR_WIDTH - filled)


def pause(seconds: float) -> None:
    """Wait between two refreshes of --follow (a test replaces it, so that it waits for nothing)."""
    time.sleep(seconds)


def follow(
    read: Callable[[], RunProgress],
    *,
    console: Console,
    tz: ZoneInfo,
    timeout: float,
    interval: float = FOLLOW_INTERVAL_SECONDS,
    sleep: Callable[[float], None] = pause,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[FollowEnd, RunProgress]:
    """Refresh the run's progress until nothing moves (and the claim is done), `timeout` passes, or Ctrl-C.

    On a terminal the bar is redrawn in place; into a file or a pipe each refresh is a line of its own.
    """
    started = clock()
    progress = read()
    live = Live(progress_view(progress, tz), console=console, auto_refresh=False) if console.is_terminal else None
    try:
        if live is not None:
            live.start()
        while True:
            view = progress_view(progress, tz)
            if live is not None:
                live.update(view, refresh=True)
            else:
                console.print(view)
            if progress.finished and progress.run is not None and progress.run.status == RunStatus.DONE:
                return FollowEnd.FINISHED, progress
            if clock() - started >= timeout:
                return FollowEnd.TIMEOUT, progress
            sleep(interval)
            progress = read()
    except KeyboardInterrupt:
        return FollowEnd.INTERRUPTED, progress
    finally:
        if live is not None:
            live.stop()


def _left(progress: RunProgress, tz: ZoneInfo) -> str:
    if progress.run is None:
        return "waiting for the run to start"
    if progress.run.status != RunStatus.DONE:
        return f"claiming ({progress.run.status})"
    if progress.in_flight == 0:
        return "nothing in flight"
    parts = [f"in flight {progress.moving} ({_stages(progress)})"] if progress.moving else []
    if progress.waiting_for_window:
        parts.append(_waiting(progress, tz))
    eta = progress.eta()
    if eta is not None:
        parts.append(f"ETA {_local(eta, progress, tz)}")
    return ", ".join(parts)


def _stages(progress: RunProgress) -> str:
    """Where the rows in flight are: to be written, written and waiting for a sender slot, at the gateway, and
    delivered but not yet recorded as sent (the chain's last steps)."""
    counts = progress.by_status
    stages = {
        "to write": counts[Status.CLAIMED] + counts[Status.INTERVAL_SELECTED],
        "to send": counts[Status.GENERATED] - progress.waiting_for_window,
        "sending": counts[Status.SENDING],
        "delivered": counts[Status.DELIVERED],
    }
    return ", ".join(f"{count} {stage}" for stage, count in stages.items() if count)


def _waiting(progress: RunProgress, tz: ZoneInfo) -> str:
    if not progress.waiting_for_window:
        return "none waiting for the send window"
    opens = f", which opens {_local(progress.window_opens, progress, tz)}" if progress.window_opens else ""
    return f"{progress.waiting_for_window} waiting for the send window{opens}"


def _duration(span: timedelta) -> str:
    minutes = max(0, round(span.total_seconds() / 60))
    if minutes == 0:
        return "under a minute"
    return f"about {minutes} min" if minutes < 60 else f"about {minutes // 60} h {minutes % 60:02d} min"


def _rate(limit: RateLimit) -> str:
    return f"{limit.calls} per {limit.seconds} s"


def _local(moment: datetime | None, progress: RunProgress, tz: ZoneInfo, *, seconds: bool = False) -> str:
    """A moment on the salon's wall clock, with its date when that is not the progress's own day."""
    if moment is None:
        return "-"
    local = moment.astimezone(tz)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    return clock if local.date() == progress.now.astimezone(tz).date() else f"{local:%Y-%m-%d} {clock}"
