"""The Gemini writing stack for tests, against the fake server: the real google-genai client, a gate on an in-process
Redis stand-in (or the real Redis a test passes), a limiter in memory, and sleeps that take no time."""

from __future__ import annotations

import time
from typing import Any

import fakeredis
import redis
from limits.storage import MemoryStorage

from reactivation.core.limiter import Limiter
from reactivation.core.settings import RateLimit
from reactivation.messaging.gemini import GeminiWriter
from reactivation.messaging.gemini_batch import BatchWriter
from reactivation.messaging.gemini_gate import GeminiGate
from tests.fake_gemini import FakeGemini, settings_for


class FakeTime:
    """Sleeps that take no time: the writer's clock moves by what it sleeps, on top of the real clock."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds

    def clock(self) -> float:
        return time.monotonic() + self.offset


def make_gate(
    client: redis.Redis | None = None,
    *,
    prefix: str = "test:",
    rate: str = "1000/60",
    limiter: Limiter | None = None,
    daily_limit: int | None = None,
    pause_seconds: float = 600.0,
) -> GeminiGate:
    """A gate on `client` (default: a fresh in-process stand-in) with its own in-memory limiter unless given one."""
    return GeminiGate(
        client if client is not None else fakeredis.FakeRedis(decode_responses=True),
        prefix=prefix,
        limiter=limiter or Limiter(MemoryStorage(), RateLimit.parse(rate), name="gemini-test"),
        daily_limit=daily_limit,
        pause_seconds=pause_seconds,
        probe_seconds=5.0,
    )


def batch_writer(
    fake: FakeGemini,
    *,
    fake_time: FakeTime | None = None,
    gate: GeminiGate | None = None,
    real_time: bool = False,
    **overrides: Any,
) -> BatchWriter:
    """A BatchWriter talking to `fake`, with settings_for's small timeouts unless overridden; its sleeps take no time
    unless `real_time` (for waits on a limiter, which keeps real time)."""
    settings = settings_for(fake, **overrides)
    writer, gate = GeminiWriter(settings), gate or make_gate()
    if real_time:
        return BatchWriter(writer, gate, settings, sleep=time.sleep, clock=time.monotonic)
    fake_time = fake_time or FakeTime()
    return BatchWriter(writer, gate, settings, sleep=fake_time.sleep, clock=fake_time.clock)
