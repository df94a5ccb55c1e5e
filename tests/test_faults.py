"""Faults on the real services, with real Celery workers: Redis restarted (its memory lost), PostgreSQL connections
killed, Gemini down, the gateway down. The promise under every fault: each due client gets exactly one gateway
message, nobody gets two, and the workers carry on.

The cases share one set of workers (module scope) on a redis-server of this module's own, which one case
restarts: the cases after it run on workers that had to reconnect. Each case has a company of its own, so the
hand-over markers (keyed by company and history id) never meet.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import Status
from reactivation.storage.history import FINAL
from reactivation.storage.models import ReactivationHistory
from tests import clock_offset
from tests.fake_gateway import FakeGateway
from tests.fake_gemini import TEST_API_KEY, FakeGemini, Reply
from tests.salon import Salon, build_salon
from tests.workers import (
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

PREFIX = "faults:"
WORKERS = ["fault-a", "fault-b"]
# Seconds; the servers and workers of this module stop after this long whatever happens.
SERVER_LIFETIME = 900


class RedisServer:
    """A redis-server of the test's own on 127.0.0.1 (no persistence): a restart loses everything it held."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.popen: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / f"redis-{self.restarts}.log").open("wb")
        self.popen = subprocess.Popen(
            [
                # Stops by itself even if this process dies without its teardown.
                "timeout",
                "--signal=KILL",
                str(SERVER_LIFETIME),
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Its own clock, whatever the suite's (redis-server does not run under libfaketime).
            env=clock_offset.server_env(),
        )
        log.close()  # the child has its own copy
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            wait_until(lambda: _answers(client), timeout=15, interval=0.1, what="redis-server to answer")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; queues, unacknowledged tasks, limits and hand-overs are gone."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class Rig:
    redis: RedisServer
    gateway: FakeGateway
    gemini: FakeGemini
    procs: Processes
    exits: list[str] = field(default_factory=list)

    def dispatch(self, salon: Salon) -> None:
        control = control_app(self.redis.url, PREFIX)
        try:
            control.send_task("reactivation.run_campaign", args=[salon.company_id, salon.today.isoformat()])
        finally:
            control.close()

    def sweep(self) -> None:
        control = control_app(self.redis.url, PREFIX)
        try:
            control.send_task("reactivation.sweep")
        finally:
            control.close()

    def ping(self, timeout: float = 60, *, supervise: bool = False) -> None:
        """Block until every worker answers a ping (bounded); a control connection cut by a restart is retried.
        With `supervise`, a worker that exited meanwhile is started again, as its service manager would."""
        deadline = time.monotonic() + timeout
        while True:
            if supervise:
                self.supervise()
            control = control_app(self.redis.url, PREFIX)
            try:
                wait_for_workers(control, WORKERS, timeout=min(5.0, max(1.0, deadline - time.monotonic())))
                return
            except (redis.RedisError, OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            finally:
                control.close()

    def supervise(self) -> None:
        """What compose's `restart: unless-stopped` does: a worker process that exited is started again (its last
        log is kept in `exits`)."""
        for proc in list(self.procs.procs):
            if not proc.alive():
                self.exits.append(proc.log())
                self.procs.procs.remove(proc)
                self.procs.worker(proc.name, concurrency=2)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-4000:]}" for p in self.procs.procs)


