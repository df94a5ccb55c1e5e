"""The AI admin's calls end to end: campaign → reply → booking → stats, opt-outs that last, attribution without
a call, the hold-out's uplift, and bad input refused clearly."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session
from time_machine import TimeMachineFixture
from typer.testing import CliRunner

from reactivation.core.phones import InvalidPhone
from reactivation.core.settings import Settings, get_settings
from reactivation.handover.admin_handover import read_pending_action
from reactivation.handover.keys import dialog_key
from reactivation.outcomes.attribution import attribute_bookings, mark_booking_created
from reactivation.outcomes.stats import campaign_stats
from reactivation.replies.classify import EmptyReply
from reactivation.replies.handler import handle_reply
from reactivation.runtime import Runtime
from reactivation.storage.companies import UnknownCompany
from reactivation.storage.models import Client, OptOut, ReactivationHistory
from reactivation.tools import cli
from tests.chains import row, send_campaign
from tests.factories import make_booking
from tests.salon import build_salon


@pytest.fixture
def rt(outbox_rt: Runtime) -> Runtime:
    return outbox_rt


def national(e164: str) -> str:
    """+79160000001 written the way a client's phone shows in WhatsApp exports: 8 (916) 000-00-01."""
    digits = e164[2:]
    return f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"


def test_campaign_reply_booking_stats(rt: Runtime, committed_engine: Engine) -> None:
    # Given a campaign that reached 5 clients
    salon = build_salon(committed_engine, due=5, extras=False)
    ids = send_campaign(rt, salon)
    first = row(committed_engine, ids[0])
    # When the client answers "yes", with the phone written another way
    reply_at = salon.now + timedelta(hours=3)
    answer = handle_reply(
        rt,
        company_id=salon.company_id,
        phone=national(first.phone or ""),
        text="Да, запишите меня в субботу",
        now=reply_at,
    )
    # Then the admin learns it is a reactivation reply, positive, with the service to book
    assert answer["is_reactivation"] is True and answer["response_type"] == "positive"
    assert answer["should_start_booking"] is True
    assert answer["suggested_service"]["name"] == first.last_service_name
    assert "КОНТЕКСТ РЕАКТИВАЦИИ" in answer["enriched_prompt"] and "в субботу" in answer["enriched_prompt"]
    recorded = row(committed_engine, ids[0])
    assert recorded.response_received and recorded.response_type == "positive"
    assert recorded.response_text == "Да, запишите меня в субботу" and recorded.response_at == reply_at
    # When the admin books it
    booked = mark_booking_created(
        rt, company_id=salon.company_id, phone=first.phone or "", booking_id=777001, now=reply_at + timedelta(minutes=5)
    )
    assert booked == {"linked": True, "history_id": ids[0], "pending_action_cleared": True, "handover_pending": False}
    assert (
        read_pending_action(
            rt.redis, prefix=rt.settings.redis_key_prefix, company_id=salon.company_id, phone=first.phone or ""
        )
        is None
    )
    # Then stats count one response and one booking out of five messages
    with Session(committed_engine) as session:
        stats = campaign_stats(session, company_id=salon.company_id, since=None, until=None)
    assert stats["total"]["sent"] == 5
    assert stats["total"]["responses"] == 1 and stats["total"]["positive"] == 1
    assert stats["total"]["bookings"] == 1
    assert stats["total"]["conversion_rate"] == pytest.approx(0.2)


