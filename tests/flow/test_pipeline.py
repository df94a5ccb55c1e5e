"""The per-client chain, step by step, on committed PostgreSQL rows, the real Redis and a local fake gateway."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from reactivation.core.settings import Settings, load_settings
from reactivation.core.vocabulary import Status
from reactivation.flow import campaign, pipeline, sweeps
from reactivation.flow.campaign import run_campaign
from reactivation.flow.pipeline import Continue, RetryLater, Stop
from reactivation.handover.admin_handover import read_pending_action
from reactivation.runtime import Runtime
from reactivation.storage.models import CampaignRun, OptOut, ReactivationHistory
from tests.chains import STEPS, claim, opt_out_by_reply, rows, run_chain
from tests.fake_gateway import FakeGateway
from tests.salon import build_salon


def test_a_campaign_sends_each_due_client_one_message_and_hands_it_over(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given a salon with 12 due clients and 4 who must not be contacted
    salon = build_salon(committed_engine, due=12)
    # When the campaign claims and every chain runs
    claimed = claim(rt, salon)
    for history_id in claimed:
        assert run_chain(rt, salon, history_id)[-1] == Stop("done")
    # Then each due client got exactly one message, nobody else any
    sent_to = [m["phone"] for m in gateway.messages()]
    assert sorted(sent_to) == sorted(salon.phones.values())
    history = rows(committed_engine, salon.company_id)
    assert {r.client_id for r in history} == set(salon.due)
    assert all(r.status == Status.SENT and r.message_sent_at and r.context_saved_at for r in history)
    assert all(r.generator == "template" and r.generator_fallback_reason == "no_key" for r in history)
    # And the AI admin finds the hand-over under the client's phone
    row = history[0]
    pending = read_pending_action(
        rt.redis, prefix=rt.settings.redis_key_prefix, company_id=salon.company_id, phone=row.phone or ""
    )
    assert pending is not None
    assert pending["reactivationHistoryId"] == row.id and pending["campaign"] == "dormant_30"
    assert pending["messageSent"] == row.message_text


def test_every_step_twice_changes_nothing(rt: Runtime, committed_engine: Engine, gateway: FakeGateway) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = claim(rt, salon)
    run_chain(rt, salon, history_id)
    before = rows(committed_engine, salon.company_id)[0]
    # When every step is delivered again (a redelivered task)
    again = [step(rt, company_id=salon.company_id, history_id=history_id, now=salon.now) for step in STEPS]
    # Then nothing is sent or changed again
    assert len(gateway.messages()) == 1
    after = rows(committed_engine, salon.company_id)[0]
    assert (after.status, after.message_text, after.message_sent_at) == (
        before.status,
        before.message_text,
        before.message_sent_at,
    )
    assert isinstance(again[-1], Stop)


def test_a_second_dispatch_for_the_same_day_claims_nothing(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=5)
    assert len(claim(rt, salon)) == 5
    assert claim(rt, salon) == []
    assert len(rows(committed_engine, salon.company_id)) == 5


def test_an_opt_out_between_claim_and_send_skips_the_client(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    first, second = claim(rt, salon)
    pipeline.select_interval(rt, company_id=salon.company_id, history_id=first, now=salon.now)
    pipeline.generate_message(rt, company_id=salon.company_id, history_id=first, now=salon.now)
    row = rows(committed_engine, salon.company_id)[0]
    opt_out_by_reply(committed_engine, salon, row)
    assert pipeline.send_message(rt, company_id=salon.company_id, history_id=first, now=salon.now) == Stop("opted_out")
    run_chain(rt, salon, second)
    statuses = {r.id: (r.status, r.skip_reason) for r in rows(committed_engine, salon.company_id)}
    assert statuses[first] == ("skipped", "opted_out")
    assert statuses[second] == ("sent", None)
    assert [m["phone"] for m in gateway.messages()] == [rows(committed_engine, salon.company_id)[1].phone]


def test_a_whatsapp_marketing_opt_out_is_recorded_as_the_clients_opt_out(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given the Cloud API, where one client has told WhatsApp to stop this business's marketing
    salon = build_salon(committed_engine, due=2, extras=False)
    settings = load_settings(
        **{
            **committed_settings.model_dump(),
            "whatsapp_provider": "cloud_api",
            "whatsapp_cloud_api_url": gateway.url,
            "whatsapp_cloud_api_token": "c-token",
            "whatsapp_cloud_phone_number_id": "555",
        },
        _env_file=None,
    )
    gateway.configure(cloud_token="c-token")
    rt = Runtime(settings)
    try:
        first, second = claim(rt, salon)
        stopped = rows(committed_engine, salon.company_id)[0]
        gateway.configure(
            cloud_fail_phones={stopped.phone: {"code": 131050, "status": 400, "message": "user stopped marketing"}}
        )
        # When both chains run
        run_chain(rt, salon, first)
        run_chain(rt, salon, second)
    finally:
        rt.dispose()
    # Then that client is skipped with WhatsApp's reason and is opted out for good; the other is sent
    statuses = {r.id: (r.status, r.skip_reason) for r in rows(committed_engine, salon.company_id)}
    assert statuses == {first: ("skipped", "whatsapp_marketing_opt_out"), second: ("sent", None)}
    with Session(committed_engine) as session:
        opt_outs = session.execute(select(OptOut.company_id, OptOut.phone, OptOut.source)).all()
    assert opt_outs == [(salon.company_id, stopped.phone, "whatsapp")]


def test_a_row_found_mid_send_without_idempotency_is_never_sent_again_and_the_sweep_marks_it_unknown(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = claim(rt, salon)
    pipeline.select_interval(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    pipeline.generate_message(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    # Given a worker that committed `sending` through a provider without idempotency (the Cloud API) and died
    # before recording its answer
    with Session(committed_engine) as session:
        session.execute(
            ReactivationHistory.__table__.update()
            .where(ReactivationHistory.id == history_id)
            .values(status="sending", sending_started_at=salon.now, updated_at=salon.now, provider="cloud_api")
        )
        session.commit()
    # When the task is delivered again
    outcome = pipeline.send_message(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    # Then the gateway is not called again
    assert outcome == Stop("already sending") and gateway.messages() == []
    # And the sweep, after the timeout, marks the row unknown and counts it
    with Session(committed_engine) as session:
        early = sweeps.sweep_company(session, company_id=salon.company_id, now=salon.now + timedelta(minutes=5))
        late = sweeps.sweep_company(session, company_id=salon.company_id, now=salon.now + timedelta(minutes=11))
        session.commit()
    assert (early.unknown, late.unknown) == (0, 1)
    assert rows(committed_engine, salon.company_id)[0].status == Status.UNKNOWN


def test_the_sweep_expires_old_unsent_rows_but_never_one_whose_message_left(
    rt: Runtime, committed_engine: Engine
) -> None:
    # Given two rows claimed four days ago: one never got further, one was delivered but not yet recorded sent
    salon = build_salon(committed_engine, due=2, extras=False)
    stuck, delivered = claim(rt, salon)
    with Session(committed_engine) as session:
        session.execute(
            ReactivationHistory.__table__.update()
            .where(ReactivationHistory.id == delivered)
            .values(status="delivered", message_sent_at=salon.now, updated_at=salon.now)
        )
        session.commit()
        # When the sweep runs past the expiry
        swept = sweeps.sweep_company(session, company_id=salon.company_id, now=salon.now + timedelta(days=4))
        session.commit()
    # Then only the unsent row is expired; the delivered one is resumed to be recorded sent
    statuses = {r.id: (r.status, r.skip_reason) for r in rows(committed_engine, salon.company_id)}
    assert statuses == {stuck: ("skipped", "expired"), delivered: ("delivered", None)}
    assert swept.expired == 1 and (salon.company_id, delivered, "persist_history") in swept.resume


def test_transient_gateway_errors_retry_then_send_once(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = claim(rt, salon)
    pipeline.select_interval(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    pipeline.generate_message(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    # Given a gateway that is down
    gateway.configure(down="503")
    outcome = pipeline.send_message(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    assert isinstance(outcome, RetryLater)
    assert rows(committed_engine, salon.company_id)[0].status == Status.GENERATED
    # When it is back and the retry comes
    gateway.configure(down=None)
    assert pipeline.send_message(rt, company_id=salon.company_id, history_id=history_id, now=salon.now) == Continue()
    assert len(gateway.messages()) == 1
    row = rows(committed_engine, salon.company_id)[0]
    assert row.status == Status.DELIVERED and row.attempts == 2


def test_a_permanent_gateway_error_fails_the_row(rt: Runtime, committed_engine: Engine, gateway: FakeGateway) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = claim(rt, salon)
    gateway.configure(reject_status=400)
    outcomes = run_chain(rt, salon, history_id)
    assert outcomes[-1] == Stop("failed")
    row = rows(committed_engine, salon.company_id)[0]
    assert row.status == Status.FAILED and row.error and "400" in row.error


def test_outside_the_window_the_message_waits_and_the_sweep_releases_it(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given a salon that sends 09:00-20:00 Moscow time, and a message ready at 21:30 there
    salon = build_salon(
        committed_engine, due=1, extras=False, settings={"send_window_end": "20:00", "send_window_start": "09:00"}
    )
    [history_id] = claim(rt, salon)
    late = salon.now.replace(hour=18, minute=30)  # 21:30 in Moscow
    pipeline.select_interval(rt, company_id=salon.company_id, history_id=history_id, now=late)
    pipeline.generate_message(rt, company_id=salon.company_id, history_id=history_id, now=late)
    outcome = pipeline.send_message(rt, company_id=salon.company_id, history_id=history_id, now=late)
    # Then nothing is sent and no worker holds it
    assert outcome == Stop("waiting for the send window") and gateway.messages() == []
    row = rows(committed_engine, salon.company_id)[0]
    assert row.send_after is not None and row.send_after.hour == 6  # 09:00 Moscow the next morning
    # And the sweep resumes it once the window has opened, not before
    with Session(committed_engine) as session:
        assert sweeps.sweep_company(session, company_id=salon.company_id, now=late + timedelta(hours=2)).resume == []
        opened = sweeps.sweep_company(session, company_id=salon.company_id, now=row.send_after + timedelta(minutes=1))
        session.commit()
    assert opened.resume == [(salon.company_id, history_id, "send_message")]
    assert (
        pipeline.send_message(rt, company_id=salon.company_id, history_id=history_id, now=row.send_after) == Continue()
    )


def test_daily_limit_takes_the_most_valuable_clients_first(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=10, extras=False, settings={"daily_limit": 3})
    claimed = claim(rt, salon)
    history = rows(committed_engine, salon.company_id)
    assert len(claimed) == 3 and len(history) == 3
    # build_salon gives later clients more total_spent
    assert {r.client_id for r in history} == set(salon.due[-3:])


def test_a_small_daily_limit_reads_only_the_most_valuable_due_clients_it_needs(
    rt: Runtime, committed_engine: Engine
) -> None:
    # Given 120 due clients, a daily limit of 10 and a 50 % hold-out
    salon = build_salon(committed_engine, due=120, extras=False, settings={"daily_limit": 10, "holdout_percent": 50})
    # When the campaign runs
    result = run_campaign(
        rt, company_id=salon.company_id, run_date=salon.now.date(), now=salon.now, on_claimed=lambda ids: None
    )
    # Then 10 are sent, and the control group is drawn from the same top clients by value, not from everyone due
    history = rows(committed_engine, salon.company_id)
    considered = 10 * 2 + campaign.SELECTION_MARGIN
    assert len(result.claimed) == 10 and result.due == considered
    assert {r.client_id for r in history} <= set(salon.due[-considered:])
    assert 0 < sum(r.status == Status.HOLDOUT for r in history) < considered
    # and nobody below the last client sent is claimed at all, not even held out: tomorrow can still reach them
    rank = {client_id: position for position, client_id in enumerate(salon.due)}
    lowest_sent = min(rank[r.client_id] for r in history if r.status != Status.HOLDOUT)
    assert all(rank[r.client_id] >= lowest_sent for r in history)


def test_holdout_rows_are_claimed_but_never_sent(rt: Runtime, committed_engine: Engine, gateway: FakeGateway) -> None:
    salon = build_salon(committed_engine, due=200, extras=False, settings={"holdout_percent": 50})
    claimed = claim(rt, salon)
    history = rows(committed_engine, salon.company_id)
    held = [r for r in history if r.status == Status.HOLDOUT]
    assert 80 <= len(held) <= 120
    assert len(claimed) == 200 - len(held)
    assert all(r.message_text is None for r in held)


def test_invalid_phones_are_skipped_with_a_reason(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=3, extras=False)
    with Session(committed_engine) as session:
        from reactivation.storage.models import Client

        session.execute(Client.__table__.update().where(Client.id == salon.due[0]).values(phone="12345"))
        session.execute(Client.__table__.update().where(Client.id == salon.due[1]).values(phone=None))
        session.commit()
    claimed = claim(rt, salon)
    by_client = {r.client_id: r for r in rows(committed_engine, salon.company_id)}
    assert len(claimed) == 1
    assert by_client[salon.due[0]].skip_reason == "invalid_phone" and "client" in (by_client[salon.due[0]].error or "")
    assert by_client[salon.due[1]].skip_reason == "invalid_phone"


def test_a_dry_run_writes_the_outbox_and_leaves_the_real_run_untouched(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    salon = build_salon(committed_engine, due=3, extras=False)
    dry = claim(rt, salon, dry_run=True)
    for history_id in dry:
        run_chain(rt, salon, history_id)
    assert gateway.messages() == []
    outbox = [json.loads(line) for line in rt.settings.whatsapp_outbox_path.read_text().splitlines()]
    assert sorted(line["phone"] for line in outbox) == sorted(salon.phones.values())
    # and each of its outbox lines says it is a dry run's
    assert all(line["dry_run"] is True for line in outbox)
    # Then the real run still reaches everyone
    real = claim(rt, salon)
    assert len(real) == 3
    for history_id in real:
        run_chain(rt, salon, history_id)
    assert len(gateway.messages()) == 3


def test_a_dry_run_takes_no_slot_of_the_senders_rate_limit(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given a sender allowed one message a minute
    settings = load_settings(
        **{
            **committed_settings.model_dump(),
            "whatsapp_provider": "gateway",
            "whatsapp_gateway_url": gateway.url,
            "whatsapp_rate_limit": "1/60",
        },
        _env_file=None,
    )
    rt = Runtime(settings)
    salon = build_salon(committed_engine, due=3, extras=False)
    try:
        # When a dry run writes all three messages
        for history_id in claim(rt, salon, dry_run=True):
            assert run_chain(rt, salon, history_id)[-1] == Stop("nothing to hand over")
        # Then none waited for the limit, and the real run's first message still has the minute's slot
        first, *others = claim(rt, salon)
        assert run_chain(rt, salon, first)[-1] == Stop("done")
        [*_, waiting] = run_chain(rt, salon, others[0])
        assert isinstance(waiting, RetryLater) and waiting.reason == "whatsapp rate limit"
        assert len(gateway.messages()) == 1
    finally:
        rt.dispose()


def test_a_dry_run_has_a_run_record_of_its_own_that_never_takes_the_real_runs_place(
    rt: Runtime, committed_engine: Engine
) -> None:
    salon = build_salon(committed_engine, due=3, extras=False)
    # Given two dry runs of the day
    for _ in range(2):
        for history_id in claim(rt, salon, dry_run=True):
            run_chain(rt, salon, history_id)
    # Then each has its record, and the latest one's rows are what the dry run's status shows
    with Session(committed_engine) as session:
        runs = session.execute(select(CampaignRun).order_by(CampaignRun.id)).scalars().all()
        assert [(r.dry_run, r.status, r.claimed_count) for r in runs] == [(True, "done", 3), (True, "done", 3)]
        assert campaign.run_status(session, company_id=salon.company_id, run_date=salon.today, dry_run=True) == [
            ("sent", None, 3)
        ]
        # and the real run of the day has not happened yet
        assert campaign.run_status(session, company_id=salon.company_id, run_date=salon.today) == []
    # When the real run comes
    assert len(claim(rt, salon)) == 3
    # Then it has a record of its own, and both statuses tell their own rows
    with Session(committed_engine) as session:
        real = session.execute(select(CampaignRun).where(CampaignRun.dry_run.is_(False))).scalar_one()
        assert (real.run_date, real.claimed_count) == (salon.today, 3)
        assert campaign.run_status(session, company_id=salon.company_id, run_date=salon.today) == [("claimed", None, 3)]


def test_two_companies_never_mix(rt: Runtime, committed_engine: Engine, gateway: FakeGateway) -> None:
    first = build_salon(committed_engine, due=3, company_id=111, extras=False)
    second = build_salon(committed_engine, due=3, company_id=222, extras=False)
    claimed = claim(rt, first)
    assert {r.client_id for r in rows(committed_engine, 111)} == set(first.due)
    assert rows(committed_engine, 222) == []
    # A step given the other company's id for a row finds nothing
    assert pipeline.select_interval(rt, company_id=222, history_id=claimed[0], now=first.now) == Stop("missing")
    assert second.due