@pytest.fixture(scope="module")
def rig(committed_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("faults")
    server = RedisServer(folder)
    server.start()
    try:
        with FakeGateway(lifetime=SERVER_LIFETIME) as gateway, FakeGemini(max_lifetime=SERVER_LIFETIME) as gemini:
            env = worker_env(
                committed_url,
                prefix=PREFIX,
                gateway_url=gateway.url,
                redis_url=server.url,
                GEMINI_API_KEY=TEST_API_KEY,
                GEMINI_BASE_URL=gemini.base_url,
                GEMINI_RATE_LIMIT="1000/60",
                # One message's Gemini budget, scaled down: a 1 s timeout, 3 attempts, 3 s in all.
                GEMINI_TIMEOUT_SECONDS="1",
                GEMINI_BUDGET_SECONDS="3",
                GEMINI_MAX_ATTEMPTS="3",
            )
            with processes(env, folder) as procs:
                for name in WORKERS:
                    procs.worker(name, concurrency=2)
                rig = Rig(server, gateway, gemini, procs)
                rig.ping()
                yield rig
    finally:
        server.kill()


@pytest.fixture
def fresh(rig: Rig) -> Rig:
    """The shared rig with a gateway and a Gemini that behave, no messages recorded yet, and no Gemini state (a
    breaker, a count of unanswered requests) left by another test."""
    rig.gateway.reset()
    rig.gemini.set_default(Reply.good())
    client = redis.Redis.from_url(rig.redis.url)
    try:
        for key in client.scan_iter(match=f"{PREFIX}gemini:*", count=1000):
            client.delete(key)
    finally:
        client.close()
    return rig


def moscow_today() -> date:
    return datetime.now(ZoneInfo("Europe/Moscow")).date()


def rows(engine: Engine, company_id: int) -> list[ReactivationHistory]:
    with Session(engine) as session:
        return list(session.scalars(select(ReactivationHistory).where(ReactivationHistory.company_id == company_id)))


def all_final(engine: Engine, salon: Salon) -> bool:
    counts = statuses(engine, salon.company_id)
    return sum(counts.values()) == len(salon.due) and sum(counts[s] for s in FINAL) == len(salon.due)


def assert_each_due_client_got_one_message(rig: Rig, engine: Engine, salon: Salon) -> list[ReactivationHistory]:
    received = Counter(m["phone"] for m in rig.gateway.messages())
    assert set(received) == set(salon.phones.values()), rig.logs()
    assert max(received.values()) == 1
    history = rows(engine, salon.company_id)
    assert len(history) == len(salon.due) and {r.client_id for r in history} == set(salon.due)
    assert all(r.status == Status.SENT for r in history), statuses(engine, salon.company_id)
    return history


# --- Redis restarted mid-campaign ------------------------------------------------------------------------------


def test_a_redis_restart_mid_campaign_loses_no_client_and_doubles_none(fresh: Rig, committed_engine: Engine) -> None:
    # Given 30 due clients and a gateway slow enough that the restart lands mid-run
    salon = build_salon(committed_engine, due=30, company_id=610001, today=moscow_today())
    fresh.gateway.configure(latency=0.15)
    # When the campaign runs and Redis restarts empty after the first messages
    fresh.dispatch(salon)
    wait_until(lambda: len(fresh.gateway.messages()) >= 6, timeout=120, what="6 messages")
    fresh.redis.restart()
    sent_before_restart = len(fresh.gateway.messages())
    fresh.gateway.configure(latency=0.0)
    # Then the workers are serving again: reconnected, or (Celery 5 exits with "Unrecoverable error" when the broker
    # vanishes while a late-acked task is being restored, a kombu race) exited and started again by their
    # service manager; no worker exits for any other reason
    fresh.ping(timeout=90, supervise=True)
    assert all("Connection to broker lost" in log for log in fresh.exits), fresh.exits
    # and what the broker lost stands still until the sweep (3 minutes later) resumes it
    after_restart = settle(committed_engine, salon.company_id)
    stale_time_passes(committed_engine, salon.company_id)
    fresh.sweep()
    wait_until(lambda: all_final(committed_engine, salon), timeout=120, what="all rows final")
    # and every due client got exactly one message, none twice
    assert_each_due_client_got_one_message(fresh, committed_engine, salon)
    assert sent_before_restart < len(salon.due), after_restart
    # and the workers are alive and consuming: the resumed chains ran on them
    assert all(p.alive() for p in fresh.procs.procs), fresh.logs()


# --- PostgreSQL connections dropped mid-chain -------------------------------------------------------------------


def terminate_connections(pg_admin: Engine, database: str) -> int:
    """What a failover or an operator does: every server process of the database is ended (from outside it)."""
    with pg_admin.connect() as connection:
        return len(
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :database AND pid <> pg_backend_pid()"
                ),
                {"database": database},
            ).all()
        )


