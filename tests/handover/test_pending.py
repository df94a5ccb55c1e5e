"""PostgreSQL is the truth, Redis a copy that can be late: a reply or a booking made while Redis is really down (a
client pointed at a closed port) is recorded all the same, and its hand-over reaches Redis once Redis is back, by
the sweep or by the client's next reply."""

from __future__ import annotations

import importlib
import logging
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.canvas import Signature, _chain
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from time_machine import TimeMachineFixture
from typer.testing import CliRunner, Result

from celery_app import tasks
from reactivation.core.settings import Settings, get_settings, load_settings
from reactivation.flow import pipeline, sweeps
from reactivation.flow.campaign import run_campaign
from reactivation.flow.pipeline import Continue, Stop
from reactivation.handover.admin_handover import read_pending_action
from reactivation.handover.pending import hand_over_owed
from reactivation.outcomes.attribution import mark_booking_created
from reactivation.replies.handler import handle_reply
from reactivation.runtime import Runtime
from reactivation.storage.models import ReactivationHistory
from reactivation.tools import cli
from tests.chains import STEPS, claim, run_chain
from tests.salon import Salon, build_salon


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: bound by the system, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def rt(committed_settings: Settings) -> Iterator[Runtime]:
    """The real Redis, up."""
    runtime = Runtime(committed_settings)
    yield runtime
    runtime.dispose()


@pytest.fixture
def down(committed_settings: Settings) -> Iterator[Runtime]:
    """The same database and key prefix, with Redis down: its URL names a port nothing listens on."""
    settings = load_settings(
        **{**committed_settings.model_dump(), "redis_url": f"redis://127.0.0.1:{closed_port()}/0"}, _env_file=None
    )
    runtime = Runtime(settings)
    yield runtime
    runtime.dispose()


def sent_to(rt: Runtime, salon: Salon) -> list[ReactivationHistory]:
    """Run the salon's campaign with Redis up: every message sent and handed over; the rows, oldest first."""
    for history_id in claim(rt, salon):
        assert run_chain(rt, salon, history_id)[-1].reason == "done"  # type: ignore[attr-defined]
    with Session(rt.engine) as session:
        return list(session.scalars(select(ReactivationHistory).order_by(ReactivationHistory.id)))


def stored(engine: Engine, history_id: int) -> ReactivationHistory:
    with Session(engine) as session:
        row = session.get(ReactivationHistory, history_id)
        assert row is not None
        return row


def pending_action(rt: Runtime, salon: Salon, phone: str) -> dict[str, Any] | None:
    return read_pending_action(rt.redis, prefix=rt.settings.redis_key_prefix, company_id=salon.company_id, phone=phone)


