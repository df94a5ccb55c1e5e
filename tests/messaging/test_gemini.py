"""The Gemini writer through the real google-genai client against the local fake server."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from reactivation.core.logs import KeyValueFormatter
from reactivation.core.settings import load_settings
from reactivation.core.vocabulary import Step
from reactivation.messaging.gemini import (
    API_VERSION,
    GeminiWriter,
    NotWritten,
    PromptFacts,
    Written,
    build_prompt,
    gemini_writer,
)
from reactivation.messaging.validation import validate_message
from tests.fake_gemini import TEST_API_KEY, FakeGemini, Reply, good_message, settings_for

FACTS = PromptFacts(step=Step.OFFER, first_name="Мария", service_title="Стрижка мужская", company_name="Салон «Бархат»")


class FakeTime:
    """Sleeps that take no time: the writer's clock moves by what it sleeps, on top of the real clock."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds

    def clock(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(max_lifetime=60) as server:
        yield server


def writer_for(fake: FakeGemini, fake_time: FakeTime | None = None, **overrides: object) -> GeminiWriter:
    fake_time = fake_time or FakeTime()
    return GeminiWriter(settings_for(fake, **overrides), sleep=fake_time.sleep, clock=fake_time.clock)


def test_a_good_answer_is_used(fake: FakeGemini) -> None:
    # given a server that answers well / when
    result = writer_for(fake).write(FACTS)
    # then the message is Gemini's, validated, from one request to the configured model and API version
    assert isinstance(result, Written)
    assert result.attempts == 1
    assert result.model == "gemini-3.8-flash"
    assert validate_message(result.text, step=Step.OFFER, first_name="Мария").ok
    assert fake.requests[0].path == f"/{API_VERSION}/models/gemini-3.8-flash:generateContent"
    # and the key travels in its header, not in the URL
    assert fake.requests[0].headers["x-goog-api-key"] == TEST_API_KEY
    assert TEST_API_KEY not in fake.requests[0].path


@pytest.mark.parametrize(
    ("raw", "used"),
    [
        ("Вот сообщение:\n\n«**Мария**, дарим скидку 10% на мужскую стрижку. Записать вас?»", True),
        ('"Мария, дарим скидку 10% на стрижку. Записать вас?"', True),
        ("Мария, дарим скидку 10% на стрижку. Записать вас? (52 символа)", True),
        ("Мария, " + "очень " * 65 + "Записать вас?", False),
        ("{name}, дарим скидку 10% на стрижку. Записать вас?", False),
        ("Maria, we give you 10% off your next haircut. Book now?", False),
        ("Мария, дарим скидку 15% на стрижку. Записать вас?", False),
    ],
)
def test_answers_are_repaired_or_rejected(fake: FakeGemini, raw: str, used: bool) -> None:
    # given a server that always answers this text / when
    fake.set_default(Reply.say(raw))
    result = writer_for(fake).write(FACTS)
    # then a repairable answer is used after one request, an unusable one is asked twice and given up
    if used:
        assert isinstance(result, Written) and result.attempts == 1
        assert validate_message(result.text, step=Step.OFFER, first_name="Мария").ok
        assert result.repairs
    else:
        assert isinstance(result, NotWritten)
        assert result.reason.startswith("rejected:")
        assert result.attempts == 2
        assert len(fake.requests) == 2


def test_a_rejected_answer_gets_one_more_try(fake: FakeGemini) -> None:
    fake.push(Reply.say("Maria, book now?"), Reply.good())
    result = writer_for(fake).write(FACTS)
    assert isinstance(result, Written) and result.attempts == 2


@pytest.mark.parametrize("reply", [Reply.safety(), Reply.blocked()])
def test_a_blocked_answer_gets_one_more_try_then_gives_up(fake: FakeGemini, reply: Reply) -> None:
    fake.set_default(reply)
    fake_time = FakeTime()
    result = writer_for(fake, fake_time).write(FACTS)
    assert result == NotWritten(reason="safety", attempts=2)
    assert fake_time.sleeps == [0.0]  # asked again at once


def test_an_empty_answer_then_a_good_one(fake: FakeGemini) -> None:
    fake.push(Reply.empty())
    result = writer_for(fake).write(FACTS)
    assert isinstance(result, Written) and result.attempts == 2


def test_server_errors_back_off_exponentially_with_jitter_up_to_the_attempt_limit(fake: FakeGemini) -> None:
    # given a server that fails every time
    fake.set_default(Reply.error(500))
    fake_time = FakeTime()
    # when
    result = writer_for(fake, fake_time, gemini_max_attempts=4).write(FACTS)
    # then four attempts were made, with waits of about 1, 2 and 4 seconds plus up to 1 s of jitter between them
    assert result == NotWritten(reason="server_error", attempts=4)
    assert len(fake.requests) == 4
    assert len(fake_time.sleeps) == 3
    for wait, base in zip(fake_time.sleeps, [1, 2, 4], strict=True):
        assert base <= wait <= base + 1


def test_the_budget_stops_retries_before_the_attempt_limit(fake: FakeGemini) -> None:
    # given a server that fails every time and a budget of 5 s for the message
    fake.set_default(Reply.error(503))
    fake_time = FakeTime()
    # when
    result = writer_for(fake, fake_time, gemini_max_attempts=10, gemini_budget_seconds=5).write(FACTS)
    # then it gives up once the next wait would leave no time for an attempt, well before ten attempts
    assert isinstance(result, NotWritten) and result.reason == "server_error"
    assert result.attempts < 10
    assert sum(fake_time.sleeps) < 5


def test_a_429_is_retried_after_the_servers_retry_delay(fake: FakeGemini) -> None:
    # given a server that is over quota once, asking for 7.5 s
    fake.push(Reply.rate_limited("7.5s"))
    fake_time = FakeTime()
    # when
    result = writer_for(fake, fake_time).write(FACTS)
    # then the writer waited exactly what the server asked and used the next answer
    assert isinstance(result, Written) and result.attempts == 2
    assert fake_time.sleeps == [7.5]


def test_a_429_asking_for_more_than_the_budget_gives_up_at_once(fake: FakeGemini) -> None:
    fake.set_default(Reply.rate_limited("45s"))
    fake_time = FakeTime()
    result = writer_for(fake, fake_time, gemini_budget_seconds=30).write(FACTS)
    assert result == NotWritten(reason="rate_limited", attempts=1)
    assert fake_time.sleeps == []


def test_a_429_without_retry_info_backs_off(fake: FakeGemini) -> None:
    fake.push(Reply.rate_limited(retry_delay=None))
    fake_time = FakeTime()
    result = writer_for(fake, fake_time).write(FACTS)
    assert isinstance(result, Written)
    assert 1 <= fake_time.sleeps[0] <= 2


def test_a_hang_past_the_timeout_is_a_timeout(fake: FakeGemini) -> None:
    # given a server that hangs for 5 s and a client timeout of 0.3 s / when
    fake.set_default(Reply.hang(5))
    result = writer_for(fake, gemini_timeout_seconds=0.3, gemini_max_attempts=2).write(FACTS)
    # then both attempts time out and the writer says so
    assert result == NotWritten(reason="timeout", attempts=2)


def test_one_hang_then_a_good_answer(fake: FakeGemini) -> None:
    fake.push(Reply.hang(5))
    result = writer_for(fake, gemini_timeout_seconds=0.3).write(FACTS)
    assert isinstance(result, Written) and result.attempts == 2


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "client_error:400"), (403, "client_error:403"), (404, "client_error:404")]
)
def test_a_client_error_is_not_retried(fake: FakeGemini, status: int, reason: str) -> None:
    fake.set_default(Reply.error(status))
    result = writer_for(fake).write(FACTS)
    assert result == NotWritten(reason=reason, attempts=1)


