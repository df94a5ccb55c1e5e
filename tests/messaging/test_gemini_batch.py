"""A batch of messages through the real google-genai client against the fake server: one request for the batch,
single-client retries for bad items, templates after that, and what quotas, refusals and outages do to it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from reactivation.core.vocabulary import Step
from reactivation.messaging.batch_prompt import DUPLICATE, MISSING, OTHER_CLIENT
from reactivation.messaging.gemini import TRUNCATED, PromptFacts
from reactivation.messaging.gemini_batch import (
    QUOTA_DELAY_MARGIN_SECONDS,
    RATE_LIMITED_BUDGET,
    Fallback,
    Requeue,
    Wrote,
)
from reactivation.messaging.gemini_errors import OUTAGE_FAILURES
from reactivation.messaging.gemini_gate import DAILY_LIMIT, DAILY_QUOTA, Closed, Go, Wait
from reactivation.messaging.validation import validate_message
from tests.fake_gemini import THINKING, FakeGemini, Reply
from tests.gemini_stack import FakeTime, batch_writer, make_gate

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
SALON = "Салон «Бархат»"
NAMES = ["Мария", "Анна", None, "Ольга", "Пётр", "Ирина", "Олег", "Светлана"]
ITEMS = [
    PromptFacts(step=Step(1 + index % 3), first_name=name, service_title="Маникюр", company_name=SALON)
    for index, name in enumerate(NAMES)
]


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(max_lifetime=60) as server:
        yield server


def assert_valid(outcome: object, facts: PromptFacts) -> None:
    assert isinstance(outcome, Wrote)
    assert validate_message(outcome.text, step=facts.step, first_name=facts.first_name, company_name=SALON).ok


def test_one_request_writes_the_whole_batch(fake: FakeGemini) -> None:
    result = batch_writer(fake).write(ITEMS, now=NOW)
    # then every item has its own valid message, from one request, none worded like another
    assert len(fake.requests) == 1 and len(result.requests) == 1
    for outcome, facts in zip(result.outcomes, ITEMS, strict=True):
        assert_valid(outcome, facts)
    texts = [o.text for o in result.outcomes if isinstance(o, Wrote)]
    assert len(set(texts)) == len(ITEMS)
    # and the request's usage is recorded, thinking tokens apart, with every item written from it
    record = result.requests[0]
    fixed, per_item = THINKING["LOW"]
    assert record.usage.thinking == fixed + per_item * len(ITEMS)
    assert record.outcome == "ok" and record.written == tuple(range(len(ITEMS)))
    assert record.thinking == "low" and result.model == "gemini-3.8-flash"


BAD = {2: "too_long", 3: "english", 4: "placeholder", 5: "empty", 6: "missing", 7: "other_name", 8: "duplicate"}
# Offers all, so that the duplicate (worded like the first item, names aside) is valid but for repeating it.
OFFERS = [PromptFacts(step=Step.OFFER, first_name=name, service_title="Маникюр", company_name=SALON) for name in NAMES]


def test_bad_items_get_one_request_of_their_own_and_the_batch_keeps_its_good_ones(fake: FakeGemini) -> None:
    # given an answer with one good item and seven bad ones, then good answers
    fake.push(Reply.batch(BAD))
    result = batch_writer(fake).write(OFFERS, now=NOW)
    # then each bad item was asked for once more, alone, and every item ends with a valid message
    assert len(fake.requests) == 1 + len(BAD)
    assert [len(request.items) for request in fake.requests] == [8] + [1] * len(BAD)
    assert [request.items[0].name for request in fake.requests[1:]] == NAMES[1:]
    for outcome, facts in zip(result.outcomes, OFFERS, strict=True):
        assert_valid(outcome, facts)
    assert result.requests[0].written == (0,)


def test_a_batch_with_bad_items_keeps_only_valid_messages(fake: FakeGemini) -> None:
    # given bad items whose retries are bad again
    fake.push(Reply.batch(BAD), *[Reply.say("Maria, book now?")] * len(BAD))
    result = batch_writer(fake).write(OFFERS, now=NOW)
    # then the good item is Gemini's and every other takes its template, with the retry's reason
    assert_valid(result.outcomes[0], OFFERS[0])
    assert all(isinstance(outcome, Fallback) for outcome in result.outcomes[1:])
    assert {o.reason.split(",")[0] for o in result.outcomes[1:] if isinstance(o, Fallback)} == {"rejected:too_short"}


def test_duplicated_wording_inside_a_batch_is_caught(fake: FakeGemini) -> None:
    # given four offers, the third worded like the first (names aside), and a retry that repeats it again
    offers = [PromptFacts(Step.OFFER, name, "Маникюр", SALON) for name in ("Мария", "Анна", "Ольга", None)]
    fake.push(Reply.batch({3: "duplicate"}), Reply.batch({1: "duplicate"}))
    result = batch_writer(fake).write(offers, now=NOW)
    # then the first keeps its message, the third takes its template, the others are Gemini's
    assert result.outcomes[2] == Fallback(DUPLICATE)
    assert all(isinstance(outcome, Wrote) for index, outcome in enumerate(result.outcomes) if index != 2)
    assert len(fake.requests) == 2


LEAK = "Анна, здравствуйте! Мария тоже давно у нас не была. Для вас скидка 10% на визит. Записать вас?"


@pytest.mark.parametrize(
    ("mode", "retry", "reason"),
    [("missing", Reply.batch({1: "missing"}), MISSING), ("other_name", Reply.say(LEAK), OTHER_CLIENT)],
)
def test_a_missing_item_or_a_leaked_name_is_retried_then_templated(
    fake: FakeGemini, mode: str, retry: Reply, reason: str
) -> None:
    # given a batch whose second item (Анна's offer) is missing or names another client, and so is its retry
    fake.push(Reply.batch({2: mode}), retry)
    result = batch_writer(fake).write(ITEMS[:3], now=NOW)
    # then it takes its template; the retry alone still knew the batch's other names
    assert result.outcomes[1] == Fallback(reason)
    assert "Мария" not in fake.requests[1].prompt


def test_an_answer_cut_at_the_cap_is_asked_again_in_halves(fake: FakeGemini) -> None:
    fake.push(Reply.truncated())
    result = batch_writer(fake).write(ITEMS, now=NOW)
    assert [len(request.items) for request in fake.requests] == [8, 4, 4]
    assert all(isinstance(outcome, Wrote) for outcome in result.outcomes)
    assert result.requests[0].outcome == "truncated"


def test_a_half_cut_again_takes_its_templates(fake: FakeGemini) -> None:
    fake.push(Reply.truncated(), Reply.truncated())
    result = batch_writer(fake).write(ITEMS, now=NOW)
    assert [len(request.items) for request in fake.requests] == [8, 4, 4]
    assert result.outcomes[:4] == [Fallback(TRUNCATED)] * 4
    assert all(isinstance(outcome, Wrote) for outcome in result.outcomes[4:])


def test_the_real_cap_with_too_much_thinking_truncates_then_templates(fake: FakeGemini) -> None:
    # given a cap that high thinking alone overflows: every request is cut
    writer = batch_writer(fake, gemini_thinking_level="high", gemini_max_output_tokens=256, gemini_batch_size=2)
    result = writer.write(ITEMS[:2], now=NOW)
    assert result.outcomes == [Fallback(TRUNCATED)] * 2
    assert all(request.finish_reason == "MAX_TOKENS" for request in result.requests)


def test_server_errors_back_off_with_jitter_up_to_the_attempt_limit(fake: FakeGemini) -> None:
    fake.set_default(Reply.error(500))
    fake_time = FakeTime()
    result = batch_writer(fake, fake_time=fake_time, gemini_max_attempts=4).write(ITEMS, now=NOW)
    assert result.outcomes == [Fallback("server_error")] * len(ITEMS)
    assert len(fake.requests) == 4 and len(result.requests) == 4
    for wait, base in zip(fake_time.sleeps, [1, 2, 4], strict=True):
        assert base <= wait <= base + 1


def test_the_budget_stops_retries_before_the_attempt_limit(fake: FakeGemini) -> None:
    fake.set_default(Reply.error(503, "UNAVAILABLE"))
    fake_time = FakeTime()
    writer = batch_writer(fake, fake_time=fake_time, gemini_max_attempts=10, gemini_budget_seconds=5)
    result = writer.write(ITEMS, now=NOW)
    assert result.outcomes[0] == Fallback("server_error")
    assert len(fake.requests) < 10 and sum(fake_time.sleeps) < 5


def test_one_hang_then_a_good_answer(fake: FakeGemini) -> None:
    fake.push(Reply.hang(5))
    result = batch_writer(fake, gemini_timeout_seconds=0.3).write(ITEMS[:2], now=NOW)
    assert all(isinstance(outcome, Wrote) for outcome in result.outcomes)
    assert [record.outcome for record in result.requests] == ["timeout", "ok"]


def test_a_per_minute_429_blocks_every_worker_and_the_items_wait_for_a_later_batch(fake: FakeGemini) -> None:
    # given two workers' gates on one Redis, and a per-minute 429 asking for 20 s
    gate = make_gate()
    other_worker = make_gate(gate._redis)
    fake.push(Reply.quota("minute", "20s"))
    fake_time = FakeTime()
    result = batch_writer(fake, fake_time=fake_time, gate=gate).write(ITEMS, now=NOW, can_requeue=True)
    # then nothing was written or templated: every item goes back to wait, and nobody slept
    assert result.outcomes == [Requeue("rate_limited:minute")] * len(ITEMS)
    assert fake_time.sleeps == [] and len(fake.requests) == 1
    # and every worker waits out the delay
    decision = other_worker.acquire(NOW + timedelta(seconds=5))
    assert isinstance(decision, Wait) and decision.why == "blocked"
    assert decision.seconds == pytest.approx(15 + QUOTA_DELAY_MARGIN_SECONDS, abs=0.5)


def test_where_nothing_can_wait_the_writer_waits_out_a_per_minute_block_itself(fake: FakeGemini) -> None:
    fake.push(Reply.quota("tokens_minute", "7.5s"))
    fake_time = FakeTime()
    result = batch_writer(fake, fake_time=fake_time).write(ITEMS[:2], now=NOW)
    assert all(isinstance(outcome, Wrote) for outcome in result.outcomes)
    assert fake_time.sleeps[0] == 7.5 + QUOTA_DELAY_MARGIN_SECONDS and len(fake.requests) == 2


def test_a_per_minute_block_longer_than_the_budget_gives_the_templates(fake: FakeGemini) -> None:
    fake.set_default(Reply.quota("minute", "45s"))
    result = batch_writer(fake, gemini_budget_seconds=30).write(ITEMS[:2], now=NOW)
    assert result.outcomes == [Fallback("rate_limited:minute")] * 2
    assert len(fake.requests) == 1


def test_an_unknown_429_backs_off_exponentially(fake: FakeGemini) -> None:
    fake.push(Reply.quota("unknown", None), Reply.quota("unknown", None))
    fake_time = FakeTime()
    result = batch_writer(fake, fake_time=fake_time).write(ITEMS[:2], now=NOW)
    assert all(isinstance(outcome, Wrote) for outcome in result.outcomes)
    assert fake_time.sleeps == [2.0, 4.0]


def test_a_per_day_429_pauses_gemini_for_the_day_and_templates_write(fake: FakeGemini) -> None:
    gate = make_gate()
    fake.push(Reply.quota("day", "30s"))
    result = batch_writer(fake, gate=gate).write(ITEMS, now=NOW, can_requeue=True)
    # then the items take their templates at once, and Gemini is closed until midnight Pacific
    assert result.outcomes == [Fallback(DAILY_QUOTA)] * len(ITEMS)
    midnight = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    assert gate.closed(NOW) == Closed(DAILY_QUOTA, midnight)
    # and the next batch makes no request at all, without even a limiter check
    again = batch_writer(fake, gate=gate).write(ITEMS, now=NOW + timedelta(hours=1))
    assert again.outcomes == [Fallback(DAILY_QUOTA)] * len(ITEMS) and again.requests == []
    assert len(fake.requests) == 1 and gate.state(NOW).checks_today == 1


def test_the_own_daily_limit_gives_the_templates_before_google_says_so(fake: FakeGemini) -> None:
    gate = make_gate(daily_limit=1)
    fake.push(Reply.batch({2: "english"}))
    result = batch_writer(fake, gate=gate).write(ITEMS[:2], now=NOW)
    # the batch went; the retry of its bad item would be the day's second request
    assert isinstance(result.outcomes[0], Wrote) and result.outcomes[1] == Fallback(DAILY_LIMIT)
    assert len(fake.requests) == 1


def test_a_403_opens_the_breaker_after_one_request(fake: FakeGemini, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    gate = make_gate(pause_seconds=600)
    fake.set_default(Reply.error(403, "PERMISSION_DENIED"))
    result = batch_writer(fake, gate=gate).write(ITEMS, now=NOW)
    # then one request was made, every item takes its template with the cause, and one ERROR line says what to fix
    assert len(fake.requests) == 1
    assert result.outcomes == [Fallback("gemini_key")] * len(ITEMS)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "GEMINI_API_KEY" in errors[0]
    # and while it is open no request is made
    again = batch_writer(fake, gate=gate).write(ITEMS, now=NOW + timedelta(seconds=300))
    assert again.outcomes == [Fallback("gemini_key")] * len(ITEMS) and len(fake.requests) == 1
    # then, half-open, one request probes; its success closes the breaker
    fake.set_default(Reply.good())
    probe = batch_writer(fake, gate=gate).write(ITEMS, now=NOW + timedelta(seconds=601))
    assert all(isinstance(outcome, Wrote) for outcome in probe.outcomes)
    assert gate.closed(NOW + timedelta(seconds=601)) is None and gate.state(NOW).breaker is None


def test_an_outage_opens_the_breaker_once_enough_requests_in_a_row_went_unanswered(
    fake: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    gate = make_gate(pause_seconds=600)
    fake.set_default(Reply.error(503, "UNAVAILABLE"))
    # when batches meet a Gemini that answers 503 to everything (4 attempts each)
    outcomes = []
    for batch in range(4):
        writer = batch_writer(fake, gate=gate, gemini_max_attempts=4)
        outcomes.append(writer.write(ITEMS[:2], now=NOW + timedelta(seconds=batch)).outcomes)
    # then the first batches spend their retries and take their templates with the error
    assert outcomes[0] == outcomes[1] == [Fallback("server_error")] * 2
    # and the OUTAGE_FAILURES-th unanswered request in a row opens the breaker: that batch stops at once, the next
    # asks nothing, and one ERROR line says Gemini is down, without a setting to blame
    assert outcomes[2] == outcomes[3] == [Fallback("gemini_unavailable")] * 2
    assert len(fake.requests) == OUTAGE_FAILURES
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "gemini_unavailable" in errors[0] and "in a row got no answer" in errors[0]
    assert "fix " not in errors[0].lower()
    # and once the pause is over (and the count of unanswered requests has expired, as it does after 15 minutes),
    # one probe that fails again opens it for another pause
    gate._redis.delete("test:gemini:unanswered")
    probe = batch_writer(fake, gate=gate, gemini_max_attempts=4).write(ITEMS[:2], now=NOW + timedelta(seconds=700))
    assert probe.outcomes == [Fallback("gemini_unavailable")] * 2
    assert len(fake.requests) == OUTAGE_FAILURES + 1
    assert isinstance(gate.acquire(NOW + timedelta(seconds=1000)), Closed)
    # and a probe that is answered closes it, and the count starts over
    fake.set_default(Reply.good())
    back = batch_writer(fake, gate=gate).write(ITEMS[:2], now=NOW + timedelta(seconds=1301))
    assert all(isinstance(outcome, Wrote) for outcome in back.outcomes)
    assert gate.went_unanswered(NOW + timedelta(seconds=1302), detail="timeout") is None


@pytest.mark.parametrize(("timeout", "budget", "opens"), [(2.0, 30.0, True), (5.0, 3.0, False)])
def test_only_a_timeout_with_the_whole_request_timeout_counts_toward_an_outage(
    fake: FakeGemini, timeout: float, budget: float, opens: bool
) -> None:
    gate = make_gate()
    fake.set_default(Reply.error(408, "DEADLINE_EXCEEDED"))
    # when requests time out again and again, either with the whole GEMINI_TIMEOUT_SECONDS each or with only what
    # was left of a batch's budget smaller than it
    for batch in range(2 * OUTAGE_FAILURES):
        writer = batch_writer(fake, gate=gate, gemini_timeout_seconds=timeout, gemini_budget_seconds=budget)
        writer.write(ITEMS[:2], now=NOW + timedelta(seconds=batch))
        if isinstance(gate.acquire(NOW + timedelta(seconds=batch)), Closed):
            break
    # then only the first is an outage: a request cut short by its batch's deadline says nothing of Gemini
    assert len(fake.requests) >= OUTAGE_FAILURES
    assert isinstance(gate.acquire(NOW + timedelta(seconds=60)), Closed) is opens


def test_a_passing_failure_between_answers_never_adds_up_to_an_outage(fake: FakeGemini) -> None:
    gate = make_gate()
    # when every batch meets one 503, then an answer, far more often than OUTAGE_FAILURES
    for batch in range(OUTAGE_FAILURES + 2):
        fake.push(Reply.error(503, "UNAVAILABLE"))
        result = batch_writer(fake, gate=gate).write(ITEMS[:2], now=NOW + timedelta(seconds=batch))
        assert all(isinstance(outcome, Wrote) for outcome in result.outcomes)
    # then Gemini stays open
    assert isinstance(gate.acquire(NOW + timedelta(seconds=60)), Go)


def test_a_429_is_an_answer_and_starts_the_outage_count_over(fake: FakeGemini) -> None:
    gate = make_gate()
    # when nine requests in a row go unanswered, then Gemini says it is over a per-minute quota, then nine more fail
    for _ in range(OUTAGE_FAILURES - 1):
        assert gate.went_unanswered(NOW, detail="server_error: 503") is None
    fake.push(Reply.quota("minute", "1s"))
    batch_writer(fake, gate=gate).write(ITEMS[:2], now=NOW, can_requeue=True)
    for _ in range(OUTAGE_FAILURES - 1):
        assert gate.went_unanswered(NOW + timedelta(seconds=5), detail="server_error: 503") is None
    # then no breaker opened: Gemini was there all along
    assert gate.state(NOW + timedelta(seconds=5)).breaker is None


@pytest.mark.parametrize(
    ("reply", "reason"),
    [(Reply.error(400, "FAILED_PRECONDITION"), "gemini_region"), (Reply.error(404, "NOT_FOUND"), "gemini_model")],
)
def test_region_and_model_refusals_open_the_breaker_too(fake: FakeGemini, reply: Reply, reason: str) -> None:
    gate = make_gate()
    fake.set_default(reply)
    result = batch_writer(fake, gate=gate).write(ITEMS[:2], now=NOW)
    assert result.outcomes == [Fallback(reason)] * 2 and len(fake.requests) == 1
    assert isinstance(gate.acquire(NOW), Closed)


def test_a_bad_request_of_another_kind_gives_the_templates_without_the_breaker(fake: FakeGemini) -> None:
    gate = make_gate()
    fake.set_default(Reply.error(400, "INVALID_ARGUMENT"))
    result = batch_writer(fake, gate=gate).write(ITEMS[:2], now=NOW)
    assert result.outcomes == [Fallback("client_error:400")] * 2
    assert isinstance(gate.acquire(NOW), Go)


def test_every_retry_takes_its_own_slot_and_no_slot_within_the_budget_is_a_template(fake: FakeGemini) -> None:
    # given 2 requests a minute, a batch whose second item is bad and a budget of 5 s
    gate = make_gate(rate="2/60")
    fake.push(Reply.batch({2: "english", 3: "english"}))
    result = batch_writer(fake, gate=gate, gemini_budget_seconds=5).write(ITEMS[:3], now=NOW)
    # then the batch and one retry went; the other retry found no slot within the budget
    assert len(fake.requests) == 2
    assert isinstance(result.outcomes[1], Wrote) and result.outcomes[2] == Fallback(RATE_LIMITED_BUDGET)
    # and where it could wait for a later batch, it does
    gate_later = make_gate(rate="1/60")
    fake.push(Reply.batch({2: "english"}))
    later = batch_writer(fake, gate=gate_later, gemini_budget_seconds=5).write(ITEMS[:2], now=NOW, can_requeue=True)
    assert later.outcomes[1] == Requeue(RATE_LIMITED_BUDGET)
