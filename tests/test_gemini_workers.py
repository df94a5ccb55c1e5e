"""Gemini quotas with real Celery workers: two worker processes (two machines, as far as Redis and PostgreSQL can
tell) writing one campaign in batches against the fake Gemini.

- A per-day 429 stops every worker's Gemini calls at once: the run goes on at template speed, each message with
  `gemini_daily_quota`, without another request.
- A per-minute 429 backs every worker off for its RetryInfo delay: no request reaches Gemini from any worker until it
  has passed, and then Gemini writes every message.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import Engine

from reactivation.core.vocabulary import Status
from tests.chains import rows
from tests.conftest import REDIS_URL
from tests.fake_gateway import FakeGateway
from tests.fake_gemini import TEST_API_KEY, FakeGemini, Reply
from tests.salon import build_salon
from tests.workers import control_app, processes, statuses, wait_for_workers, wait_until, worker_env

pytestmark = [pytest.mark.workers, pytest.mark.subprocess]

WORKERS = ["gemini-a", "gemini-b"]
LIFETIME = 300


class Rig:
    def __init__(self, gemini: FakeGemini, gateway: FakeGateway, prefix: str) -> None:
        self.gemini = gemini
        self.gateway = gateway
        self.prefix = prefix

    def run(self, engine: Engine, company_id: int, due: int) -> None:
        """Dispatch a campaign of `due` clients and wait until every row is sent."""
        today = datetime.now(ZoneInfo("Europe/Moscow")).date()
        salon = build_salon(engine, due=due, company_id=company_id, today=today, extras=False)
        control = control_app(REDIS_URL, self.prefix)
        try:
            control.send_task("reactivation.run_campaign", args=[salon.company_id, salon.today.isoformat()])
        finally:
            control.close()
        wait_until(lambda: statuses(engine, company_id)[Status.SENT] == due, timeout=120, interval=0.2, what="all sent")


@pytest.fixture(scope="module")
def rig(committed_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("gemini-workers")
    prefix = f"{redis_prefix}gemini-workers:"
    with FakeGateway(lifetime=LIFETIME) as gateway, FakeGemini(max_lifetime=LIFETIME) as gemini:
        env = worker_env(
            committed_url,
            redis_url=REDIS_URL,
            prefix=prefix,
            gateway_url=gateway.url,
            GEMINI_API_KEY=TEST_API_KEY,
            GEMINI_BASE_URL=gemini.base_url,
            GEMINI_RATE_LIMIT="1000/60",
            GEMINI_BATCH_SIZE="5",
            GEMINI_BATCH_WAIT_SECONDS="0.5",
            GEMINI_TIMEOUT_SECONDS="5",
            GEMINI_BUDGET_SECONDS="20",
        )
        with processes(env, folder) as procs:
            for name in WORKERS:
                procs.worker(name, concurrency=2)
            control = control_app(REDIS_URL, prefix)
            try:
                wait_for_workers(control, WORKERS)
            finally:
                control.close()
            yield Rig(gemini, gateway, prefix)


@pytest.fixture
def fresh(rig: Rig, redis_client: redis.Redis) -> Rig:
    """The rig with no Gemini pause or block left by another test, no recorded requests, and a good Gemini."""
    for key in redis_client.scan_iter(match=f"{rig.prefix}gemini:*", count=1000):
        redis_client.delete(key)
    rig.gemini.requests.clear()
    rig.gemini.set_default(Reply.good())
    rig.gateway.reset()
    return rig


def test_a_per_day_429_stops_every_workers_gemini_calls_and_the_run_completes_from_templates(
    fresh: Rig, committed_engine: Engine, redis_client: redis.Redis
) -> None:
    # given a Gemini whose day's quota is used up (it says so to every request)
    fresh.gemini.set_default(Reply.quota("day", "40s"))
    # when a campaign of 40 runs on two workers of two processes each
    fresh.run(committed_engine, 5101, due=40)
    # then at most the requests already on their way when the first 429 came back reached Gemini
    assert 1 <= len(fresh.gemini.requests) <= 4
    # and at template speed: once paused, no worker even asked the limiter for a slot (nothing waited for Gemini)
    checks = [int(redis_client.get(key) or 0) for key in redis_client.scan_iter(match=f"{fresh.prefix}gemini:checks:*")]
    assert 1 <= sum(checks) <= 4
    # and every client got one message, from the template, saying why
    history = rows(committed_engine, 5101)
    assert {(row.generator, row.generator_fallback_reason) for row in history} == {("template", "gemini_daily_quota")}
    assert len(fresh.gateway.messages()) == 40


def test_a_per_minute_429_backs_every_worker_off_then_gemini_writes_every_message(
    fresh: Rig, committed_engine: Engine, redis_client: redis.Redis
) -> None:
    # given a per-minute 429 asking for 3 s, then good answers
    fresh.gemini.push(Reply.quota("minute", "3s"))
    # when a campaign of 30 runs on two workers
    fresh.run(committed_engine, 5102, due=30)
    # then, once the 429 had come back, no worker's request reached Gemini until the block it set was over (only
    # requests already on their way, from the other three processes, arrive just after the refused one)
    arrivals = [request.received_at for request in fresh.gemini.requests]
    refused_at = arrivals[0]
    until = float(redis_client.get(f"{fresh.prefix}gemini:block") or 0)
    assert until >= refused_at + 3.0
    assert len([t for t in arrivals[1:] if t < until]) <= 3
    assert not [t for t in arrivals[1:] if refused_at + 1.5 <= t < until - 0.05]
    # and Gemini wrote every message after it, the rows of the refused batch waiting again meanwhile
    assert {row.generator for row in rows(committed_engine, 5102)} == {"gemini"}
    assert len(fresh.gateway.messages()) == 30
