"""Whether a Gemini request may go now, decided for every worker at once from state kept in Redis.

Before each request the gate looks, in this order, at:
- the day's pause: a per-day quota (a 429 whose quotaId says PerDay) or GEMINI_DAILY_LIMIT reached stops Gemini for
  every worker until the next midnight in America/Los_Angeles, when Google's quota day turns; messages meanwhile come
  from the templates (fallback_reason `gemini_daily_quota` or `gemini_daily_limit`) without taking a limiter slot;
- the breaker: a region, key or model refusal, or an outage (OUTAGE_FAILURES requests in a row unanswered; see
  gemini_errors.CAUSES), keeps Gemini off for GEMINI_PAUSE_SECONDS, logged once as an ERROR naming the setting to
  fix; then exactly one request (the half-open probe) tries again, and its success closes the breaker while its
  failure opens it for another pause;
- the block: a per-minute 429 blocks every worker for its RetryInfo delay, an unknown 429 for an exponentially
  growing delay;
- the shared rate limiter (GEMINI_RATE_LIMIT), then the day's request count against GEMINI_DAILY_LIMIT.

Instants are the callers' `now` (stored as values); Redis's own expiry only clears keys some time after they stop
mattering, so a host whose clock differs from Redis's still reads the right state. The gate also counts, per Pacific
day, the requests it let through and the limiter checks it made: what `campaign status` and the bench report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

import redis

from reactivation.core.limiter import Limiter
from reactivation.messaging.gemini_errors import OUTAGE_FAILURES, UNAVAILABLE, Cause

log = logging.getLogger(__name__)

PACIFIC = ZoneInfo("America/Los_Angeles")
DAILY_QUOTA = "gemini_daily_quota"
DAILY_LIMIT = "gemini_daily_limit"
# Unknown 429s (a spend cap, a quota without a name): 2, 4, 8 ... seconds for every worker, at most 5 minutes.
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 300.0
# How long a worker that finds the probe taken waits before looking again.
_PROBE_WAIT_SECONDS = 1.0
# Unanswered requests count as "in a row" while they come within this of each other.
_UNANSWERED_KEEP_SECONDS = 900
# Keys outlive the instant they hold by this much, then Redis drops them; the instant itself decides.
_KEEP = timedelta(days=1)
_COUNTER_DAYS = 3


@dataclass(frozen=True)
class Go:
    """Send the request now; `probe` when it is the half-open breaker's one try."""

    probe: bool = False


@dataclass(frozen=True)
class Wait:
    """Not now: try again after `seconds` (the rate limit, a block, another worker's probe)."""

    seconds: float
    why: str


@dataclass(frozen=True)
class Closed:
    """No Gemini until `until`: write templates with `reason` as their fallback_reason."""

    reason: str
    until: datetime | None


Decision = Go | Wait | Closed


@dataclass(frozen=True)
class GateState:
    """What an operator sees: pauses, the breaker, a block, and the Pacific day's requests and limiter checks."""

    day: date
    requests_today: int
    checks_today: int
    daily_limit: int | None
    paused: Closed | None = None
    breaker: Closed | None = None
    breaker_half_open: bool = False
    blocked_until: datetime | None = None


def pacific_day(now: datetime) -> date:
    """Google's quota day that `now` falls in."""
    return now.astimezone(PACIFIC).date()


def next_pacific_midnight(now: datetime) -> datetime:
    """The instant (UTC) the next quota day begins: midnight in America/Los_Angeles, daylight saving included."""
    tomorrow = pacific_day(now) + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=PACIFIC).astimezone(UTC)


def _ms(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() * 1000))