def test_a_garbage_body_is_a_bad_response(fake: FakeGemini) -> None:
    fake.set_default(Reply("garbage"))
    result = writer_for(fake, gemini_max_attempts=2).write(FACTS)
    assert result == NotWritten(reason="bad_response", attempts=2)


def test_nobody_listening_is_a_connection_error() -> None:
    # given a port nothing listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = load_settings(
        gemini_api_key=TEST_API_KEY,
        gemini_base_url=f"http://127.0.0.1:{port}/",
        gemini_max_attempts=2,
        _env_file=None,
    )
    fake_time = FakeTime()
    result = GeminiWriter(settings, sleep=fake_time.sleep, clock=fake_time.clock).write(FACTS)
    assert result == NotWritten(reason="connection_error", attempts=2)


def test_only_the_first_name_and_the_service_title_reach_the_prompt(fake: FakeGemini) -> None:
    # given facts built from a full client record: the prompt facts have no room for anything else
    facts = PromptFacts(step=Step.WIN_BACK, first_name="Мария", service_title="Стрижка мужская", company_name="Бархат")
    # when
    writer_for(fake).write(facts)
    # then what left the machine names the client by first name, the service and the salon, and nothing else
    body = str(fake.requests[0].body)
    assert "Мария" in body and "Стрижка мужская" in body and "Бархат" in body
    assert set(PromptFacts.__dataclass_fields__) == {"step", "first_name", "service_title", "company_name"}


