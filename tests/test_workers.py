"""Real Celery workers (subprocesses, as an operator starts them) on the real Redis and PostgreSQL.

The main job's promise: every due client gets exactly one gateway message, nobody else any, every row ends in a
final status, and the AI admin's own fields survive the hand-over, even when two dispatches start at once, a
worker is killed with SIGKILL mid-run, and the gateway answers 503 to 5 % of requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reactivation.core.settings import Settings
from reactivation.core.vocabulary import Status
from reactivation.handover.keys import dialog_key
from reactivation.storage.history import FINAL
from reactivation.storage.models import ReactivationHistory
from tests.conftest import REDIS_URL
from tests.fake_gateway import FakeGateway
from tests.salon import build_salon
from tests.workers import (
    ROOT,
    Processes,
    control_app,
    processes,
    settle,
    stale_time_passes,
    statuses,
    wait_for_workers,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.workers, pytest.mark.subprocess]
REACTIVATION = Path(sys.executable).parent / "reactivation"

ADMIN_FIELDS = {
    "state": "active",
    "clientName": "Мария",
    "selection": {"staffId": 7, "slots": []},
    "big": 12345678901234567,
}


@pytest.fixture
def prefix(redis_prefix: str, request: pytest.FixtureRequest) -> str:
    """A broker and key prefix of this test's own, so no task of another test is ever picked up."""
    return f"{redis_prefix}{request.node.name[:40]}:"


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway(lifetime=300) as fake:
        yield fake


def history_rows(engine: Engine, company_id: int) -> list[ReactivationHistory]:
    with Session(engine) as session:
        return list(session.scalars(select(ReactivationHistory).where(ReactivationHistory.company_id == company_id)))


def all_handed_over(engine: Engine, company_id: int) -> bool:
    """Every sent row's hand-over to the AI admin is written (or given up with its error)."""
    return all(
        r.context_saved_at is not None or r.context_error is not None
        for r in history_rows(engine, company_id)
        if r.status == Status.SENT
    )


def all_final(engine: Engine, company_id: int, expected: int) -> bool:
    counts = statuses(engine, company_id)
    return sum(counts.values()) == expected and sum(counts[s] for s in FINAL) == expected