class GeminiGate:
    """The shared pause, breaker, block and limiter in front of every Gemini request of every worker."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        limiter: Limiter,
        daily_limit: int | None,
        pause_seconds: float,
        probe_seconds: float,
    ) -> None:
        self._redis = client
        self._prefix = f"{prefix}gemini:"
        self.limiter = limiter
        self.daily_limit = daily_limit
        self.pause = timedelta(seconds=pause_seconds)
        self._probe_ms = _ms(timedelta(seconds=probe_seconds))

    def _key(self, name: str) -> str:
        return self._prefix + name

    def _counter(self, name: str, now: datetime) -> str:
        return self._key(f"{name}:{pacific_day(now).isoformat()}")

    def _get(self, *keys: str) -> list[str | None]:
        return cast(list[str | None], self._redis.mget(keys))

    def _values(self, *names: str) -> list[str | None]:
        """The named keys' values in one round trip (the client decodes responses)."""
        return self._get(*(self._key(name) for name in names))

    def _incr(self, key: str) -> int:
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, _COUNTER_DAYS * 86_400)
        return int(pipe.execute()[0])

    def closed(self, now: datetime) -> Closed | None:
        """Why Gemini is off for everybody right now (the day's pause, an open breaker), or None."""
        pause, breaker = self._values("pause", "breaker")
        return _active(pause, now) or _active(breaker, now)

    def acquire(self, now: datetime) -> Decision:
        """Whether one request may go now; Go takes a limiter slot and counts the request."""
        pause, breaker, block = self._values("pause", "breaker", "block")
        if closed := _active(pause, now) or _active(breaker, now):
            return closed
        if block is not None and float(block) > now.timestamp():
            return Wait(float(block) - now.timestamp(), "blocked")
        probe = breaker is not None
        if probe and not self._redis.set(self._key("breaker:probe"), "1", nx=True, px=self._probe_ms):
            return Wait(_PROBE_WAIT_SECONDS, "probe")
        self._incr(self._counter("checks", now))
        slot = self.limiter.acquire()
        if not slot.acquired:
            if probe:
                self._redis.delete(self._key("breaker:probe"))
            return Wait(slot.wait_seconds, "rate_limit")
        requests = self._incr(self._counter("requests", now))
        if self.daily_limit is not None and requests > self.daily_limit:
            return self.pause_for_the_day(now, DAILY_LIMIT)
        return Go(probe=probe)

    def block(self, now: datetime, seconds: float, *, why: str) -> None:
        """No request from any worker for `seconds` (a per-minute quota's RetryInfo delay, a backoff)."""
        until = now + timedelta(seconds=seconds)
        [current] = self._values("block")
        if current is None or float(current) < until.timestamp():
            self._redis.set(self._key("block"), repr(until.timestamp()), px=_ms(until - now + _KEEP))
        log.warning(
            "gemini blocked for every worker",
            extra={"why": why, "seconds": round(seconds, 2), "until": until.isoformat()},
        )

    def back_off(self, now: datetime) -> float:
        """An unknown 429: block every worker for 2, 4, 8 ... seconds (consecutive ones), at most 5 minutes."""
        pipe = self._redis.pipeline()
        pipe.incr(self._key("backoff"))
        pipe.expire(self._key("backoff"), 3600)
        count = int(pipe.execute()[0])
        seconds = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (count - 1))
        self.block(now, seconds, why="rate_limited:unknown")
        return seconds

    def pause_for_the_day(self, now: datetime, reason: str) -> Closed:
        """Gemini off for every worker until the next midnight Pacific (a per-day quota, or GEMINI_DAILY_LIMIT)."""
        until = next_pacific_midnight(now)
        value = json.dumps({"reason": reason, "until": until.isoformat()})
        if self._redis.set(self._key("pause"), value, nx=True, px=_ms(until - now + _KEEP)):
            log.warning(
                "gemini paused for every worker until midnight Pacific; templates meanwhile",
                extra={"reason": reason, "until": until.isoformat()},
            )
        else:
            current = _active(self._values("pause")[0], now)
            if current is None:  # an earlier day's pause: replace it
                self._redis.set(self._key("pause"), value, px=_ms(until - now + _KEEP))
        return Closed(reason, until)

    def open_breaker(self, now: datetime, cause: Cause, *, detail: str) -> Closed:
        """Keep Gemini off for GEMINI_PAUSE_SECONDS; the worker that opens it logs the one ERROR line."""
        until = now + self.pause
        value = json.dumps({"reason": cause.reason, "until": until.isoformat()})
        key = self._key("breaker")
        opened = bool(self._redis.set(key, value, nx=True, px=_ms(self.pause + _KEEP)))
        if not opened and _active(self._values("breaker")[0], now) is None:
            # Half-open, and the probe failed: open again for another pause.
            self._redis.set(key, value, px=_ms(self.pause + _KEEP))
            opened = True
        self._redis.delete(self._key("breaker:probe"))
        if opened:
            log.error(
                "gemini is off for every worker (%s); templates for %d s, then one request probes. %s",
                cause.reason,
                int(self.pause.total_seconds()),
                cause.advice[0].upper() + cause.advice[1:],
                extra={"cause": cause.reason, "setting": cause.setting, "detail": detail, "until": until.isoformat()},
            )
        return Closed(cause.reason, until)

    def went_unanswered(self, now: datetime, *, detail: str) -> Closed | None:
        """A request got no answer (timeout, dropped connection, 5xx): counted across every worker until one is
        answered; at OUTAGE_FAILURES in a row Gemini is down and the breaker opens. A half-open breaker's probe that
        goes unanswered opens it again whatever the count (which may have expired during a long pause)."""
        pipe = self._redis.pipeline()
        pipe.incr(self._key("unanswered"))
        pipe.expire(self._key("unanswered"), _UNANSWERED_KEEP_SECONDS)
        pipe.get(self._key("breaker"))
        count, _, breaker = pipe.execute()
        if closed := _active(breaker, now):
            return closed  # opened meanwhile by another worker, for this or another cause
        if int(count) < OUTAGE_FAILURES and breaker is None:
            return None
        return self.open_breaker(now, UNAVAILABLE, detail=f"{count} requests in a row unanswered, the last: {detail}")

    def heard_back(self) -> None:
        """Gemini answered, if only with a 429: whatever failed before was no outage."""
        self._redis.delete(self._key("unanswered"))

    def succeeded(self) -> None:
        """A request answered: a half-open breaker closes, the unknown-429 backoff starts over."""
        pipe = self._redis.pipeline()
        pipe.delete(self._key("breaker"))
        pipe.delete(self._key("breaker:probe"))
        pipe.delete(self._key("backoff"))
        pipe.delete(self._key("unanswered"))
        if pipe.execute()[0]:
            log.info("gemini breaker closed: a request went through")

    def state(self, now: datetime) -> GateState:
        """The gate as `campaign status` shows it."""
        pause, breaker, block = self._values("pause", "breaker", "block")
        requests, checks = self._get(self._counter("requests", now), self._counter("checks", now))
        blocked = float(block) if block is not None and float(block) > now.timestamp() else None
        return GateState(
            day=pacific_day(now),
            requests_today=int(requests or 0),
            checks_today=int(checks or 0),
            daily_limit=self.daily_limit,
            paused=_active(pause, now),
            breaker=_stored(breaker),
            breaker_half_open=breaker is not None and _active(breaker, now) is None,
            blocked_until=datetime.fromtimestamp(blocked, UTC) if blocked is not None else None,
        )


def _stored(value: str | None) -> Closed | None:
    if value is None:
        return None
    data = json.loads(value)
    return Closed(str(data["reason"]), datetime.fromisoformat(data["until"]))


def _active(value: str | None, now: datetime) -> Closed | None:
    """The stored pause or breaker, when its instant is still ahead of `now`."""
    stored = _stored(value)
    return stored if stored is not None and stored.until is not None and stored.until > now else None
