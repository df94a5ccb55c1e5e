import logging

import pytest

from reactivation.core.logs import KeyValueFormatter, scrub


def _format(message: str, **extra: object) -> str:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return KeyValueFormatter("%(levelname)s %(message)s").format(record)


def test_phones_are_masked_in_messages_and_fields() -> None:
    line = _format("sent to +7 900 123-45-67", phone="+79001234567", history_id=5)
    assert "123-45-67" not in line and "9001234567" not in line
    assert "history_id=5" in line and "phone=+7********67" in line


def test_secrets_are_hidden() -> None:
    line = _format("calling gemini", api_key="AIza-secret", gateway_token="t0ken")
    assert "AIza-secret" not in line and "t0ken" not in line


@pytest.mark.parametrize("text", ["2026-11-23 10:40:48", "run 2026-11-23", "ids 123 456", "took 1234567 us"])
def test_dates_and_short_numbers_are_left_alone(text: str) -> None:
    assert scrub(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "Task reactivation.send_message[3f2c1a9e-1234-5678-9012-345678901234] retry",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "Task reactivation.select_interval[0b6a2b61-7c4e-4d49-8a7a-120043219876] received",
    ],
)
def test_task_ids_and_other_ids_are_left_alone(text: str) -> None:
    assert scrub(text) == text


def test_a_phone_masked_by_the_caller_is_not_masked_again() -> None:
    # Given a field the caller masked already (pipeline: "message sent", phone=mask_phone(...))
    line = _format("message sent", phone="+7********67")
    # Then the log shows it as the README says, not as "***"
    assert "phone=+7********67" in line
