"""Gemini batches for the per-client chains, on committed PostgreSQL rows, the real Redis and the fake Gemini: rows
queue once, batches serve them across companies fairly, each row's chain goes on from its batch, and nothing is
written or continued twice."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from reactivation.core.settings import Settings
from reactivation.core.vocabulary import Status, Step
from reactivation.flow import batching, pipeline, sweeps
from reactivation.flow.batching import BatchRun, Pair
from reactivation.flow.pipeline import Continue, Handoff
from reactivation.messaging.composing import Composition, template_message
from reactivation.messaging.gemini_gate import DAILY_QUOTA
from reactivation.messaging.names import first_name
from reactivation.messaging.validation import validate_message
from reactivation.runtime import Runtime
from reactivation.storage.gemini_usage import usage_summary
from reactivation.storage.models import Client, GeminiQueued, GeminiRequest
from tests.chains import claim, rows
from tests.fake_gateway import FakeGateway
from tests.fake_gemini import FakeGemini, Reply, settings_for
from tests.salon import Salon, build_salon

HANDOFF = Handoff("waiting for a Gemini batch")


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(max_lifetime=120) as fake:
        yield fake


def runtime_for(settings: Settings, gateway: FakeGateway, gemini: FakeGemini, **overrides: object) -> Runtime:
    values: dict[str, object] = {
        "whatsapp_provider": "gateway",
        "whatsapp_gateway_url": gateway.url,
        "gemini_rate_limit": "1000/60",
        "gemini_batch_size": 4,
        "gemini_batch_wait_seconds": 2,
    }
    return Runtime(settings_for(gemini, settings, **{**values, **overrides}))


@pytest.fixture
def grt(committed_settings: Settings, gateway: FakeGateway, gemini: FakeGemini) -> Iterator[Runtime]:
    """One process's runtime with a Gemini key (the fake), batches of 4."""
    rt = runtime_for(committed_settings, gateway, gemini)
    yield rt
    rt.gemini_limiter.clear()
    rt.dispose()


def queue(rt: Runtime, salon: Salon) -> list[int]:
    """Claim the salon's day and run each chain up to its generate step, which hands it over to a batch."""
    ids = claim(rt, salon)
    for history_id in ids:
        assert pipeline.select_interval(rt, company_id=salon.company_id, history_id=history_id, now=salon.now) == (
            Continue()
        )
        outcome = pipeline.generate_message(rt, company_id=salon.company_id, history_id=history_id, now=salon.now)
        assert outcome == HANDOFF
    return ids


def serve(rt: Runtime, salon: Salon, *, seconds: float = 0.0) -> tuple[BatchRun, list[Pair], int]:
    """One run of the batching task: what it did, the chains it continued, how often it asked for another batch."""
    continued: list[Pair] = []
    wakes: list[int] = []
    result = batching.write_batch(
        rt,
        now=salon.now + timedelta(seconds=seconds),
        on_leased=lambda: wakes.append(1),
        on_written=lambda _session, pairs: continued.extend(pairs),
    )
    return result, continued, len(wakes)


def queued(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(GeminiQueued)) or 0)


def test_a_generate_step_queues_its_row_once_and_asks_gemini_nothing(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini
) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    first, _ = queue(grt, salon)
    # when the step runs again (a redelivered task, a sweep)
    again = pipeline.generate_message(grt, company_id=salon.company_id, history_id=first, now=salon.now)
    # then the row is still queued once, waiting, and no Gemini request was made
    assert again == HANDOFF
    assert queued(committed_engine) == 2
    assert {row.status for row in rows(committed_engine, salon.company_id)} == {Status.INTERVAL_SELECTED}
    assert not gemini.requests


