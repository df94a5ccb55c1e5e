"""The gate every Gemini request passes, on the real Redis: two gates stand for two workers sharing one Redis."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import redis

from reactivation.core.limiter import gemini_limiter
from reactivation.core.settings import load_settings
from reactivation.messaging.gemini_errors import KEY, REGION
from reactivation.messaging.gemini_gate import (
    DAILY_LIMIT,
    DAILY_QUOTA,
    Closed,
    GeminiGate,
    Go,
    Wait,
    next_pacific_midnight,
    pacific_day,
)
from tests.conftest import REDIS_URL
from tests.gemini_stack import make_gate

# Midnight Pacific (PST) on December 5th, 2026: a quota day has just begun.
NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
def workers(test_redis_prefix: str, redis_client: redis.Redis) -> Iterator[tuple[GeminiGate, GeminiGate]]:
    """Two workers' gates on the same Redis and the same shared limiter (10 requests a minute)."""
    settings = load_settings(
        redis_url=REDIS_URL, redis_key_prefix=test_redis_prefix, gemini_rate_limit="10/60", _env_file=None
    )
    gates = [
        make_gate(redis_client, prefix=test_redis_prefix, limiter=gemini_limiter(settings), daily_limit=None)
        for _ in range(2)
    ]
    yield gates[0], gates[1]
    gates[0].limiter.clear()


@pytest.mark.parametrize(
    ("now", "midnight"),
    [
        # winter (PST, UTC-8) and summer (PDT, UTC-7)
        (datetime(2026, 12, 5, 7, 59, tzinfo=UTC), datetime(2026, 12, 5, 8, 0, tzinfo=UTC)),
        (datetime(2026, 12, 5, 8, 0, tzinfo=UTC), datetime(2026, 12, 6, 8, 0, tzinfo=UTC)),
        (datetime(2026, 7, 1, 12, 0, tzinfo=UTC), datetime(2026, 7, 2, 7, 0, tzinfo=UTC)),
        # the night the clocks go forward (March 8th, 2026) and back (November 1st, 2026)
        (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), datetime(2026, 3, 9, 7, 0, tzinfo=UTC)),
        (datetime(2026, 10, 31, 12, 0, tzinfo=UTC), datetime(2026, 11, 1, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 1, 12, 0, tzinfo=UTC), datetime(2026, 11, 2, 8, 0, tzinfo=UTC)),
    ],
)
def test_the_quota_day_ends_at_midnight_pacific(now: datetime, midnight: datetime) -> None:
    assert next_pacific_midnight(now) == midnight
    assert pacific_day(midnight) == pacific_day(now) + timedelta(days=1)


def test_a_per_minute_block_holds_every_worker(workers: tuple[GeminiGate, GeminiGate]) -> None:
    first, second = workers
    # when one worker's request gets a per-minute 429 asking for 30 s
    first.block(NOW, 30.0, why="rate_limited:minute")
    # then the other worker waits for it too, without even asking the limiter
    decision = second.acquire(NOW + timedelta(seconds=10))
    assert decision == Wait(pytest.approx(20.0), "blocked")
    assert second.state(NOW).checks_today == 0
    # and once it has passed, both go
    assert isinstance(second.acquire(NOW + timedelta(seconds=31)), Go)
    # a shorter block never cuts a longer one short
    first.block(NOW, 30.0, why="rate_limited:minute")
    second.block(NOW, 5.0, why="rate_limited:minute")
    assert isinstance(first.acquire(NOW + timedelta(seconds=10)), Wait)


def test_unknown_429s_back_off_exponentially_for_everybody(workers: tuple[GeminiGate, GeminiGate]) -> None:
    first, second = workers
    assert [first.back_off(NOW), second.back_off(NOW), first.back_off(NOW)] == [2.0, 4.0, 8.0]
    assert isinstance(second.acquire(NOW + timedelta(seconds=7)), Wait)
    # a request that goes through starts the backoff over
    first.succeeded()
    assert first.back_off(NOW) == 2.0


