from __future__ import annotations

import datetime as dt

import pytest
import redis
import time_machine
from limits.storage import MemoryStorage, Storage

from bench.limiter import max_in_sliding_window, run_load
from reactivation.core.limiter import Limiter, gemini_limiter, make_storage, whatsapp_limiter
from reactivation.core.settings import RateLimit, Settings, load_settings
from tests.conftest import REDIS_URL

START = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest, settings: Settings, redis_client: redis.Redis) -> Storage:
    """Both storages the product uses: Redis (shared by processes) and memory (the embedded default)."""
    if request.param == "memory":
        return MemoryStorage()
    return make_storage(settings)


def test_the_cap_holds_and_the_refusal_says_how_long_to_wait(storage: Storage) -> None:
    # given a 15/60 limit at a frozen moment
    limiter = Limiter(storage, RateLimit(15, 60), name="test-cap")
    with time_machine.travel(START, tick=False) as clock:
        # when 15 calls take their slots
        assert all(limiter.acquire().acquired for _ in range(15))
        # then the 16th is refused with the full window to wait
        refused = limiter.acquire()
        assert not refused.acquired
        assert refused.wait_seconds == pytest.approx(60, abs=0.02)
        # and halfway through, half the window remains
        clock.shift(30)
        assert limiter.wait_seconds() == pytest.approx(30, abs=0.02)
        assert not limiter.acquire().acquired
        # and a caller who waits exactly the time it was told finds the slot free
        clock.shift(limiter.wait_seconds())
        assert limiter.wait_seconds() == 0.0
        assert limiter.acquire().acquired


def test_the_window_slides_rather_than_resetting_on_the_minute(storage: Storage) -> None:
    # given 15 calls at 10:00:50, the end of a clock minute
    limiter = Limiter(storage, RateLimit(15, 60), name="test-slide")
    with time_machine.travel(START + dt.timedelta(seconds=50), tick=False) as clock:
        assert all(limiter.acquire().acquired for _ in range(15))
        # when the next clock minute starts (a fixed window would allow 15 more here)
        clock.shift(11)
        # then nothing is allowed until the calls are 60 s old
        assert not limiter.acquire().acquired
        assert limiter.wait_seconds() == pytest.approx(49, abs=0.02)
        clock.shift(limiter.wait_seconds())
        assert limiter.acquire().acquired


def test_spread_out_calls_free_their_slots_one_by_one(storage: Storage) -> None:
    # given a 3/10 limit and calls at 0 s, 4 s and 8 s
    limiter = Limiter(storage, RateLimit(3, 10), name="test-spread")
    with time_machine.travel(START, tick=False) as clock:
        for _ in range(3):
            assert limiter.acquire().acquired
            clock.shift(4)
        # when a fourth call comes at 12 s / then it waits for nothing: the call at 0 s has left the window
        assert limiter.acquire().acquired
        # and a fifth, at 12 s too, waits until the call at 4 s leaves (at 14 s)
        refused = limiter.acquire()
        assert not refused.acquired
        assert refused.wait_seconds == pytest.approx(2, abs=0.02)


def test_whatsapp_limits_are_per_sender(settings: Settings, redis_client: redis.Redis) -> None:
    # given a 2/60 WhatsApp limit
    limiter = whatsapp_limiter(settings.model_copy(update={"whatsapp_rate_limit": "2/60"}))
    try:
        with time_machine.travel(START, tick=False):
            # when one sender uses its two slots
            assert limiter.acquire("sender-a").acquired
            assert limiter.acquire("sender-a").acquired
            # then it is limited while another sender is not
            assert not limiter.acquire("sender-a").acquired
            assert limiter.acquire("sender-b").acquired
    finally:
        limiter.clear("sender-a")
        limiter.clear("sender-b")


def test_keys_live_under_the_configured_prefix(
    settings: Settings, redis_client: redis.Redis, redis_prefix: str
) -> None:
    # given the Gemini limiter on real Redis / when a call takes a slot
    limiter = gemini_limiter(settings)
    limiter.clear()
    assert limiter.acquire().acquired
    # then its key is under the product's prefix, and nowhere else
    keys = list(redis_client.scan_iter(match=f"{redis_prefix}limits:*gemini*"))
    assert keys, "the limiter wrote no key under the prefix"
    assert not list(redis_client.scan_iter(match="LIMITS:*gemini*"))
    limiter.clear()


def test_without_redis_the_embedded_default_counts_in_memory() -> None:
    settings = load_settings(redis_url=None, _env_file=None)
    assert isinstance(make_storage(settings), MemoryStorage)


@pytest.mark.parametrize(
    ("calls", "window", "expected"),
    [
        ([(0.0, 0.01), (0.5, 0.51), (0.99, 1.0)], 1.0, 2),  # the third ends exactly at the window's edge
        ([(0.0, 0.01), (0.5, 0.51), (0.9, 0.91)], 1.0, 3),
        ([(0.0, 0.01), (1.0, 1.01), (2.0, 2.01)], 1.0, 1),
        ([], 1.0, 0),
    ],
)
def test_the_sliding_window_count_used_by_the_load_test(
    calls: list[tuple[float, float]], window: float, expected: int
) -> None:
    assert max_in_sliding_window(calls, window) == expected


@pytest.mark.subprocess
@pytest.mark.timeout(120)
def test_processes_sharing_redis_never_exceed_the_cap_and_get_close_to_it(redis_prefix: str) -> None:
    # given four processes with endless work sharing a 10-per-second limit in real Redis
    rate = RateLimit(10, 1)
    # when they hammer it for 2.5 s, each waiting the countdown the limiter returns
    result = run_load(redis_url=REDIS_URL, key_prefix=f"{redis_prefix}load:", rate=rate, processes=4, duration=2.5)
    # then no sliding second ever held more than 10 calls (5 % slack for the stamps around each call)
    assert result.calls, "no process made a call"
    assert result.max_in_window(tolerance=0.05) <= rate.calls
    # and under the backlog they used most of what the limit allows (30 calls in 2.5 s)
    assert result.utilization >= 0.7, f"{len(result.calls)} of {result.possible} calls"


def test_a_sender_with_a_pace_of_its_own_is_held_to_it(settings: Settings, redis_client: redis.Redis) -> None:
    # given the 30/60 default and a new Cloud API number allowed 2 in a day
    limiter = whatsapp_limiter(settings)
    slow = RateLimit(2, 86_400)
    try:
        with time_machine.travel(START, tick=False):
            assert limiter.acquire("cloud_api:777", rate=slow).acquired
            assert limiter.acquire("cloud_api:777", rate=slow).acquired
            refused = limiter.acquire("cloud_api:777", rate=slow)
            assert not refused.acquired and 86_000 < refused.wait_seconds <= 86_401
            # while the default pace still applies to another number
            assert limiter.acquire("cloud_api:555").acquired
    finally:
        limiter.clear("cloud_api:555")
        limiter.clear("cloud_api:777", rate=slow)
