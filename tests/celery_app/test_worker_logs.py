"""A worker's lines about rate-limit waits: Celery's per-retry INFO lines become DEBUG, one summary a minute at INFO,
and a step that waits says so once at DEBUG. Records are built the way Celery builds them (`record.data`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import Retry

from celery_app import tasks
from celery_app.worker_logs import QuietRateLimitRetries, RateLimitWait, WaitSummary, quiet_rate_limit_retries
from reactivation.flow.pipeline import RetryLater

TASK = "reactivation.send_message"
TASK_ID = "3f2c1a9e-1234-5678-9012-345678901234"


def celery_record(logger: str, message: str, data: dict[str, Any]) -> logging.LogRecord:
    record = logging.LogRecord(logger, logging.INFO, __file__, 1, message, (data,), None)
    record.data = data
    return record


def retry_line(reason: BaseException | None) -> logging.LogRecord:
    """Celery's "Task … retry: Retry in 1.9s: RateLimitWait(…)" line (celery.app.trace)."""
    text = str(Retry(exc=reason, when=1.9))
    return celery_record("celery.app.trace", "Task %(name)s[%(id)s] retry: %(exc)s", {"id": TASK_ID, "exc": text})


def received_line(eta: str | None) -> logging.LogRecord:
    """Celery's "Task … received" line (celery.worker.strategy); a retried copy carries its ETA."""
    data = {"id": TASK_ID, "name": TASK, "args": "(1, 2)", "kwargs": "{}", "eta": eta}
    return celery_record("celery.worker.strategy", "Task %(name)s[%(id)s] received", data)


@pytest.fixture
def root_level() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    previous = root.level
    yield root
    root.setLevel(previous)


def test_rate_limit_retries_are_dropped_at_info_and_kept_as_debug(root_level: logging.Logger) -> None:
    quiet = QuietRateLimitRetries()
    # Given a worker at INFO
    root_level.setLevel(logging.INFO)
    # Then a retry that waits for a rate limit, and the arrival of its copy, are not written
    assert not quiet.filter(retry_line(RateLimitWait("whatsapp", 1.9)))
    assert not quiet.filter(received_line("2026-11-23T10:00:02+00:00"))
    # but a retry for another reason, a first delivery and our own lines are
    assert quiet.filter(retry_line(ConnectionError("gateway down")))
    assert quiet.filter(retry_line(None))
    assert quiet.filter(received_line(None))
    assert quiet.filter(logging.LogRecord("reactivation.flow", logging.INFO, __file__, 1, "message sent", None, None))
    # And at DEBUG the rate-limit lines are written, as DEBUG lines
    root_level.setLevel(logging.DEBUG)
    record = retry_line(RateLimitWait("whatsapp", 1.9))
    assert quiet.filter(record) and record.levelname == "DEBUG"


def test_the_filter_goes_on_every_root_handler_once() -> None:
    root = logging.Logger("test-root")
    root.addHandler(logging.StreamHandler())
    quiet_rate_limit_retries(root)
    quiet_rate_limit_retries(root)
    assert [type(f) for f in root.handlers[0].filters] == [QuietRateLimitRetries]


def test_waits_are_summed_up_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = [1000.0]
    summary = WaitSummary(period=60, clock=lambda: clock[0])
    caplog.set_level(logging.INFO, logger="celery_app.worker_logs")
    # Given 40 waits for WhatsApp and 3 for Gemini within the first minute
    for _ in range(40):
        summary.record("whatsapp")
    for _ in range(3):
        summary.record("gemini")
    assert caplog.records == []
    # When the minute has passed and another wait comes
    clock[0] += 61
    summary.record("whatsapp")
    # Then one INFO line says how many per limit
    [line] = caplog.records
    assert line.levelno == logging.INFO
    assert (line.whatsapp_waits, line.gemini_waits, line.seconds) == (41, 3, 61)  # type: ignore[attr-defined]
    # And a minute without waits says nothing
    clock[0] += 61
    summary.flush_if_due()
    assert len(caplog.records) == 1


class FakeTask:
    """What `_follow` uses of a bound task: its name, its request and retry()."""

    name = TASK

    def __init__(self, retries: int) -> None:
        self.request = type("Request", (), {"retries": retries, "args": (962302, 17)})()
        self.retried_with: dict[str, Any] = {}

    def retry(self, **options: Any) -> Retry:
        self.retried_with = options
        return Retry(exc=options.get("exc"), when=options["countdown"])


def test_a_step_waiting_for_a_rate_limit_says_so_once_at_debug(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[str] = []
    monkeypatch.setattr(tasks.waits, "record", counted.append)
    caplog.set_level(logging.DEBUG, logger="celery_app.tasks")
    # Given a send step that waits for the WhatsApp limit five times
    for retries in range(5):
        task = FakeTask(retries)
        with pytest.raises(Retry):
            tasks._follow(task, RetryLater(1.5, "whatsapp rate limit", limit="whatsapp"))  # type: ignore[arg-type]
        # Then each retry carries a RateLimitWait, which the worker's filter recognizes
        assert isinstance(task.retried_with["exc"], RateLimitWait)
    # And one DEBUG line was written, and every wait counted
    waits = [r for r in caplog.records if r.getMessage() == "waiting for a rate limit"]
    assert [r.levelno for r in waits] == [logging.DEBUG]
    assert counted == ["whatsapp"] * 5
    # While a retry for another reason is neither counted nor a RateLimitWait
    task = FakeTask(0)
    with pytest.raises(Retry):
        tasks._follow(task, RetryLater(5, "transient send error"))  # type: ignore[arg-type]
    assert "exc" not in task.retried_with and counted == ["whatsapp"] * 5


def test_celerys_format_arguments_are_not_printed_again_as_a_field(root_level: logging.Logger) -> None:
    from reactivation.core.logs import KeyValueFormatter

    root_level.setLevel(logging.INFO)
    quiet = QuietRateLimitRetries()
    # Given Celery's line about a first delivery of a reply task, whose args carry the client's words
    record = received_line(None)
    record.data["args"] = "(962302, '+79001234567', 'Да, запишите')"  # type: ignore[attr-defined]
    # When a handler's filter (and a second handler's) let it through and it is formatted
    assert quiet.filter(record) and quiet.filter(record)
    line = KeyValueFormatter("%(levelname)s %(name)s %(message)s").format(record)
    # Then the line is Celery's message alone, without the args as a field
    assert line == f"INFO celery.worker.strategy Task {TASK}[{TASK_ID}] received"
    # And a rate-limit retry is still recognized by the second handler's filter
    retry = retry_line(RateLimitWait("whatsapp", 1.0))
    assert not quiet.filter(retry) and not quiet.filter(retry)