def test_redis_lost_the_pending_action_the_latest_message_answers(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = send_campaign(rt, salon)
    phone = row(committed_engine, history_id).phone or ""
    rt.redis.delete(dialog_key(rt.settings.redis_key_prefix, salon.company_id, phone))
    answer = handle_reply(rt, company_id=salon.company_id, phone=phone, text="сколько стоит?", now=salon.now)
    assert answer["is_reactivation"] is True and answer["response_type"] == "neutral"
    assert answer["history_id"] == history_id and answer["should_start_booking"] is False


def test_a_negative_reply_stops_the_lapse_and_clears_the_pending_action(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = send_campaign(rt, salon)
    phone = row(committed_engine, history_id).phone or ""
    answer = handle_reply(rt, company_id=salon.company_id, phone=phone, text="Спасибо, не нужно", now=salon.now)
    assert (answer["response_type"], answer["reason"], answer["until"]) == ("negative", "no_need", None)
    assert (
        read_pending_action(rt.redis, prefix=rt.settings.redis_key_prefix, company_id=salon.company_id, phone=phone)
        is None
    )
    assert row(committed_engine, history_id).flow_stopped_reason == "negative"
    # 40 days later step 2 would be due, but this lapse's flow is over
    later = salon.now + timedelta(days=40)
    assert send_campaign(rt, salon, now=later) == []


def test_an_opt_out_survives_a_resync_and_a_later_campaign(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    ids = send_campaign(rt, salon)
    opted = row(committed_engine, ids[0])
    answer = handle_reply(
        rt, company_id=salon.company_id, phone=opted.phone or "", text="Удалите мой номер", now=salon.now
    )
    assert answer["response_type"] == "opt_out" and "подтверди" in answer["enriched_prompt"]
    # When the booking system re-syncs the client (the row is rewritten, the phone formatted anew)
    with Session(committed_engine) as session:
        client = session.get(Client, opted.client_id)
        assert client is not None
        last_visit, services = client.last_visit_date, client.last_services
        session.execute(delete(Client).where(Client.company_id == salon.company_id, Client.id == opted.client_id))
        session.add(
            Client(
                id=opted.client_id,
                company_id=salon.company_id,
                name="Мария",
                phone=national(opted.phone or ""),
                last_visit_date=last_visit,
                visit_count=3,
                last_services=services,
            )
        )
        session.commit()
        assert session.scalar(select(OptOut.phone).where(OptOut.company_id == salon.company_id)) == opted.phone
    # and 40 days later both clients would be due again for step 2
    later = send_campaign(rt, salon, now=salon.now + timedelta(days=40))
    # Then only the one who did not opt out is contacted
    assert [row(committed_engine, h).client_id for h in later] == [row(committed_engine, ids[1]).client_id]


def test_a_booking_is_attributed_without_a_call_to_the_handler(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=3, extras=False)
    ids = send_campaign(rt, salon)
    target = row(committed_engine, ids[1])
    with Session(committed_engine) as session:
        client = session.get(Client, target.client_id)
        booked_at = salon.now + timedelta(days=2)
        make_booking(
            session,
            client,
            when=datetime.combine(salon.today + timedelta(days=5), time(8), tzinfo=UTC),
            phone=national(target.phone or ""),
            created_at=booked_at,
        )
        # a cancelled booking by another client does not count
        other = session.get(Client, row(committed_engine, ids[2]).client_id)
        make_booking(session, other, when=booked_at + timedelta(days=3), status="deleted", created_at=booked_at)
        session.commit()
        linked = attribute_bookings(session, company_id=salon.company_id, now=salon.now + timedelta(days=3))
        again = attribute_bookings(session, company_id=salon.company_id, now=salon.now + timedelta(days=3))
        session.commit()
    assert (linked, again) == (1, 0)
    linked_row = row(committed_engine, ids[1])
    assert linked_row.booking_created and linked_row.booking_created_at == booked_at
    assert not row(committed_engine, ids[2]).booking_created


def test_a_half_holdout_on_200_clients_and_the_uplift_in_stats(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=200, extras=False, settings={"holdout_percent": 50})
    send_campaign(rt, salon)
    with Session(committed_engine) as session:
        held = session.scalars(
            select(ReactivationHistory).where(
                ReactivationHistory.company_id == salon.company_id, ReactivationHistory.status == "holdout"
            )
        ).all()
        sent = session.scalars(
            select(ReactivationHistory).where(
                ReactivationHistory.company_id == salon.company_id, ReactivationHistory.status == "sent"
            )
        ).all()
        assert 80 <= len(held) <= 120 and len(held) + len(sent) == 200
        # some clients of both groups book in the next days
        for index, group_row in enumerate([*sent[:30], *held[:10]]):
            client = session.get(Client, group_row.client_id)
            make_booking(
                session,
                client,
                when=salon.now + timedelta(days=9),
                created_at=salon.now + timedelta(days=1, minutes=index),
            )
        session.commit()
        attribute_bookings(session, company_id=salon.company_id, now=salon.now + timedelta(days=2))
        session.commit()
        stats = campaign_stats(session, company_id=salon.company_id, since=None, until=None)
    holdout = stats["holdout"]
    assert holdout is not None
    assert holdout["treated"]["bookings"] == 30 and holdout["control"]["bookings"] == 10
    assert holdout["uplift_ci_low"] < holdout["uplift"] < holdout["uplift_ci_high"]


def test_a_reply_to_a_dry_runs_message_answers_no_reactivation(rt: Runtime, committed_engine: Engine) -> None:
    # Given a dry run that "sent" to two clients (the messages went to the outbox, never to them)
    salon = build_salon(committed_engine, due=2, extras=False)
    first, second = (row(committed_engine, h) for h in send_campaign(rt, salon, dry_run=True))
    assert first.status == second.status == "sent" and first.dry_run
    # When one of them writes "yes" anyway
    answer = handle_reply(rt, company_id=salon.company_id, phone=first.phone or "", text="Да, хочу", now=salon.now)
    # Then the admin is told it answers no reactivation: no prompt quoting a message the client never received
    assert answer["is_reactivation"] is False and answer["history_id"] is None
    assert answer["enriched_prompt"] is None and answer["should_start_booking"] is False
    assert row(committed_engine, first.id).response_received is False


def test_an_opt_out_after_a_dry_run_is_the_clients_and_touches_no_dry_row(
    rt: Runtime, committed_engine: Engine
) -> None:
    # Given a dry run that "sent" to a client
    salon = build_salon(committed_engine, due=1, extras=False)
    [dry_id] = send_campaign(rt, salon, dry_run=True)
    phone = row(committed_engine, dry_id).phone or ""
    # When the client asks to stop (they wrote it, so it holds)
    answer = handle_reply(rt, company_id=salon.company_id, phone=phone, text="Отпишите меня", now=salon.now)
    assert answer["response_type"] == "opt_out" and answer["is_reactivation"] is False
    # Then the opt-out is recorded for the phone, linked to no dry-run row, and the dry row itself is untouched
    with Session(committed_engine) as session:
        opt_out = session.execute(select(OptOut).where(OptOut.company_id == salon.company_id)).scalar_one()
    assert (opt_out.phone, opt_out.history_id) == (phone, None)
    dry = row(committed_engine, dry_id)
    assert (dry.response_type, dry.flow_stopped_reason) == (None, None)


def test_bad_input_is_refused_clearly(rt: Runtime, committed_engine: Engine) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = send_campaign(rt, salon)
    phone = row(committed_engine, history_id).phone or ""
    with pytest.raises(UnknownCompany, match="unknown company 404"):
        handle_reply(rt, company_id=404, phone=phone, text="да", now=salon.now)
    with pytest.raises(InvalidPhone):
        handle_reply(rt, company_id=salon.company_id, phone="not a phone", text="да", now=salon.now)
    with pytest.raises(EmptyReply):
        handle_reply(rt, company_id=salon.company_id, phone=phone, text="   ", now=salon.now)
    with pytest.raises(ValueError, match="positive integer"):
        mark_booking_created(rt, company_id=salon.company_id, phone=phone, booking_id=-5, now=salon.now)
    # A 10,000-character reply is stored safely, cut to a limit
    handle_reply(rt, company_id=salon.company_id, phone=phone, text="да " * 3334, now=salon.now)
    stored = row(committed_engine, history_id).response_text or ""
    assert 0 < len(stored) <= 2000


def test_reply_and_booking_commands(
    committed_settings: Settings,
    committed_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    time_machine: TimeMachineFixture,
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    # The commands take the wall clock: it is the salon's day, whatever day the suite runs on.
    time_machine.move_to(salon.now, tick=True)
    rt = Runtime(committed_settings)
    [history_id] = send_campaign(rt, salon)
    rt.dispose()
    phone = row(committed_engine, history_id).phone or ""
    for name, value in {
        "DATABASE_URL": committed_settings.database_url,
        "REDIS_URL": committed_settings.redis_url or "",
        "REDIS_KEY_PREFIX": committed_settings.redis_key_prefix,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(
            cli.app,
            [
                "reply",
                "--company",
                str(salon.company_id),
                "--phone",
                national(phone),
                "--text",
                "ok, давайте",
                "--format",
                "json",
            ],
        )
        assert result.exit_code == 0, result.output
        import json

        payload = json.loads(result.stdout)
        assert set(payload) >= {
            "is_reactivation",
            "response_type",
            "reason",
            "until",
            "enriched_prompt",
            "suggested_service",
            "should_start_booking",
        }
        assert (payload["response_type"], payload["reason"], payload["until"]) == ("positive", None, None)
        booking = runner.invoke(
            cli.app, ["booking", "--company", str(salon.company_id), "--phone", phone, "--booking-id", "991"]
        )
        assert booking.exit_code == 0 and "linked" in booking.output
        bad = runner.invoke(cli.app, ["reply", "--company", "404", "--phone", phone, "--text", "да"])
        assert bad.exit_code == 2 and "unknown company" in bad.output
        empty = runner.invoke(cli.app, ["reply", "--company", str(salon.company_id), "--phone", phone, "--text", " "])
        assert empty.exit_code == 2 and "empty" in empty.output
    finally:
        get_settings.cache_clear()
