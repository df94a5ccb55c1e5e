"""One run of the averages job as data: the windows it reads, whether it is full or incremental, and what a backend
gives back.

The job (job.py) decides the plan; a backend (postgres.py, sqlite.py) carries it out and returns `Computed`.
A full run happens when there is no state, when the last full run is FULL_EVERY_DAYS old, when time went
backwards, or when asked; otherwise the run is incremental and starts from `Changes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from reactivation.core.instants import as_aware, local_midnight
from reactivation.storage.models import AveragesState
from reactivation.timing.averages.stats import PERSONAL_WINDOW_DAYS, SERVICE_WINDOW_DAYS, ServiceStats

FULL_EVERY_DAYS = 28
LATE_DAYS = 14


@dataclass(frozen=True)
class Window:
    """The local days a run as of some moment reads: 12 months for the rhythms, 6 for the salon medians."""

    today: date
    personal_start: datetime
    service_start_day: date
    end: datetime


def window(now: datetime, tz: ZoneInfo) -> Window:
    """The windows of a run as of `now`, in the company's local days (the end is the midnight after today)."""
    today = now.astimezone(tz).date()
    return Window(
        today=today,
        personal_start=local_midnight(today - timedelta(days=PERSONAL_WINDOW_DAYS), tz),
        service_start_day=today - timedelta(days=SERVICE_WINDOW_DAYS),
        end=local_midnight(today + timedelta(days=1), tz),
    )


@dataclass(frozen=True)
class Changes:
    """Where an incremental run starts: what the last run saw, and the first day whose visits differ since."""

    max_appointment_id: int  # rows above it were added since the last run, whatever their date
    first_changed: date  # the first local day whose visits the last run did not see as they are now
    old_personal_start: datetime  # the last run's 12-month window began here: visits before today's left it


@dataclass(frozen=True)
class AveragesPlan:
    """What this run does: for which company, as of when, over which windows, in how many shares, and whether it
    recomputes every client (`changes` None) or only those the changes touch."""

    company_id: int
    now: datetime
    tz: ZoneInfo
    window: Window
    changes: Changes | None
    workers: int

    @property
    def mode(self) -> str:
        return "incremental" if self.changes is not None else "full"


@dataclass(frozen=True)
class Computed:
    """What a backend did: the salon statistics to write, and the personal rows it wrote and removed."""

    services: dict[int, ServiceStats]
    personal_written: int
    personal_deleted: int
    clients_recomputed: int | None  # None in a full run


def is_incremental(state: AveragesState | None, *, now: datetime, full: bool | None) -> bool:
    """Whether a run at `now` may start from the last one (`full`: None decides, True forbids, False asks)."""
    if full is True or state is None:
        return False
    if now < as_aware(state.calculated_at):
        return False
    return not (full is None and now - as_aware(state.full_calculated_at) >= timedelta(days=FULL_EVERY_DAYS))


def late_from(moment: datetime, tz: ZoneInfo) -> date:
    """The first local day whose rows a run at `moment` keeps digests of, for the next run to compare."""
    return (as_aware(moment) - timedelta(days=LATE_DAYS)).astimezone(tz).date()


def first_changed(last_run: datetime, *, changed: date | None, tz: ZoneInfo) -> date:
    """The first local day whose visits the run at `last_run` did not see as they are now: the first day whose
    rows changed, or the first day after that run's window (its visits enter this one), whichever is earlier."""
    entering = window(as_aware(last_run), tz).today + timedelta(days=1)
    return min(changed, entering) if changed is not None else entering
