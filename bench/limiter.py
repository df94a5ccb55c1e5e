"""The global limiter under a backlog: several processes share one Redis limit; how close do they get to the cap,
and does any sliding window ever hold more than the cap?

A scaled-down limit (30 calls per 3 s) stands for Gemini's 15 per 60 s so that the run takes seconds. Each process
acts like a Celery task with endless work: it takes a slot, or waits the countdown the limiter returns.
"""

from __future__ import annotations

import math
import multiprocessing
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from reactivation.core.limiter import gemini_limiter
from reactivation.core.settings import RateLimit, load_settings

if TYPE_CHECKING:
    from bench.common import Figure

RATE = RateLimit(30, 3)
PROCESSES = 4
DURATION_SECONDS = 9.5
# How long the processes may take to start (spawn imports the package) before the run is abandoned.
_SETUP_TIMEOUT = 60.0
# Calls are timestamped before and after `acquire`; the limiter's own timestamp lies in between.
Call = tuple[float, float]


@dataclass(frozen=True)
class LoadResult:
    calls: list[Call]
    rate: RateLimit
    duration: float

    @property
    def possible(self) -> int:
        """The most calls any limiter could allow in [start, start + duration): the cap at each window start."""
        return self.rate.calls * math.ceil(self.duration / self.rate.seconds)

    @property
    def utilization(self) -> float:
        return len(self.calls) / self.possible

    def max_in_window(self, tolerance: float = 0.0) -> int:
        """The most calls whose limiter timestamps surely fall inside one window shorter by `tolerance`."""
        return max_in_sliding_window(self.calls, self.rate.seconds - tolerance)


def max_in_sliding_window(calls: list[Call], window: float) -> int:
    """The largest number of calls that certainly happened within some span shorter than `window` seconds.

    A call's true moment lies between its before/after stamps; a group is counted only when all of its calls
    fit between the earliest "before" and a latest "after" less than `window` apart.
    """
    ordered = sorted(calls)
    best = 0
    for index, (start, _) in enumerate(ordered):
        ends = sorted(after for before, after in ordered[index:] if before >= start)
        inside = sum(1 for end in ends if end < start + window)
        best = max(best, inside)
    return best


def hammer(redis_url: str, key_prefix: str, rate: str, ready: Any, go: Any, window: Any, results: Any) -> None:
    """One process with endless work: take a slot or sleep the countdown the limiter returns, until told to stop."""
    settings = load_settings(redis_url=redis_url, redis_key_prefix=key_prefix, gemini_rate_limit=rate, _env_file=None)
    limiter = gemini_limiter(settings)
    limiter.wait_seconds()  # connect and load the Lua scripts before the start
    ready.put(True)
    if not go.wait(_SETUP_TIMEOUT):
        results.put([])
        return
    start_at, stop_at = window[0], window[1]
    time.sleep(max(start_at - time.time(), 0.0))
    calls: list[Call] = []
    # Bounded: at most one pass per slot or per countdown, and never past stop_at.
    for _ in range(100_000):
        before = time.time()
        if before >= stop_at:
            break
        slot = limiter.acquire()
        if slot.acquired:
            calls.append((before, time.time()))
        else:
            time.sleep(min(slot.wait_seconds, max(stop_at - time.time(), 0.0)))
    results.put(calls)


def run_load(*, redis_url: str, key_prefix: str, rate: RateLimit, processes: int, duration: float) -> LoadResult:
    """Start `processes` hammering one limit for `duration` seconds from the same moment; collect every call."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go = context.Event()
    window = context.Array("d", [0.0, 0.0])
    workers = [
        context.Process(target=hammer, args=(redis_url, key_prefix, str(rate), ready, go, window, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=_SETUP_TIMEOUT)
        start_at = time.time() + 0.2
        window[0], window[1] = start_at, start_at + duration
        go.set()
        calls = [call for _ in workers for call in results.get(timeout=duration + _SETUP_TIMEOUT)]
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
    return LoadResult(calls=calls, rate=rate, duration=duration)


def run() -> list[Figure]:
    # Imported here: spawned load processes import this module, and bench.common pulls in the database stack.
    from bench.common import REDIS_URL, Figure

    prefix = f"bench:limiter:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        result = run_load(
            redis_url=REDIS_URL, key_prefix=prefix, rate=RATE, processes=PROCESSES, duration=DURATION_SECONDS
        )
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()
    note = f"{PROCESSES} processes, limit {RATE}, {DURATION_SECONDS}s backlog; {len(result.calls)} calls"
    return [
        Figure("limiter utilization under backlog", result.utilization * 100, "%", note=note),
        Figure(
            "limiter max calls in any sliding window",
            result.max_in_window(),
            "calls",
            baseline=RATE.calls * PROCESSES,
            baseline_label="per-process limits (Celery rate_limit, by construction)",
            note=f"cap {RATE.calls} per {RATE.seconds}s",
        ),
    ]
