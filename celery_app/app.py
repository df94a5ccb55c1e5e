"""Builds the Celery app from settings and wires the per-process runtime (engine after fork, never at import)."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from celery_app.config import celery_config
from celery_app.worker_logs import quiet_rate_limit_retries, waits
from reactivation.core.logs import configure_logging
from reactivation.core.settings import Settings, get_settings
from reactivation.runtime import Runtime

# Every task is a ReactivationTask: retried on a lost database or Redis connection (celery_app.base).
app = Celery("reactivation", include=["celery_app.tasks"], task_cls="celery_app.base:ReactivationTask")

_runtime: Runtime | None = None


def configure(settings: Settings) -> Celery:
    """(Re)configure the app and this process's runtime from `settings`."""
    global _runtime
    previous_broker = app.conf.broker_url
    app.conf.update(celery_config(settings))
    if app.conf.broker_url != previous_broker:
        _forget_broker_connections()
    if _runtime is not None:
        _runtime.dispose()
    _runtime = Runtime(settings)
    return app


def _forget_broker_connections() -> None:
    # Celery keeps the connection pool (and the producers on it) of the first broker it published to; an app
    # reconfigured in the same process (the CLI's tests, one after another) must publish to the broker it has now.
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None


def runtime() -> Runtime:
    """This process's runtime, built on first use (after the worker forked)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


@signals.worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    # A forked child must not reuse the parent's database connections.
    global _runtime
    settings = _runtime.settings if _runtime is not None else get_settings()
    _runtime = Runtime(settings)


@signals.worker_process_shutdown.connect
def _dispose_runtime(**_: Any) -> None:
    if _runtime is not None:
        _runtime.dispose()


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    configure_logging(runtime().settings.log_level)
    quiet_rate_limit_retries()


@signals.task_postrun.connect
def _sum_up_waits(**_: Any) -> None:
    # The minute's summary also when the waits have stopped (a finished campaign), at the next task that runs.
    waits.flush_if_due()


configure(get_settings())
