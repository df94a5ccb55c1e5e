"""Celery configuration built from settings: serialization, reliability, queues, routes, the beat schedule."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab
from kombu import Queue

from reactivation.core.settings import Settings
from reactivation.core.vocabulary import ChainStep

QUEUES = ("default", "gemini", "whatsapp")


def task_name(step: ChainStep) -> str:
    """The Celery task that runs a chain step."""
    return f"reactivation.{step.value}"


# Everything else, the per-company jobs included, goes to the default queue.
ROUTES = {
    task_name(ChainStep.GENERATE_MESSAGE): {"queue": "gemini"},
    # The batching task that writes the queued rows' messages (reactivation.flow.batching).
    "reactivation.write_messages": {"queue": "gemini"},
    task_name(ChainStep.SEND_MESSAGE): {"queue": "whatsapp"},
}

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # The tick's period comes from BEAT_TICK_SECONDS (default 300).
    "plan-campaigns": {"task": "reactivation.plan_campaigns", "schedule": 300.0},
    # Each per-company job below sends one task per company. Every minute: a chain lost with a killed worker is found
    # 3 minutes after its last write (reactivation.flow.sweeps), so it resumes within 5 minutes of the crash.
    "sweep-stuck-rows": {"task": "reactivation.sweep", "schedule": 60.0},
    # Hourly; the task picks the companies whose local time is Sunday 03:xx.
    "plan-averages": {"task": "reactivation.plan_averages", "schedule": crontab(minute=0)},
    "attribute-bookings": {"task": "reactivation.attribute_bookings", "schedule": crontab(minute=30)},
    "retention": {"task": "reactivation.retention", "schedule": crontab(minute=15, hour=2)},
    # Nightly: the kept due dates of clients whose last visit, last service or value changed (see timing/due_dates).
    "refresh-due-dates": {"task": "reactivation.refresh_due_dates", "schedule": crontab(minute=45, hour=1)},
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The app's configuration; every option name here is one Celery knows (checked by a test)."""
    visibility = settings.celery_visibility_timeout_seconds
    transport: dict[str, Any] = {
        "visibility_timeout": visibility,
        # A dead worker's unacknowledged tasks come back once the visibility timeout has passed; kombu looks for
        # them every interval × throttle seconds (100 s by default). Looking every tenth of the timeout
        # (at most a minute) brings them back soon after it passes, for a cheap sorted-set scan.
        "unacked_restore_interval": max(1, min(60, visibility // 10)),
        "unacked_restore_throttle": 1,
    }
    if settings.redis_key_prefix:
        # Tests and shared Redis servers keep the broker's keys under this process's prefix too.
        transport["global_keyprefix"] = settings.redis_key_prefix
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "result_backend": None,
        "result_backend_transport_options": dict(transport),
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A broker connection lost mid-task (a Redis restart) lets the running steps finish. Cancelling them would
        # kill a send between its `sending` commit and the gateway's answer: a message never sent again, `unknown`.
        # Letting them finish can only run a step twice (a redelivered copy), and every step is idempotent.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # On SIGTERM finish what runs for this long, then requeue the rest (acks_late) instead of losing it.
        "worker_soft_shutdown_timeout": 30.0,
        "worker_enable_soft_shutdown_on_idle": True,
        "task_soft_time_limit": 120,
        "task_time_limit": 180,
        "task_default_queue": "default",
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_routes": ROUTES,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "beat_schedule": {
            **BEAT_SCHEDULE,
            "plan-campaigns": {**BEAT_SCHEDULE["plan-campaigns"], "schedule": settings.beat_tick_seconds},
        },
        "task_always_eager": settings.embedded,
        "task_eager_propagates": True,
    }