def test_postgresql_connections_killed_mid_chain_are_replaced_and_the_steps_retried(
    fresh: Rig, committed_engine: Engine, pg_admin: Engine
) -> None:
    # Given 30 due clients and chains slowed by the gateway
    salon = build_salon(committed_engine, due=30, company_id=620002, today=moscow_today())
    fresh.gateway.configure(latency=0.1)
    database = committed_engine.url.database or ""
    # When the campaign runs and every connection to the database is killed, three times, while chains run
    fresh.dispatch(salon)
    wait_until(lambda: len(fresh.gateway.messages()) >= 3, timeout=120, what="3 messages")
    killed = 0
    for _ in range(3):
        killed += terminate_connections(pg_admin, database)
        time.sleep(0.7)
    fresh.gateway.configure(latency=0.0)
    # Then the workers' pools reconnect and the cut steps are retried: every row ends sent, with no sweep
    wait_until(lambda: all_final(committed_engine, salon), timeout=120, what="all rows final")
    assert killed > 0
    assert_each_due_client_got_one_message(fresh, committed_engine, salon)
    assert all(p.alive() for p in fresh.procs.procs), fresh.logs()


# --- Gemini down for the whole run --------------------------------------------------------------------------------


def test_with_gemini_down_every_message_goes_out_from_the_template(fresh: Rig, committed_engine: Engine) -> None:
    # Given 20 due clients and a Gemini that hangs on the first requests and answers 500 to every other
    salon = build_salon(committed_engine, due=20, company_id=630003, today=moscow_today())
    fresh.gemini.requests.clear()
    fresh.gemini.push(*[Reply.hang(seconds=5)] * 4)
    fresh.gemini.set_default(Reply.error(500))
    # When the campaign runs
    fresh.dispatch(salon)
    # Then every client gets one message, each from the template after a bounded number of Gemini attempts
    wait_until(lambda: all_final(committed_engine, salon), timeout=150, what="all rows final")
    history = assert_each_due_client_got_one_message(fresh, committed_engine, salon)
    assert {r.generator for r in history} == {"template"}
    assert {r.generator_fallback_reason for r in history} <= {"server_error", "timeout", "gemini_unavailable"}
    assert len(fresh.gemini.requests) <= 3 * len(salon.due)
    # and nothing waits for Gemini after the run: no row is left before the send
    assert not [r for r in history if r.message_sent_at is None]


# --- The gateway down for a while ---------------------------------------------------------------------------------


def test_a_gateway_outage_delays_the_messages_and_sends_each_once(fresh: Rig, committed_engine: Engine) -> None:
    # Given 20 due clients and a gateway that is down (503 with Retry-After: 1, then refusing connections)
    salon = build_salon(committed_engine, due=20, company_id=640004, today=moscow_today())
    fresh.gateway.configure(down="503")
    # When the campaign runs through an outage longer than eight quick retries
    fresh.dispatch(salon)
    wait_until(lambda: fresh.gateway.stats()["send_requests"] >= 20, timeout=60, what="20 refused sends")
    time.sleep(6)
    fresh.gateway.configure(down="refuse")
    time.sleep(6)
    assert fresh.gateway.messages() == []
    fresh.gateway.configure(down=None)
    # Then every message goes out once, later
    wait_until(lambda: all_final(committed_engine, salon), timeout=150, what="all rows final")
    history = assert_each_due_client_got_one_message(fresh, committed_engine, salon)
    assert all(r.attempts >= 2 for r in history)
    assert fresh.gateway.stats()["duplicates"] == 0