def test_a_no_while_redis_is_down_is_recorded_and_the_sweep_hands_it_over_later(
    rt: Runtime, down: Runtime, committed_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    first, _ = sent_to(rt, salon)
    phone = first.phone or ""
    assert pending_action(rt, salon, phone) is not None
    # When the client says no while Redis is down
    answer = handle_reply(down, company_id=salon.company_id, phone=phone, text="Нет, спасибо", now=salon.now)
    # Then the reply is answered from PostgreSQL, and says the hand-over is pending
    assert answer["is_reactivation"] is True and answer["history_id"] == first.id
    assert answer["response_type"] == "negative" and answer["handover_pending"] is True
    # And the fact is in PostgreSQL: the reply, the stopped flow, and what Redis still owes
    row = stored(committed_engine, first.id)
    assert (row.response_type, row.response_text, row.flow_stopped_reason) == ("negative", "Нет, спасибо", "negative")
    assert row.handover_pending == "clear"
    # while the admin's Redis still offers a booking
    assert pending_action(rt, salon, phone) is not None
    # When Redis is back and the company's sweep runs
    app_module = importlib.import_module("celery_app.app")
    previous = app_module.runtime().settings
    app_module.configure(rt.settings)
    monkeypatch.setattr(Signature, "apply_async", lambda *args, **kwargs: None)
    monkeypatch.setattr(_chain, "apply_async", lambda *args, **kwargs: None)
    try:
        summary = tasks.sweep_company.apply(args=(salon.company_id,)).get()
    finally:
        app_module.configure(previous)
    # Then the hand-over has arrived: the pendingAction is gone, and the row owes nothing more
    assert summary["handover_repeated"] == 1
    assert pending_action(rt, salon, phone) is None
    assert stored(committed_engine, first.id).handover_pending is None


def test_a_booking_while_redis_is_down_is_linked_and_the_next_reply_hands_it_over(
    rt: Runtime, down: Runtime, committed_engine: Engine
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [message] = sent_to(rt, salon)
    phone = message.phone or ""
    # When the admin books the client while Redis is down
    booked_at = salon.now + timedelta(hours=1)
    result = mark_booking_created(down, company_id=salon.company_id, phone=phone, booking_id=5501, now=booked_at)
    # Then the booking is linked in PostgreSQL all the same, and the hand-over is said to be pending
    assert result == {
        "linked": True,
        "history_id": message.id,
        "pending_action_cleared": False,
        "handover_pending": True,
    }
    row = stored(committed_engine, message.id)
    assert (row.booking_created, row.booking_id, row.booking_created_at) == (True, 5501, booked_at)
    assert (row.flow_stopped_reason, row.handover_pending) == ("booking", "clear")
    assert pending_action(rt, salon, phone) is not None
    # When the client writes again once Redis is back
    later = booked_at + timedelta(minutes=30)
    answer = handle_reply(rt, company_id=salon.company_id, phone=phone, text="Спасибо!", now=later)
    # Then that reply delivered the booking's hand-over too
    assert answer["handover_pending"] is False
    assert pending_action(rt, salon, phone) is None
    assert stored(committed_engine, message.id).handover_pending is None


def test_an_opt_out_while_redis_is_down_is_permanent_at_once(
    rt: Runtime, down: Runtime, committed_engine: Engine
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [message] = sent_to(rt, salon)
    phone = message.phone or ""
    answer = handle_reply(down, company_id=salon.company_id, phone=phone, text="Отпишите меня", now=salon.now)
    assert answer["response_type"] == "opt_out" and answer["handover_pending"] is True
    # The opt-out holds from now on: 40 days later the client is not claimed again, Redis or not
    later = salon.now + timedelta(days=40)
    claimed: list[int] = []
    run_campaign(rt, company_id=salon.company_id, run_date=later.date(), now=later, on_claimed=claimed.extend)
    assert claimed == []
    # And once Redis is back, one pass takes the owed hand-over
    assert hand_over_owed(rt, company_id=salon.company_id, now=later).done == [message.id]
    assert pending_action(rt, salon, phone) is None


def test_reply_and_booking_commands_succeed_with_a_warning_while_redis_is_down(
    rt: Runtime,
    down: Runtime,
    committed_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    time_machine: TimeMachineFixture,
) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    time_machine.move_to(salon.now, tick=True)
    first, second = sent_to(rt, salon)
    for name, value in {
        "DATABASE_URL": down.settings.database_url,
        "REDIS_URL": down.settings.redis_url or "",
        "REDIS_KEY_PREFIX": down.settings.redis_key_prefix,
        "COLUMNS": "300",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    root = logging.getLogger()

    def invoke(*args: str) -> Result:
        # Each command is a process of its own in real life: its log handler writes to this invocation's stderr.
        monkeypatch.setattr(root, "handlers", [])
        return CliRunner().invoke(cli.app, list(args))

    try:
        company = str(salon.company_id)
        reply = invoke("reply", "--company", company, "--phone", first.phone or "", "--text", "Не надо")
        booking = invoke("booking", "--company", company, "--phone", second.phone or "", "--booking-id", "77")
    finally:
        get_settings.cache_clear()
    for result in (reply, booking):
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        assert "hand-over to the AI admin is pending" in result.stderr and "Redis" in result.stderr
    assert "class: negative" in reply.stdout
    assert "booking 77 linked" in booking.stdout
    assert stored(committed_engine, first.id).response_type == "negative"
    assert stored(committed_engine, second.id).booking_id == 77


def test_a_send_whose_hand_over_failed_while_redis_was_down_is_handed_over_by_the_sweep(
    rt: Runtime, down: Runtime, committed_engine: Engine
) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    first, second = claim(rt, salon)
    # Given two messages sent while Redis was down for longer than the hand-over's retries
    for history_id in (first, second):
        for step in STEPS[:-1]:
            assert step(rt, company_id=salon.company_id, history_id=history_id, now=salon.now) == Continue()
        outcome = pipeline.save_handover(
            down,
            company_id=salon.company_id,
            history_id=history_id,
            now=salon.now,
            attempt=pipeline.MAX_CONTEXT_ATTEMPTS,
        )
        assert outcome == Stop("hand-over failed") and stored(committed_engine, history_id).context_error
    # and the second client said no in the meantime
    phone = stored(committed_engine, second).phone or ""
    handle_reply(down, company_id=salon.company_id, phone=phone, text="Нет, не надо", now=salon.now)
    # When the sweep runs once Redis is back
    with Session(committed_engine) as session:
        found = sweeps.sweep_company(session, company_id=salon.company_id, now=salon.now + timedelta(minutes=15))
    # Then it hands the first message over again, and not the second: that flow is over
    assert found.handover == [(salon.company_id, first)]
    assert pipeline.save_handover(rt, company_id=salon.company_id, history_id=first, now=salon.now) == Stop("done")
    assert pending_action(rt, salon, stored(committed_engine, first).phone or "") is not None
    assert pipeline.save_handover(rt, company_id=salon.company_id, history_id=second, now=salon.now) == Stop(
        "flow stopped; nothing to hand over"
    )
    # And a failed hand-over is not tried again once it is a day old
    with Session(committed_engine) as session:
        stale = sweeps.sweep_company(session, company_id=salon.company_id, now=salon.now + timedelta(days=1, hours=1))
    assert stale.handover == []
