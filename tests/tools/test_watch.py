"""Watching a campaign: what a dispatch claimed in words, the status summary, and the --follow loop (driven with a
fake clock and pause, so that nothing waits)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from rich.console import Console

from reactivation.core.settings import RateLimit
from reactivation.core.vocabulary import RunStatus, Status
from reactivation.flow.progress import Limits, RunProgress, RunRecord
from reactivation.tools.watch import ClaimReport, FollowEnd, follow, summary_lines

MOSCOW = ZoneInfo("Europe/Moscow")
DAY = date(2026, 12, 3)
NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)  # 10:00 in Moscow
LIMITS = Limits(whatsapp=RateLimit(30, 60), gemini=None, daily_limit=300, sender="962302")


def record(status: RunStatus = RunStatus.DONE, *, due: int = 1204, claimed: int = 300, at: int = 0) -> RunRecord:
    moment = NOW + timedelta(minutes=at)
    return RunRecord(1, status, due=due, claimed=claimed, holdout=0, started_at=moment, finished_at=moment)


def claim(before: RunRecord | None, after: RunRecord | None) -> str:
    return ClaimReport(962302, DAY, before, after, daily_limit=300).text()


def test_what_a_dispatch_claimed() -> None:
    assert claim(None, record()) == (
        "claimed 300 client(s) of the 1204 most valuable due for company 962302 on 2026-12-03 "
        "(held out 0; daily limit 300)"
    )
    # A second dispatch the same day claims nothing, and says why
    assert (
        claim(record(), record(at=5)) == "nothing to claim: company 962302 already ran on 2026-12-03 (300 claimed then)"
    )
    assert claim(None, record(due=0, claimed=0)) == "nothing to claim: no client of company 962302 is due on 2026-12-03"
    assert "daily limit of 300" in claim(record(RunStatus.RUNNING, claimed=300), record(claimed=300))
    assert "not finished claiming" in claim(None, record(RunStatus.RUNNING))


def progress(
    counts: dict[Status, int], *, status: RunStatus = RunStatus.DONE, waiting: int = 0, minute: int = 0
) -> RunProgress:
    return RunProgress(
        company_id=962302,
        run_date=DAY,
        now=NOW + timedelta(minutes=minute),
        limits=LIMITS,
        run=record(status),
        reasons=[(str(s), None, n) for s, n in counts.items()],
        waiting_for_window=waiting,
        window_opens=datetime(2026, 12, 4, 6, 0, tzinfo=UTC) if waiting else None,
    )


def test_the_summary_names_the_limits_the_window_and_the_eta() -> None:
    lines = summary_lines(progress({Status.SENT: 30, Status.GENERATED: 270}, waiting=20), MOSCOW)
    text = "\n".join(lines)
    assert "run done: due read 1204 (the most valuable first), claimed 300 (daily limit 300)" in text
    assert "in flight 270: 250 moving, 20 waiting for the send window, which opens 2026-12-04 09:00" in text
    assert "WhatsApp 30 per 60 s for sender 962302; Gemini off (templates)" in text
    assert "ETA: about" in text


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, force_terminal=False), out


def test_follow_refreshes_until_nothing_is_in_flight() -> None:
    # Given a run whose rows are sent one read after another
    reads = iter(
        [
            progress({Status.CLAIMED: 3}, status=RunStatus.RUNNING),
            progress({Status.SENT: 1, Status.GENERATED: 2}),
            progress({Status.SENT: 3}),
        ]
    )
    pauses: list[float] = []
    screen, out = console()
    # When it is followed
    end, last = follow(lambda: next(reads), console=screen, tz=MOSCOW, timeout=60, sleep=pauses.append, clock=lambda: 0)
    # Then every refresh is a line with the bar and the count, and the watch ends once all are final
    assert end is FollowEnd.FINISHED and last.done == 3
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and len(pauses) == 2
    assert "claiming (running)" in lines[0] and "1/3 final" in lines[1] and "3/3 final" in lines[2]
    assert "nothing in flight" in lines[2]


def test_follow_is_bounded_and_ctrl_c_ends_it_cleanly() -> None:
    stuck = progress({Status.GENERATED: 5})
    clock = iter(range(0, 1000, 30))
    screen, _ = console()
    end, _ = follow(
        lambda: stuck, console=screen, tz=MOSCOW, timeout=100, sleep=lambda _: None, clock=lambda: next(clock)
    )
    assert end is FollowEnd.TIMEOUT

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    end, last = follow(lambda: stuck, console=screen, tz=MOSCOW, timeout=100, sleep=interrupt, clock=lambda: 0)
    assert end is FollowEnd.INTERRUPTED and last is stuck


def test_rows_parked_until_the_window_opens_end_the_watch() -> None:
    parked = progress({Status.SENT: 10, Status.GENERATED: 40}, waiting=40)
    screen, out = console()
    end, _ = follow(lambda: parked, console=screen, tz=MOSCOW, timeout=60, sleep=lambda _: None, clock=lambda: 0)
    assert end is FollowEnd.FINISHED
    assert "40 waiting for the send window" in out.getvalue()
