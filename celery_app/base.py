"""The base class of every task of the app: retries when the database or Redis went away under a task, declared once.

A failover, a restart or a killed connection rolls the task's transaction back; every task here is idempotent, so
it runs again on fresh connections after a short wait (1, 2, 4 … seconds, within the longest countdown the broker's
visibility timeout allows). A task's own `max_retries` bounds how often, counting its other retries too.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Task

from celery_app.app import runtime
from reactivation.storage.db import TRANSIENT_DB_ERRORS

log = logging.getLogger(__name__)

# The database or Redis (the data store or the broker) went away: the same task may well succeed a moment later.
TRANSIENT_INFRA_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_DB_ERRORS, redis.ConnectionError, redis.TimeoutError)
MAX_INFRA_RETRIES = 8


def infra_countdown(retries: int, *, cap: float) -> float:
    """Seconds before retry number `retries + 1`: 1, 2, 4 … at most `cap`."""
    return float(min(cap, 2**retries))


class ReactivationTask(Task):
    """Every task of the app (the app's `task_cls`): retried on a lost database or Redis connection."""

    max_retries = MAX_INFRA_RETRIES

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            # Called as a plain function: no worker to send a retry to, so the error is the caller's.
            return super().__call__(*args, **kwargs)
        # A worker (or apply()) pushed this task's request already; calling `run` keeps it, retry count included.
        retries = self.request.retries
        while True:
            try:
                return self.run(*args, **kwargs)
            except TRANSIENT_INFRA_ERRORS as exc:
                countdown = infra_countdown(retries, cap=self._max_countdown())
                log.warning(
                    "task cut by a lost connection; retrying",
                    extra={
                        "task": self.name,
                        "ids": _ids(args),
                        "error": type(exc).__name__,
                        "retries": retries,
                        "countdown": countdown,
                    },
                )
                if not self.request.is_eager:
                    raise self.retry(exc=exc, countdown=countdown) from None
                # The in-process emulation (embedded default, --inline) has no broker to hold a countdown: the one
                # process waits itself, as often as a worker would retry.
                if retries >= self.max_retries:
                    raise
                time.sleep(countdown)
                retries += 1

    def _max_countdown(self) -> float:
        return float(runtime().settings.max_countdown_seconds)


def _ids(args: tuple[Any, ...]) -> list[Any]:
    """The task's integer arguments (company and row ids); phones and texts stay out of the log."""
    return [arg for arg in args if isinstance(arg, int) and not isinstance(arg, bool)]
