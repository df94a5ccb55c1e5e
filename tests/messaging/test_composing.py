"""compose_message end to end: the real google-genai client, the fake Gemini server, the limiter, the templates."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
import redis
import time_machine
from limits.storage import MemoryStorage

from reactivation.core.limiter import Limiter, gemini_limiter
from reactivation.core.settings import RateLimit, Settings, load_settings
from reactivation.core.vocabulary import Step
from reactivation.messaging.composing import (
    ComposedMessage,
    MessageRequest,
    RateLimited,
    compose_message,
    template_message,
)
from reactivation.messaging.gemini import GeminiWriter
from reactivation.messaging.templates import variant_number
from reactivation.messaging.validation import validate_message
from tests.fake_gemini import FakeGemini, Reply, settings_for

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


class FakeTime:
    """Sleeps that take no time; the writer's clock, and a frozen wall clock if given, move by what is slept."""

    def __init__(self, traveller: time_machine.Coordinates | None = None) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []
        self.traveller = traveller

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds
        if self.traveller is not None:
            self.traveller.shift(seconds)

    def clock(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(max_lifetime=60) as server:
        yield server


def writer_for(fake: FakeGemini, fake_time: FakeTime | None = None, **overrides: object) -> GeminiWriter:
    fake_time = fake_time or FakeTime()
    return GeminiWriter(settings_for(fake, **overrides), sleep=fake_time.sleep, clock=fake_time.clock)


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
        pytest.param([], Reply.error(500), "template", "server_error", {}, id="500 every time"),
        pytest.param([Reply.rate_limited("2s")], GOOD, "gemini", None, {}, id="429 with RetryInfo, then good"),
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
    message = compose_message(request(), writer=writer_for(fake, **overrides), limiter=None)
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
    message = compose_message(request(), writer=writer_for(fake), limiter=None)
    assert isinstance(message, ComposedMessage)
    assert message.text == "Мария, дарим скидку 10% на мужскую стрижку. Записать вас?"


def test_no_key_means_the_template(fake: FakeGemini) -> None:
    message = compose_message(request(Step.GENTLE), writer=None, limiter=None)
    assert isinstance(message, ComposedMessage)
    assert (message.generator, message.fallback_reason, message.model) == ("template", "no_key", None)
    assert_valid(message, Step.GENTLE)
    assert not fake.requests


def test_the_raw_name_never_leaves_only_the_first_name_does(fake: FakeGemini) -> None:
    # given a client record holding a full name / when composed through Gemini
    compose_message(request(name="Иванова Мария Петровна", client_id=987654), writer=writer_for(fake), limiter=None)
    # then the request names "Мария" and carries no surname, patronymic, client id or lapse date
    body = str(fake.requests[0].body)
    assert "Мария" in body
    for private in ("Иванова", "Петровна", "987654", "2026-01-15", "15.01.2026"):
        assert private not in body


def test_a_phone_in_the_name_field_does_not_reach_the_prompt(fake: FakeGemini) -> None:
    compose_message(request(name="Клиент 79001234567"), writer=writer_for(fake), limiter=None)
    body = str(fake.requests[0].body)
    assert "79001234567" not in body and "Клиент" not in body


def test_the_request_keeps_the_raw_name_out_of_its_repr() -> None:
    assert "Иванова" not in repr(request())


# ------------------------------------------------------------------ the limiter


def memory_limiter(rate: RateLimit) -> Limiter:
    return Limiter(MemoryStorage(), rate, name="gemini-test")


def test_no_slot_for_the_first_attempt_defers_without_calling_gemini(fake: FakeGemini) -> None:
    # given a limiter whose window is full
    limiter = memory_limiter(RateLimit(1, 60))
    with time_machine.travel(dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC), tick=False):
        assert limiter.acquire().acquired
        # when a message is composed
        outcome = compose_message(request(), writer=writer_for(fake), limiter=limiter)
    # then the caller is told to come back when the slot frees, and Gemini was not asked
    assert isinstance(outcome, RateLimited)
    assert outcome.wait_seconds == pytest.approx(60, abs=0.02)
    assert not fake.requests


def test_without_deferral_the_first_attempt_waits_for_its_slot_within_the_budget(fake: FakeGemini) -> None:
    # given a full 1/10 window and a caller that cannot defer
    limiter = memory_limiter(RateLimit(1, 10))
    with time_machine.travel(dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC), tick=False) as clock:
        assert limiter.acquire().acquired
        fake_time = FakeTime(traveller=clock)
        # when
        message = compose_message(
            request(), writer=writer_for(fake, fake_time), limiter=limiter, defer_when_limited=False
        )
    # then it waited for the slot and Gemini wrote the message
    assert isinstance(message, ComposedMessage) and message.generator == "gemini"
    assert fake_time.sleeps == [pytest.approx(10, abs=0.02)]


def test_a_slot_beyond_the_budget_falls_back_to_the_template(fake: FakeGemini) -> None:
    # given a 1/60 limit already used, a 30 s budget, and a caller that cannot defer
    limiter = memory_limiter(RateLimit(1, 60))
    with time_machine.travel(dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC), tick=False):
        assert limiter.acquire().acquired
        message = compose_message(request(), writer=writer_for(fake), limiter=limiter, defer_when_limited=False)
    # then the template goes at once, saying why
    assert isinstance(message, ComposedMessage)
    assert (message.generator, message.fallback_reason) == ("template", "rate_limited_budget")
    assert not fake.requests


def test_every_retry_takes_its_own_slot(fake: FakeGemini) -> None:
    # given a 2/60 limit and a Gemini that fails every time
    fake.set_default(Reply.error(500))
    limiter = memory_limiter(RateLimit(2, 60))
    with time_machine.travel(dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC), tick=False):
        message = compose_message(request(), writer=writer_for(fake, gemini_max_attempts=4), limiter=limiter)
    # then only two requests were made (the limit), and the third waits past the budget: template
    assert len(fake.requests) == 2
    assert isinstance(message, ComposedMessage)
    assert (message.generator, message.fallback_reason, message.attempts) == ("template", "rate_limited_budget", 2)


def test_the_limiter_in_redis_is_shared_by_compose_calls(
    fake: FakeGemini, settings: Settings, redis_client: redis.Redis
) -> None:
    # given the product's Gemini limiter on real Redis at 2 calls a minute
    limiter = gemini_limiter(settings.model_copy(update={"gemini_rate_limit": "2/60"}))
    limiter.clear()
    writer = writer_for(fake)
    # when three messages are composed one after another
    outcomes = [compose_message(request(client_id=i), writer=writer, limiter=limiter) for i in range(3)]
    limiter.clear()
    # then two were written by Gemini and the third was told to wait
    assert [type(o).__name__ for o in outcomes] == ["ComposedMessage", "ComposedMessage", "RateLimited"]
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
    settings = settings_for(fake, gemini_timeout_seconds=0.3, gemini_budget_seconds=1.0, gemini_max_attempts=10)
    # when
    message = compose_message(request(), writer=GeminiWriter(settings), limiter=None)
    # then the template is used; at most a few attempts fit in the budget, however many are allowed
    assert isinstance(message, ComposedMessage)
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