def test_claimed_rows_are_queued_in_bulk_and_served_like_rows_their_chains_queued(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini
) -> None:
    # Given two salons' claims, and one row of the first whose chain already took its first step
    first = build_salon(committed_engine, due=3, company_id=111, extras=False)
    second = build_salon(committed_engine, due=2, company_id=222, extras=False)
    ids, others = claim(grt, first), claim(grt, second)
    pipeline.select_interval(grt, company_id=first.company_id, history_id=ids[0], now=first.now)
    # When the first salon's claim is queued in bulk (as the campaign's dispatch does with Gemini on)
    assert pipeline.written_by_batches(grt)
    with grt.session() as session:
        moved = batching.queue_claimed(session, company_id=first.company_id, history_ids=ids, now=first.now)
    # Then the claimed rows wait in the queue, the row moved by its chain is left to it, the other salon untouched
    assert moved == ids[1:]
    assert queued(committed_engine) == 2
    assert {r.status for r in rows(committed_engine, first.company_id)} == {Status.INTERVAL_SELECTED}
    assert {r.status for r in rows(committed_engine, second.company_id)} == {Status.CLAIMED} and len(others) == 2
    # And queueing them again (a redelivered dispatch) moves and queues nothing twice
    with grt.session() as session:
        assert batching.queue_claimed(session, company_id=first.company_id, history_ids=ids, now=first.now) == []
    # And a batch writes them from Gemini and continues their chains
    _, continued, _ = serve(grt, first, seconds=5)
    assert sorted(h for _, h in continued) == ids[1:] and len(gemini.requests) == 1