def test_two_dispatches_a_killed_worker_and_a_flaky_gateway_still_send_exactly_once(
    committed_settings: Settings,
    committed_engine: Engine,
    gateway: FakeGateway,
    prefix: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given 200 due clients and 4 who must not be contacted
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    salon = build_salon(committed_engine, due=200, today=today)
    # and the AI admin already keeps a dialog for some of them
    admin_phones = list(salon.phones.values())[:20]
    for phone in admin_phones:
        redis_client.set(dialog_key(prefix, salon.company_id, phone), json.dumps(ADMIN_FIELDS))
    # and a gateway that answers 503 to one request in twenty, slowly enough that a kill lands mid-run
    gateway.configure(fail_fraction=0.05, latency=0.01)
    env = worker_env(committed_settings.database_url, redis_url=REDIS_URL, prefix=prefix, gateway_url=gateway.url)
    control = control_app(REDIS_URL, prefix)

    with processes(env, tmp_path) as procs:
        # The killed worker plans, selects, writes, persists and hands over; sends go through a courier that lives
        # on (killing the courier mid-send is the next test: the sweep sends such a row again with its key).
        first = procs.worker("alpha", queues="default,gemini", concurrency=2)
        procs.worker("courier", queues="whatsapp", concurrency=2)
        wait_for_workers(control, ["alpha", "courier"])
        # When two dispatches for the same company and day arrive at once
        for _ in range(2):
            control.send_task("reactivation.run_campaign", args=[salon.company_id, today.isoformat()])
        # and the worker is killed with SIGKILL mid-run
        wait_until(lambda: len(gateway.messages()) >= 50, timeout=120, what="50 messages")
        first.kill_hard()
        # and another one takes over
        procs.worker("beta", queues="default,gemini", concurrency=2)
        try:
            wait_until(lambda: all_final(committed_engine, salon.company_id, 200), timeout=120, what="all final")
            resumed = False
        except TimeoutError:
            # A message the killed worker had popped from the broker but not yet recorded as unacknowledged is
            # gone (kombu's Redis transport moves it in two steps); its chain stands still until the sweep,
            # 3 minutes later, resumes it. Wait out the broker's redelivery of everything else first.
            settle(committed_engine, salon.company_id, quiet=40, timeout=240)
            stale_time_passes(committed_engine, salon.company_id)
            control.send_task("reactivation.sweep")
            wait_until(lambda: all_final(committed_engine, salon.company_id, 200), timeout=120, what="all final")
            resumed = True
        # A hand-over the killed worker held comes back with the broker's redelivery (or the sweep): wait for it.
        wait_until(lambda: all_handed_over(committed_engine, salon.company_id), timeout=120, what="hand-overs")

    # Then every due client got exactly one gateway message, and nobody else any
    received = Counter(message["phone"] for message in gateway.messages())
    assert set(received) == set(salon.phones.values()), _logs(procs)
    assert max(received.values()) == 1
    # and every row is sent: the kill lost nothing the other workers could not finish
    rows = history_rows(committed_engine, salon.company_id)
    assert len(rows) == 200 and {r.client_id for r in rows} == set(salon.due)
    assert all(r.status == Status.SENT for r in rows), (resumed, statuses(committed_engine, salon.company_id))
    # and the AI admin's fields are intact beside the pendingAction
    for phone in admin_phones:
        dialog = json.loads(redis_client.get(dialog_key(prefix, salon.company_id, phone)) or "{}")
        row = next(r for r in rows if r.phone == phone)
        for key, value in ADMIN_FIELDS.items():
            assert dialog[key] == value
        if row.status == Status.SENT:
            assert dialog["pendingAction"]["reactivationHistoryId"] == row.id


def test_a_sender_killed_with_requests_in_flight_loses_nothing_once_the_sweep_has_run(
    committed_settings: Settings,
    committed_engine: Engine,
    gateway: FakeGateway,
    prefix: str,
    tmp_path: Path,
) -> None:
    # Given 12 due clients and a gateway that takes 2 seconds per request
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    salon = build_salon(committed_engine, due=12, today=today, extras=False)
    gateway.configure(latency=2.0)
    env = worker_env(committed_settings.database_url, redis_url=REDIS_URL, prefix=prefix, gateway_url=gateway.url)
    control = control_app(REDIS_URL, prefix)
    with processes(env, tmp_path) as procs:
        procs.worker("planner", queues="default,gemini", concurrency=2)
        courier = procs.worker("courier", queues="whatsapp", concurrency=2)
        wait_for_workers(control, ["planner", "courier"])
        control.send_task("reactivation.run_campaign", args=[salon.company_id, today.isoformat()])
        # When the worker sending is killed with SIGKILL while its requests are in flight
        wait_until(lambda: gateway.stats()["in_flight"] >= 2, timeout=90, what="requests in flight")
        courier.kill_hard()
        # (the gateway still accepts what it was given: those messages arrived, their rows stay `sending`)
        procs.worker("courier2", queues="whatsapp", concurrency=2)
        wait_for_workers(control, ["courier2"])
        settle(committed_engine, salon.company_id, quiet=5, timeout=120)
        stuck = statuses(committed_engine, salon.company_id)[Status.SENDING]
        # and `reactivation sweep` runs as of six minutes later
        later = datetime.now(UTC) + timedelta(minutes=6)
        sweep = ["sweep", "--company", str(salon.company_id), "--now", later.isoformat()]
        swept = subprocess.run(
            [sys.executable, "-m", "reactivation.tools.cli", *sweep],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert swept.returncode == 0, swept.stdout + swept.stderr
        wait_until(lambda: all_final(committed_engine, salon.company_id, 12), timeout=120, what="all final")
    # Then every due client has exactly one message at the gateway: none lost, none doubled
    received = Counter(message["phone"] for message in gateway.messages())
    assert received == Counter(salon.phones.values()), _logs(procs)
    # and the killed worker's rows were sent again with their keys (the gateway dropped the repeats), none unknown
    assert stuck >= 1 and gateway.stats()["duplicates"] >= 1, (stuck, gateway.stats())
    assert "resent" in swept.stdout
    assert statuses(committed_engine, salon.company_id) == {Status.SENT: 12}


def test_a_paced_campaign_says_what_it_claimed_is_watched_to_the_end_and_logs_its_waits_quietly(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway, prefix: str, tmp_path: Path
) -> None:
    # Given 12 due clients and a sender limit of 4 messages in any 2 seconds, so that most sends wait for a slot
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    salon = build_salon(committed_engine, due=12, today=today, extras=False)
    env = worker_env(
        committed_settings.database_url,
        redis_url=REDIS_URL,
        prefix=prefix,
        gateway_url=gateway.url,
        WHATSAPP_RATE_LIMIT="4/2",
        COLUMNS="160",
    )
    control = control_app(REDIS_URL, prefix)
    company = str(salon.company_id)

    def reactivation(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REACTIVATION), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False
        )

    with processes(env, tmp_path) as procs:
        worker = procs.worker("pacer", concurrency=2)
        wait_for_workers(control, ["pacer"])
        # When the operator dispatches the campaign and follows it
        dispatched = reactivation("campaign", "run", "--company", company)
        watched = reactivation("campaign", "status", "--company", company, "--follow", "--timeout", "120")
        again = reactivation("campaign", "run", "--company", company)
    # Then the dispatch says what the worker claimed
    assert dispatched.returncode == 0, dispatched.stdout + dispatched.stderr + _logs(procs)
    assert f"claimed 12 client(s) of the 12 most valuable due for company {company}" in dispatched.stdout
    # and the watch refreshed until nothing was in flight
    assert watched.returncode == 0, watched.stdout + watched.stderr
    refreshes = [line for line in watched.stdout.splitlines() if " final" in line]
    assert refreshes[-1].rstrip().endswith("12/12 final, nothing in flight"), watched.stdout
    assert "limits: WhatsApp 4 per 2 s" in watched.stdout
    # and a second dispatch the same day claims nothing and says why
    assert f"nothing to claim: company {company} already ran on {today:%Y-%m-%d}" in again.stdout
    # And the sender's pace made sends wait (12 messages at 4 per 2 s span at least 4 s)
    sent_at = sorted(datetime.fromisoformat(m["received_at"]) for m in gateway.messages())
    assert len(sent_at) == 12 and (sent_at[-1] - sent_at[0]).total_seconds() >= 3.9
    # but the worker wrote no INFO line per wait: no retry line, and one "received" line per task, not per copy
    log = worker.log()
    assert "RateLimitWait" not in log and " retry: " not in log, log[-3000:]
    assert log.count("reactivation.send_message[") == 2 * 12, log[-3000:]  # received + succeeded, once each


def _logs(procs: Processes) -> str:
    return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in procs.procs)
