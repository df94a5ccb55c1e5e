"""The facts a chain carries (reactivation.flow.chain_facts): read once, the same as the row and the company say, and
the chain given them behaves as the chain that reads them: one re-check of the client, right before the send."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from reactivation.core.vocabulary import SkipReason, Status
from reactivation.flow import pipeline
from reactivation.flow.chain_facts import ChainFacts, load_facts
from reactivation.flow.pipeline import Continue, Stop
from reactivation.messaging.composing import MessageRequest, template_message
from reactivation.runtime import Runtime
from reactivation.storage.companies import load_company
from reactivation.storage.company_settings import CompanyConfigError
from reactivation.storage.models import Client, Company
from tests.chains import STEPS, claim, opt_out_by_reply, rows
from tests.fake_gateway import FakeGateway
from tests.salon import build_salon


def _carried(engine: Engine, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], ChainFacts]:
    """The facts as a task receives them: read, turned into JSON, sent, parsed."""
    with Session(engine) as session:
        facts = load_facts(session, pairs)
    return {pair: ChainFacts.from_json(json.loads(json.dumps(f.to_json()))) for pair, f in facts.items()}


def test_the_carried_facts_compose_the_same_message_and_settings_as_the_rows(
    rt: Runtime, committed_engine: Engine
) -> None:
    # Given a salon with settings of its own and clients of every kind of name
    salon = build_salon(
        committed_engine, due=6, extras=False, settings={"send_window_start": "08:30", "sender_id": "salon-1"}
    )
    claimed = claim(rt, salon)
    pairs = [(salon.company_id, history_id) for history_id in claimed]
    # When the facts are read once and travel as JSON
    carried = _carried(committed_engine, pairs)
    # Then the company's config is the one the database holds
    with Session(committed_engine) as session:
        company = load_company(session, company_id=salon.company_id)
        for row in rows(committed_engine, salon.company_id):
            facts = carried[(salon.company_id, row.id)]
            assert facts.company.config() == company
            # And the message written from them is the one written from the row and the client's full name
            name = session.get(Client, row.client_id)
            from_row = MessageRequest.for_contact(company, row, client_name=name.name if name else None)
            assert template_message(facts.message_request()) == template_message(from_row)
            # And no full name travels: the first name only
            assert facts.first_name == from_row.first_name


def test_facts_are_read_per_company_and_a_broken_company_is_left_to_its_steps(
    rt: Runtime, committed_engine: Engine
) -> None:
    # Given two salons with claimed rows, and the second one's time zone broken afterwards
    first = build_salon(committed_engine, due=2, company_id=111, extras=False)
    second = build_salon(committed_engine, due=2, company_id=222, extras=False)
    pairs = [(first.company_id, h) for h in claim(rt, first)] + [(second.company_id, h) for h in claim(rt, second)]
    with Session(committed_engine) as session:
        session.get_one(Company, second.company_id).name = "Другой салон"
        session.commit()
    # Then each row carries its own company's facts
    carried = _carried(committed_engine, pairs)
    assert {pair[0]: facts.company.name for pair, facts in carried.items()} == {
        111: "Салон «Бархат»",
        222: "Другой салон",
    }
    assert all(facts.company.id == pair[0] for pair, facts in carried.items())
    # And a row asked for under another company's id is not found
    with Session(committed_engine) as session:
        assert load_facts(session, [(first.company_id, pairs[-1][1])]) == {}
        session.get_one(Company, second.company_id).timezone = "Nowhere/Land"
        session.commit()
    # And once the second company's settings are broken, its rows get no facts (their steps fail them) ...
    with Session(committed_engine) as session:
        assert set(load_facts(session, pairs)) == set(pairs[:2])
        # ... and a step reading them for itself gets the company's error
        with pytest.raises(CompanyConfigError, match="unknown time zone"):
            load_facts(session, pairs[2:], strict=True)


def test_a_chain_with_its_facts_rechecks_the_client_once_right_before_the_send(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given two claimed clients and their chains' facts
    salon = build_salon(committed_engine, due=2, extras=False)
    first, second = claim(rt, salon)
    carried = _carried(committed_engine, [(salon.company_id, first), (salon.company_id, second)])
    # When the first client opts out after the claim
    first_row = next(r for r in rows(committed_engine, salon.company_id) if r.id == first)
    opt_out_by_reply(committed_engine, salon, first_row)
    # Then its chain goes on up to the send, and the send skips it
    outcomes = []
    for step in STEPS:
        facts = carried[(salon.company_id, first)]
        outcomes.append(step(rt, company_id=salon.company_id, history_id=first, now=salon.now, facts=facts))
        if not isinstance(outcomes[-1], Continue):
            break
    assert outcomes == [Continue(), Continue(), Stop(SkipReason.OPTED_OUT)]
    # And the other client's chain, run with its facts, makes fewer round trips than the same steps reading them
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(rt.engine, "before_cursor_execute", count)
    try:
        for step in STEPS:
            facts = carried[(salon.company_id, second)]
            assert step(rt, company_id=salon.company_id, history_id=second, now=salon.now, facts=facts) in (
                Continue(),
                Stop("done"),
            )
    finally:
        event.remove(rt.engine, "before_cursor_execute", count)
    assert [m["phone"] for m in gateway.messages()] == [
        r.phone for r in rows(committed_engine, salon.company_id) if r.id == second
    ]
    # The client is read once: by the re-check before the send
    assert sum("FROM clients" in s for s in statements) == 1
    assert sum("FROM companies" in s for s in statements) == 0
    sent = next(r for r in rows(committed_engine, salon.company_id) if r.id == second)
    assert sent.status == Status.SENT and sent.context_saved_at is not None


def test_a_redelivered_step_with_facts_goes_on_or_stops_as_the_row_says(
    rt: Runtime, committed_engine: Engine, gateway: FakeGateway
) -> None:
    # Given a chain that ran to its end
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = claim(rt, salon)
    facts = _carried(committed_engine, [(salon.company_id, history_id)])[(salon.company_id, history_id)]
    for step in STEPS:
        step(rt, company_id=salon.company_id, history_id=history_id, now=salon.now, facts=facts)
    # When its steps are delivered again, with their facts
    again = [step(rt, company_id=salon.company_id, history_id=history_id, now=salon.now, facts=facts) for step in STEPS]
    # Then the done steps let the chain go on, nothing is sent twice, and the hand-over is not repeated
    assert again == [Continue(), Continue(), Continue(), Continue(), Stop("already handed over")]
    assert len(gateway.messages()) == 1
    # And a row gone meanwhile stops the chain
    assert pipeline.select_interval(
        rt, company_id=salon.company_id, history_id=history_id + 1000, now=salon.now, facts=facts
    ) == Stop("missing")