def test_a_per_day_quota_closes_gemini_for_every_worker_until_midnight_pacific(
    workers: tuple[GeminiGate, GeminiGate],
) -> None:
    first, second = workers
    # when one worker learns the day's quota is used up
    closed = first.pause_for_the_day(NOW + timedelta(hours=3), DAILY_QUOTA)
    # then every worker sees Gemini closed until the next midnight in Los Angeles, and takes no limiter slot
    until = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    assert closed == Closed(DAILY_QUOTA, until)
    assert second.closed(NOW + timedelta(hours=20)) == Closed(DAILY_QUOTA, until)
    assert second.acquire(NOW + timedelta(hours=20)) == Closed(DAILY_QUOTA, until)
    assert second.state(NOW + timedelta(hours=20)).checks_today == 0
    # and from midnight on it is open again
    assert second.closed(until) is None
    assert isinstance(second.acquire(until), Go)


def test_the_own_daily_limit_stops_before_google_does(test_redis_prefix: str, redis_client: redis.Redis) -> None:
    # given GEMINI_DAILY_LIMIT=3 shared by two workers
    first, second = (make_gate(redis_client, prefix=test_redis_prefix, daily_limit=3) for _ in range(2))
    decisions = [gate.acquire(NOW) for gate in (first, second, first, second)]
    # then three requests go and the fourth pauses Gemini until midnight Pacific
    assert [type(d) for d in decisions] == [Go, Go, Go, Closed]
    assert decisions[-1] == Closed(DAILY_LIMIT, datetime(2026, 12, 6, 8, 0, tzinfo=UTC))
    state = first.state(NOW)
    assert (state.requests_today, state.daily_limit, state.day) == (4, 3, date(2026, 12, 5))
    # and the count starts over with the new quota day
    assert isinstance(second.acquire(datetime(2026, 12, 6, 8, 0, tzinfo=UTC)), Go)


def test_the_breaker_opens_once_with_one_error_line_then_probes_with_one_request(
    workers: tuple[GeminiGate, GeminiGate], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = workers
    caplog.set_level(logging.ERROR, logger="reactivation.messaging.gemini_gate")
    # when both workers get a 403 at about the same time
    first.open_breaker(NOW, KEY, detail="403 PERMISSION_DENIED")
    second.open_breaker(NOW + timedelta(seconds=1), KEY, detail="403 PERMISSION_DENIED")
    # then one ERROR line names the cause and the setting to fix
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "GEMINI_API_KEY" in errors[0].getMessage() and errors[0].__dict__["cause"] == "gemini_key"
    # and for the pause (600 s) every worker is closed with the cause as the reason
    assert second.acquire(NOW + timedelta(seconds=599)) == Closed("gemini_key", NOW + timedelta(seconds=600))
    # then it is half-open: exactly one request probes, the other worker waits for its verdict
    later = NOW + timedelta(seconds=601)
    assert first.closed(later) is None
    assert first.acquire(later) == Go(probe=True)
    assert isinstance(second.acquire(later), Wait)
    assert first.state(later).breaker_half_open
    # and the probe's success closes it for everybody
    first.succeeded()
    assert isinstance(second.acquire(later), Go)
    assert second.state(later).breaker is None


def test_a_failed_probe_opens_the_breaker_for_another_pause(
    workers: tuple[GeminiGate, GeminiGate], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = workers
    caplog.set_level(logging.ERROR, logger="reactivation.messaging.gemini_gate")
    first.open_breaker(NOW, REGION, detail="400 FAILED_PRECONDITION")
    later = NOW + timedelta(seconds=601)
    assert first.acquire(later) == Go(probe=True)
    second.open_breaker(later, REGION, detail="400 FAILED_PRECONDITION")
    assert first.acquire(later + timedelta(seconds=1)) == Closed("gemini_region", later + timedelta(seconds=600))
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(messages) == 2 and all("GEMINI_BASE_URL" in message for message in messages)