def test_a_batch_writes_its_rows_in_one_request_and_continues_each_chain(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini, gateway: FakeGateway
) -> None:
    salon = build_salon(committed_engine, due=4, extras=False)
    ids = queue(grt, salon)
    result, continued, _ = serve(grt, salon)
    # then one request wrote the four messages, each valid for its client, and each chain goes on from send_message
    assert len(gemini.requests) == 1
    assert sorted(continued) == sorted((salon.company_id, history_id) for history_id in ids)
    assert result.written == continued and queued(committed_engine) == 0
    for row in rows(committed_engine, salon.company_id):
        assert (row.status, row.generator, row.variant) == (Status.GENERATED, "gemini", "gentle.gemini.v2")
        with Session(committed_engine) as session:
            name = first_name(session.scalar(select(Client.name).where(Client.id == row.client_id)))
        assert validate_message(row.message_text, step=Step.GENTLE, first_name=name, company_name="Салон «Бархат»").ok
    # and the chain sends from there
    for history_id in ids:
        pipeline.send_message(grt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    assert len(gateway.messages()) == 4
    # and the request's tokens are the company's, per message written
    with Session(committed_engine) as session:
        usage = usage_summary(session, company_id=salon.company_id)
    assert (usage.requests, usage.written, usage.items) == (1, 4, 4)
    assert usage.thinking_tokens > 0 and usage.per_message(usage.tokens) is not None


def test_a_half_full_batch_leaves_after_the_wait(grt: Runtime, committed_engine: Engine, gemini: FakeGemini) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    queue(grt, salon)
    # when the batching task looks at once: two rows of a batch of four, the oldest queued just now
    result, continued, _ = serve(grt, salon, seconds=0.5)
    # then it waits for the rest of GEMINI_BATCH_WAIT_SECONDS, asking neither Gemini nor the limiter
    assert (result.reason, continued) == ("filling", [])
    assert result.next_in == pytest.approx(1.5)
    assert not gemini.requests and grt.gemini_gate.state(salon.now).checks_today == 0
    # and once the wait is over, the half-full batch leaves
    result, continued, _ = serve(grt, salon, seconds=2.0)
    assert len(continued) == 2 and len(gemini.requests) == 1


def test_batches_take_every_companys_rows_in_turn(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway, gemini: FakeGemini
) -> None:
    # given a big salon's backlog of 8 rows queued first, and two small salons' 2 rows each queued after it
    rt = runtime_for(committed_settings, gateway, gemini, gemini_batch_size=4)
    big = build_salon(committed_engine, due=8, company_id=101, extras=False)
    small = [build_salon(committed_engine, due=2, company_id=c, extras=False) for c in (102, 103)]
    for salon in (big, *small):
        queue(rt, salon)
    # when two batches of four are written
    firsts = [serve(rt, big)[1], serve(rt, big)[1]]
    # then each took one row of every company in turn, not the big salon's backlog first
    assert sorted(c for c, _ in firsts[0]) == [101, 101, 102, 103]
    assert sorted(c for c, _ in firsts[1]) == [101, 101, 102, 103]
    # and the rest is the big salon's
    assert sorted(c for c, _ in serve(rt, big)[1]) == [101] * 4
    rt.dispose()


def test_the_round_goes_on_across_batches_of_one(
    committed_settings: Settings, committed_engine: Engine, gateway: FakeGateway, gemini: FakeGemini
) -> None:
    # given one request per client, and three salons whose rows were queued salon after salon
    rt = runtime_for(committed_settings, gateway, gemini, gemini_batch_size=1)
    salons = [build_salon(committed_engine, due=3, company_id=c, extras=False) for c in (301, 302, 303)]
    for salon in salons:
        queue(rt, salon)
    # when six batches are written
    served = [serve(rt, salons[0], seconds=second)[1][0][0] for second in range(6)]
    # then each took the salon served least recently, not the oldest rows first (which would be 301's three)
    assert served == [301, 302, 303, 301, 302, 303]
    rt.dispose()


def test_two_salons_in_one_batch_each_get_their_own_clients_messages(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini
) -> None:
    # given two salons whose clients have different names, in one batch
    first = build_salon(committed_engine, due=2, company_id=201, extras=False)
    second = build_salon(committed_engine, due=2, company_id=202, extras=False)
    with Session(committed_engine) as session:
        for client_id, name in zip(second.due, ["Зинаида", "Ярослав"], strict=True):
            session.execute(update(Client).where(Client.company_id == 202, Client.id == client_id).values(name=name))
        session.execute(update(Client).where(Client.company_id == 201).values(name="Мария"))
        session.commit()
    queue(grt, first)
    queue(grt, second)
    _, continued, _ = serve(grt, first)
    # then one request wrote all four, and each row's message names its own client, none the other salon's
    assert len(continued) == 4 and len(gemini.requests) == 1
    texts = {row.client_id: row.message_text or "" for row in rows(committed_engine, 201) + rows(committed_engine, 202)}
    assert all("Мария" in texts[c] and "Зинаида" not in texts[c] for c in first.due)
    assert [n in texts[c] for c, n in zip(second.due, ["Зинаида", "Ярослав"], strict=True)] == [True, True]
    # and each company has its share of the request's tokens
    with Session(committed_engine) as session:
        shares = session.execute(select(GeminiRequest.company_id, GeminiRequest.items)).all()
        assert sorted(shares) == [(201, 2), (202, 2)]
        assert len(set(session.scalars(select(GeminiRequest.request_key)))) == 1


def test_a_batch_run_twice_writes_and_continues_nothing_twice(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini
) -> None:
    salon = build_salon(committed_engine, due=4, extras=False)
    queue(grt, salon)
    _, continued, _ = serve(grt, salon)
    before = {row.id: row.message_text for row in rows(committed_engine, salon.company_id)}
    # when the batching task is delivered again (acks_late after a lost acknowledgement)
    result, again, _ = serve(grt, salon)
    # then it finds nothing to do: no request, no write, no chain
    assert (result.reason, again, len(gemini.requests)) == ("nothing waits", [], 1)
    assert {row.id: row.message_text for row in rows(committed_engine, salon.company_id)} == before
    assert len(continued) == 4


def test_a_batch_whose_lease_passed_writes_nothing_and_another_batch_serves_its_rows(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini
) -> None:
    salon = build_salon(committed_engine, due=3, extras=False)
    queue(grt, salon)
    # given a batch that leased the rows and then hung (its worker died before it wrote anything)
    stuck = batching._lease(grt, now=salon.now, token="dead-worker", limit=4)
    assert len(stuck) == 3 and serve(grt, salon)[0].reason == "nothing waits"
    # when its lease has passed, the next batch takes the rows and writes them
    later = batching.lease_seconds(grt) + 1
    _, continued, _ = serve(grt, salon, seconds=later)
    assert len(continued) == 3
    # then, should the dead batch come back to life, it writes nothing and continues no chain
    late = Composition([template_message(row.request, reason="late") for row in stuck], [])
    result = batching._store(grt, stuck, late, now=salon.now, token="dead-worker", on_written=lambda _s, _p: None)
    assert result.written == []
    assert {row.generator for row in rows(committed_engine, salon.company_id)} == {"gemini"}


def test_the_sweep_wakes_the_batching_task_for_rows_waiting_in_the_queue_instead_of_resuming_each(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini
) -> None:
    salon = build_salon(committed_engine, due=2, extras=False)
    waiting, lost = queue(grt, salon)
    # given a row whose queue entry was lost (its generate step's transaction never reached the queue)
    with Session(committed_engine) as session:
        session.execute(delete(GeminiQueued).where(GeminiQueued.history_id == lost))
        session.commit()
    # when the sweep looks long after (the batch's task was lost)
    later = salon.now + sweeps.STALE_AFTER + timedelta(minutes=30)
    with Session(committed_engine) as session:
        found = sweeps.sweep_company(session, company_id=salon.company_id, now=later)
        session.commit()
    # then the row waiting in the queue is not resumed one by one: the sweep says rows wait, for one wake-up
    assert found.gemini_waiting
    # and the row no queue holds is resumed at its generate step, which queues it and hands over
    assert [(c, h, step.value) for c, h, step in found.resume] == [(salon.company_id, lost, "generate_message")]
    assert pipeline.generate_message(grt, company_id=salon.company_id, history_id=lost, now=later) == HANDOFF
    assert queued(committed_engine) == 2 and not gemini.requests
    # and another company's sweep sees nothing of them
    with Session(committed_engine) as session:
        other = sweeps.sweep_company(session, company_id=salon.company_id + 1, now=later)
    assert not other.gemini_waiting and other.resume == []
    assert waiting != lost


def test_while_gemini_is_paused_for_the_day_rows_take_templates_without_a_slot(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini
) -> None:
    salon = build_salon(committed_engine, due=6, extras=False)
    queue(grt, salon)
    # given a batch whose request learns the day's quota is used up
    gemini.push(Reply.quota("day", "30s"))
    result, continued, _ = serve(grt, salon, seconds=5)
    assert len(continued) == 4 and len(gemini.requests) == 1
    # then the waiting rows are drained to templates with no request, as soon as the task looks again
    result, drained, _ = serve(grt, salon, seconds=6)
    assert result.reason == f"closed: {DAILY_QUOTA}" and len(drained) == 2
    # and a new row's generate step writes its template at once, without queueing or a limiter slot
    other = build_salon(committed_engine, due=1, company_id=77, extras=False)
    [history_id] = claim(grt, other)
    pipeline.select_interval(grt, company_id=77, history_id=history_id, now=other.now)
    assert pipeline.generate_message(grt, company_id=77, history_id=history_id, now=other.now) == Continue()
    all_rows = rows(committed_engine, salon.company_id) + rows(committed_engine, 77)
    assert {(row.generator, row.generator_fallback_reason) for row in all_rows} == {("template", DAILY_QUOTA)}
    assert len(gemini.requests) == 1 and queued(committed_engine) == 0
    assert grt.gemini_gate.state(salon.now).checks_today == 1


def test_a_per_minute_429_puts_the_rows_back_then_templates_after_too_many_tries(
    committed_settings: Settings,
    committed_engine: Engine,
    gateway: FakeGateway,
    gemini: FakeGemini,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = runtime_for(committed_settings, gateway, gemini, gemini_max_attempts=2)
    salon = build_salon(committed_engine, due=2, extras=False)
    queue(rt, salon)
    gemini.set_default(Reply.quota("minute", "10s"))
    caplog.set_level(logging.INFO, logger="reactivation.flow.batching")
    # when the batch's request is over the per-minute quota
    result, continued, _ = serve(rt, salon, seconds=5)
    # then its rows wait again (nothing written), and every worker is blocked for the delay
    assert (result.requeued, continued, result.next_in) == (2, [], 0.0)
    assert queued(committed_engine) == 2
    [waiting] = [record for record in caplog.records if record.getMessage() == "gemini rows wait for a later batch"]
    assert (waiting.rows, waiting.reasons) == (2, "rate_limited:minute")  # type: ignore[attr-defined]
    assert serve(rt, salon, seconds=6)[0].reason == "blocked"
    # and once given back as often as GEMINI_MAX_ATTEMPTS allows, they take their templates
    result, continued, _ = serve(rt, salon, seconds=20)
    assert len(continued) == 2 and queued(committed_engine) == 0
    reasons = {row.generator_fallback_reason for row in rows(committed_engine, salon.company_id)}
    assert reasons == {"rate_limited:minute"}
    rt.gemini_limiter.clear()
    rt.dispose()


def test_a_403_opens_the_breaker_after_one_request(grt: Runtime, committed_engine: Engine, gemini: FakeGemini) -> None:
    salon = build_salon(committed_engine, due=6, extras=False)
    queue(grt, salon)
    gemini.set_default(Reply.error(403, "PERMISSION_DENIED"))
    # when the first batch is refused
    _, first, _ = serve(grt, salon, seconds=5)
    _, rest, _ = serve(grt, salon, seconds=6)
    # then one request was made, and every row went out from its template with the cause
    assert len(gemini.requests) == 1 and len(first) + len(rest) == 6
    assert {row.generator_fallback_reason for row in rows(committed_engine, salon.company_id)} == {"gemini_key"}


def test_in_one_process_the_generate_step_writes_with_gemini_at_once(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini
) -> None:
    salon = build_salon(committed_engine, due=1, extras=False)
    [history_id] = claim(grt, salon)
    pipeline.select_interval(grt, company_id=salon.company_id, history_id=history_id, now=salon.now)
    outcome = pipeline.generate_message(
        grt, company_id=salon.company_id, history_id=history_id, now=salon.now, inline=True
    )
    assert outcome == Continue() and queued(committed_engine) == 0
    [row] = rows(committed_engine, salon.company_id)
    assert (row.status, row.generator) == (Status.GENERATED, "gemini")
    with Session(committed_engine) as session:
        assert usage_summary(session, company_id=salon.company_id).requests == 1


def test_one_batching_run_is_marked_at_a_time_and_a_far_one_holds_nobody_back(grt: Runtime) -> None:
    # given a run scheduled (a row's generate step woke it): the next rows send no other
    assert batching.mark_scheduled(grt, countdown=0)
    assert not batching.mark_scheduled(grt, countdown=0)
    # once it has started, the next row schedules the next run
    batching.clear_scheduled(grt)
    assert batching.mark_scheduled(grt, countdown=0)
    # a run scheduled far ahead (the end of a long block) is sent unmarked: the next row still schedules its own run
    batching.clear_scheduled(grt)
    assert batching.mark_scheduled(grt, countdown=300)
    assert batching.mark_scheduled(grt, countdown=0)
    ttl = grt.redis.pttl(f"{grt.settings.redis_key_prefix}gemini:batch:scheduled")
    assert 0 < ttl <= batching.SCHEDULED_SLACK.total_seconds() * 1000
    batching.clear_scheduled(grt)


def test_a_batch_cut_by_a_lost_connection_gives_its_rows_back_so_its_retry_serves_them_at_once(
    grt: Runtime, committed_engine: Engine, gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    salon = build_salon(committed_engine, due=4, extras=False)
    queue(grt, salon)
    written = batching._store

    def cut(*args: object, **kwargs: object) -> BatchRun:
        raise OperationalError("UPDATE …", {}, Exception("terminating connection due to administrator command"))

    # When the batch's write is cut after Gemini answered (every connection killed mid-transaction)
    monkeypatch.setattr(batching, "_store", cut)
    with pytest.raises(OperationalError):
        serve(grt, salon, seconds=5)
    # Then no row is left leased by the dead batch: the task's retry, a moment later, writes all four
    with Session(committed_engine) as session:
        assert session.scalar(select(func.count()).where(GeminiQueued.lease_token.is_not(None))) == 0
    monkeypatch.setattr(batching, "_store", written)
    result, continued, _ = serve(grt, salon, seconds=6)
    assert len(result.written) == 4 and len(continued) == 4
    assert {row.status for row in rows(committed_engine, salon.company_id)} == {Status.GENERATED}
