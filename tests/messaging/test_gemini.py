"""One Gemini request through the real google-genai client against the local fake server: what it carries (the
model, the thinking level, the output cap, the array schema), what comes back (text, usage, a MAX_TOKENS finish), and
every error in the project's terms."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from reactivation.core.errors import PermanentError, TransientError
from reactivation.core.logs import KeyValueFormatter
from reactivation.core.settings import load_settings
from reactivation.messaging.batch_prompt import SYSTEM_INSTRUCTION, response_schema
from reactivation.messaging.gemini import API_VERSION, TRUNCATED, GeminiWriter, gemini_writer
from reactivation.messaging.gemini_errors import DAY, KEY, MINUTE, MODEL, REGION, UNKNOWN, GeminiRefused, QuotaExceeded
from tests.fake_gemini import TEST_API_KEY, THINKING, FakeGemini, Reply, settings_for

PROMPT = "1. Имя: Мария. Последняя услуга: Стрижка. Тип: offer.\n2. Имя: Анна. Последняя услуга: Маникюр. Тип: gentle."


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(max_lifetime=60) as server:
        yield server


def ask(fake: FakeGemini, **overrides: object) -> object:
    writer = GeminiWriter(settings_for(fake, **overrides))
    return writer.request(PROMPT, system_instruction=SYSTEM_INSTRUCTION, timeout_seconds=2, schema=response_schema(2))


def test_a_request_carries_the_thinking_level_the_output_cap_and_an_array_schema(fake: FakeGemini) -> None:
    # given the default settings / when one batch request is made
    answer = ask(fake)
    # then it went to the configured model and API version, the key in its header and not in the URL
    request = fake.requests[0]
    assert request.path == f"/{API_VERSION}/models/gemini-3.8-flash:generateContent"
    assert request.headers["x-goog-api-key"] == TEST_API_KEY and TEST_API_KEY not in request.path
    # and it says how much to think (low), caps the answer with thinking included, and asks for a JSON array of two
    assert request.thinking_level == "LOW"
    assert request.max_output_tokens == 8192
    config = request.config
    assert config["responseMimeType"] == "application/json"
    schema = config["responseSchema"]
    assert schema["type"] == "ARRAY" and schema["min_items"] == schema["max_items"] == 2
    assert schema["items"]["required"] == ["n", "text"]
    # and the answer carries its text and the usage the server reported, thinking tokens apart
    assert answer.text is not None and answer.text.startswith("[")  # type: ignore[attr-defined]
    fixed, per_item = THINKING["LOW"]
    assert answer.usage.thinking == fixed + 2 * per_item  # type: ignore[attr-defined]
    assert answer.usage.prompt > 0 and answer.usage.output > 0  # type: ignore[attr-defined]
    assert answer.finish_reason == "STOP"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "level", "thinking_level", "budget"),
    [
        ("gemini-3.8-flash", "medium", "MEDIUM", None),
        ("gemini-3-flash-preview", "minimal", "MINIMAL", None),
        ("gemini-2.5-flash", "low", None, 512),
        ("gemini-3.8-flash", "default", None, None),
    ],
)
def test_the_thinking_setting_becomes_a_level_or_a_budget(
    fake: FakeGemini, model: str, level: str, thinking_level: str | None, budget: int | None
) -> None:
    ask(fake, gemini_model=model, gemini_thinking_level=level)
    thinking = fake.requests[0].config.get("thinkingConfig")
    if thinking_level is None and budget is None:
        assert thinking is None  # the model's own default
    else:
        assert thinking is not None
        assert thinking.get("thinking_level") == thinking_level
        assert thinking.get("thinking_budget") == budget


def test_an_answer_cut_at_the_output_cap_is_truncated_not_a_message(fake: FakeGemini) -> None:
    # given a cap the thinking and the items do not fit in
    answer = ask(fake, gemini_max_output_tokens=256, gemini_batch_size=2, gemini_thinking_level="high")
    # then the finish reason MAX_TOKENS is recognised: no text to use
    assert answer.problem == TRUNCATED and answer.text is None  # type: ignore[attr-defined]
    assert answer.finish_reason == "MAX_TOKENS"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("reply", "quota", "quota_id", "retry_after"),
    [
        (Reply.quota("minute", "7.5s"), MINUTE, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", 7.5),
        (Reply.quota("tokens_minute", "26s"), MINUTE, "GenerateContentInputTokensPerModelPerMinute-FreeTier", 26.0),
        (Reply.quota("day", "47s"), DAY, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", 47.0),
        (Reply.quota("unknown", None), UNKNOWN, None, None),
    ],
)
def test_a_429_is_classified_by_its_quota(
    fake: FakeGemini, reply: Reply, quota: str, quota_id: str | None, retry_after: float | None
) -> None:
    fake.set_default(reply)
    with pytest.raises(QuotaExceeded) as error:
        ask(fake)
    assert (error.value.quota, error.value.quota_id, error.value.retry_after) == (quota, quota_id, retry_after)


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (Reply.error(400, "FAILED_PRECONDITION"), REGION),
        (Reply.error(401, "UNAUTHENTICATED"), KEY),
        (Reply.error(403, "PERMISSION_DENIED"), KEY),
        (Reply.error(404, "NOT_FOUND"), MODEL),
    ],
)
def test_region_key_and_model_refusals_name_their_cause(fake: FakeGemini, reply: Reply, cause: object) -> None:
    fake.set_default(reply)
    with pytest.raises(GeminiRefused) as error:
        ask(fake)
    assert error.value.cause is cause


@pytest.mark.parametrize(
    ("reply", "error_type", "kind"),
    [
        (Reply.error(400, "INVALID_ARGUMENT"), PermanentError, "client_error:400"),
        (Reply.error(500), TransientError, "server_error"),
        (Reply.error(503, "UNAVAILABLE"), TransientError, "server_error"),
        (Reply("garbage"), TransientError, "bad_response"),
    ],
)
def test_other_errors_are_transient_or_permanent(
    fake: FakeGemini, reply: Reply, error_type: type[Exception], kind: str
) -> None:
    fake.set_default(reply)
    with pytest.raises(error_type) as error:
        ask(fake)
    assert not isinstance(error.value, (QuotaExceeded, GeminiRefused))
    assert error.value.kind == kind  # type: ignore[attr-defined]


def test_a_hang_past_the_timeout_is_a_timeout(fake: FakeGemini) -> None:
    fake.set_default(Reply.hang(5))
    writer = GeminiWriter(settings_for(fake))
    with pytest.raises(TransientError, match="timeout"):
        writer.request(PROMPT, system_instruction=SYSTEM_INSTRUCTION, timeout_seconds=0.3)


def test_nobody_listening_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = load_settings(gemini_api_key=TEST_API_KEY, gemini_base_url=f"http://127.0.0.1:{port}/", _env_file=None)
    with pytest.raises(TransientError, match="connection_error"):
        GeminiWriter(settings).request(PROMPT, system_instruction=SYSTEM_INSTRUCTION, timeout_seconds=2)


def test_the_key_is_never_logged(fake: FakeGemini, caplog: pytest.LogCaptureFixture) -> None:
    # given every kind of answer, logged at DEBUG for every logger (the SDK's and httpx's included)
    caplog.set_level(logging.DEBUG)
    writer = GeminiWriter(settings_for(fake))
    for reply in (Reply.error(500), Reply.quota("day"), Reply.error(403, "PERMISSION_DENIED"), Reply.good()):
        fake.set_default(reply)
        try:
            writer.request(PROMPT, system_instruction=SYSTEM_INSTRUCTION, timeout_seconds=2)
        except (TransientError, PermanentError) as exc:
            logging.getLogger("test").warning("failed", extra={"error": str(exc)})
    # then the key appears in no record, formatted the way the product formats logs, nor in the writer's repr
    formatter = KeyValueFormatter("%(levelname)s %(name)s %(message)s")
    assert caplog.records
    for record in caplog.records:
        assert TEST_API_KEY not in formatter.format(record)
    assert TEST_API_KEY not in repr(writer) and "low" in repr(writer)


def test_no_key_no_writer() -> None:
    assert gemini_writer(load_settings(gemini_api_key=None, _env_file=None)) is None
    assert gemini_writer(load_settings(gemini_api_key="", _env_file=None)) is None
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        GeminiWriter(load_settings(gemini_api_key=None, _env_file=None))