@pytest.mark.parametrize(
    ("step", "expected", "absent"),
    [
        (Step.GENTLE, ["до 150 символов", "«скучаем»", "Без скидок"], ["Скидка:"]),
        (Step.OFFER, ["до 200 символов", "Скидка: 10%"], ["20%"]),
        (Step.WIN_BACK, ["до 250 символов", "Скидка: 20%"], ["10%"]),
    ],
)
def test_the_prompt_follows_the_seed_per_message_type(step: Step, expected: list[str], absent: list[str]) -> None:
    prompt = build_prompt(PromptFacts(step=step, first_name="Мария", service_title="Педикюр", company_name="Бархат"))
    for fragment in [*expected, "Имя клиента: Мария", "Последняя услуга: Педикюр", "«Бархат»", "вопросом о записи"]:
        assert fragment in prompt
    for fragment in absent:
        assert fragment not in prompt


def test_without_a_name_or_usable_service_the_prompt_says_so() -> None:
    facts = PromptFacts(step=Step.GENTLE, first_name=None, service_title="{x} 79001234567", company_name="Б")
    prompt = build_prompt(facts)
    assert "Имя клиента неизвестно" in prompt
    assert "Последняя услуга: не указана" in prompt
    assert "7900" not in prompt


def test_the_key_is_never_logged(fake: FakeGemini, caplog: pytest.LogCaptureFixture) -> None:
    # given every failure the writer logs, at DEBUG for every logger (the SDK's and httpx's included)
    fake.push(Reply.error(500), Reply.rate_limited("0.1s"), Reply.say("Maria, book?"), Reply.error(403))
    caplog.set_level(logging.DEBUG)
    writer = writer_for(fake)
    # when
    writer.write(FACTS)
    # then the key appears in no record, formatted the way the product formats logs, nor in the writer's repr
    formatter = KeyValueFormatter("%(levelname)s %(name)s %(message)s")
    assert caplog.records
    for record in caplog.records:
        assert TEST_API_KEY not in formatter.format(record)
    assert TEST_API_KEY not in repr(writer)


def test_no_key_no_writer() -> None:
    assert gemini_writer(load_settings(gemini_api_key=None, _env_file=None)) is None
    assert gemini_writer(load_settings(gemini_api_key="", _env_file=None)) is None
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        GeminiWriter(load_settings(gemini_api_key=None, _env_file=None))


def test_the_fakes_good_message_is_valid_for_every_step() -> None:
    for step in Step:
        for name in ("Мария", None):
            prompt = build_prompt(PromptFacts(step=step, first_name=name, service_title=None, company_name="Бархат"))
            assert validate_message(good_message(prompt), step=step, first_name=name).ok
