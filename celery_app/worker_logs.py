"""What a worker says about rate-limit waits: one DEBUG line when a task starts waiting, one INFO line a minute.

A campaign is paced by its limits (30 messages a minute per sender, 15 Gemini calls a minute): most of its chain
steps wait for a slot, some many times. Celery writes two INFO lines for every such retry ("Task … received" when
the countdown copy arrives, "Task … retry: Retry in 1.9s" when it is sent), thousands for one campaign, burying
what matters. Here a rate-limit retry carries a `RateLimitWait` as its reason; `QuietRateLimitRetries` moves
Celery's lines about it (and the "received" line of any retried copy) to DEBUG, and `WaitSummary` counts the waits
and says once a minute how many there were, per limit. Retries for other reasons keep Celery's INFO line.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# How often a worker process sums up its rate-limit waits.
SUMMARY_PERIOD_SECONDS = 60.0


class RateLimitWait(Exception):
    """The reason a chain step is retried when its rate limit has no slot yet (it names the limit and the wait)."""

    def __init__(self, limit: str, seconds: float) -> None:
        super().__init__(f"{limit} rate limit: next slot in {seconds:.1f} s")
        self.limit = limit


class WaitSummary:
    """Rate-limit waits counted per limit in one worker process; a summary once per period, then counted afresh."""

    def __init__(self, *, period: float = SUMMARY_PERIOD_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._period = period
        self._clock = clock
        self._since = clock()
        self._waits: Counter[str] = Counter()

    def record(self, limit: str) -> None:
        """Count one wait for `limit`, and say how many there were when a period has passed."""
        self._waits[limit] += 1
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Log the period's waits (INFO, one line) once the period has passed; nothing when there were none."""
        now = self._clock()
        elapsed = now - self._since
        if elapsed < self._period:
            return
        if self._waits:
            log.info(
                "rate-limit waits",
                extra={
                    **{f"{limit}_waits": count for limit, count in sorted(self._waits.items())},
                    "seconds": round(elapsed),
                },
            )
        self._waits.clear()
        self._since = now


class QuietRateLimitRetries(logging.Filter):
    """Celery's INFO lines about a retry that only waits for a rate limit become DEBUG lines.

    Celery logs with the format's arguments in `record.data` ("exc" for a retry, "eta" for a received task): a
    retry whose reason is a RateLimitWait, and the arrival of any retried copy (it has an ETA; the retry before
    it was logged or counted already), are demoted, and dropped unless DEBUG is on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # Decided once per record, however many handlers it passes.
        quiet = getattr(record, "_quiet_wait", None)
        if quiet is None:
            quiet = record._quiet_wait = self._demote(record)
        return not quiet or logging.getLogger().isEnabledFor(logging.DEBUG)

    @staticmethod
    def _demote(record: logging.LogRecord) -> bool:
        """Whether this is a line about a rate-limit wait (then made a DEBUG line)."""
        data: Any = getattr(record, "data", None)
        if not isinstance(data, dict) or not record.name.startswith("celery."):
            return False
        # Celery's `data` is the message's own arguments again (a task's args among them: a reply's text, a phone):
        # as a key=value field the line would say everything twice. Kept aside: a leading "_" keeps it out.
        record._celery_data = data
        delattr(record, "data")
        if record.levelno != logging.INFO:
            return False
        retry = record.name == "celery.app.trace" and RateLimitWait.__name__ in str(data.get("exc", ""))
        retried_copy = record.name == "celery.worker.strategy" and data.get("eta") is not None
        if not (retry or retried_copy):
            return False
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


# This process's count (each forked worker process keeps its own, as each writes its own lines).
waits = WaitSummary()


def quiet_rate_limit_retries(root: logging.Logger | None = None) -> None:
    """Put the filter on every handler of the root logger (where Celery's records end up); idempotent."""
    for handler in (root or logging.getLogger()).handlers:
        if not any(isinstance(existing, QuietRateLimitRetries) for existing in handler.filters):
            handler.addFilter(QuietRateLimitRetries())
