"""What follows from a reply's reason, end to end on PostgreSQL: campaign → reply → the campaigns after it.

The salon's one client last visited on 14 October 2026 (the universal 30-day interval, 3 days' grace): step 1
(gentle) is due on 23 November, step 2 (offer) from 16 December, step 3 (win_back) from 15 January 2027. Every
instant comes from the salon's fixed dates; nothing reads the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from reactivation.core.phones import mask_phone
from reactivation.flow.campaign import run_campaign
from reactivation.handover.admin_handover import read_pending_action
from reactivation.outcomes.stats import campaign_stats
from reactivation.replies.handler import handle_reply
from reactivation.runtime import Runtime
from reactivation.storage.models import Client, Consent, OptOut, ReactivationHistory, ReplyHold
from tests.chains import row, send_campaign
from tests.salon import Salon, build_salon


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def first_message(rt: Runtime, engine: Engine) -> tuple[Salon, int, str]:
    salon = build_salon(engine, due=1, extras=False)
    [history_id] = send_campaign(rt, salon)
    return salon, history_id, row(engine, history_id).phone or ""


def reply(rt: Runtime, salon: Salon, phone: str, text: str, now: datetime | None = None) -> dict[str, object]:
    return handle_reply(rt, company_id=salon.company_id, phone=phone, text=text, now=now or salon.now)


def test_a_snoozed_lapse_comes_back_on_its_date_at_the_same_step_once(
    outbox_rt: Runtime, committed_engine: Engine
) -> None:
    # given a gentle message on 23 November answered "not now, maybe in January"
    salon, history_id, phone = first_message(outbox_rt, committed_engine)
    answer = reply(outbox_rt, salon, phone, "Не сейчас, может в январе")
    # then the reply is recorded with its reason and the date it names, and the lapse is snoozed, not stopped
    assert (answer["response_type"], answer["reason"], answer["until"]) == ("negative", "not_now", "2027-01-01")
    first = row(committed_engine, history_id)
    assert (first.response_reason, first.response_until, first.flow_stopped_reason) == (
        "not_now",
        date(2027, 1, 1),
        None,
    )
    assert "напишет 01.01.2027" in str(answer["enriched_prompt"])
    # when the campaigns of 20 and 31 December run (the offer would be due), nothing is sent
    assert send_campaign(outbox_rt, salon, now=at(date(2026, 12, 20))) == []
    assert send_campaign(outbox_rt, salon, now=at(date(2026, 12, 31))) == []
    # then on 1 January the same step is due again, once
    [again] = send_campaign(outbox_rt, salon, now=at(date(2027, 1, 1)))
    repeated = row(committed_engine, again)
    assert (repeated.step, repeated.snooze_repeat, repeated.status) == (1, True, "sent")
    assert send_campaign(outbox_rt, salon, now=at(date(2027, 1, 1), hour=13)) == []
    # and a second "not now" in the lapse ends it instead of snoozing it again
    second = reply(outbox_rt, salon, phone, "Не сейчас", now=at(date(2027, 1, 2)))
    assert (second["reason"], second["until"]) == ("not_now", None)
    assert row(committed_engine, again).flow_stopped_reason == "negative"
    assert send_campaign(outbox_rt, salon, now=at(date(2027, 2, 20))) == []


def test_a_not_now_without_a_time_snoozes_30_days_from_the_replys_local_date(
    outbox_rt: Runtime, committed_engine: Engine
) -> None:
    # given a reply at 22:30 UTC on 23 November, already 24 November in Moscow
    salon, _, phone = first_message(outbox_rt, committed_engine)
    answer = reply(outbox_rt, salon, phone, "Не сейчас, спасибо", now=datetime(2026, 11, 23, 22, 30, tzinfo=UTC))
    # then it is snoozed for 30 days from the local date
    assert answer["until"] == "2026-12-24"
    assert send_campaign(outbox_rt, salon, now=at(date(2026, 12, 23))) == []
    [again] = send_campaign(outbox_rt, salon, now=at(date(2026, 12, 24)))
    assert row(committed_engine, again).step == 1


def test_a_moved_client_is_skipped_with_its_reason_until_the_phone_changes(
    outbox_rt: Runtime, committed_engine: Engine
) -> None:
    # given a client who answers that they moved to another city
    salon, history_id, phone = first_message(outbox_rt, committed_engine)
    answer = reply(outbox_rt, salon, phone, "Спасибо, но я переехала в другой город")
    assert (answer["response_type"], answer["reason"]) == ("negative", "moved_away")
    # then it is no opt-out: the phone is not on the opt-out list and its consent is untouched
    with Session(committed_engine) as session:
        assert session.scalars(select(OptOut)).all() == []
        assert session.scalars(select(Consent).where(Consent.revoked_at.is_not(None))).all() == []
    assert row(committed_engine, history_id).flow_stopped_reason is None
    # when the offer falls due, the client is skipped with the reason
    claimed: list[int] = []
    result = run_campaign(
        outbox_rt,
        company_id=salon.company_id,
        run_date=date(2026, 12, 20),
        now=at(date(2026, 12, 20)),
        on_claimed=claimed.extend,
    )
    assert claimed == [] and result.skipped == {"moved_away": 1}
    with Session(committed_engine) as session:
        skipped = session.scalars(select(ReactivationHistory).where(ReactivationHistory.step == 2)).one()
    assert (skipped.status, skipped.skip_reason) == ("skipped", "moved_away")
    # and once the client's phone changes, the next step goes to the new number
    with Session(committed_engine) as session:
        session.execute(update(Client).values(phone="+79167770011"))
        session.commit()
    [win_back] = send_campaign(outbox_rt, salon, now=at(date(2027, 1, 20)))
    assert (row(committed_engine, win_back).step, row(committed_engine, win_back).phone) == (3, "+79167770011")


def test_an_unhappy_reply_stops_the_lapse_asks_for_an_apology_and_reaches_the_owner(
    outbox_rt: Runtime, committed_engine: Engine
) -> None:
    # given a client whose last haircut went wrong
    salon, history_id, phone = first_message(outbox_rt, committed_engine)
    text = "Мне в прошлый раз испортили стрижку, больше не приду"
    answer = reply(outbox_rt, salon, phone, text)
    # then the lapse stops and the admin is asked to apologise and offer to put it right
    assert (answer["response_type"], answer["reason"]) == ("negative", "unhappy")
    assert row(committed_engine, history_id).flow_stopped_reason == "negative"
    prompt = str(answer["enriched_prompt"])
    assert "извинись" in prompt and "предложи исправить" in prompt
    assert send_campaign(outbox_rt, salon, now=at(date(2026, 12, 20))) == []
    # and stats lists the reply for the owner: masked phone, local date, text
    with Session(committed_engine) as session:
        stats = campaign_stats(session, company_id=salon.company_id, since=None, until=None)
    assert stats["unhappy"] == {
        "count": 1,
        "replies": [{"phone": mask_phone(phone), "date": "2026-11-23", "text": text}],
    }
    assert stats["replies_by_reason"] == {"negative": {"unhappy": 1}}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Я теперь хожу в другой салон, без обид", "went_elsewhere"),
        ("Спасибо, я сама крашусь дома", "self_service"),
        ("Нет, спасибо, не нужно", "no_need"),
        ("Дорого", "price"),
    ],
)
def test_other_refusals_stop_the_lapse(outbox_rt: Runtime, committed_engine: Engine, text: str, reason: str) -> None:
    salon, history_id, phone = first_message(outbox_rt, committed_engine)
    answer = reply(outbox_rt, salon, phone, text)
    assert answer["reason"] == reason and answer["until"] is None
    assert row(committed_engine, history_id).flow_stopped_reason == "negative"
    assert send_campaign(outbox_rt, salon, now=at(date(2026, 12, 20))) == []


def test_a_price_reply_to_a_message_without_a_discount_promises_none(
    outbox_rt: Runtime, committed_engine: Engine
) -> None:
    salon, _, phone = first_message(outbox_rt, committed_engine)
    answer = reply(outbox_rt, salon, phone, "Спасибо, но сейчас дороговато")
    assert "не обещай скидку" in str(answer["enriched_prompt"])


@pytest.mark.parametrize(
    ("text", "reason", "must_say"),
    [
        ("За рулём, позже отвечу", "busy", "ответит позже"),
        ("А до какого числа действует скидка?", "question", "ответь на него"),
    ],
)
def test_busy_and_question_change_nothing_but_the_prompt(
    outbox_rt: Runtime, committed_engine: Engine, text: str, reason: str, must_say: str
) -> None:
    # given a neutral reply
    salon, history_id, phone = first_message(outbox_rt, committed_engine)
    answer = reply(outbox_rt, salon, phone, text)
    # then the admin is told what to do, the pending action stays and the lapse goes on
    assert (answer["response_type"], answer["reason"]) == ("neutral", reason)
    assert must_say in str(answer["enriched_prompt"])
    pending = read_pending_action(
        outbox_rt.redis, prefix=outbox_rt.settings.redis_key_prefix, company_id=salon.company_id, phone=phone
    )
    assert pending is not None
    assert row(committed_engine, history_id).flow_stopped_reason is None
    [offer] = send_campaign(outbox_rt, salon, now=at(date(2026, 12, 20)))
    assert row(committed_engine, offer).step == 2


def test_stats_count_replies_by_reason_and_the_snoozed_clients_who_came_back(
    outbox_rt: Runtime, committed_engine: Engine
) -> None:
    # given two clients who said "later": one is written to again and comes back, one is still snoozed
    salon = build_salon(committed_engine, due=2, extras=False)
    ids = send_campaign(outbox_rt, salon)
    phones = [row(committed_engine, history_id).phone or "" for history_id in ids]
    reply(outbox_rt, salon, phones[0], "Давайте после праздников")
    reply(outbox_rt, salon, phones[1], "Может летом")
    [again] = send_campaign(outbox_rt, salon, now=at(date(2027, 1, 11)))
    with Session(committed_engine) as session:
        comeback = row(committed_engine, again).client_id
        session.execute(update(Client).where(Client.id == comeback).values(last_visit_date=date(2027, 1, 13)))
        session.commit()
        stats = campaign_stats(session, company_id=salon.company_id, since=None, until=None)
        holds = session.scalars(select(ReplyHold).order_by(ReplyHold.until)).all()
    # then stats count the replies by reason, the snoozes, the one written to again and the one who came back
    assert stats["replies_by_reason"] == {"negative": {"not_now": 2}}
    assert stats["snoozes"] == {"snoozed": 2, "due_again": 1, "came_back": 1}
    assert [(h.until, h.repeat_history_id) for h in holds] == [(date(2027, 1, 11), again), (date(2027, 6, 1), None)]
