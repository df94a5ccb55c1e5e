"""compose_message(s) end to end: the real google-genai client, the fake Gemini server, the gate, the templates."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
import redis

from reactivation.core.limiter import gemini_limiter
from reactivation.core.settings import Settings, load_settings
from reactivation.core.vocabulary import Step
from reactivation.messaging.composing import (
    ComposedMessage,
    MessageRequest,
    compose_message,
    compose_messages,
    template_message,
)
from reactivation.messaging.gemini_batch import BatchWriter, Requeue
from reactivation.messaging.templates import variant_number
from reactivation.messaging.validation import validate_message
from tests.fake_gemini import FakeGemini, Reply, settings_for
from tests.gemini_stack import FakeTime, batch_writer, make_gate

SALON = "Салон «Бархат»"


def request(
    step: Step = Step.OFFER, *, name: str | None = "Иванова Мария Петровна", client_id: int = 7
) -> MessageRequest:
    return MessageRequest(
        company_name=SALON,
        client_name=name,
        service_title="Стрижка мужская",
        step=step,
        client_id=client_id,
        lapse_date=dt.date(2026, 1, 15),
    )


NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(max_lifetime=60) as server:
        yield server


def writer_for(fake: FakeGemini, fake_time: FakeTime | None = None, **overrides: object) -> BatchWriter:
    return batch_writer(fake, fake_time=fake_time, **overrides)


def assert_valid(message: ComposedMessage, step: Step) -> None:
    assert validate_message(message.text, step=step, first_name=message.first_name, company_name=SALON).ok


GOOD = Reply.good()
FOUR_HUNDRED = Reply.say("Мария, " + "мы очень рады вам " * 22 + "Записать вас?")
PLACEHOLDER = Reply.say("{name}, дарим скидку 10% на стрижку. Записать вас?")
ENGLISH = Reply.say("Maria, we give you 10% off your next haircut. Would you like to book?")
SHORT_TIMEOUT = {"gemini_timeout_seconds": 0.3, "gemini_max_attempts": 2}
WRAPPED = Reply.say("Вот сообщение:\n\n**«Мария, дарим скидку 10% на мужскую стрижку. Записать вас?»**")


@pytest.mark.parametrize(
    ("script", "default", "generator", "reason", "overrides"),
    [
        pytest.param([], GOOD, "gemini", None, {}, id="good"),
        pytest.param([], FOUR_HUNDRED, "template", "rejected:too_long", {}, id="400 characters"),
        pytest.param([], PLACEHOLDER, "template", "rejected:placeholder", {}, id="placeholder"),
        pytest.param([], ENGLISH, "template", "rejected:not_russian", {}, id="english"),
        pytest.param([], WRAPPED, "gemini", None, {}, id="quotes, markup and a preamble"),
        pytest.param([], Reply.safety(), "template", "safety", {}, id="empty SAFETY answer"),
        pytest.param([Reply.safety()], GOOD, "gemini", None, {}, id="SAFETY once, then good"),
        pytest.param([Reply.truncated()], GOOD, "template", "truncated", {}, id="MAX_TOKENS: nothing smaller"),
        pytest.param([], Reply.error(500), "template", "server_error", {}, id="500 every time"),
        pytest.param([Reply.rate_limited("2s")], GOOD, "gemini", None, {}, id="429 with RetryInfo, then good"),
        pytest.param([], Reply.quota("day"), "template", "gemini_daily_quota", {}, id="per-day 429"),
        pytest.param([], Reply.error(403, "PERMISSION_DENIED"), "template", "gemini_key", {}, id="403"),
        pytest.param([], Reply.hang(5), "template", "timeout", SHORT_TIMEOUT, id="hang"),
    ],
)
def test_every_message_is_valid_and_good_answers_are_used(
    fake: FakeGemini, script: list[Reply], default: Reply, generator: str, reason: str | None, overrides: dict
) -> None:
    # given a Gemini that answers this way
    fake.push(*script)
    fake.set_default(default)
    # when a client's offer is composed
    message = compose_message(request(), writer=writer_for(fake, **overrides), now=NOW)
    # then what comes out is valid for the step; Gemini's good answers are used, anything else falls back
    assert isinstance(message, ComposedMessage)
    assert_valid(message, Step.OFFER)
    assert message.generator == generator
    assert message.first_name == "Мария"
    if generator == "gemini":
        assert message.fallback_reason is None
        assert message.model == "gemini-3.8-flash"
        assert message.variant == "offer.gemini.v2"
    else:
        assert message.fallback_reason is not None and message.fallback_reason.startswith(reason or "")
        assert message.model is None
        assert message.variant == f"offer.{variant_number(7, Step.OFFER)}.due"
        assert message.attempts >= 1


def test_the_wrapped_answer_is_repaired_not_rejected(fake: FakeGemini) -> None:
    fake.set_default(WRAPPED)
    message = compose_message(request(), writer=writer_for(fake), now=NOW)
    assert isinstance(message, ComposedMessage)
    assert message.text == "Мария, дарим скидку 10% на мужскую стрижку. Записать вас?"


def test_no_key_means_the_template(fake: FakeGemini) -> None:
    message = compose_message(request(Step.GENTLE), writer=None, now=NOW)
    assert isinstance(message, ComposedMessage)
    assert (message.generator, message.fallback_reason, message.model) == ("template", "no_key", None)
    assert_valid(message, Step.GENTLE)
    assert not fake.requests


def test_the_raw_name_never_leaves_only_the_first_name_does(fake: FakeGemini) -> None:
    # given a client record holding a full name / when composed through Gemini
    compose_message(request(name="Иванова Мария Петровна", client_id=987654), writer=writer_for(fake), now=NOW)
    # then the request names "Мария" and carries no surname, patronymic, client id or lapse date
    body = str(fake.requests[0].body)
    assert "Мария" in body
    for private in ("Иванова", "Петровна", "987654", "2026-01-15", "15.01.2026"):
        assert private not in body


def test_a_phone_in_the_name_field_does_not_reach_the_prompt(fake: FakeGemini) -> None:
    compose_message(request(name="Клиент 79001234567"), writer=writer_for(fake), now=NOW)
    body = str(fake.requests[0].body)
    assert "79001234567" not in body and "Клиент" not in body


def test_the_request_keeps_the_raw_name_out_of_its_repr() -> None:
    assert "Иванова" not in repr(request())


# ------------------------------------------------------------------ batches and the limiter


def test_several_messages_come_from_one_request(fake: FakeGemini) -> None:
    requests = [request(Step(1 + i % 3), name=name, client_id=i) for i, name in enumerate(["Анна", None, "Олег"])]
    composition = compose_messages(requests, writer=writer_for(fake), now=NOW)
    assert len(fake.requests) == 1 and len(composition.requests) == 1
    for message, asked in zip(composition.messages, requests, strict=True):
        assert isinstance(message, ComposedMessage) and message.generator == "gemini" and message.attempts == 1
        assert_valid(message, asked.step)


def test_a_requeued_item_comes_back_as_such_only_when_the_caller_can_requeue(fake: FakeGemini) -> None:
    fake.push(Reply.quota("minute", "20s"))
    composition = compose_messages([request()], writer=writer_for(fake), now=NOW, can_requeue=True)
    assert composition.messages == [Requeue("rate_limited:minute")]
    assert composition.requests[0].outcome == "rate_limited:minute"


def test_a_slot_beyond_the_budget_falls_back_to_the_template(fake: FakeGemini) -> None:
    # given a 1/60 limit already used and a 30 s budget
    gate = make_gate(rate="1/60")
    assert gate.limiter.acquire().acquired
    message = compose_message(request(), writer=writer_for(fake, gate=gate), now=NOW)
    # then the template goes at once, saying why
    assert (message.generator, message.fallback_reason) == ("template", "rate_limited_budget")
    assert not fake.requests


def test_the_first_request_waits_for_its_slot_within_the_budget(fake: FakeGemini) -> None:
    # given a full 1/2 window
    gate = make_gate(rate="1/2")
    assert gate.limiter.acquire().acquired
    # when a message is composed (the limiter keeps real time: the wait is real, and short)
    started = time.monotonic()
    message = compose_message(request(), writer=batch_writer(fake, gate=gate, real_time=True), now=NOW)
    # then it waited for the slot and Gemini wrote the message
    assert message.generator == "gemini"
    assert len(fake.requests) == 1 and time.monotonic() - started >= 1.5


def test_every_retry_takes_its_own_slot(fake: FakeGemini) -> None:
    # given a 2/60 limit and a Gemini that fails every time
    fake.set_default(Reply.error(500))
    gate = make_gate(rate="2/60")
    message = compose_message(request(), writer=writer_for(fake, gate=gate, gemini_max_attempts=4), now=NOW)
    # then only two requests were made (the limit), and the third waits past the budget: template
    assert len(fake.requests) == 2
    assert (message.generator, message.fallback_reason, message.attempts) == ("template", "rate_limited_budget", 2)


def test_the_limiter_in_redis_is_shared_by_compose_calls(
    fake: FakeGemini, settings: Settings, redis_client: redis.Redis
) -> None:
    # given the product's Gemini limiter on real Redis at 2 calls a minute, and a short budget
    limiter = gemini_limiter(settings.model_copy(update={"gemini_rate_limit": "2/60"}))
    limiter.clear()
    gate = make_gate(redis_client, prefix=settings.redis_key_prefix, limiter=limiter)
    writer = writer_for(fake, gate=gate, gemini_budget_seconds=5)
    # when three messages are composed one after another
    messages = [compose_message(request(client_id=i), writer=writer, now=NOW) for i in range(3)]
    limiter.clear()
    # then two were written by Gemini and the third, with no slot within its budget, by the template
    assert [m.generator for m in messages] == ["gemini", "gemini", "template"]
    assert messages[2].fallback_reason == "rate_limited_budget"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("name", ["Иванова Мария Петровна", None, "Клиент 79001234567", "Maria"])
def test_template_message_is_valid_without_gemini(step: Step, name: str | None) -> None:
    message = template_message(request(step, name=name))
    assert message.generator == "template" and message.fallback_reason is None
    assert_valid(message, step)


def test_a_gemini_outage_does_not_delay_sending_beyond_the_budget(fake: FakeGemini) -> None:
    # given a Gemini that hangs every time, a 0.3 s timeout and a 1 s budget, with real time
    fake.set_default(Reply.hang(5))
    writer = batch_writer(
        fake, real_time=True, gemini_timeout_seconds=0.3, gemini_budget_seconds=1.0, gemini_max_attempts=10
    )
    # when
    message = compose_message(request(), writer=writer, now=NOW)
    # then the template is used; at most a few attempts fit in the budget, however many are allowed
    assert (message.generator, message.fallback_reason) == ("template", "timeout")
    assert 1 <= message.attempts <= 3


def test_settings_for_the_fake_keep_other_settings(fake: FakeGemini, settings: Settings) -> None:
    derived = settings_for(fake, settings)
    assert derived.redis_key_prefix == settings.redis_key_prefix
    assert derived.gemini_base_url == fake.base_url
    assert load_settings(_env_file=None).gemini_base_url is None


def test_a_contacts_absence_and_interval_choose_the_wording() -> None:
    # Given a claimed row of a weekly styling client ten days after the visit, and one of a monthly client after 63
    from types import SimpleNamespace

    from reactivation.storage.companies import CompanyConfig

    company = CompanyConfig(id=1, name=SALON, tz=dt.UTC, country="RU", enabled=True, settings=None)  # type: ignore[arg-type]
    due = SimpleNamespace(
        client_id=7,
        step=1,
        last_service_name="Укладка",
        last_visit_date=dt.date(2026, 1, 15),
        inactive_days=10,
        interval_days=7,
    )
    lapsed = SimpleNamespace(**{**vars(due), "step": 2, "inactive_days": 63, "interval_days": 30})
    # When their messages are composed from the templates
    first = template_message(MessageRequest.for_contact(company, due, client_name="Мария"))  # type: ignore[arg-type]
    second = template_message(MessageRequest.for_contact(company, lapsed, client_name="Мария"))  # type: ignore[arg-type]
    # Then the first is told it is time again, and the second's variant is the one for a long absence
    assert first.variant.endswith(".due") and "давно" not in first.text.lower()
    assert second.variant.endswith(".long")
