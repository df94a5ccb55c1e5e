"""The sweep: a gateway row stuck in `sending` is sent again with the same idempotency key (nothing lost, nothing
doubled), and a lost chain is found within minutes, but never one that is only waiting on a countdown."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import ChainStep, Status
from reactivation.delivery.contract import SendRequest, idempotency_key
from reactivation.delivery.gateway import GatewaySender
from reactivation.flow import pipeline, sweeps
from reactivation.flow.pipeline import Continue, Stop
from reactivation.runtime import Runtime
from reactivation.storage.models import ReactivationHistory
from tests.chains import claim, rows
from tests.fake_gateway import FakeGateway
from tests.salon import Salon, build_salon


def generated_row(rt: Runtime, salon: Salon) -> int:
    [history_id] = claim(rt, salon)
    pipeline.select_interval(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    pipeline.generate_message(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    return history_id


def set_row(engine: Engine, history_id: int, **values: object) -> None:
    with Session(engine) as session:
        session.execute(
            ReactivationHistory.__table__.update().where(ReactivationHistory.id == history_id).values(**values)
        )
        session.commit()


def stuck_in_sending(engine: Engine, history_id: int, *, since: datetime) -> None:
    """The row as a worker leaves it that committed `sending` through the gateway and died before the answer."""
    set_row(engine, history_id, status="sending", sending_started_at=since, updated_at=since, provider="gateway")


def sweep(engine: Engine, salon: Salon, now: datetime) -> sweeps.SweepResult:
    with Session(engine) as session:
        found = sweeps.sweep_company(session, company_id=salon.company_id, now=now)
        session.commit()
    return found


def test_a_gateway_row_stuck_in_sending_is_sent_again_with_its_key_and_arrives_once(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    history_id = generated_row(rt, salon)
    row = rows(committed_engine, salon.company_id)[0]
    # Given a worker that committed `sending`, whose request reached the gateway, and that died before the answer
    stuck_in_sending(committed_engine, history_id, since=salon.now)
    key = idempotency_key(salon.company_id, history_id)
    with GatewaySender(gateway.url) as sender:
        first = sender.send(
            SendRequest(salon.company_id, history_id, row.phone or "", row.message_text or "", key, row.step)
        )
    # When the sweep looks before and after RESEND_AFTER
    early = sweep(committed_engine, salon, salon.now + timedelta(minutes=2))
    late = sweep(committed_engine, salon, salon.now + timedelta(minutes=4))
    # Then it sends the row again only after it, and never marks it unknown
    assert (early.resent, early.resume) == (0, [])
    assert (late.resent, late.unknown) == (1, 0)
    assert (salon.company_id, history_id, ChainStep.SEND_MESSAGE) in late.resume
    # And the resumed send reaches the gateway with the same key: it drops the repeat, the row gets the first id
    later = salon.now + timedelta(minutes=4)
    assert pipeline.send_message(rt, company_id=salon.company_id, history_id=history_id, now=later) == Continue()
    assert pipeline.persist_history(rt, company_id=salon.company_id, history_id=history_id, now=later) == Continue()
    assert len(gateway.messages()) == 1 and gateway.stats()["duplicates"] == 1
    [sent] = rows(committed_engine, salon.company_id)
    assert (sent.status, sent.provider_message_id) == ("sent", first.provider_message_id)


def test_a_gateway_row_whose_request_never_arrived_is_sent_once_by_the_sweep(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    history_id = generated_row(rt, salon)
    stuck_in_sending(committed_engine, history_id, since=salon.now)
    found = sweep(committed_engine, salon, salon.now + timedelta(minutes=6))
    assert found.resent == 1
    later = salon.now + timedelta(minutes=6)
    assert pipeline.send_message(rt, company_id=salon.company_id, history_id=history_id, now=later) == Continue()
    assert [m["idempotency_key"] for m in gateway.messages()] == [idempotency_key(salon.company_id, history_id)]


def test_a_lost_chain_is_resumed_after_three_minutes_but_a_waiting_one_is_left_alone(
    rt: Runtime, committed_engine: Engine
) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    lost, waiting = claim(rt, salon)
    # Given one chain lost with its worker, and one whose task waits on a countdown (a rate limit) for 10 minutes
    set_row(committed_engine, waiting, next_attempt_at=salon.now + timedelta(minutes=10), updated_at=salon.now)
    # When the sweep runs 2, then 4 minutes after their last write
    two = sweep(committed_engine, salon, salon.now + timedelta(minutes=2))
    four = sweep(committed_engine, salon, salon.now + timedelta(minutes=4))
    # Then the lost one is resumed from its step within the 5 minutes, once; the waiting one is not
    assert two.resume == []
    assert four.resume == [(salon.company_id, lost, ChainStep.SELECT_INTERVAL)]
    assert sweep(committed_engine, salon, salon.now + timedelta(minutes=5)).resume == []
    # And once its countdown is long past (its task was lost too), it is resumed as well
    late = sweep(committed_engine, salon, salon.now + timedelta(minutes=14))
    assert (salon.company_id, waiting, ChainStep.SELECT_INTERVAL) in late.resume


def test_a_rescheduled_row_waits_for_its_time_even_if_a_task_finds_it_early(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    history_id = generated_row(rt, salon)
    set_row(committed_engine, history_id, send_after=salon.now + timedelta(hours=24), updated_at=salon.now)
    outcome = pipeline.send_message(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    assert outcome == Stop("waiting until send_after") and gateway.messages() == []
    assert rows(committed_engine, salon.company_id)[0].status == Status.GENERATED
