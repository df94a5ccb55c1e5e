"""How far a campaign run has come: its rows by status, the ones waiting for the send window, and when it will end.

What `reactivation campaign status` (and `--follow`) shows. The estimate is arithmetic over the limits in force:
each row still to be sent takes a slot of its sender's WhatsApp limit, each row still to be written one of the
global Gemini limit (when Gemini writes), and rows waiting for the send window start when it opens. The limits are
shared with every other campaign on the same sender (or Gemini key), so the estimate is the earliest end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reactivation.core.instants import as_aware, aware_utc
from reactivation.core.settings import RateLimit
from reactivation.core.vocabulary import Status
from reactivation.storage import history
from reactivation.storage.models import CampaignRun, ReactivationHistory

# Rows that still need a Gemini slot (not written yet) and a sender slot (not sent yet).
_TO_WRITE = (Status.CLAIMED, Status.INTERVAL_SELECTED)
_TO_SEND = (Status.CLAIMED, Status.INTERVAL_SELECTED, Status.GENERATED)


@dataclass(frozen=True)
class RunRecord:
    """A run as its row records it: what the claim found and when it ran."""

    run_id: int
    status: str
    due: int | None
    claimed: int | None
    holdout: int | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Limits:
    """The limits that pace a run: its sender's WhatsApp limit, Gemini's (None: templates), the daily limit."""

    whatsapp: RateLimit
    gemini: RateLimit | None
    daily_limit: int
    sender: str


@dataclass(frozen=True)
class RunProgress:
    """One run's rows at `now`: counts by status, by status and reason, and the rows parked until the window opens."""

    company_id: int
    run_date: date
    now: datetime
    limits: Limits
    run: RunRecord | None
    reasons: list[tuple[str, str | None, int]] = field(default_factory=list)
    waiting_for_window: int = 0
    window_opens: datetime | None = None

    @property
    def by_status(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for status, _reason, count in self.reasons:
            counts[status] += count
        return counts

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def in_flight(self) -> int:
        counts = self.by_status
        return sum(counts[status] for status in history.IN_FLIGHT)

    @property
    def done(self) -> int:
        return self.total - self.in_flight

    @property
    def moving(self) -> int:
        """Rows in flight that are not parked until the send window opens."""
        return self.in_flight - self.waiting_for_window

    @property
    def finished(self) -> bool:
        """Nothing left to watch: every row is final or waits for the send window."""
        return self.moving == 0

    def eta(self) -> datetime | None:
        """The earliest moment every row of the run can be final under the limits in force (None: nothing left)."""
        if self.in_flight == 0:
            return None
        counts = self.by_status
        to_send = sum(counts[status] for status in _TO_SEND) - self.waiting_for_window
        to_write = sum(counts[status] for status in _TO_WRITE)
        seconds = pace_seconds(to_send, self.limits.whatsapp)
        if self.limits.gemini is not None:
            seconds = max(seconds, pace_seconds(to_write, self.limits.gemini))
        end = self.now + timedelta(seconds=seconds)
        if self.waiting_for_window and self.window_opens is not None:
            parked = self.window_opens + timedelta(seconds=pace_seconds(self.waiting_for_window, self.limits.whatsapp))
            end = max(end, parked)
        return end


def pace_seconds(calls: int, limit: RateLimit) -> float:
    """How long `calls` calls take at most `limit.calls` in any `limit.seconds`: the first window's calls go at once."""
    if calls <= 0:
        return 0.0
    windows = (calls - 1) // limit.calls
    return float(windows * limit.seconds)


def read_run(session: Session, *, company_id: int, run_date: date) -> RunRecord | None:
    """The company's run for the date, as recorded; None before anyone planned or dispatched it."""
    run = session.execute(
        select(CampaignRun).where(
            CampaignRun.company_id == company_id, CampaignRun.run_date == run_date, CampaignRun.dry_run.is_(False)
        )
    ).scalar_one_or_none()
    if run is None:
        return None
    return RunRecord(
        run_id=run.id,
        status=run.status,
        due=run.due_count,
        claimed=run.claimed_count,
        holdout=run.holdout_count,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def read_progress(session: Session, *, company_id: int, run_date: date, now: datetime, limits: Limits) -> RunProgress:
    """The run's progress at `now` (its rows by status and reason, the ones waiting for the send window)."""
    run = read_run(session, company_id=company_id, run_date=run_date)
    if run is None:
        return RunProgress(company_id=company_id, run_date=run_date, now=now, limits=limits, run=None)
    h = ReactivationHistory
    waiting, opens = session.execute(
        select(func.count(), func.min(h.send_after)).where(
            h.company_id == company_id,
            h.campaign_run_id == run.run_id,
            h.status == Status.GENERATED.value,
            h.send_after > aware_utc(now),
        )
    ).one()
    return RunProgress(
        company_id=company_id,
        run_date=run_date,
        now=now,
        limits=limits,
        run=run,
        reasons=history.counts_by_status(session, company_id=company_id, run_id=run.run_id),
        waiting_for_window=waiting or 0,
        window_opens=as_aware(opens) if opens is not None else None,
    )
