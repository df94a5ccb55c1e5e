"""Global rate limits shared by every worker and process: at most N calls in ANY sliding window of S seconds.

Celery's own `rate_limit` counts per worker process, so four workers would make 4 × 15 Gemini calls a minute. The
limits live in Redis instead, through the `limits` library's moving-window strategy: one atomic Lua script keeps
the timestamps of the last N calls in a list and admits a call only when the N-th newest is older than S seconds.
That is a true sliding window; a fixed window would let 2 × N through around its edge.

A call that gets no slot learns how long until the next one, so that a Celery task can `self.retry(countdown=…)`
instead of sleeping in a worker. Timestamps come from each caller's clock: hosts sharing a limit keep NTP time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from reactivation.core.settings import RateLimit, Settings

GEMINI = "gemini"
WHATSAPP = "whatsapp"
# The identifier of a limit that has one bucket for everybody (Gemini's quota is per API key, not per salon).
GLOBAL = "global"
# When a slot is refused but the window has just freed up (another caller raced us to it), try again this soon.
_RACE_RETRY_SECONDS = 0.05
# The window's edge is inclusive: a call exactly one window after the oldest is still refused. Waking this much
# later means a caller who waits the returned time finds the slot free.
_WAKE_MARGIN = 0.01


@dataclass(frozen=True)
class Slot:
    """Whether a call may go now; if not, how many seconds until the next slot frees."""

    acquired: bool
    wait_seconds: float = 0.0


class Limiter:
    """One named limit ("gemini", "whatsapp") over a `limits` storage, keyed by an identifier (global, a sender)."""

    def __init__(self, storage: Storage, rate: RateLimit, *, name: str) -> None:
        self.name = name
        self.rate = rate
        self._item = RateLimitItemPerSecond(rate.calls, rate.seconds)
        self._strategy = MovingWindowRateLimiter(storage)

    def acquire(self, key: str = GLOBAL, *, rate: RateLimit | None = None) -> Slot:
        """Take a slot for one call now, or learn how long until one frees; atomic across processes. `rate`
        overrides the limit's own for this key (a sender with a pace of its own)."""
        item = self._item_for(rate)
        if self._strategy.hit(item, self.name, key):
            return Slot(acquired=True)
        return Slot(acquired=False, wait_seconds=max(self.wait_seconds(key, rate=rate), _RACE_RETRY_SECONDS))

    def _item_for(self, rate: RateLimit | None) -> RateLimitItemPerSecond:
        if rate is None or rate == self.rate:
            return self._item
        return RateLimitItemPerSecond(rate.calls, rate.seconds)

    def wait_seconds(self, key: str = GLOBAL, *, rate: RateLimit | None = None) -> float:
        """Seconds until a slot is free (0.0 when one is free now), without taking it."""
        stats = self._strategy.get_window_stats(self._item_for(rate), self.name, key)
        if stats.remaining > 0:
            return 0.0
        return max(stats.reset_time - time.time(), 0.0) + _WAKE_MARGIN

    def clear(self, key: str = GLOBAL, *, rate: RateLimit | None = None) -> None:
        """Forget the calls counted under the key (an operator's reset, or a test's)."""
        self._strategy.clear(self._item_for(rate), self.name, key)


def make_storage(settings: Settings) -> Storage:
    """Redis at REDIS_URL with the product's key prefix, or in-process memory for the embedded default."""
    if settings.redis_url is None:
        # The embedded default runs every task in one process, so an in-process window is the global one.
        return MemoryStorage()
    return RedisStorage(
        settings.redis_url,
        key_prefix=f"{settings.redis_key_prefix}limits",
        socket_timeout=5,
        socket_connect_timeout=5,
    )


def gemini_limiter(settings: Settings, storage: Storage | None = None) -> Limiter:
    """GEMINI_RATE_LIMIT for every Gemini call made by any process; acquire with the default key."""
    return Limiter(storage or make_storage(settings), settings.gemini_limit, name=GEMINI)


def whatsapp_limiter(settings: Settings, storage: Storage | None = None) -> Limiter:
    """WHATSAPP_RATE_LIMIT per sender: acquire with the sender's id (or the company's, when it has none)."""
    return Limiter(storage or make_storage(settings), settings.whatsapp_limit, name=WHATSAPP)
